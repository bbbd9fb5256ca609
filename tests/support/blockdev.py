"""Block devices for the volumes tests: fake sysfs trees, and real loop devices and LVM.

* :class:`FakeBlock` writes the block-device half of a fake guest under a root dir: a
  sysfs tree laid out as the kernel does it (``/sys/block/<disk>`` a link into
  ``/sys/devices/...``, ``device`` a link to the bus device with ``nodename``),
  ``/proc/self/mountinfo``, ``/proc/swaps``, the udev database, ``/dev/disk/by-partuuid``.
* :class:`Loop`, :func:`lvm_pv` and :func:`in_namespace` make real ones: a loop device
  over a sparse file (optionally partitioned with sfdisk, optionally 4K sectors), a real
  PV and VG on it, and mounts made in a private mount namespace (``unshare -m``), so the
  host's mount table is never touched. Everything is undone even when a test fails.

Run as ``python3 -m tests.support.blockdev SPEC.json`` it is the helper that runs inside the
namespace (see :func:`in_namespace`).
"""

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from tests.support.paths import CHECKOUT, HOME

#: LVM must leave no backup or archive files in the host's /etc/lvm.
LVM_CONFIG = "backup { backup = 0 archive = 0 }"

# Linux block majors, for realistic fake device numbers.
XVD_MAJOR = 202
SCSI_DISK_MAJOR = 8
SCSI_CDROM_MAJOR = 11
VIRTIO_MAJOR = 254
NVME_MAJOR = 259


def mountinfo_escape(path: str) -> str:
    """The kernel's escaping of a mountinfo field (written out here, independently)."""
    return (path.replace("\\", "\\134").replace(" ", "\\040")
            .replace("\t", "\\011").replace("\n", "\\012"))


def vbd_id(disk: str) -> int:
    """The Xen vbd number of ``xvd<letters>``: 51712 for xvda (202 << 8 | index << 4),
    the extended scheme (1 << 28 | index << 8) from xvdq on."""
    index = 0
    for letter in disk[3:]:
        index = index * 26 + ord(letter) - ord("a") + 1
    index -= 1
    return (202 << 8 | index << 4) if index < 16 else (1 << 28 | index << 8)


