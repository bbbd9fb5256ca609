"""A fake guest's files under a root directory for ``--root``: :class:`FakeGuest`
(meminfo, the cached distribution, the minimal guest every section can run on) and
:func:`set_meminfo` (an atomic change of MemAvailable, as between two runs)."""

import os
from pathlib import Path
from typing import Optional

MEMINFO = """MemTotal:        {total} kB
MemFree:          {free} kB
{available}Buffers:           41220 kB
Cached:           612088 kB
SwapCached:            0 kB
Active:           512340 kB
"""

DISTRIBUTION = """os_distro="debian"
os_majorver="12"
os_minorver="7"
os_uname="6.1.0-25-amd64"
os_name="Debian GNU/Linux 12 (bookworm)"
"""


class FakeGuest:
    """A guest tree: ``FakeGuest(tmp_path).meminfo(...)``; ``.root`` for ``--root``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def file(self, guest_path: str, text: str) -> "FakeGuest":
        path = self.root / guest_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return self

    def meminfo(self, total: int = 2048000, available: Optional[int] = 1500000,
                free: int = 300000) -> "FakeGuest":
        line = "" if available is None else "MemAvailable:    %d kB\n" % available
        return self.file("/proc/meminfo", MEMINFO.format(total=total, free=free,
                                                         available=line))

    def distribution(self, text: str = DISTRIBUTION) -> "FakeGuest":
        return self.file("/var/cache/xe-linux-distribution", text)

    def minimal(self) -> "FakeGuest":
        """Memory, a cached distribution, a balloon driver, no disk, no NIC: every
        section has its files."""
        for directory in ("sys/block", "sys/class/net", "run/udev/data",
                          "sys/devices/system/xen_memory/xen_memory0"):   # balloon driver
            (self.root / directory).mkdir(parents=True, exist_ok=True)
        return self.meminfo().distribution().file(
            "/proc/self/mountinfo",
            "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n")


def set_meminfo(guest: FakeGuest, available: int) -> None:
    """Change the guest's MemAvailable atomically, as the kernel serves /proc/meminfo
    (a run never reads half a file); the other figures as :meth:`FakeGuest.meminfo`."""
    path = guest.root / "proc/meminfo"
    tmp = path.with_name("meminfo.new")
    tmp.write_text(MEMINFO.format(total=2048000, free=300000,
                                  available="MemAvailable:    %d kB\n" % available))
    os.replace(tmp, path)
