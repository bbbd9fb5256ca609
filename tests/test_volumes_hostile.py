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

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.blockdev import CHECKOUT, XVD_MAJOR, FakeBlock, vbd_id, volume
from tests.support.fakeguest import FakeGuest

GIB = 1 << 30
SECTORS_PER_GIB = GIB // 512


class Recorder:
    """Stands in for a module's LOG: keeps the warnings."""

    def __init__(self):
        self.warnings = []

    def warning(self, msg, *args):
        self.warnings.append(msg % args)

    def info(self, msg, *args):
        pass

    debug = info

    def isEnabledFor(self, level):  # noqa: N802
        return False


@pytest.fixture
def vol(monkeypatch):
    from xe_oneshot.sections import volumes
    monkeypatch.setattr(volumes, "LOG", Recorder())     # vol.LOG.warnings
    return volumes


def collect(volumes, g: FakeBlock):
    from xe_oneshot.guest import Root
    from xe_oneshot.sections import Context
    return volumes.collect(Context(root=Root(str(g.root)))).values


def without_free(values):
    return {k: v for k, v in values.items() if not k.endswith("/free")}


def system_disk(g: FakeBlock) -> None:
    """xvda1: ext4 on /; xvda2: active swap; xvdb: an empty raw disk (no volume)."""
    g.xen_disk("xvda", 0, 20 * SECTORS_PER_GIB)
    g.partition("xvda", 1, (XVD_MAJOR, 1), 18 * SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    g.partition("xvda", 2, (XVD_MAJOR, 2), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "swap"})
    g.xen_disk("xvdb", 16, 4 * SECTORS_PER_GIB)
    g.mount((XVD_MAJOR, 1), "/srv", "ext4", "/dev/xvda1")
    g.swaps(("/dev/xvda2", "partition", 1048572, 2048))


def system_expected():
    expected = {}
    expected.update(volume(0, "/dev/xvda1", 18 * GIB, "", ["/srv"], "ext4"))
    expected.update(volume(1, "/dev/xvda2", GIB, "", ["[SWAP]"], "swap",
                           (1048572 - 2048) * 1024))
    return {"data/volumes/" + k: v for k, v in expected.items()}


# -- spoofed mounts ----------------------------------------------------------------

def test_fuse_mount_spoofing_system_disk_is_ignored(tmp_path, vol):
    """``sshfs -o fsname=/dev/xvda1``, ``fsname=/dev/xvdb``: the user's mount points
    must not be published as the system disk's, nor make an empty disk a volume."""
    g = FakeBlock(tmp_path / "guest")
    system_disk(g)
    g.mount((0, 61), "/home/eve/fuse", "fuse.sshfs", "/dev/xvda1")
    g.mount((0, 62), "/home/eve/raw", "fuse.sshfs", "/dev/xvdb")
    values = collect(vol, g)
    assert without_free(values) == without_free(system_expected())
    assert "data/volumes/0/free" in values


def test_fuse_mount_spoofing_swap_and_lvm_keeps_them(tmp_path, vol, monkeypatch):
    """A FUSE mount named after the swap partition or a PV must not replace
    ``[SWAP]`` / ``[LVM]`` (and their free figures) with the attacker's."""
    g = FakeBlock(tmp_path / "guest")
    system_disk(g)
    g.xen_disk("xvdc", 32, 2 * SECTORS_PER_GIB, udev={"ID_FS_TYPE": "LVM2_member"})
    g.mount((0, 61), "/home/eve/swap", "fuse.sshfs", "/dev/xvda2")
    g.mount((0, 62), "/home/eve/lvm", "fuse.x", "/dev/xvdc")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pvs").write_text("#!/bin/sh\necho '  /dev/xvdc  %dB lvm2'\n" % GIB)
    (bindir / "pvs").chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    values = collect(vol, g)
    expected = system_expected()
    expected.update({"data/volumes/" + k: v for k, v in volume(
        2, "/dev/xvdc", 2 * GIB, "", ["[LVM]"], "lvm2", GIB).items()})
    assert without_free(values) == without_free(expected)
    for n in (1, 2):
        assert values["data/volumes/%d/free" % n] == expected["data/volumes/%d/free" % n]


