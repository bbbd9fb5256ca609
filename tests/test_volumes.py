"""The volumes section on fake guests, end to end: ``xe-oneshot --section volumes --root``
against the real oxenstored, checking the exact ``data/volumes`` subtree.

The guest's sysfs / udev / mountinfo / swaps are built under a root (tests/support/blockdev.py);
``free`` comes from statvfs of the mount point under that root, so the expected figure
is measured here with ``os.statvfs`` of the same directory. ``pvs`` is a small executable
put first on PATH: the section runs it through ``sh``, which forks and execs by itself,
so pytest-subprocess (it patches ``subprocess.Popen``) could not intercept it — a real
process that prints known output is the honest fake. Real loop devices, mounts and LVM
are in test_volumes_real.py.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.blockdev import (CHECKOUT, HOME, NVME_MAJOR, SCSI_CDROM_MAJOR, SCSI_DISK_MAJOR,
                            XVD_MAJOR, FakeBlock, backend_seed, in_namespace, tree_of,
                            vbd_id, volume)
from tests.support.xenstored import Unavailable, XenStored

GIB = 1 << 30
MIB = 1 << 20
SECTORS_PER_GIB = GIB // 512
PVS_ARGS = "--noheadings --units b -o pv_name,pv_free,pv_fmt"

#: Disks whose backends the daemon knows (``<backend>/dev`` = the disk's name).
SEEDED = ["xvd" + chr(c) for c in range(ord("a"), ord("z") + 1)] + ["xvdaa", "xvdab"]


@pytest.fixture
def xsd(tmp_path):
    """A real daemon of the test's own, seeded with the disks' backends (domid 7)."""
    try:
        daemon = XenStored(tmp_path / "xsd", seed=backend_seed(SEEDED)).start()
    except Unavailable as err:
        pytest.skip("real xenstored unavailable: %s" % err)
    yield daemon
    daemon.stop()


@pytest.fixture
def block_guest(tmp_path):
    return FakeBlock(tmp_path / "guest")


@pytest.fixture
def fakebin(tmp_path):
    """A directory for fake commands, put first on PATH by :func:`env_for`."""
    path = tmp_path / "bin"
    path.mkdir()
    return path


def fake_pvs(bindir: Path, output: str = "", rc: int = 0, stderr: str = "") -> Path:
    """A ``pvs`` that logs its arguments (one line per run) and answers ``output``."""
    log = bindir / "pvs.calls"
    script = bindir / "pvs"
    script.write_text("#!/bin/sh\nprintf '%%s\\n' \"$*\" >> %s\ncat <<'EOF'\n%sEOF\n"
                      "printf '%%s' '%s' >&2\nexit %d\n" % (log, output, stderr, rc))
    script.chmod(0o755)
    return log


def env_for(daemon, bindir: Path, keep_path: bool = True):
    path = str(bindir) + (os.pathsep + os.environ.get("PATH", "") if keep_path else "")
    return dict(daemon.env(), PATH=path)


def run_ns(daemon, guest: FakeBlock, state, *args, env=None, check=True):
    """``xe-oneshot`` in a private mount namespace where each mount point of the fake
    guest is a tmpfs of its own size: ``free`` figures are steady and distinct.
    Returns ``{"rc", "stdout", "stderr", "avail": {guest mount point: bytes}}``."""
    cmd = [sys.executable, "-m", "xe_oneshot", "--root", str(guest.root),
           "--state-dir", str(state)] + list(args)
    out = in_namespace(guest.tmpfs_mounts(), cmd, guest.root.parent,
                       env=daemon.env() if env is None else env)
    assert "Traceback" not in out["stderr"], out["stderr"]
    if check:
        assert out["rc"] == 0, out["stderr"]
    out["avail"] = {point: out["avail"][str(guest.path(point))] for point in guest.mount_dirs}
    return out


def volumes_tree(daemon):
    return daemon.tree("data/volumes")


def xen(disk: str) -> str:
    """The extent a seeded Xen disk gets: its backend's ``dev`` (= its name here)."""
    return disk


# -- a whole guest ---------------------------------------------------------------

