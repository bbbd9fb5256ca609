"""The volumes section (and every guest-file reader) against hostile input and faults.

* Spoofed mounts: any user can make a FUSE mount with any source string
  (``sshfs -o fsname=/dev/xvda1``). Such a mount must never be taken for a guest disk:
  mounts are matched by the device number the kernel gives, btrfs by the fsid the kernel
  reports and the devices sysfs lists for it. Fake guests under ``--root``.
* Hangs: a FUSE server that never answers (a real one, made here with a bare
  ``/dev/fuse`` mount in a private mount namespace: the kernel waits for an answer to
  FUSE_INIT forever); a mount made over a mount point after mountinfo was read; a FIFO
  where a /proc or /sys file is expected; a ``pvs`` whose children outlive it.
"""

import os
import subprocess
import sys
import time

import pytest

from tests.blockdev import CHECKOUT, XVD_MAJOR, FakeBlock
from tests.fakeguest import FakeGuest

GIB = 1 << 30
SECTORS_PER_GIB = GIB // 512


# -- non-regular files where a /proc or /sys file is expected ----------------------

def fifo_guest(tmp_path) -> FakeBlock:
    g = FakeBlock(tmp_path / "guest")
    FakeGuest(g.root).minimal()
    g.write_mountinfo()
    g.xen_disk("xvdb", 16, 4 * SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    g.mount((XVD_MAJOR, 16), "/srv", "ext4", "/dev/xvdb")
    g.swaps()
    g.file("/etc/os-release", 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian 12"\n')
    return g


FIFO_CASES = {
    "meminfo": ("memory", "/proc/meminfo", 1,
                "section memory failed: /proc/meminfo: not a regular file"),
    "mountinfo": ("volumes", "/proc/self/mountinfo", 1,
                  "section volumes failed: /proc/self/mountinfo: not a regular file"),
    "sysfs-size": ("volumes", "/sys/devices/vbd-51728/block/xvdb/size", 1,
                   "section volumes failed: /sys/block/xvdb/size: not a regular file"),
    "udev-db": ("volumes", "/run/udev/data/b202:16", 1,
                "section volumes failed: /run/udev/data/b202:16: not a regular file"),
    "swaps": ("volumes", "/proc/swaps", 1,
              "section volumes failed: /proc/swaps: not a regular file"),
    "os-cache": ("os", "/var/cache/xe-linux-distribution", 0,
                 "ignoring /var/cache/xe-linux-distribution: not a regular file"),
}


@pytest.mark.parametrize("kind", ["fifo", "directory"])
@pytest.mark.parametrize("case", sorted(FIFO_CASES))
def test_fifo_where_a_proc_or_sys_file_is_expected_does_not_hang(tmp_path, case, kind):
    """A FIFO (open() waits for a writer, read() for data) or a directory planted in the
    guest tree: one clear line, the section fails (or, for the os facts file, the
    distribution is detected instead), and the run ends."""
    section, path, rc, message = FIFO_CASES[case]
    g = fifo_guest(tmp_path)
    target = g.path(path)
    target.unlink()
    if kind == "fifo":
        os.mkfifo(str(target))
    else:
        target.mkdir()
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "xe_oneshot", "--root", str(g.root), "--section", section,
         "--print", "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        env=dict(os.environ, PYTHONPATH=str(CHECKOUT)), timeout=20)
    assert time.monotonic() - started < 15
    assert (res.returncode, res.stderr.splitlines()) == (rc, ["xe-oneshot: " + message])
    if section == "os":
        assert 'data/os_distro = "debian"' in res.stdout