def test_fuse_source_with_dot_dot_into_its_own_mount_is_ignored(tmp_path, vol):
    """A source of ``/dev/../home/eve/mnt/x`` resolved into the user's own tree (where
    ``x`` names a guest disk) must not claim that disk."""
    g = FakeBlock(tmp_path / "guest")
    system_disk(g)
    g.link("/home/eve/mnt/x", "/dev/xvda1")
    g.link("/home/eve/mnt/y", "../../../dev/xvdb")
    g.mount((0, 61), "/home/eve/mnt", "fuse.sshfs", "/dev/../home/eve/mnt/x")
    g.mount((0, 62), "/home/eve/mnt2", "fuse.sshfs", "/dev/../home/eve/mnt/y")
    assert without_free(collect(vol, g)) == without_free(system_expected())


def test_btrfs_typed_mount_is_matched_by_the_kernels_fsid_not_its_source(tmp_path, vol):
    """A mount of type btrfs that names xvdb1 as its source, while sysfs lists xvdb1 as a
    member of a mounted btrfs: without the kernel's fsid for that mount (here there is
    no btrfs to ask), its source claims nothing. Real btrfs: test_volumes_real.py."""
    g = FakeBlock(tmp_path / "guest")
    g.xen_disk("xvdb", 16, 10 * SECTORS_PER_GIB)
    g.partition("xvdb", 1, (XVD_MAJOR, 17), 10 * SECTORS_PER_GIB - 2048,
                udev={"ID_FS_TYPE": "btrfs"})
    g.link("/sys/fs/btrfs/0c6e7a5e-1111-4a4a-8a8a-000000000001/devices/xvdb1",
           "../../../../devices/vbd-51728/block/xvdb/xvdb1")
    g.mount((0, 45), "/pool", "btrfs", "/dev/xvdb1", fs_root="/@")
    values = collect(vol, g)
    assert values == {"data/volumes/0/extents/0": "",
                      "data/volumes/0/name": "/dev/xvdb1",
                      "data/volumes/0/size": str((10 * SECTORS_PER_GIB - 2048) * 512)}


def test_btrfs_pool_members_from_sysfs(tmp_path, vol, monkeypatch):
    """A two-device pool: both members show the mount points, only the first the free
    space (counted once); a btrfs device sysfs does not list for that fsid (the one the
    mount's source names) gets nothing.
    (The fsid ioctl is faked here; test_volumes_real.py asks a real btrfs.)"""
    fsid = "0c6e7a5e-1111-4a4a-8a8a-000000000001"
    g = FakeBlock(tmp_path / "guest")
    for disk, minor in (("xvdb", 16), ("xvdc", 32), ("xvdd", 48)):
        g.xen_disk(disk, minor, SECTORS_PER_GIB, udev={"ID_FS_TYPE": "btrfs"})
    g.link("/sys/fs/btrfs/%s/devices/xvdc" % fsid, "../../../../devices/vbd-51744/block/xvdc")
    g.link("/sys/fs/btrfs/%s/devices/xvdb" % fsid, "../../../../devices/vbd-51728/block/xvdb")
    g.mount((0, 45), "/pool", "btrfs", "/dev/xvdd")
    g.mount((0, 45), "/pool/home", "btrfs", "/dev/xvdd", fs_root="/@home")
    asked = []
    monkeypatch.setattr(vol, "btrfs_fsid",
                        lambda root, m, check: asked.append(m.mount_point) or fsid)
    values = collect(vol, g)
    expected = {}
    expected.update(volume(0, "/dev/xvdb", GIB, "", ["/pool", "/pool/home"], "btrfs"))
    expected.update(volume(1, "/dev/xvdc", GIB, "", ["/pool", "/pool/home"], "btrfs"))
    expected.update(volume(2, "/dev/xvdd", GIB))       # btrfs on it, but not this pool
    assert without_free(values) == {"data/volumes/" + k: v for k, v in expected.items()}
    assert int(values.pop("data/volumes/0/free")) > 0  # the host's busy fs: no exact figure
    assert not [k for k in values if k.endswith("/free")]
    assert asked == ["/pool"]              # one superblock: asked once


# -- bounded statvfs ----------------------------------------------------------------