def build_mixed_guest(g: FakeBlock) -> None:
    """xvda: /var, active swap, unmounted ext4; xvdb: whole-disk ext4 with a bind mount;
    xvdc: empty raw disk; xvdd: CD-ROM without media; sda: a non-Xen disk; plus loop,
    dm and zram devices that must not show."""
    g.xen_disk("xvda", 0, 20 * SECTORS_PER_GIB)
    g.partition("xvda", 1, (XVD_MAJOR, 1), 18 * SECTORS_PER_GIB,
                udev={"ID_FS_TYPE": "ext4", "ID_PART_ENTRY_UUID": "5f2c1a3e-01"})
    g.partition("xvda", 2, (XVD_MAJOR, 2), SECTORS_PER_GIB,
                udev={"ID_FS_TYPE": "swap"}, partuuid_link="5f2c1a3e-02")
    g.partition("xvda", 3, (XVD_MAJOR, 3), SECTORS_PER_GIB - 4096,
                udev={"ID_FS_TYPE": "ext4"})
    g.xen_disk("xvdb", 16, 8 * SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    g.xen_disk("xvdc", 32, 4 * SECTORS_PER_GIB)
    g.xen_disk("xvdd", 48, 0)
    g.disk("sda", (SCSI_DISK_MAJOR, 0), 2 * SECTORS_PER_GIB)
    g.partition("sda", 1, (SCSI_DISK_MAJOR, 1), 2 * SECTORS_PER_GIB - 2048,
                udev={"ID_FS_TYPE": "xfs"})
    g.virtual("loop0", (7, 0), 131072, udev={"ID_FS_TYPE": "squashfs"})
    g.virtual("dm-0", (253, 0), 4 * SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    g.virtual("zram0", (251, 0), 2 * SECTORS_PER_GIB)
    g.mount((XVD_MAJOR, 1), "/var", "ext4", "/dev/xvda1")
    g.mount((7, 0), "/snap/core/1", "squashfs", "/dev/loop0")
    g.mount((XVD_MAJOR, 16), "/srv/my data", "ext4", "/dev/xvdb")
    g.mount((253, 0), "/home", "ext4", "/dev/mapper/vg-home")
    g.mount((SCSI_DISK_MAJOR, 1), "/scratch", "xfs", "/dev/sda1")
    g.mount((XVD_MAJOR, 16), "/var/www", "ext4", "/dev/xvdb", fs_root="/www")
    g.swaps(("/dev/xvda2", "partition", 1048572, 2048),
            ("/dev/zram0", "partition", 2097148, 0),
            ("/swapfile", "file", 524284, 0))


def test_mixed_guest_exact_tree(xsd, block_guest, state):
    build_mixed_guest(block_guest)
    res = run_ns(xsd, block_guest, state, "--section", "volumes")
    expected = {}
    expected.update(volume(0, "/dev/sda1", (2 * SECTORS_PER_GIB - 2048) * 512, "",
                           ["/scratch"], "xfs", res["avail"]["/scratch"]))
    expected.update(volume(1, "/dev/xvda1(5f2c1a3e-01)", 18 * GIB, xen("xvda"),
                           ["/var"], "ext4", res["avail"]["/var"]))
    expected.update(volume(2, "/dev/xvda2(5f2c1a3e-02)", GIB, xen("xvda"),
                           ["[SWAP]"], "swap", (1048572 - 2048) * 1024))
    expected.update(volume(3, "/dev/xvda3", GIB - 4096 * 512, xen("xvda")))
    expected.update(volume(4, "/dev/xvdb", 8 * GIB, xen("xvdb"),
                           ["/srv/my data", "/var/www"], "ext4",
                           res["avail"]["/srv/my data"]))
    assert volumes_tree(xsd) == tree_of(expected)


def test_unchanged_guest_rerun_writes_nothing(xsd, block_guest, state):
    build_mixed_guest(block_guest)
    run_ns(xsd, block_guest, state, "--section", "volumes")
    mark = xsd.log_mark()
    run_ns(xsd, block_guest, state, "--section", "volumes")
    assert xsd.writes_since(mark) == []


def test_print_mode_without_xenstore_has_empty_extents(block_guest, tmp_path):
    build_mixed_guest(block_guest)
    env = {k: v for k, v in os.environ.items() if k != "XENSTORED_PATH"}
    env["PYTHONPATH"] = str(CHECKOUT)
    res = subprocess.run([sys.executable, "-m", "xe_oneshot", "--section", "volumes",
                          "--root", str(block_guest.root), "--format", "json"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert res.returncode == 0, res.stderr
    values = json.loads(res.stdout)
    assert [values["data/volumes/%d/name" % n] for n in range(5)] == [
        "/dev/sda1", "/dev/xvda1(5f2c1a3e-01)", "/dev/xvda2(5f2c1a3e-02)", "/dev/xvda3",
        "/dev/xvdb"]
    assert {values["data/volumes/%d/extents/0" % n] for n in range(5)} == {""}
    assert "data/volumes/5/name" not in values


# -- numbering -------------------------------------------------------------------

def test_natural_order_of_many_disks_and_partitions(xsd, block_guest, state):
    """xvda..xvdq (17 disks: xvdq is the first with the extended vbd numbering) and
    xvdaa, created in random order; xvda has 11 partitions (10 after 9, not after 1)."""
    disks = ["xvd" + chr(c) for c in range(ord("a"), ord("q") + 1)] + ["xvdaa"]
    order = list(disks)
    random.Random(7).shuffle(order)
    for disk in order:
        index = disks.index(disk)
        block_guest.xen_disk(disk, index * 16, (index + 1) * SECTORS_PER_GIB)
        count = 11 if disk == "xvda" else 1
        for number in random.Random(index).sample(range(1, count + 1), count):
            block_guest.partition(disk, number, (XVD_MAJOR, index * 16 + number), 2048 * number)
    run_ns(xsd, block_guest, state, "--section", "volumes")
    expected = {}
    n = 0
    for disk in disks:
        count = 11 if disk == "xvda" else 1
        for number in range(1, count + 1):
            expected.update(volume(n, "/dev/%s%d" % (disk, number), 2048 * number * 512,
                                   xen(disk)))
            n += 1
    assert n == 28
    assert volumes_tree(xsd) == tree_of(expected)


def test_partition_removed_between_runs(xsd, block_guest, state):
    block_guest.xen_disk("xvda", 0, 30 * SECTORS_PER_GIB)
    for number in (1, 2, 3):
        block_guest.partition("xvda", number, (XVD_MAJOR, number), number * SECTORS_PER_GIB,
                        udev={"ID_FS_TYPE": "ext4", "ID_PART_ENTRY_UUID": "c0ffee-0%d" % number})
    block_guest.mount((XVD_MAJOR, 3), "/data", "ext4", "/dev/xvda3")
    res = run_ns(xsd, block_guest, state, "--section", "volumes")
    first = volumes_tree(xsd)
    assert first["2/name"] == "/dev/xvda3(c0ffee-03)"

    block_guest.remove("xvda2")
    mark = xsd.log_mark()
    res = run_ns(xsd, block_guest, state, "--section", "volumes")
    expected = {}
    expected.update(volume(0, "/dev/xvda1(c0ffee-01)", GIB, "xvda"))
    expected.update(volume(1, "/dev/xvda3(c0ffee-03)", 3 * GIB, "xvda", ["/data"], "ext4",
                           res["avail"]["/data"]))
    assert volumes_tree(xsd) == tree_of(expected)
    changed = sorted((e.op, e.path) for e in xsd.writes_since(mark))
    assert ("rm", "data/volumes/2") in changed
    assert ("write", "data/volumes/1/name") in changed
    assert not any(path.startswith("data/volumes/0") for _, path in changed)


# -- sizes, devices that are not volumes -----------------------------------------

def test_4k_sector_disk_size_counts_512_byte_sectors(xsd, block_guest, state):
    """sysfs ``size`` is in 512-byte units even on a 4K-sector disk (the classic agent
    multiplied by the physical block size and reported 8x the real size)."""
    block_guest.xen_disk("xvdb", 16, 2 * SECTORS_PER_GIB, block_size=4096,
                   udev={"ID_FS_TYPE": "ext4"})
    block_guest.mount((XVD_MAJOR, 16), "/data", "ext4", "/dev/xvdb")
    run_ns(xsd, block_guest, state, "--section", "volumes")
    assert volumes_tree(xsd)["0/size"] == str(2 * GIB)


def test_cdrom_with_and_without_media(xsd, block_guest, state):
    block_guest.disk("sr0", (SCSI_CDROM_MAJOR, 0), 0, nodename="device/vbd/5632")
    block_guest.disk("sr1", (SCSI_CDROM_MAJOR, 1), 1400000, udev={"ID_FS_TYPE": "iso9660"})
    block_guest.mount((SCSI_CDROM_MAJOR, 1), "/media/cdrom", "iso9660", "/dev/sr1")
    res = run_ns(xsd, block_guest, state, "--section", "volumes")
    assert volumes_tree(xsd) == tree_of(volume(
        0, "/dev/sr1", 1400000 * 512, "", ["/media/cdrom"], "iso9660",
        res["avail"]["/media/cdrom"]))


def test_swap_active_inactive_and_swapfile(xsd, block_guest, state):
    block_guest.xen_disk("xvda", 0, 4 * SECTORS_PER_GIB)
    block_guest.partition("xvda", 1, (XVD_MAJOR, 1), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "swap"})
    block_guest.partition("xvda", 2, (XVD_MAJOR, 2), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "swap"})
    block_guest.xen_disk("xvdb", 16, SECTORS_PER_GIB, udev={"ID_FS_TYPE": "swap"})
    block_guest.swaps(("/dev/xvda2", "partition", 1048572, 0),
                ("/dev/xvdb", "partition", 1048572, 524288),
                ("/var/swap\\040file", "file", 1024, 0))
    run_ns(xsd, block_guest, state, "--section", "volumes")
    expected = {}
    expected.update(volume(0, "/dev/xvda1", GIB, "xvda"))            # inactive
    expected.update(volume(1, "/dev/xvda2", GIB, "xvda", ["[SWAP]"], "swap", 1048572 * 1024))
    expected.update(volume(2, "/dev/xvdb", GIB, "xvdb", ["[SWAP]"], "swap",
                           (1048572 - 524288) * 1024))
    assert volumes_tree(xsd) == tree_of(expected)


def test_small_free_changes_wait_big_ones_are_published(xsd, block_guest, state):
    """free is marked with 1% of the volume's size: active swap, whose use the test
    controls, moves by 1 MiB (held back) and then by 100 MiB (published)."""
    block_guest.xen_disk("xvda", 0, 2 * SECTORS_PER_GIB)
    block_guest.partition("xvda", 1, (XVD_MAJOR, 1), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "swap"})
    block_guest.swaps(("/dev/xvda1", "partition", 1048572, 0))
    run_ns(xsd, block_guest, state, "--section", "volumes")
    assert xsd.read("data/volumes/0/free") == str(1048572 * 1024)
    block_guest.swaps(("/dev/xvda1", "partition", 1048572, 1024))
    mark = xsd.log_mark()
    run_ns(xsd, block_guest, state, "--section", "volumes")
    assert xsd.writes_since(mark) == []
    block_guest.swaps(("/dev/xvda1", "partition", 1048572, 102400))
    run_ns(xsd, block_guest, state, "--section", "volumes")
    # xapi never reads data/volumes: no data/updated with it
    assert sorted(e.path for e in xsd.writes_since(mark)) == ["data/volumes/0/free"]
    assert xsd.read("data/volumes/0/free") == str((1048572 - 102400) * 1024)


def test_mbr_extended_container_is_not_a_volume(xsd, block_guest, state):
    block_guest.xen_disk("xvda", 0, 10 * SECTORS_PER_GIB)
    block_guest.partition("xvda", 1, (XVD_MAJOR, 1), SECTORS_PER_GIB,
                    udev={"ID_PART_ENTRY_TYPE": "0x83", "ID_PART_ENTRY_UUID": "1234abcd-01"})
    block_guest.partition("xvda", 2, (XVD_MAJOR, 2), 2,
                    udev={"ID_PART_ENTRY_TYPE": "0x5", "ID_PART_ENTRY_UUID": "1234abcd-02"})
    block_guest.partition("xvda", 5, (XVD_MAJOR, 5), SECTORS_PER_GIB,
                    udev={"ID_PART_ENTRY_TYPE": "0x83", "ID_PART_ENTRY_UUID": "1234abcd-05"})
    run_ns(xsd, block_guest, state, "--section", "volumes")
    expected = {}
    expected.update(volume(0, "/dev/xvda1(1234abcd-01)", GIB, "xvda"))
    expected.update(volume(1, "/dev/xvda5(1234abcd-05)", GIB, "xvda"))
    assert volumes_tree(xsd) == tree_of(expected)


def test_nvme_names_and_whole_disk_mount(xsd, block_guest, state):
    block_guest.disk("nvme10n1", (NVME_MAJOR, 9), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "xfs"})
    block_guest.disk("nvme2n1", (NVME_MAJOR, 0), 4 * SECTORS_PER_GIB)
    for number in (2, 1):
        block_guest.partition("nvme2n1", number, (NVME_MAJOR, number), SECTORS_PER_GIB,
                        name="nvme2n1p%d" % number, partuuid_link="ab-%d" % number)
    block_guest.mount((NVME_MAJOR, 9), "/data", "xfs", "/dev/nvme10n1")
    # A multipath leg of nvme10n1: hidden by the kernel, not a disk of its own.
    block_guest.disk("nvme10c10n1", (NVME_MAJOR, 20), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "xfs"})
    block_guest.file("/sys/block/nvme10c10n1/hidden", "1\n")
    res = run_ns(xsd, block_guest, state, "--section", "volumes")
    expected = {}
    expected.update(volume(0, "/dev/nvme2n1p1(ab-1)", GIB))
    expected.update(volume(1, "/dev/nvme2n1p2(ab-2)", GIB))
    expected.update(volume(2, "/dev/nvme10n1", GIB, "", ["/data"], "xfs",
                           res["avail"]["/data"]))
    assert volumes_tree(xsd) == tree_of(expected)


