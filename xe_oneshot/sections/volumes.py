"""The ``volumes`` section: the guest's disk volumes, what is mounted on them, LVM PVs.

Keys (relative to the guest's home), one ``data/volumes/<n>`` per volume::

    extents/0        xvda          the disk's ``<backend>/dev`` for a Xen disk, else empty
    name             /dev/xvda1(5f2c...-01)   ``/dev/<name>(<PARTUUID>)``, else ``/dev/<name>``
    size             10737418240   bytes: sysfs ``size`` x 512, whatever the sector size
    mount_points/<k> /             every mount point in mount order (bind mounts, btrfs
                                   subvolumes); ``[LVM]`` for a PV; ``[SWAP]`` for active swap
    filesystem       ext4          the mounted type; the PV format (``lvm2``); ``swap``
    free             5368709120    f_bavail x f_frsize; PV free bytes; unused swap bytes

``free`` wanders: it is marked with a tolerance of 1% of the volume's size, so the
publisher does not wake dom0 for smaller moves until the published value is old.
:func:`find_volumes` reads the guest into :class:`Volume` records; :func:`volume_keys`
lays them out (tested on hand-built records).

Which block devices are volumes (decisions where the design is silent):

* Disks are ``/sys/block/*`` with a ``device`` link: (virtual) hardware — xvd*, sd*, vd*,
  hd*, nvme*, mmcblk*, sr*. Software block devices have no such link and are left out on
  purpose: loop (images, snaps), ram / zram (memory), dm-* (LVs and dm-crypt: they live on
  a PV that is reported as ``[LVM]``; listing them too would count the same space twice
  and they map to no VDI), md* (RAID over partitions that are reported), nbd.
* Every partition (entries with a ``partition`` file) is a volume, mounted or not,
  except an MBR extended-partition container (udev ``ID_PART_ENTRY_TYPE`` 0x5, 0xf,
  0x85: a 1 KiB placeholder, not space anyone can use).
* A disk without partitions is a volume when something is on it: a filesystem, swap or
  a PV (udev ``ID_FS_TYPE``), or a mount. An empty raw disk is not.
* Nothing of size 0 is a volume: a CD-ROM drive without media is skipped (the classic
  agent never showed it either); one with a mounted disc is a volume like a whole-disk
  filesystem. Hidden disks (NVMe multipath legs) are skipped.
* Swap: a volume like any other partition; when active (``/proc/swaps``) it is shown
  the way ``lsblk`` shows it — ``mount_points/0`` = ``[SWAP]``, ``filesystem`` = ``swap``,
  ``free`` = swap space not in use. An inactive swap partition has no mount points.
* LVM: a PV known to udev (``ID_FS_TYPE=LVM2_member``) makes the run call ``pvs`` once
  for all PVs (through ``sh``, imported only then). No pvs, a failing or hanging one:
  the PVs are still volumes, without ``mount_points``/``filesystem``/``free``, and one
  warning is logged; the section does not fail.
* Mounts are matched only by what the kernel says is on the device, never by the
  mount's source string (any user picks it for FUSE: ``sshfs -o fsname=/dev/xvda1``):
  the mount's device number (mountinfo ``major:minor``). btrfs shows an anonymous 0:NN
  there instead: a mount of type ``btrfs`` (a type no FUSE mount can have) is matched to
  the devices that ``/sys/fs/btrfs/<fsid>/devices/`` lists for the fsid the kernel
  reports for that mount (``BTRFS_IOC_FS_INFO``); every member gets its mount points,
  only the first gets ``free`` (the pool's space counted once). Other anonymous-device
  filesystems (FUSE, NFS, tmpfs, ZFS datasets) are not volumes. At most
  MAX_MOUNT_POINTS mount points per volume (XenStore quota, see there). A mount point
  longer than XenStore takes is the publisher's to cut.
* ``free`` comes from the first mount point of the device that is not hidden by a later
  mount on the same path and that statvfs can reach; if there is none, ``free`` is
  omitted (statvfs failures: one warning for all) — never a wrong figure. Only mounts
  on the guest's own block devices are statvfs'd, and each call into a mounted
  filesystem (statvfs, the btrfs fsid) is bounded by PROBE_TIMEOUT: a hung FUSE or
  block device costs at most that, then ``free`` is omitted (see :func:`bounded`). On
  the real root (not ``--root``), the mount point is opened with O_PATH and its
  ``mnt_id`` (``/proc/self/fdinfo``) checked against the matched mount before fstatvfs:
  a mount made over it since mountinfo was read is not asked.

Numbering (``<n>``) is stable while the devices are: disks in natural order (xvda ...
xvdz, xvdaa; nvme2n1 before nvme10n1), then each disk's partitions in numeric order.
A removed device shifts those after it; the publisher removes the stale tail.

With ``--root DIR`` every guest file is read under DIR (through ``Root``, symlinks
resolved inside DIR), and ``free`` is the statvfs of ``DIR/<mount point>`` (no mnt_id
check: the ids in a copied mountinfo are not ours). What is always the running
system's, whatever the root: ``pvs`` (its PVs are matched to volumes by device number,
a ``stat`` of the real ``/dev`` path pvs names, then by name); the statvfs and btrfs
ioctl of a mount (a call into the mounted filesystem, at ``DIR/<mount point>`` as the
kernel resolves it: ``Root.fs_path``); ``/proc/self/fdinfo`` and ``/proc/self/fd`` of
our own descriptors.

Cost on a guest without LVM: a few small sysfs / udev files per device, one read of
mountinfo and /proc/swaps, one bounded statvfs per mounted volume (a thread each,
~0.2 ms); no process, no psutil, no sh.
"""