class FakeBlock:
    """Block devices of a fake guest under ``root`` (the ``--root`` directory)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.mounts: List[str] = [
            "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw",
            "23 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw",
            "24 1 0:5 / /dev rw,nosuid,relatime shared:8 - devtmpfs udev rw,mode=755",
            "25 1 0:24 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw",
        ]
        self._next_id = 40
        #: Mount points made under the root, in order (see :meth:`tmpfs_mounts`).
        self.mount_dirs: List[str] = []
        self._sysdirs: Dict[str, Path] = {}
        self.write_mountinfo()

    def path(self, guest_path: str) -> Path:
        return self.root / guest_path.lstrip("/")

    def file(self, guest_path: str, text: str) -> Path:
        path = self.path(guest_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def link(self, guest_path: str, target: str) -> None:
        path = self.path(guest_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.symlink_to(target)

    # -- devices -----------------------------------------------------------------

    def disk(self, name: str, devno: Tuple[int, int], sectors: int,
             nodename: Optional[str] = None, bus: str = "",
             udev: Optional[Dict[str, str]] = None, block_size: int = 512) -> "FakeBlock":
        """A disk: ``/sys/block/<name>`` → ``../devices/<bus>/block/<name>`` with a
        ``device`` link to ``/sys/devices/<bus>`` (holding ``nodename`` for Xen)."""
        if not bus:
            bus = ("vbd-%d" % int(nodename.rsplit("/", 1)[1])) if nodename else "pci-" + name
        sysdir = "/sys/devices/%s/block/%s" % (bus, name)
        self._attrs(sysdir, devno, sectors)
        for attr, value in (("removable", "0"), ("ro", "0"), ("ext_range", "256"),
                            ("queue/logical_block_size", str(block_size)),
                            ("queue/physical_block_size", str(block_size))):
            self.file("%s/%s" % (sysdir, attr), value + "\n")
        self.path(sysdir + "/holders").mkdir(exist_ok=True)
        self.link(sysdir + "/device", "../../../" + bus)
        if nodename is not None:
            self.file("/sys/devices/%s/nodename" % bus, nodename + "\n")
        self.link("/sys/block/" + name, "../devices/%s/block/%s" % (bus, name))
        self._sysdirs[name] = self.path(sysdir)
        if udev is not None:
            self.udev(devno, udev)
        return self

    def xen_disk(self, name: str, minor: int, sectors: int, **kw) -> "FakeBlock":
        """A Xen PV disk ``xvd<x>`` with its ``device/vbd/<id>`` nodename."""
        return self.disk(name, (XVD_MAJOR, minor), sectors,
                         nodename="device/vbd/%d" % vbd_id(name), **kw)

    def partition(self, disk: str, number: int, devno: Tuple[int, int], sectors: int,
                  name: str = "", udev: Optional[Dict[str, str]] = None,
                  partuuid_link: str = "") -> "FakeBlock":
        """Partition ``number`` of ``disk`` (named ``<disk><n>`` unless ``name``)."""
        name = name or "%s%d" % (disk, number)
        sysdir = self._sysdirs[disk] / name
        self._attrs(str(sysdir.relative_to(self.root)), devno, sectors)
        (sysdir / "partition").write_text("%d\n" % number)
        (sysdir / "start").write_text("2048\n")
        if udev is not None:
            self.udev(devno, udev)
        if partuuid_link:
            self.link("/dev/disk/by-partuuid/" + partuuid_link, "../../" + name)
        return self

    def virtual(self, name: str, devno: Tuple[int, int], sectors: int,
                udev: Optional[Dict[str, str]] = None) -> "FakeBlock":
        """A software block device (loop, dm-*, zram, md): no ``device`` link."""
        sysdir = "/sys/devices/virtual/block/" + name
        self._attrs(sysdir, devno, sectors)
        self.link("/sys/block/" + name, "../devices/virtual/block/" + name)
        if udev is not None:
            self.udev(devno, udev)
        return self

    def remove(self, name: str) -> "FakeBlock":
        """Hot-unplug a partition (or a disk) from the tree."""
        for disk, sysdir in list(self._sysdirs.items()):
            if disk == name:
                shutil.rmtree(sysdir)
                self.path("/sys/block/" + name).unlink()
                del self._sysdirs[disk]
                return self
            if (sysdir / name).exists():
                shutil.rmtree(sysdir / name)
                return self
        raise KeyError(name)

    def _attrs(self, sysdir: str, devno: Tuple[int, int], sectors: int) -> None:
        self.file(sysdir + "/dev", "%d:%d\n" % devno)
        self.file(sysdir + "/size", "%d\n" % sectors)
        self.file(sysdir + "/uevent", "MAJOR=%d\nMINOR=%d\n" % devno)

    def udev(self, devno: Tuple[int, int], props: Dict[str, str]) -> "FakeBlock":
        """udev's database entry for ``devno`` (as systemd-udevd writes it)."""
        lines = ["S:disk/by-id/fake-%d-%d" % devno, "I:4213231", "G:systemd"]
        lines += ["E:%s=%s" % item for item in props.items()]
        lines += ["E:ID_FS_USAGE=filesystem", "Q:systemd", "V:1"]
        self.file("/run/udev/data/b%d:%d" % devno, "\n".join(lines) + "\n")
        return self

    # -- mounts and swap ---------------------------------------------------------

    def mount(self, devno: Tuple[int, int], mount_point: str, fstype: str, source: str,
              fs_root: str = "/", make_dir: bool = True) -> "FakeBlock":
        """Add a mountinfo line (in mount order); the mount point is created under the
        root so that statvfs finds it."""
        self.mounts.append("%d 1 %d:%d %s %s rw,relatime shared:%d - %s %s rw" % (
            self._next_id, devno[0], devno[1], mountinfo_escape(fs_root),
            mountinfo_escape(mount_point), self._next_id, fstype,
            mountinfo_escape(source)))
        self._next_id += 1
        if make_dir:
            self.path(mount_point).mkdir(parents=True, exist_ok=True)
            if mount_point not in self.mount_dirs:
                self.mount_dirs.append(mount_point)
        return self.write_mountinfo()

    def tmpfs_mounts(self) -> List[Dict[str, str]]:
        """For :func:`in_namespace`: a tmpfs of its own size (1 MiB, 2 MiB, ...) on each
        mount point under the root, so that each has distinct, steady free figures
        (the root's own filesystem is shared and busy)."""
        if "/" in self.mount_dirs:
            raise ValueError("a fake guest cannot have '/' as a mount point here")
        return [{"source": "xe-test", "target": str(self.path(point)), "type": "tmpfs",
                 "options": "size=%dk" % (1024 * (k + 1))}
                for k, point in enumerate(self.mount_dirs)]

    def write_mountinfo(self) -> "FakeBlock":
        self.file("/proc/self/mountinfo", "\n".join(self.mounts) + "\n")
        return self

    def swaps(self, *entries: Tuple[str, str, int, int]) -> "FakeBlock":
        """``/proc/swaps`` with (filename, type, size KiB, used KiB) entries."""
        lines = ["Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority"]
        lines += ["%-40s%s\t%d\t\t%d\t\t-2" % e for e in entries]
        self.file("/proc/swaps", "\n".join(lines) + "\n")
        return self