# -- mounts ----------------------------------------------------------------------

def test_hidden_or_missing_mount_point_gives_no_free(xsd, block_guest, state):
    """Something mounted over /data hides xvdb1 there: its free figure would be the
    other filesystem's, so none is published; likewise when statvfs fails."""
    block_guest.xen_disk("xvdb", 16, 4 * SECTORS_PER_GIB)
    block_guest.partition("xvdb", 1, (XVD_MAJOR, 17), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    block_guest.partition("xvdb", 2, (XVD_MAJOR, 18), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    block_guest.mount((XVD_MAJOR, 17), "/data", "ext4", "/dev/xvdb1")
    block_guest.mount((0, 50), "/data", "tmpfs", "tmpfs")
    block_guest.mount((XVD_MAJOR, 18), "/gone", "ext4", "/dev/xvdb2", make_dir=False)
    res = run_ns(xsd, block_guest, state, "--section", "volumes")
    expected = {}
    expected.update(volume(0, "/dev/xvdb1", GIB, "xvdb", ["/data"], "ext4"))
    expected.update(volume(1, "/dev/xvdb2", GIB, "xvdb", ["/gone"], "ext4"))
    assert volumes_tree(xsd) == tree_of(expected)
    assert res["stderr"].splitlines() == [
        "xe-oneshot: free space not published for: /gone (No such file or directory)"]


def test_missing_mountinfo_fails_the_section_and_keeps_keys(xsd, block_guest, state):
    block_guest.xen_disk("xvda", 0, SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    block_guest.mount((XVD_MAJOR, 0), "/data", "ext4", "/dev/xvda")
    res = run_ns(xsd, block_guest, state, "--section", "volumes")
    before = volumes_tree(xsd)
    block_guest.path("/proc/self/mountinfo").unlink()
    res = run_ns(xsd, block_guest, state, "--section", "volumes", check=False)
    assert res["rc"] == 1
    assert res["stderr"].splitlines() == [
        "xe-oneshot: section volumes failed: /proc/self/mountinfo is missing: "
        "cannot tell what is mounted"]
    assert volumes_tree(xsd) == before


def test_many_bind_mounts_are_capped(tmp_path):
    """A container host bind-mounts its root fs hundreds of times: 16 mount points at
    most (XenStore quota), the first ones in mount order."""
    from xe_oneshot.guest import Root
    from xe_oneshot.sections import Context, volumes
    g = FakeBlock(tmp_path / "guest")
    g.xen_disk("xvda", 0, SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    g.mount((XVD_MAJOR, 0), "/srv/gone", "ext4", "/dev/xvda", make_dir=False)
    points = ["/var/lib/kubelet/pods/%03d/volume-subpaths/x" % k for k in range(40)]
    for point in points:
        g.mount((XVD_MAJOR, 0), point, "ext4", "/dev/xvda", fs_root="/data/%s" % point)
    values = volumes.collect(Context(root=Root(str(g.root)))).values
    published = [values["data/volumes/0/mount_points/%d" % k] for k in range(16)]
    assert "data/volumes/0/mount_points/16" not in values
    assert published == ["/srv/gone"] + points[:15]
    # /srv/gone cannot be statvfs'd: free comes from the next mount point.
    assert int(values["data/volumes/0/free"]) > 0


def test_no_sysfs_is_a_failure_not_an_empty_answer(tmp_path):
    """Without /sys/block every volume would look removed: refuse to answer instead."""
    from xe_oneshot.guest import Root
    from xe_oneshot.sections import Context, SectionError, volumes
    g = FakeBlock(tmp_path / "guest")
    with pytest.raises(SectionError, match="/sys/block is missing"):
        volumes.collect(Context(root=Root(str(g.root))))
    g.path("/sys/block").mkdir(parents=True)              # present but empty: no volumes
    assert volumes.collect(Context(root=Root(str(g.root)))).values == {}


# -- LVM (pvs faked by a real executable) ----------------------------------------

def build_lvm_guest(g: FakeBlock) -> None:
    """xvdb: ext4 /data, a PV, ext4 /backup; xvdc: a whole-disk PV."""
    g.xen_disk("xvdb", 16, 30 * SECTORS_PER_GIB)
    g.partition("xvdb", 1, (XVD_MAJOR, 17), 10 * SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    g.partition("xvdb", 2, (XVD_MAJOR, 18), 10 * SECTORS_PER_GIB,
                udev={"ID_FS_TYPE": "LVM2_member"})
    g.partition("xvdb", 3, (XVD_MAJOR, 19), 10 * SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    g.xen_disk("xvdc", 32, 20 * SECTORS_PER_GIB, udev={"ID_FS_TYPE": "LVM2_member"})
    g.virtual("dm-0", (253, 0), 5 * SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"})
    g.mount((XVD_MAJOR, 17), "/data", "ext4", "/dev/xvdb1")
    g.mount((253, 0), "/srv", "ext4", "/dev/mapper/vg0-srv")
    g.mount((XVD_MAJOR, 19), "/backup", "ext4", "/dev/xvdb3")


def lvm_expected(avail, pv_keys: bool):
    pv2 = dict(mount_points=["[LVM]"], filesystem="lvm2", free=5 * GIB) if pv_keys else {}
    pvc = dict(mount_points=["[LVM]"], filesystem="lvm2", free=0) if pv_keys else {}
    expected = {}
    expected.update(volume(0, "/dev/xvdb1", 10 * GIB, "xvdb", ["/data"], "ext4",
                           avail["/data"]))
    expected.update(volume(1, "/dev/xvdb2", 10 * GIB, "xvdb", **pv2))
    expected.update(volume(2, "/dev/xvdb3", 10 * GIB, "xvdb", ["/backup"], "ext4",
                           avail["/backup"]))
    expected.update(volume(3, "/dev/xvdc", 20 * GIB, "xvdc", **pvc))
    return tree_of(expected)


def test_lvm_pvs_run_once_for_all_pvs(xsd, block_guest, state, fakebin):
    build_lvm_guest(block_guest)
    calls = fake_pvs(fakebin, "  /dev/xvdb2  %dB lvm2\n  /dev/xvdc           0B lvm2\n"
                              "  /dev/xvdz  %dB lvm2\n" % (5 * GIB, GIB))
    res = run_ns(xsd, block_guest, state, "--section", "volumes", env=env_for(xsd, fakebin))
    assert volumes_tree(xsd) == lvm_expected(res["avail"], pv_keys=True)
    assert calls.read_text().splitlines() == [PVS_ARGS]


@pytest.mark.parametrize("case", ["not-installed", "fails"])
def test_lvm_tools_missing_or_failing(xsd, block_guest, state, fakebin, case):
    """No pvs, or a failing one: the PVs are volumes without usage, one warning, exit 0."""
    build_lvm_guest(block_guest)
    if case == "fails":
        fake_pvs(fakebin, rc=5, stderr="  /run/lock/lvm/P_global:aux: open failed: "
                                       "Permission denied\n")
        env = env_for(xsd, fakebin)
        warning = ("xe-oneshot: pvs failed (exit 5): /run/lock/lvm/P_global:aux: open "
                   "failed: Permission denied")
    else:
        env = env_for(xsd, fakebin, keep_path=False)        # PATH: an empty directory
        warning = ("xe-oneshot: pvs not found (lvm2 not installed?): LVM physical volumes "
                   "published without usage")
    res = run_ns(xsd, block_guest, state, "--section", "volumes", env=env)
    assert volumes_tree(xsd) == lvm_expected(res["avail"], pv_keys=False)
    assert res["stderr"].splitlines() == [warning]


def test_lvm_pvs_that_hangs_is_cut_short(xsd, block_guest, state, fakebin, monkeypatch):
    build_lvm_guest(block_guest)
    script = fakebin / "pvs"
    script.write_text("#!/bin/sh\nexec %s 60\n" % shutil.which("sleep"))
    script.chmod(0o755)
    # In process, with a short timeout: the CLI's own would make this test 10 s long.
    from xe_oneshot.guest import Root
    from xe_oneshot.sections import Context, volumes
    monkeypatch.setenv("PATH", str(fakebin))
    monkeypatch.setattr(volumes, "PVS_TIMEOUT", 1)
    started = time.monotonic()
    result = volumes.collect(Context(root=Root(str(block_guest.root))))
    assert 1 <= time.monotonic() - started < 5          # waited for the timeout, no more
    assert "data/volumes/1/name" in result.values
    assert "data/volumes/1/mount_points/0" not in result.values


def test_no_pv_no_pvs_and_no_sh(block_guest, fakebin):
    """A guest without a PV runs no process and does not even import sh."""
    build_mixed_guest(block_guest)
    calls = fake_pvs(fakebin, "  /dev/xvda1  0B lvm2\n")
    code = ("import sys; from xe_oneshot.guest import Root; "
            "from xe_oneshot.sections import Context, volumes; "
            "r = volumes.collect(Context(root=Root(sys.argv[1]))); "
            "print(len(r.values), 'sh' in sys.modules, 'psutil' in sys.modules)")
    env = dict(os.environ, PATH=str(fakebin) + os.pathsep + os.environ["PATH"],
               PYTHONPATH=str(CHECKOUT))
    res = subprocess.run([sys.executable, "-c", code, str(block_guest.root)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert res.returncode == 0, res.stderr
    count, sh_loaded, psutil_loaded = res.stdout.split()
    assert int(count) > 0 and sh_loaded == "False" and psutil_loaded == "False"
    assert not calls.exists()


# -- XenStore backends -----------------------------------------------------------

class Recorder:
    """A XenStoreReader over the real client that records every path asked for."""

    def __init__(self, reader):
        self.reader = reader
        self.paths = []

    def read(self, path):
        self.paths.append(path)
        return self.reader.read(path)

    def directory(self, path):
        self.paths.append(path)
        return self.reader.directory(path)


def test_backends_followed_only_when_plausible(tmp_path, block_guest, monkeypatch):
    vbd = {d: vbd_id(d) for d in ("xvda", "xvdb", "xvdc", "xvdd", "xvde")}
    seed = [
        ("%s/device/vbd/%d/backend" % (HOME, vbd["xvda"]), "/local/domain/0/backend/vbd/7/51712"),
        ("/local/domain/0/backend/vbd/7/51712/dev", "xvda"),
        # Not a backend path: must not be read under.
        ("%s/device/vbd/%d/backend" % (HOME, vbd["xvdb"]), "/local/domain/0/device/vbd/51712"),
        ("/local/domain/0/device/vbd/51712/dev", "stolen"),
        ("%s/device/vbd/%d/backend" % (HOME, vbd["xvdc"]), "data"),
        ("%s/data/dev" % HOME, "stolen too"),
        # A plausible backend that has no dev node; xvde has no backend at all.
        ("%s/device/vbd/%d/backend" % (HOME, vbd["xvdd"]), "/local/domain/0/backend/vbd/7/51760"),
    ]
    for disk in vbd:
        block_guest.xen_disk(disk, 16 * (ord(disk[-1]) - ord("a")), SECTORS_PER_GIB,
                       udev={"ID_FS_TYPE": "ext4"})
    block_guest.disk("sda", (SCSI_DISK_MAJOR, 0), SECTORS_PER_GIB, udev={"ID_FS_TYPE": "ext4"},
               nodename="../../../etc/passwd", bus="scsi-0")
    try:
        daemon = XenStored(tmp_path / "xsd", seed=seed).start()
    except Unavailable as err:
        pytest.skip("real xenstored unavailable: %s" % err)
    try:
        monkeypatch.setenv("XENSTORED_PATH", str(daemon.socket))
        from xe_oneshot.guest import Root
        from xe_oneshot.sections import Context, volumes
        from xe_oneshot.xenstore import Client
        from xe_oneshot.xsreader import ClientReader
        with Client.open() as client:
            recorder = Recorder(ClientReader(client))
            result = volumes.collect(Context(root=Root(str(block_guest.root)), xenstore=recorder))
    finally:
        daemon.stop()
    extents = [result.values["data/volumes/%d/extents/0" % n] for n in range(6)]
    assert extents == ["", "xvda", "", "", "", ""]       # sda first: "sd" < "xvd"
    assert recorder.paths == [
        "device/vbd/51712/backend", "/local/domain/0/backend/vbd/7/51712/dev",
        "device/vbd/51728/backend", "device/vbd/51744/backend",
        "device/vbd/51760/backend", "/local/domain/0/backend/vbd/7/51760/dev",
        "device/vbd/51776/backend"]


# -- partition UUIDs, tolerance, scale -------------------------------------------

def test_partuuid_sources(tmp_path):
    """udev's ID_PART_ENTRY_UUID first, then /dev/disk/by-partuuid, else none."""
    from xe_oneshot.guest import Root
    from xe_oneshot.sections import Context, volumes
    g = FakeBlock(tmp_path / "guest")
    g.xen_disk("xvda", 0, 4 * SECTORS_PER_GIB)
    g.partition("xvda", 1, (XVD_MAJOR, 1), SECTORS_PER_GIB,
                udev={"ID_PART_ENTRY_UUID": "from-udev"}, partuuid_link="from-link-1")
    g.partition("xvda", 2, (XVD_MAJOR, 2), SECTORS_PER_GIB, partuuid_link="from-link-2")
    g.partition("xvda", 3, (XVD_MAJOR, 3), SECTORS_PER_GIB)
    g.link("/dev/disk/by-partuuid/dangling", "../../xvdz9")
    values = volumes.collect(Context(root=Root(str(g.root)))).values
    assert [values["data/volumes/%d/name" % n] for n in range(3)] == [
        "/dev/xvda1(from-udev)", "/dev/xvda2(from-link-2)", "/dev/xvda3"]


def test_free_is_marked_with_one_percent_of_the_volume_size(tmp_path):
    from xe_oneshot.guest import Root
    from xe_oneshot.sections import Context, volumes
    g = FakeBlock(tmp_path / "guest")
    build_mixed_guest(g)
    result = volumes.collect(Context(root=Root(str(g.root))))
    sizes = {key.rsplit("/", 1)[0]: int(value) for key, value in result.values.items()
             if key.endswith("/size")}
    free_keys = sorted(k for k in result.values if k.endswith("/free"))
    assert len(free_keys) == 4
    assert result.tolerance == {key: sizes[key.rsplit("/", 1)[0]] // 100 for key in free_keys}


def test_256_partitions_well_under_a_second(tmp_path):
    from xe_oneshot.guest import Root
    from xe_oneshot.sections import Context, volumes
    g = FakeBlock(tmp_path / "guest")
    for d in range(16):
        disk = "xvd" + chr(ord("a") + d)
        g.xen_disk(disk, d * 16, 20 * SECTORS_PER_GIB)
        for number in range(1, 17):
            devno = (XVD_MAJOR + 1, d * 16 + number)
            g.partition(disk, number, devno, SECTORS_PER_GIB,
                        udev={"ID_FS_TYPE": "ext4", "ID_PART_ENTRY_UUID": "%d-%d" % (d, number)})
            g.mount(devno, "/m/%s/%d" % (disk, number), "ext4", "/dev/%s%d" % (disk, number))
    ctx = Context(root=Root(str(g.root)))
    best = min(_timed(volumes.collect, ctx) for _ in range(3))
    result = volumes.collect(ctx)
    assert result.values["data/volumes/255/name"] == "/dev/xvdp16(15-16)"
    assert len([k for k in result.values if k.endswith("/free")]) == 256
    print("256 mounted partitions: %.1f ms" % (best * 1000))
    assert best < 0.5


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def test_pytest_subprocess_cannot_see_sh_processes(fp, fakebin, monkeypatch):
    """Why pvs is faked by an executable: sh forks and execs by itself, so a command
    registered with pytest-subprocess (which patches subprocess.Popen) is never used.
    Should sh ever go through subprocess, this fails and the fakes can be simplified."""
    from xe_oneshot.sections import volumes
    fp.register(["pvs"] + PVS_ARGS.split(), stdout="  /dev/xvdq1  1B lvm2\n")
    fake_pvs(fakebin, "  /dev/xvdb2  4194304B lvm2\n")
    monkeypatch.setenv("PATH", str(fakebin) + os.pathsep + os.environ["PATH"])
    assert volumes.run_pvs() == "  /dev/xvdb2  4194304B lvm2\n"
    assert fp.call_count(["pvs"] + PVS_ARGS.split()) == 0