import errno
import os

from . import Collected, SectionError
from .. import log, mountinfo, udevdb
from ..records import field, record
from ..text import DIGITS, is_decimal, is_xs_name, parse_decimal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Tuple

    from . import Context, XenStoreReader
    from ..guest import Root

LOG = log.getLogger(__name__)

PREFIX = "data/volumes"
OWNS = (PREFIX,)

SYS_BLOCK = "/sys/block"
BY_PARTUUID = "/dev/disk/by-partuuid"
PROC_SWAPS = "/proc/swaps"

#: sysfs ``size`` counts 512-byte sectors whatever the disk's block size (the classic
#: agent multiplied by the physical block size: 4K-sector disks came out 8x too large).
SECTOR = 512

#: ``mount_points/0`` of an LVM physical volume (as the classic agents publish it).
LVM_MOUNT_POINT = "[LVM]"
#: ``mount_points/0`` of an active swap device (as ``lsblk`` shows it).
SWAP_MOUNT_POINT = "[SWAP]"

#: At most this many ``mount_points`` per volume, in mount order. Every key counts in the
#: guest's XenStore quota (1000 nodes per domain by default; over it the whole
#: transaction fails with EQUOTA), and a container host bind-mounts its root filesystem
#: hundreds of times (kubelet subpaths): the first mounts are the ones admins look for.
MAX_MOUNT_POINTS = 16

#: One run of this per collection, and only when udev knows of a PV.
PVS_ARGS = ("--noheadings", "--units", "b", "-o", "pv_name,pv_free,pv_fmt")
#: pvs waits on LVM's locks: do not let a long lvconvert hold the whole run.
PVS_TIMEOUT = 10

#: Seconds one call into a mounted filesystem (statvfs, the btrfs fsid ioctl) may take
#: before its answer is given up: a FUSE server that never answers, a dead disk.
PROBE_TIMEOUT = 2.0

#: ``BTRFS_IOC_FS_INFO`` = _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args): 1024 bytes,
#: the fsid at offset 16 (linux/btrfs.h). Any user may ask it; only btrfs answers it.
BTRFS_IOC_FS_INFO = (2 << 30) | (1024 << 16) | (0x94 << 8) | 31
BTRFS_SYSFS = "/sys/fs/btrfs"

#: Sorts a partition whose number cannot be told after the others.
UNKNOWN_PARTNO = 1 << 32

#: udev ``ID_PART_ENTRY_TYPE`` of MBR extended-partition containers (DOS, Win95 LBA, Linux).
EXTENDED_TYPES = frozenset(("0x5", "0xf", "0x85"))

_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
#: Disk families named by letters (``xvdaa``), numbered like a spreadsheet's columns.
_LETTERED = ("xvd", "sd", "vd", "hd")


# -- records -------------------------------------------------------------------------

@record
class BlockDevice:
    """A disk or partition as sysfs shows it."""

    name: str                 #: kernel name: ``xvda1``
    disk: str                 #: its disk's name (its own for a whole disk)
    devno: "Tuple[int, int]"    #: (major, minor) from sysfs ``dev``
    sectors: int              #: sysfs ``size``: 512-byte sectors
    partition: int = 0        #: partition number; 0 for a whole disk
    props: "Dict[str, str]" = field(default_factory=dict)   #: udev properties

    @property
    def size(self) -> int:
        return self.sectors * SECTOR

    @property
    def fs_type(self) -> str:
        return self.props.get("ID_FS_TYPE", "")