def test_statvfs_that_hangs_is_given_up_after_the_bound(tmp_path, vol, monkeypatch):
    """A statvfs that never returns (faked in process: blocked on an event) costs
    PROBE_TIMEOUT, then free is omitted with one warning; the next volume still gets
    its figure."""
    import threading
    g = FakeBlock(tmp_path / "guest")
    g.xen_disk("xvdb", 16, 4 * SECTORS_PER_GIB)
    g.partition("xvdb", 1, (XVD_MAJOR, 17), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    g.partition("xvdb", 2, (XVD_MAJOR, 18), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    g.mount((XVD_MAJOR, 17), "/hung", "ext4", "/dev/xvdb1")
    g.mount((XVD_MAJOR, 17), "/hung-too", "ext4", "/dev/xvdb1")
    g.mount((XVD_MAJOR, 18), "/fine", "ext4", "/dev/xvdb2")
    release = threading.Event()
    real = os.fstatvfs
    calls = []

    def fstatvfs(fd):
        target = os.readlink("/proc/self/fd/%d" % fd)
        calls.append(os.path.basename(target))
        if target.endswith("/hung") or target.endswith("/hung-too"):
            release.wait(30)
        return real(fd)

    monkeypatch.setattr(os, "fstatvfs", fstatvfs)
    monkeypatch.setattr(vol, "PROBE_TIMEOUT", 0.5)
    started = time.monotonic()
    try:
        values = collect(vol, g)
    finally:
        release.set()
    assert 0.5 <= time.monotonic() - started < 2.5
    assert "data/volumes/0/free" not in values
    assert values["data/volumes/0/mount_points/1"] == "/hung-too"
    assert int(values["data/volumes/1/free"]) > 0
    assert calls == ["hung", "fine"]       # the same filesystem is not asked twice
    assert vol.LOG.warnings == [
        "free space not published for: /hung (no answer within 0.5 s)"]


NAMESPACE_SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys, time
    spec = json.loads(open(sys.argv[1]).read())
    fds = []
    for m in spec["fuse"]:                  # a FUSE mount whose server never answers
        os.makedirs(m["target"], exist_ok=True)
        fd = os.open("/dev/fuse", os.O_RDWR)
        fds.append(fd)
        subprocess.run(["mount", "-t", m["type"], "-o",
                        "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other" % fd,
                        m["source"], m["target"]], pass_fds=[fd], check=True)
    started = time.monotonic()
    try:
        res = subprocess.run(spec["command"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True,
                             timeout=spec["timeout"], env=spec["env"])
        out = {"rc": res.returncode, "stdout": res.stdout, "stderr": res.stderr}
    except subprocess.TimeoutExpired:
        out = {"rc": "timeout"}
    out["elapsed"] = time.monotonic() - started
    open(spec["result"], "w").write(json.dumps(out))
    for m in reversed(spec["fuse"]):         # abort the connections: nothing stays hung
        subprocess.run(["umount", "-l", m["target"]])
""")


def fuse_namespace(tmp_path, fuse, command, timeout=30):
    """Run ``command`` in a private mount namespace where each of ``fuse`` ({"source",
    "target", "type"}) is a FUSE mount whose server never answers."""
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root, /dev/fuse and unshare")
    spec = tmp_path / "fuse-spec.json"
    result = tmp_path / "fuse-result.json"
    spec.write_text(json.dumps({
        "fuse": fuse, "command": command, "timeout": timeout, "result": str(result),
        "env": dict(os.environ, PYTHONPATH=str(CHECKOUT))}))
    script = tmp_path / "fuse-ns.py"
    script.write_text(NAMESPACE_SCRIPT)
    subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                    str(script), str(spec)], check=True, timeout=timeout + 30)
    return json.loads(result.read_text())


def test_fuse_server_that_never_answers_costs_the_bound_then_the_run_ends(tmp_path):
    """A real FUSE mount that never answers, on a guest disk's mount point (as a hung
    ntfs-3g would be): the run waits PROBE_TIMEOUT, publishes the rest, warns once, and
    exits although the statvfs thread is still blocked. A user's FUSE mount that names
    a guest disk as its source (and hangs too) is not even asked."""
    from xe_oneshot.sections.volumes import PROBE_TIMEOUT
    g = FakeBlock(tmp_path / "guest")
    g.xen_disk("xvdb", 16, 4 * SECTORS_PER_GIB)
    g.partition("xvdb", 1, (XVD_MAJOR, 17), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ntfs"})
    g.partition("xvdb", 2, (XVD_MAJOR, 18), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    g.mount((XVD_MAJOR, 17), "/data", "fuseblk", "/dev/xvdb1")
    g.mount((0, 61), "/home/eve/fuse", "fuse.sshfs", "/dev/xvdb2")
    g.mount((XVD_MAJOR, 18), "/srv", "ext4", "/dev/xvdb2")
    # (fuseblk needs a block device to mount: a plain FUSE mount hangs the same way)
    fuse = [{"source": "/dev/xvdb1", "target": str(g.path("/data")), "type": "fuse.hang"},
            {"source": "/dev/xvdb2", "target": str(g.path("/home/eve/fuse")),
             "type": "fuse.sshfs"}]
    out = fuse_namespace(tmp_path, fuse, [
        sys.executable, "-m", "xe_oneshot", "--root", str(g.root), "--section", "volumes",
        "--print", "--state-dir", str(tmp_path / "state")])
    assert out["rc"] == 0, out
    assert PROBE_TIMEOUT <= out["elapsed"] < PROBE_TIMEOUT + 5
    assert out["stderr"].splitlines() == [
        "xe-oneshot: free space not published for: /data (no answer within %g s)"
        % PROBE_TIMEOUT]
    printed = dict(line.split(" = ", 1) for line in out["stdout"].splitlines())
    assert printed["data/volumes/0/mount_points/0"] == '"/data"'
    assert "data/volumes/0/free" not in printed
    assert printed["data/volumes/1/mount_points/0"] == '"/srv"'
    assert "data/volumes/1/mount_points/1" not in printed
    assert int(printed["data/volumes/1/free"].strip('"')) > 0


MNT_ID_SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys
    from xe_oneshot import mountinfo
    from xe_oneshot.guest import Root
    from xe_oneshot.sections import volumes
    base = sys.argv[1]
    src, dst = base + "/src", base + "/dst"
    os.makedirs(src); os.makedirs(dst)
    subprocess.run(["mount", "--bind", src, dst], check=True)
    ours = [m for m in mountinfo.read(Root("/")) if m.mount_point == dst][-1]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "over", dst], check=True)
    print(json.dumps({
        "checked": volumes.statvfs_free(Root("/"), ours, True),
        "unchecked": volumes.statvfs_free(Root("/"), ours, False),
        "top": volumes.statvfs_free(
            Root("/"), [m for m in mountinfo.read(Root("/")) if m.mount_point == dst][-1],
            True),
    }))
""")


def test_mount_made_over_the_mount_point_after_mountinfo_was_read_is_not_asked(tmp_path):
    """The race: between reading mountinfo and statvfs, a mount (a user's FUSE, here a
    tmpfs) is made over the guest disk's mount point. statvfs by path would return the
    newcomer's figure; the mount point's mnt_id shows it is not the mount we matched."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare")
    res = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", MNT_ID_SCRIPT,
         str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, env=dict(os.environ, PYTHONPATH=str(CHECKOUT)), timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["unchecked"] == 1 << 20     # what asking by path would have published
    assert out["checked"] is None
    assert out["top"] == 1 << 20           # the tmpfs's own mount is asked as usual


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


# -- pvs ---------------------------------------------------------------------------

def test_pvs_that_times_out_leaves_no_children_behind(tmp_path, monkeypatch, vol):
    """A ``pvs`` that hangs after starting a child of its own (which holds its stdout):
    at the timeout the whole process group goes, child included."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pidfile = tmp_path / "child.pid"
    sleep = shutil.which("sleep")
    (bindir / "pvs").write_text("#!/bin/sh\n%s 300 &\necho $! > %s\nexec %s 300\n"
                                % (sleep, pidfile, sleep))
    (bindir / "pvs").chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(vol, "PVS_TIMEOUT", 1)
    started = time.monotonic()
    try:
        assert vol.run_pvs() is None
        assert 1 <= time.monotonic() - started < 5
        child = int(pidfile.read_text())
        deadline = time.monotonic() + 5
        state = "?"
        while time.monotonic() < deadline:
            try:
                state = Path("/proc/%d/stat" % child).read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                state = "gone"
            if state in ("gone", "Z"):    # a zombie is dead, waiting for init to reap it
                break
            time.sleep(0.05)
        assert state in ("gone", "Z")
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    assert vol.LOG.warnings == ["pvs did not answer within 1 s: LVM usage not published"]


# -- symlinks under --root ---------------------------------------------------------

def test_absolute_guest_symlinks_resolve_inside_the_root(tmp_path, vol):
    """A copied guest whose ``/sys/block/xvda`` and ``.../device`` links are absolute
    (``/sys/devices/...``) is read inside the root: on the host those paths are the
    host's own sysfs (or nothing), and the disk would vanish or lose its extent."""
    from contextlib import ExitStack

    from tests.support.blockdev import backend_seed
    from tests.support.xenstored import Unavailable, XenStored
    from xe_oneshot.guest import Root
    from xe_oneshot.sections import Context
    from xe_oneshot.xenstore import Client
    from xe_oneshot.xsreader import ClientReader

    g = FakeBlock(tmp_path / "guest")
    system_disk(g)
    g.link("/sys/block/xvda", "/sys/devices/vbd-51712/block/xvda")
    g.link("/sys/devices/vbd-51712/block/xvda/device", "/sys/devices/vbd-51712")
    expected = system_expected()
    expected["data/volumes/0/extents/0"] = expected["data/volumes/1/extents/0"] = "xvda"
    with ExitStack() as stack:
        try:
            xsd = stack.enter_context(XenStored(tmp_path / "xsd", backend_seed(["xvda"])))
        except Unavailable as err:
            pytest.skip("real xenstored unavailable: %s" % err)
        client = stack.enter_context(Client.open(
            timeout=10, env={"XENSTORED_PATH": str(xsd.socket)}))
        ctx = Context(root=Root(str(g.root)), xenstore=ClientReader(client))
        values = vol.collect(ctx).values
    assert without_free(values) == without_free(expected)


def test_a_guest_symlink_cannot_leave_the_root(tmp_path, vol):
    """``/sys/block/xvdz -> ../../../outside/...`` climbs out of the root on the host;
    in the guest ``..`` stops at ``/``, where there is no such device. The disk that
    sits outside the root (a complete one, with a mount) must not be published."""
    g = FakeBlock(tmp_path / "guest")
    system_disk(g)
    outside = FakeBlock(tmp_path / "outside")
    outside.xen_disk("xvdz", 400, 2 * SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    g.udev((XVD_MAJOR, 400), {"ID_FS_TYPE": "ext4"})
    g.link("/sys/block/xvdz", "../../../outside/sys/devices/vbd-%d/block/xvdz"
           % vbd_id("xvdz"))
    g.link("/sys/block/xvdy", "/../../../../../../" + str(outside.root).lstrip("/")
           + "/sys/devices/vbd-%d/block/xvdz" % vbd_id("xvdz"))
    assert (g.root / "sys/block/xvdz/dev").exists()       # on the host it leads out
    values = vol.collect(vol_context(g)).values
    assert without_free(values) == without_free(system_expected())


def vol_context(g: FakeBlock):
    from xe_oneshot.guest import Root
    from xe_oneshot.sections import Context
    return Context(root=Root(str(g.root)))


def test_swap_named_by_an_absolute_guest_link_is_looked_up_inside_the_root(tmp_path, vol):
    """``/proc/swaps`` naming ``/dev/disk/by-label/swap`` (a link to ``/dev/xvda2``):
    the device number comes from the guest's node, through the guest's link."""
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    g = FakeBlock(tmp_path / "guest")
    system_disk(g)
    g.swaps(("/dev/disk/by-label/swap", "partition", 1048572, 2048))
    node = g.path("/dev/xvda2")
    node.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(str(node), 0o600 | __import__("stat").S_IFBLK, os.makedev(XVD_MAJOR, 2))
    g.link("/dev/disk/by-label/swap", "/dev/xvda2")
    assert without_free(collect(vol, g)) == without_free(system_expected())