def tree_of(values: Dict[str, str]) -> Dict[str, str]:
    """What ``xenstore-ls -f`` shows for these keys: every intermediate node too
    (empty value), keys relative to the listed directory."""
    tree = {}
    for key, value in values.items():
        parts = key.split("/")
        for depth in range(1, len(parts)):
            tree.setdefault("/".join(parts[:depth]), "")
        tree[key] = value
    return tree


def volume(n: int, name: str, size: int, extent: str = "", mount_points: Sequence[str] = (),
           filesystem: Optional[str] = None, free: Optional[int] = None) -> Dict[str, str]:
    """The keys of volume ``n``, relative to ``data/volumes``."""
    keys = {"%d/extents/0" % n: extent, "%d/name" % n: name, "%d/size" % n: str(size)}
    for k, point in enumerate(mount_points):
        keys["%d/mount_points/%d" % (n, k)] = point
    if filesystem is not None:
        keys["%d/filesystem" % n] = filesystem
    if free is not None:
        keys["%d/free" % n] = str(free)
    return keys


def backend_seed(disks: Sequence[str], domid: int = 7) -> List[Tuple[str, str]]:
    """XenStore seed giving each ``xvd<x>`` disk a backend whose ``dev`` is its name."""
    seed = []
    for disk in disks:
        vbd = vbd_id(disk)
        backend = "/local/domain/0/backend/vbd/%d/%d" % (domid, vbd)
        seed.append(("%s/device/vbd/%d/backend" % (HOME, vbd), backend))
        seed.append((backend + "/dev", disk))
    return seed


# -- real block devices --------------------------------------------------------------

def real_unavailable() -> Optional[str]:
    """Why real loop devices, mounts and LVM cannot be used here (None: they can)."""
    if os.geteuid() != 0:
        return "loop devices and mounts need root"
    for tool in ("losetup", "sfdisk", "partx", "mkfs.ext4", "mkswap", "unshare", "mount",
                 "pvcreate", "vgcreate", "pvs", "stat"):
        if not shutil.which(tool):
            return "%s is not installed" % tool
    if not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control"
    return None


def _run(*cmd: str, **kw) -> str:
    res = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=60,
                         env=dict(os.environ, LVM_SUPPRESS_FD_WARNINGS="1"), **kw)
    if res.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), res.returncode,
                                                   res.stderr.strip()))
    return res.stdout


class Loop:
    """A loop device over a sparse file of ``size`` bytes; detached at exit.

    ``table``: an sfdisk script written to the file first (partitions then appear as
    ``<loop>p1`` ...); ``sector_size``: the loop's logical sector size (4096 for a
    4K-sector disk).
    """

    def __init__(self, image: Path, size: int, table: str = "", sector_size: int = 512):
        self.image = Path(image)
        self.size = size
        self.table = table
        self.sector_size = sector_size
        self.dev = ""

    def __enter__(self) -> "Loop":
        with open(self.image, "wb") as f:
            f.truncate(self.size)
        cmd = ["losetup", "--find", "--show"]
        if self.sector_size != 512:
            cmd += ["--sector-size", str(self.sector_size)]
        if self.table:
            cmd.append("--partscan")
        try:
            self.dev = _run(*(cmd + [str(self.image)])).strip()
            if self.table:
                # Through the loop device, so that the table is laid out in its sectors.
                _run("sfdisk", "--quiet", "--wipe", "always", self.dev, input=self.table)
                # The re-read sfdisk asks for does not always add the partitions here;
                # partx adds them one by one (BLKPG).
                _run("partx", "--update", self.dev)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.dev:
            subprocess.run(["losetup", "--detach", self.dev], stderr=subprocess.DEVNULL)
            self.dev = ""
        try:
            self.image.unlink()
        except FileNotFoundError:
            pass

    @property
    def name(self) -> str:
        return os.path.basename(self.dev)

    def part(self, number: int) -> str:
        """Kernel name of partition ``number``: ``loop3p1``."""
        return "%sp%d" % (self.name, number)

    def sysdir(self, name: str = "") -> str:
        name = name or self.name
        return "/sys/block/%s" % name if name == self.name else \
            "/sys/block/%s/%s" % (self.name, name)

    def devno(self, name: str = "") -> Tuple[int, int]:
        major, minor = Path(self.sysdir(name), "dev").read_text().strip().split(":")
        return int(major), int(minor)

    def sectors(self, name: str = "") -> int:
        return int(Path(self.sysdir(name), "size").read_text())