@record
class Usage:
    """What is on a volume: ``mount_points``, ``filesystem`` and ``free`` (if known)."""

    mount_points: "List[str]"
    filesystem: str
    free: "Optional[int]"


@record(frozen=True)
class PhysicalVolume:
    """One line of ``pvs``."""

    name: str
    free: int
    fmt: str


@record(frozen=True)
class Swap:
    """One line of ``/proc/swaps`` (sizes in bytes)."""

    filename: str
    kind: str
    size: int
    used: int


# -- parsers -------------------------------------------------------------------------

def disk_order(name: str) -> "Tuple[str, tuple, str]":
    """Sort key putting disk names in natural order.

    ``xvda`` < ``xvdz`` < ``xvdaa`` (letters count like a spreadsheet's columns);
    ``nvme2n1`` < ``nvme10n1``; ``sr0`` < ``sr1``. Families sort by name.
    """
    for family in _LETTERED:
        letters = name[len(family):]
        if name.startswith(family) and letters and set(letters) <= _LOWER:
            number = 0
            for letter in letters:
                number = number * 26 + ord(letter) - ord("a") + 1
            return (family, ((number, ""),), name)
    stem = len(name)
    numbers = []
    digits = ""
    for i, char in enumerate(name + "/"):
        if char in DIGITS:
            stem = min(stem, i)
            digits += char
        elif digits:
            digits = digits.lstrip("0")      # compared by length, then digit by digit:
            numbers.append((len(digits), digits))   # no int() of any length
            digits = ""
    return (name[:stem], tuple(numbers), name)


def is_nodename(text: str) -> bool:
    """A Xen device's ``nodename`` in sysfs: ``device/vbd/51712``."""
    parts = text.split("/")
    return (len(parts) == 3 and parts[0] == "device" and is_xs_name(parts[1])
            and is_decimal(parts[2]))


def is_backend(path: str) -> bool:
    """A backend path we are willing to read under: ``/local/domain/0/backend/vbd/5/51712``
    (dom0 or a driver domain). Anything else in ``<nodename>/backend`` is ignored."""
    parts = path.split("/")
    return (len(parts) >= 6 and parts[:3] == ["", "local", "domain"]
            and is_decimal(parts[3]) and parts[4] == "backend"
            and all(is_xs_name(part) for part in parts[5:]))


def parse_number(text: str) -> "Optional[int]":
    """A decimal number of at most 20 ASCII digits (any 64-bit count), else None:
    garbage must skip a device, not the run (see ``text.parse_decimal``)."""
    return parse_decimal(text)


def parse_devno(text: str) -> "Tuple[int, int]":
    """sysfs ``dev``: ``202:1`` → (202, 1). Raises ValueError."""
    major, colon, minor = text.strip().partition(":")
    major_n, minor_n = parse_number(major), parse_number(minor)
    if not colon or major_n is None or minor_n is None:
        raise ValueError("not a major:minor: %r" % text[:100])
    return major_n, minor_n


def parse_pvs(text: str) -> "List[PhysicalVolume]":
    """The output of ``pvs --noheadings --units b -o pv_name,pv_free,pv_fmt``.

    Sample line: ``  /dev/xvdb1  1069547520B lvm2``. Lines that do not parse (an
    ``[unknown]`` missing PV, warnings) are skipped.
    """
    pvs = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or not fields[0].startswith("/"):
            continue
        free = parse_number(fields[1].upper().rstrip("B"))
        if free is None:
            continue
        pvs.append(PhysicalVolume(fields[0], free, fields[2]))
    return pvs


def parse_swaps(text: str) -> "List[Swap]":
    """``/proc/swaps`` (sizes in KiB) as records in bytes.

    Sample line: ``/dev/xvda5   partition  1046524  1024  -2``; the header line and
    anything that does not parse are skipped. File names use mountinfo's escapes.
    """
    swaps = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        size, used = parse_number(fields[2]), parse_number(fields[3])
        if size is None or used is None:
            continue
        swaps.append(Swap(mountinfo.unescape(fields[0]), fields[1], size * 1024, used * 1024))
    return swaps


# -- readers -------------------------------------------------------------------------

class _Skipped:
    """Devices left out because sysfs gave nonsense: reported once, not one warning each."""

    def __init__(self) -> None:
        self.names: List[str] = []

    def report(self) -> None:
        if self.names:
            LOG.warning("block devices with an unreadable dev/size in sysfs skipped: %s",
                        ", ".join(self.names))


def read_device(root: "Root", sysdir: str, name: str, disk: str, partition: int,
                skipped: _Skipped) -> "Optional[BlockDevice]":
    """A block device from its sysfs directory, or None if it vanished or is garbled."""
    dev = root.read_line(sysdir + "/dev")
    size = root.read_line(sysdir + "/size")
    if dev is None or size is None:
        return None                  # hot-unplugged while we looked
    sectors = parse_number(size)
    try:
        if sectors is None:
            raise ValueError(size)
        return BlockDevice(name, disk, parse_devno(dev), sectors, partition)
    except ValueError:
        skipped.names.append(name)
        return None


def read_disks(root: "Root", skipped: _Skipped) -> "List[Tuple[BlockDevice, List[BlockDevice]]]":
    """Every disk in natural order, each with its partitions in numeric order."""
    names = [name for name in root.listdir(SYS_BLOCK)
             if root.lexists("%s/%s/device" % (SYS_BLOCK, name))]
    disks = []
    for name in sorted(names, key=disk_order):
        sysdir = "%s/%s" % (SYS_BLOCK, name)
        if root.read_line(sysdir + "/hidden") == "1":
            continue                 # an NVMe multipath leg: its namespace is listed
        disk = read_device(root, sysdir, name, name, 0, skipped)
        if disk is None:
            continue
        parts = []
        # The kernel names partitions after their disk: xvda1, nvme0n1p1, mmcblk0p1.
        for entry in root.listdir(sysdir):
            if not entry.startswith(name) or entry == name:
                continue
            number = root.read_line("%s/%s/partition" % (sysdir, entry))
            if number is None:
                continue
            # The number only orders the partitions: if the file is garbled, the name's
            # (xvda3, nvme0n1p3) will do, and a partition it stays.
            partno = (parse_number(number) or parse_number(_trailing_digits(entry))
                      or UNKNOWN_PARTNO)
            part = read_device(root, "%s/%s" % (sysdir, entry), entry, name, partno, skipped)
            if part is not None:
                parts.append(part)
        parts.sort(key=lambda p: (p.partition, p.name))
        disks.append((disk, parts))
    return disks


def _trailing_digits(name: str) -> str:
    end = len(name)
    while end > 0 and name[end - 1] in DIGITS:
        end -= 1
    return name[end:]


def read_partuuids(root: "Root") -> "Dict[str, str]":
    """Device name -> PARTUUID from the ``/dev/disk/by-partuuid`` links."""
    found: Dict[str, str] = {}
    for uuid in root.listdir(BY_PARTUUID):
        target = root.readlink("%s/%s" % (BY_PARTUUID, uuid))
        if target:
            found.setdefault(os.path.basename(target), uuid)
    return found


def xen_extent(root: "Root", xenstore: "Optional[XenStoreReader]", disk: str) -> str:
    """``<backend>/dev`` of a Xen disk (``xvda``); empty for any other disk or if dom0
    left something out. Only a plausible backend path is followed."""
    if xenstore is None:
        return ""
    nodename = root.read_line("%s/%s/device/nodename" % (SYS_BLOCK, disk))
    if not nodename or not is_nodename(nodename):
        return ""
    try:
        backend = xenstore.read(nodename + "/backend")
        if not backend or not is_backend(backend):
            if backend:
                LOG.warning("%s: ignoring implausible backend path %r", disk, backend[:200])
            return ""
        return xenstore.read(backend + "/dev") or ""
    except OSError as err:
        LOG.debug("%s: backend not readable: %s", disk, err)
        return ""