@contextmanager
def lvm_pv(device: str, vg: str) -> Iterator[None]:
    """A real PV on ``device`` in a new VG ``vg``; both removed afterwards."""
    try:
        _run("pvcreate", "--config", LVM_CONFIG, "-ff", "-y", device)
        _run("vgcreate", "--config", LVM_CONFIG, vg, device)
        yield
    finally:
        subprocess.run(["vgremove", "--config", LVM_CONFIG, "-ff", "-y", vg],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["pvremove", "--config", LVM_CONFIG, "-ff", "-y", device],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pvs_figures() -> Dict[str, Tuple[int, str]]:
    """PV name -> (free bytes, format), read with pvs's JSON report (independently of
    the section's own parsing)."""
    out = _run("pvs", "--reportformat", "json", "--units", "b", "--nosuffix",
               "-o", "pv_name,pv_free,pv_fmt")
    rows = json.loads(out)["report"][0]["pv"]
    return {row["pv_name"]: (int(row["pv_free"]), row["pv_fmt"]) for row in rows}


def in_namespace(mounts: Sequence[Dict[str, str]], command: Sequence[str],
                 workdir: Path, env: Optional[Dict[str, str]] = None) -> Dict:
    """Mount in a private mount namespace (a tmpfs on /mnt first), then run ``command``
    there with ``env``; returns ``{"rc", "stdout", "stderr", "avail": {mount point:
    bytes}}``.

    ``mounts``: ``{"source": "/dev/loop3", "target": "/mnt/data"}``, optional
    ``"type"``, ``"options"`` (``"bind"`` for a bind mount). ``avail`` is what
    ``stat -f`` (coreutils) says is available to users on each target, measured just
    before the command runs. The namespace, and its mounts, end with the command.
    """
    spec = workdir / "ns-spec.json"
    result = workdir / "ns-result.json"
    spec.write_text(json.dumps({
        "mounts": list(mounts), "command": list(command), "result": str(result),
        "env": dict(os.environ if env is None else env, PYTHONPATH=str(CHECKOUT))}))
    res = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                          "-m", "tests.support.blockdev", str(spec)],
                         env=dict(os.environ, PYTHONPATH=str(CHECKOUT)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=180)
    if res.returncode != 0:
        raise RuntimeError("namespace helper failed: " + res.stderr.strip())
    return json.loads(result.read_text())


def _namespace_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "xe-test", "/mnt"], check=True)
    avail = {}
    for m in spec["mounts"]:
        os.makedirs(m["target"], exist_ok=True)
        cmd = ["mount"]
        if m.get("type"):
            cmd += ["-t", m["type"]]
        if m.get("options") == "bind":
            os.makedirs(m["source"], exist_ok=True)
            cmd += ["--bind"]
        elif m.get("options"):
            cmd += ["-o", m["options"]]
        subprocess.run(cmd + [m["source"], m["target"]], check=True)
    for m in spec["mounts"]:
        out = subprocess.run(["stat", "-f", "-c", "%a %S", m["target"]], check=True,
                             stdout=subprocess.PIPE, universal_newlines=True).stdout.split()
        avail[m["target"]] = int(out[0]) * int(out[1])
    res = subprocess.run(spec["command"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=spec["env"], universal_newlines=True, timeout=120)
    Path(spec["result"]).write_text(json.dumps({
        "rc": res.returncode, "stdout": res.stdout, "stderr": res.stderr, "avail": avail}))
    return 0


if __name__ == "__main__":
    sys.exit(_namespace_main(sys.argv[1]))