def run_pvs() -> "Optional[str]":
    """The output of one ``pvs`` run, or None (one warning) when LVM cannot tell us.

    pvs runs in a session (and process group) of its own; when it overruns PVS_TIMEOUT
    the whole group is killed, so that nothing it started lives on (sh's own
    ``_timeout`` kills the one process, and waits for the children that still hold
    its stdout). Works with sh 1.14 (a RunningCommand, str() is its stdout) and sh 2.x.
    """
    import signal
    import threading

    try:
        import sh  # ~90 ms: only on guests that have a PV
    except ImportError:  # only Recommended by the RPM (EPEL on RHEL)
        LOG.warning("the Python module sh is not installed (python3-sh): LVM physical "
                    "volumes published without usage")
        return None
    env = dict(os.environ, LVM_SUPPRESS_FD_WARNINGS="1")
    timed_out = []

    def kill_group(pgid: int) -> None:
        timed_out.append(pgid)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass                     # already gone

    try:
        pvs = sh.Command("pvs")
        out = pvs(*PVS_ARGS, _env=env, _tty_out=False, _bg=True, _bg_exc=False,
                  _new_session=True)
        timer = threading.Timer(PVS_TIMEOUT, kill_group, (out.pid,))
        timer.daemon = True
        timer.start()
        try:
            out.wait()
        finally:
            timer.cancel()
    except sh.CommandNotFound:
        LOG.warning("pvs not found (lvm2 not installed?): LVM physical volumes "
                    "published without usage")
        return None
    except sh.ErrorReturnCode as err:
        if timed_out:
            LOG.warning("pvs did not answer within %d s: LVM usage not published",
                        PVS_TIMEOUT)
            return None
        lines = (err.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        LOG.warning("pvs failed (exit %s): %s", getattr(err, "exit_code", "?"),
                    lines[-1].strip() if lines else "no message")
        return None
    except OSError as err:
        LOG.warning("pvs could not run: %s", err)
        return None
    return str(out)


# -- matching ------------------------------------------------------------------------

def _devno_of(path: str, root: "Optional[Root]" = None) -> "Optional[Tuple[int, int]]":
    """The device number of a device node: a guest path through ``root``, else (pvs
    names) a path of the running system; None if it is none or cannot be asked."""
    try:
        st = os.stat(path) if root is None else root.stat(path)
    except OSError:
        return None
    if st is None:
        return None
    return (os.major(st.st_rdev), os.minor(st.st_rdev)) if st.st_rdev else None


def match_pvs(pvs: "List[PhysicalVolume]", volumes: "List[BlockDevice]",
              devno_of: "Callable[[str], Optional[Tuple[int, int]]]" = _devno_of
              ) -> "Dict[str, PhysicalVolume]":
    """Volume name -> its PV. pvs names are real-system paths (``/dev/xvdb1``,
    ``/dev/mapper/...``): matched by device number, then by base name."""
    by_devno = {v.devno: v.name for v in volumes}
    names = {v.name for v in volumes}
    found: Dict[str, PhysicalVolume] = {}
    for pv in pvs:
        name = by_devno.get(devno_of(pv.name))  # type: ignore[arg-type]
        if name is None and os.path.basename(pv.name) in names:
            name = os.path.basename(pv.name)
        if name is not None:
            found.setdefault(name, pv)
    return found


def bounded(fn: "Callable", args: tuple, timeout: float) -> "Tuple[bool, object]":
    """``fn(*args)`` in a thread of its own, waited for at most ``timeout`` seconds:
    ``(True, result or the exception it raised)``, or ``(False, None)`` if it did not
    return in time.

    The thread of a call that timed out is left behind, blocked in the kernel: it
    keeps nothing locked of ours, and process exit does not wait for it (a FUSE or NFS
    wait is killable). A bare ``_thread`` (built in, nothing to import) rather than a
    forked child: measured ~0.2 ms a call, a fork + wait ~7 ms.
    """
    import _thread
    done = _thread.allocate_lock()
    done.acquire()
    box: List[object] = []

    def run() -> None:
        try:
            box.append(fn(*args))
        except Exception as err:   # noqa: BLE001 - handed to the caller
            box.append(err)
        finally:
            done.release()

    _thread.start_new_thread(run, ())
    if not done.acquire(timeout=timeout):
        return False, None
    return True, box[0]


def _mnt_id(fd: int) -> "Optional[int]":
    """The kernel's id of the mount an open fd is on (Linux 3.15+), else None."""
    with open("/proc/self/fdinfo/%d" % fd, "rb") as f:
        for line in f.read(4096).splitlines():
            if line.startswith(b"mnt_id:"):
                return parse_number(line[7:].decode("ascii", "replace"))
    return None


def _open_mount(root: "Root", m: mountinfo.Mount, check_id: bool) -> "Optional[int]":
    """An O_PATH fd of ``m``'s mount point (no call into the filesystem), or None if
    ``check_id`` and the kernel says that path is now on another mount."""
    fd = os.open(root.fs_path(m.mount_point), os.O_PATH | os.O_CLOEXEC)
    if check_id and m.mount_id:
        found = _mnt_id(fd)
        if found is not None and found != m.mount_id:
            os.close(fd)
            return None
    return fd


def statvfs_free(root: "Root", m: mountinfo.Mount, check_id: bool) -> "Optional[int]":
    """Bytes available to users on mount ``m`` (f_bavail x f_frsize), None if its mount
    point is now covered by another mount. Raises OSError. Run it through :func:`bounded`."""
    fd = _open_mount(root, m, check_id)
    if fd is None:
        return None
    try:
        try:
            st = os.fstatvfs(fd)
        except OSError as err:        # fstatfs of an O_PATH fd needs Linux 3.12
            if err.errno != errno.EBADF:
                raise
            st = os.statvfs(root.fs_path(m.mount_point))
    finally:
        os.close(fd)
    return st.f_bavail * st.f_frsize


def btrfs_fsid(root: "Root", m: mountinfo.Mount, check_id: bool) -> "Optional[str]":
    """The fsid (``0c6e7a5e-...``) the kernel reports for btrfs mount ``m``, or None.
    Raises OSError. Run it through :func:`bounded`."""
    fd = _open_mount(root, m, check_id)
    if fd is None:
        return None
    try:
        # ioctl needs a real open; reopening the O_PATH fd keeps the mount we checked.
        real = os.open("/proc/self/fd/%d" % fd, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    finally:
        os.close(fd)
    try:
        import fcntl
        buf = bytearray(1024)
        fcntl.ioctl(real, BTRFS_IOC_FS_INFO, buf, True)
    except OSError:
        return None                   # not btrfs after all (ENOTTY)
    finally:
        os.close(real)
    hexa = bytes(buf[16:32]).hex()
    return "-".join((hexa[:8], hexa[8:12], hexa[12:16], hexa[16:20], hexa[20:]))


class Prober:
    """Calls into the guest's mounted filesystems, each bounded by PROBE_TIMEOUT; the
    mount points that could not be asked are collected for one warning."""

    def __init__(self, root: "Root") -> None:
        self.root = root
        self.check_id = root.base in ("", "/")
        self.failures: List[str] = []

    def call(self, fn: "Callable", m: mountinfo.Mount) -> "Tuple[str, object]":
        """``("ok", answer)``; ``("failed", None)`` after an OSError or ``("hung",
        None)`` after a timeout (both recorded)."""
        done, answer = bounded(fn, (self.root, m, self.check_id), PROBE_TIMEOUT)
        if not done:
            self.failures.append("%s (no answer within %g s)" % (m.mount_point[:200],
                                                                 PROBE_TIMEOUT))
            return "hung", None
        if isinstance(answer, OSError):
            self.failures.append("%s (%s)" % (m.mount_point[:200],
                                              os.strerror(answer.errno or 0)))
            return "failed", None
        if isinstance(answer, Exception):
            raise answer
        return "ok", answer


def btrfs_devices(root: "Root") -> "Dict[str, List[str]]":
    """fsid -> kernel names of its devices, from ``/sys/fs/btrfs/<fsid>/devices/`` (one
    link per member, named after it: ``xvdb1``). Only mounted btrfs filesystems show."""
    found = {}
    for fsid in root.listdir(BTRFS_SYSFS):
        if len(fsid) == 36 and fsid.count("-") == 4:
            found[fsid] = root.listdir("%s/%s/devices" % (BTRFS_SYSFS, fsid))
    return found


def match_mounts(root: "Root", mounts: "List[mountinfo.Mount]", devices: "List[BlockDevice]",
                 visible: "Dict[str, mountinfo.Mount]", prober: Prober
                 ) -> "Tuple[Dict[str, List[mountinfo.Mount]], Dict[str, str]]":
    """Device name -> its mounts in mount order, and device name -> the btrfs member it
    shares its filesystem with and that comes first (for all but that first one).

    By device number only; a btrfs mount (anonymous 0:NN) by the fsid the kernel
    reports for it and the devices sysfs lists for that fsid. Never by the source.
    """
    by_devno = {d.devno: d.name for d in devices}
    order = {d.name: k for k, d in enumerate(devices)}
    found: Dict[str, List[mountinfo.Mount]] = {}
    btrfs: Dict[Tuple[int, int], List[mountinfo.Mount]] = {}
    for m in mounts:
        name = by_devno.get(m.devno)
        if name is not None:
            found.setdefault(name, []).append(m)
        elif m.major == 0 and m.fstype == "btrfs":
            btrfs.setdefault(m.devno, []).append(m)
    shared: Dict[str, str] = {}
    if btrfs:
        members = btrfs_devices(root)
        for same_fs in btrfs.values():          # one superblock: one fsid for all
            fsid: Optional[str] = None
            for m in same_fs:
                if visible.get(m.mount_point) is m:
                    state, answer = prober.call(btrfs_fsid, m)
                    fsid = answer if isinstance(answer, str) else None
                    if fsid is not None or state == "hung":
                        break        # else covered since, or unreadable: the next one
            names = sorted((n for n in members.get(fsid or "", ()) if n in order),
                           key=order.__getitem__)
            for name in names:
                found.setdefault(name, []).extend(same_fs)
                if name != names[0]:
                    shared[name] = names[0]
    return found, shared


def mount_usage(own: "List[mountinfo.Mount]", visible: "Dict[str, mountinfo.Mount]",
                prober: Prober, with_free: bool = True) -> Usage:
    """Mount points, type and free bytes of one mounted device."""
    points: List[str] = []
    for m in own:
        if m.mount_point in points:
            continue
        if len(points) == MAX_MOUNT_POINTS:
            LOG.info("%s: more than %d mount points, later ones (%s ...) not published",
                     m.source, MAX_MOUNT_POINTS, m.mount_point)
            break
        points.append(m.mount_point)
    free: Optional[int] = None
    failed = len(prober.failures)
    for m in own if with_free else ():
        if visible.get(m.mount_point) is not m:
            continue                 # something else is mounted over it
        state, answer = prober.call(statvfs_free, m)
        free = answer if isinstance(answer, int) else None
        if free is not None or state == "hung":
            break                    # a hung filesystem would hang at its next mount too
        # else e.g. a bind mount we may not enter: try the next
    if free is not None:
        del prober.failures[failed:]
    return Usage(points, own[0].fstype, free)


def active_swaps(root: "Root", devices: "List[BlockDevice]") -> "Dict[Tuple[int, int], Swap]":
    """Device number -> its active swap, from ``/proc/swaps`` (named ``/dev/<name>`` by
    the kernel; a name we do not know is looked up by stat). Swap files are not volumes."""
    by_name = {d.name: d.devno for d in devices}
    found: Dict[Tuple[int, int], Swap] = {}
    for swap in parse_swaps(root.read_text(PROC_SWAPS, default="") or ""):
        if swap.kind != "partition":
            continue
        devno = by_name.get(os.path.basename(swap.filename)) or _devno_of(swap.filename, root)
        if devno is not None:
            found.setdefault(devno, swap)
    return found


# -- finding -------------------------------------------------------------------------

@record
class Volume:
    """One volume as found, ready to be laid out by :func:`volume_keys`."""

    name: str                 #: kernel name: ``xvda1``
    size: int                 #: bytes
    extent: str = ""          #: the Xen disk's ``<backend>/dev``; empty for other disks
    partuuid: str = ""        #: the partition's PARTUUID; empty if none or a whole disk
    usage: "Optional[Usage]" = None   #: None: nothing mounted, no active swap, no PV usage


def _is_volume(dev: BlockDevice, used: bool) -> bool:
    if dev.sectors <= 0:
        return False                 # e.g. a CD-ROM drive without media
    if dev.partition:
        return dev.props.get("ID_PART_ENTRY_TYPE", "").lower() not in EXTENDED_TYPES
    return used or bool(dev.fs_type)


def find_candidates(root: "Root") -> "List[BlockDevice]":
    """The disks' partitions, and each disk without partitions, in numbering order,
    with their udev properties. Raises SectionError without ``/sys/block``."""
    if not root.exists(SYS_BLOCK):
        raise SectionError("%s is missing: cannot see the block devices" % SYS_BLOCK)
    skipped = _Skipped()
    disks = read_disks(root, skipped)
    skipped.report()
    candidates: List[BlockDevice] = []
    for disk, parts in disks:
        candidates.extend(parts or [disk])
    for dev in candidates:
        dev.props = udevdb.read_block(root, *dev.devno)
    return candidates


class _Usages:
    """What is on each candidate: its mounts, active swap or PV (see :func:`find_volumes`)."""

    def __init__(self, root: "Root", mounts: "List[mountinfo.Mount]",
                 candidates: "List[BlockDevice]") -> None:
        self.visible = {m.mount_point: m for m in mounts}  # the last mount on a path wins
        self.prober = Prober(root)
        self.mounted, self.shared = match_mounts(root, mounts, candidates, self.visible,
                                                 self.prober)
        self.swaps = active_swaps(root, candidates)
        self.pvs: Dict[str, PhysicalVolume] = {}

    def used(self, dev: BlockDevice) -> bool:
        return dev.name in self.mounted or dev.devno in self.swaps

    def find_pvs(self, volumes: "List[BlockDevice]") -> None:
        """Ask ``pvs`` once, only when udev knows of a PV among ``volumes``."""
        if any(v.fs_type == "LVM2_member" for v in volumes):
            out = run_pvs()
            if out is not None:
                self.pvs = match_pvs(parse_pvs(out), volumes)

    def of(self, vol: BlockDevice) -> "Optional[Usage]":
        if vol.name in self.mounted:
            return mount_usage(self.mounted[vol.name], self.visible, self.prober,
                               with_free=vol.name not in self.shared)
        if vol.name in self.pvs:
            pv = self.pvs[vol.name]
            return Usage([LVM_MOUNT_POINT], pv.fmt, pv.free)
        if vol.devno in self.swaps:
            swap = self.swaps[vol.devno]
            return Usage([SWAP_MOUNT_POINT], "swap", max(swap.size - swap.used, 0))
        return None


def find_volumes(root: "Root", xenstore: "Optional[XenStoreReader]") -> "List[Volume]":
    """The guest's volumes in numbering order (see the module docstring). Raises
    SectionError when the mount table or ``/sys/block`` is missing."""
    mounts = mountinfo.read(root)
    if mounts is None:
        raise SectionError("%s is missing: cannot tell what is mounted" % mountinfo.MOUNTINFO)
    candidates = find_candidates(root)
    usages = _Usages(root, mounts, candidates)
    devices = [d for d in candidates if _is_volume(d, usages.used(d))]
    usages.find_pvs(devices)
    extents: Dict[str, str] = {}
    partuuids: Optional[Dict[str, str]] = None
    volumes = []
    for dev in devices:
        if dev.disk not in extents:
            extents[dev.disk] = xen_extent(root, xenstore, dev.disk)
        uuid = dev.props.get("ID_PART_ENTRY_UUID", "") if dev.partition else ""
        if dev.partition and not uuid:
            if partuuids is None:
                partuuids = read_partuuids(root)
            uuid = partuuids.get(dev.name, "")
        volumes.append(Volume(dev.name, dev.size, extents[dev.disk], uuid, usages.of(dev)))
    if usages.prober.failures:
        LOG.warning("free space not published for: %s", ", ".join(usages.prober.failures))
    return volumes


# -- laying out ----------------------------------------------------------------------

def volume_name(vol: Volume) -> str:
    """``/dev/<name>(<PARTUUID>)``, else ``/dev/<name>``."""
    return "/dev/%s(%s)" % (vol.name, vol.partuuid) if vol.partuuid else "/dev/" + vol.name


def volume_keys(volumes: "List[Volume]") -> Collected:
    """The ``data/volumes/<n>/...`` keys of ``volumes`` (numbered in list order), and a
    tolerance of 1% of its size on each ``free``."""
    result = Collected()
    for n, vol in enumerate(volumes):
        base = "%s/%d" % (PREFIX, n)
        result.values[base + "/extents/0"] = vol.extent
        result.values[base + "/name"] = volume_name(vol)
        result.values[base + "/size"] = str(vol.size)
        usage = vol.usage
        if usage is None:
            continue
        for k, point in enumerate(usage.mount_points):
            result.values["%s/mount_points/%d" % (base, k)] = point
        result.values[base + "/filesystem"] = usage.filesystem
        if usage.free is not None:
            result.values[base + "/free"] = str(usage.free)
            result.tolerance[base + "/free"] = vol.size // 100
    return result


def collect(ctx: "Context") -> Collected:
    """Find the volumes, then lay them out."""
    volumes = find_volumes(ctx.root, ctx.xenstore)
    if LOG.isEnabledFor(log.DEBUG):
        for n, vol in enumerate(volumes):
            usage = vol.usage
            LOG.debug("volume %d: %s: %s", n, volume_name(vol), "not mounted" if usage is None
                      else ", ".join(usage.mount_points + [usage.filesystem] + (
                          [] if usage.free is None else ["%d bytes free" % usage.free])))
    return volume_keys(volumes)
