"""The volumes section on real block devices: loop devices with real partition tables,
ext4 filesystems, a 4K-sector disk, real LVM PVs in real VGs, a two-device btrfs with a
subvolume (matched by the fsid the kernel reports), mounts (and a bind mount)
made in a private mount namespace; the collector runs end to end (``xe-oneshot
--section volumes``) inside that namespace against the real oxenstored.

What cannot be real here is the Xen side of the disks: sysfs shows our loop devices as
``loopN`` with no ``device`` link. So the guest root mirrors each real device as a Xen
disk (``xvdb``: its real ``dev`` numbers and ``size``, a ``device/vbd/<id>`` nodename)
and carries the udev database udev would have written; ``/proc/self/mountinfo`` and
``/proc/swaps`` are copies of the namespace's, taken just before the collector runs,
and ``/mnt`` the namespace's ``/mnt`` bound there; ``pvs`` is the real lvm2 one. Expected figures are measured independently: sizes from
the partition table we wrote, ``free`` from coreutils' ``stat -f`` in the namespace, PV
free space from ``pvs --reportformat json``.

A second part runs the section's ``pvs`` call with both sh APIs: the installed sh (2.x)
and Debian 12's python3-sh 1.14, fetched with ``apt-get download``.
"""

import os
import shutil
import subprocess
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.blockdev import (CHECKOUT, FakeBlock, Loop, backend_seed, in_namespace, lvm_pv,
                            pvs_figures, real_unavailable, tree_of, vbd_id, volume)
from tests.support.xenstored import Unavailable, XenStored, cache_dir

MIB = 1 << 20

pytestmark = pytest.mark.skipif(real_unavailable() is not None,
                                reason=real_unavailable() or "")

UUID = {1: "0c6e7a5e-1111-4a4a-8a8a-000000000001", 2: "0c6e7a5e-2222-4a4a-8a8a-000000000002",
        3: "0c6e7a5e-3333-4a4a-8a8a-000000000003", 4: "0c6e7a5e-4444-4a4a-8a8a-000000000004"}

#: 1 MiB offset, then 16 MiB ext4, 16 MiB PV, 12 MiB ext4, 8 MiB swap.
TABLE = "label: gpt\n" + "".join(
    "size=%dMiB, type=%s, uuid=%s\n" % (size, kind, UUID[n])
    for n, size, kind in ((1, 16, "linux"), (2, 16, "lvm"), (3, 12, "linux"), (4, 8, "swap")))
PART_SIZES = {1: 16 * MIB, 2: 16 * MIB, 3: 12 * MIB, 4: 8 * MIB}


def make(*cmd: str) -> None:
    subprocess.run(list(cmd), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture
def loop_xsd(tmp_path):
    try:
        daemon = XenStored(tmp_path / "xsd", seed=backend_seed(["xvdb", "xvdc", "xvdd"])).start()
    except Unavailable as err:
        pytest.skip("real xenstored unavailable: %s" % err)
    yield daemon
    daemon.stop()


def real_guest(root: Path) -> FakeBlock:
    """A guest root whose mount table, swaps and /mnt become the (namespace's) real ones
    when :func:`run_in_namespace` runs the collector (links out of the root would not
    be followed: the collector resolves them inside it)."""
    g = FakeBlock(root)
    g.file("/proc/swaps", "")
    g.path("/mnt").mkdir()
    return g


#: Run inside the namespace before the collector: copy its mount table and swaps into
#: the root, then show its /mnt there (after the copy: the bind is not in the table).
_REAL_TABLES = ('cat /proc/self/mountinfo > "$1/proc/self/mountinfo" && '
                'cat /proc/swaps > "$1/proc/swaps" && mount --rbind /mnt "$1/mnt" && '
                'shift && exec "$@"')


def mirror_disk(g: FakeBlock, name: str, loop: Loop, **kw) -> None:
    """Show real loop device ``loop`` in the guest as Xen disk ``name``."""
    g.disk(name, loop.devno(), loop.sectors(), nodename="device/vbd/%d" % vbd_id(name), **kw)


def run_in_namespace(daemon, g: FakeBlock, state: Path, mounts):
    cmd = ["/bin/sh", "-c", _REAL_TABLES, "sh", str(g.root),
           sys.executable, "-m", "xe_oneshot", "--root", str(g.root), "--state-dir",
           str(state), "--section", "volumes"]
    out = in_namespace(mounts, cmd, g.root.parent, env=daemon.env())
    assert out["rc"] == 0, out["stderr"]
    assert out["stderr"] == ""
    return out


def test_partitioned_disk_with_filesystems_pv_swap_and_bind_mount(loop_xsd, tmp_path):
    """xvdb: ext4 mounted twice (its root, and a subdirectory bind-mounted), a PV in a
    VG, ext4 on a mount point with a space, and an inactive swap partition."""
    vg = "xevoltest%d" % os.getpid()
    with ExitStack() as stack:
        disk = stack.enter_context(Loop(tmp_path / "xvdb.img", 64 * MIB, table=TABLE))
        for n in (1, 3):
            make("mkfs.ext4", "-q", "-F", "/dev/" + disk.part(n))
        make("mkswap", "/dev/" + disk.part(4))
        stack.enter_context(lvm_pv("/dev/" + disk.part(2), vg))

        g = real_guest(tmp_path / "guest")
        mirror_disk(g, "xvdb", disk)
        types = {1: "ext4", 2: "LVM2_member", 3: "ext4", 4: "swap"}
        for n in (1, 2, 3, 4):
            props = {"ID_FS_TYPE": types[n], "ID_PART_ENTRY_TYPE": "gpt"}
            if n != 4:                     # the 4th is known by its by-partuuid link only
                props["ID_PART_ENTRY_UUID"] = UUID[n]
            g.partition("xvdb", n, disk.devno(disk.part(n)), disk.sectors(disk.part(n)),
                        udev=props, partuuid_link=UUID[4] if n == 4 else "")
        out = run_in_namespace(loop_xsd, g, tmp_path / "state", [
            {"source": "/dev/" + disk.part(1), "target": "/mnt/data", "type": "ext4"},
            {"source": "/dev/" + disk.part(3), "target": "/mnt/with space", "type": "ext4"},
            {"source": "/mnt/data/sub", "target": "/mnt/bind", "options": "bind"},
        ])
        pv_free, pv_fmt = pvs_figures()["/dev/" + disk.part(2)]
    assert pv_fmt == "lvm2" and 0 < pv_free < PART_SIZES[2]
    avail = out["avail"]
    assert avail["/mnt/data"] != avail["/mnt/with space"]
    expected = {}
    expected.update(volume(0, "/dev/xvdb1(%s)" % UUID[1], PART_SIZES[1], "xvdb",
                           ["/mnt/data", "/mnt/bind"], "ext4", avail["/mnt/data"]))
    expected.update(volume(1, "/dev/xvdb2(%s)" % UUID[2], PART_SIZES[2], "xvdb",
                           ["[LVM]"], "lvm2", pv_free))
    expected.update(volume(2, "/dev/xvdb3(%s)" % UUID[3], PART_SIZES[3], "xvdb",
                           ["/mnt/with space"], "ext4", avail["/mnt/with space"]))
    expected.update(volume(3, "/dev/xvdb4(%s)" % UUID[4], PART_SIZES[4], "xvdb"))
    assert loop_xsd.tree("data/volumes") == tree_of(expected)


def test_whole_disks_4k_sectors_ext4_and_pv(loop_xsd, tmp_path):
    """xvdb: a 4K-sector disk with ext4 on the whole disk (its size must not come out 8x
    too large); xvdc: a whole-disk PV; xvdd: an empty disk, which is no volume."""
    vg = "xevoltest%d" % os.getpid()
    with ExitStack() as stack:
        four_k = stack.enter_context(Loop(tmp_path / "xvdb.img", 32 * MIB, sector_size=4096))
        pv = stack.enter_context(Loop(tmp_path / "xvdc.img", 24 * MIB))
        empty = stack.enter_context(Loop(tmp_path / "xvdd.img", 8 * MIB))
        assert Path("/sys/block/%s/queue/logical_block_size" % four_k.name).read_text() == "4096\n"
        make("mkfs.ext4", "-q", "-F", four_k.dev)
        stack.enter_context(lvm_pv(pv.dev, vg))

        g = real_guest(tmp_path / "guest")
        mirror_disk(g, "xvdb", four_k, udev={"ID_FS_TYPE": "ext4"}, block_size=4096)
        mirror_disk(g, "xvdc", pv, udev={"ID_FS_TYPE": "LVM2_member"})
        mirror_disk(g, "xvdd", empty)
        out = run_in_namespace(loop_xsd, g, tmp_path / "state", [
            {"source": four_k.dev, "target": "/mnt/four-k", "type": "ext4"}])
        pv_free, _ = pvs_figures()[pv.dev]
    expected = {}
    expected.update(volume(0, "/dev/xvdb", 32 * MIB, "xvdb", ["/mnt/four-k"], "ext4",
                           out["avail"]["/mnt/four-k"]))
    expected.update(volume(1, "/dev/xvdc", 24 * MIB, "xvdc", ["[LVM]"], "lvm2", pv_free))
    assert loop_xsd.tree("data/volumes") == tree_of(expected)


def test_real_partition_removed_between_runs(loop_xsd, tmp_path):
    """Delete partition 2 from a real table: the next run renumbers and the stale
    volume goes."""
    with Loop(tmp_path / "xvdb.img", 64 * MIB, table=TABLE) as disk:
        g = real_guest(tmp_path / "guest")
        mirror_disk(g, "xvdb", disk)

        def mirror_partitions():
            for n in (1, 2, 3, 4):
                sysdir = Path("/sys/block/%s/%s" % (disk.name, disk.part(n)))
                if sysdir.exists():
                    g.partition("xvdb", n, disk.devno(disk.part(n)), disk.sectors(disk.part(n)),
                                udev={"ID_PART_ENTRY_UUID": UUID[n]})
                elif g.path("/sys/block/xvdb/xvdb%d" % n).exists():
                    g.remove("xvdb%d" % n)

        mirror_partitions()
        run_in_namespace(loop_xsd, g, tmp_path / "state", [])
        assert loop_xsd.tree("data/volumes")["3/name"] == "/dev/xvdb4(%s)" % UUID[4]
        make("sfdisk", "--quiet", "--delete", disk.dev, "2")
        # The kernel's re-read after sfdisk may leave sysfs out of step with the table
        # (here it drops every partition): make sysfs show the new table, whatever it did.
        subprocess.run(["partx", "--delete", disk.dev], stderr=subprocess.DEVNULL)
        make("partx", "--add", disk.dev)
        assert not Path("/sys/block/%s/%s" % (disk.name, disk.part(2))).exists()
        assert Path("/sys/block/%s/%s" % (disk.name, disk.part(4))).exists()
        mirror_partitions()
        run_in_namespace(loop_xsd, g, tmp_path / "state", [])
    expected = {}
    for k, n in enumerate((1, 3, 4)):
        expected.update(volume(k, "/dev/xvdb%d(%s)" % (n, UUID[n]), PART_SIZES[n], "xvdb"))
    assert loop_xsd.tree("data/volumes") == tree_of(expected)


def test_btrfs_pool_over_two_disks_by_the_kernels_fsid(loop_xsd, tmp_path):
    """A real two-device btrfs (xvdb, xvdc) mounted twice (top level and a subvolume):
    mountinfo shows an anonymous 0:NN and a source naming one loop device; the mounts
    are matched by the fsid the kernel reports for the mount and the members sysfs lists
    for it. Both members show the mount points, the first the free space. xvdd holds
    another, unmounted btrfs: nothing of the pool is its."""
    if not shutil.which("mkfs.btrfs"):
        pytest.skip("btrfs-progs is not installed")
    # Fresh fsids: the kernel remembers devices it scanned for an fsid, even stale ones.
    fsid, other = str(uuid.uuid4()), str(uuid.uuid4())
    with ExitStack() as stack:
        one = stack.enter_context(Loop(tmp_path / "xvdb.img", 128 * MIB))
        two = stack.enter_context(Loop(tmp_path / "xvdc.img", 128 * MIB))
        lone = stack.enter_context(Loop(tmp_path / "xvdd.img", 128 * MIB))
        make("mkfs.btrfs", "-q", "-f", "-U", fsid, "-d", "single", "-m", "single",
             one.dev, two.dev)
        make("mkfs.btrfs", "-q", "-f", "-U", other, lone.dev)
        for loop in (one, two, lone):       # afterwards: the kernel forgets them again
            stack.callback(subprocess.run, ["btrfs", "device", "scan", "--forget",
                                            loop.dev], stderr=subprocess.DEVNULL)
        members = "device=%s,device=%s" % (one.dev, two.dev)   # no wait for udev's scan
        make("unshare", "-m", "sh", "-c", "mount -t btrfs -o %s %s %s && btrfs -q subvolume "
             "create %s/@home && umount %s" % (members, one.dev, tmp_path, tmp_path,
                                               tmp_path))

        g = real_guest(tmp_path / "guest")
        for name, loop in (("xvdb", one), ("xvdc", two), ("xvdd", lone)):
            mirror_disk(g, name, loop, udev={"ID_FS_TYPE": "btrfs"})
        # What the kernel shows for the mounted pool, under the guest's names.
        for name in ("xvdc", "xvdb"):
            g.link("/sys/fs/btrfs/%s/devices/%s" % (fsid, name),
                   "../../../../devices/vbd-%d/block/%s" % (vbd_id(name), name))
        out = run_in_namespace(loop_xsd, g, tmp_path / "state", [
            {"source": two.dev, "target": "/mnt/pool", "type": "btrfs", "options": members},
            {"source": two.dev, "target": "/mnt/home", "type": "btrfs",
             "options": "subvol=@home," + members},
        ])
    size = 128 * MIB
    expected = {}
    expected.update(volume(0, "/dev/xvdb", size, "xvdb", ["/mnt/pool", "/mnt/home"],
                           "btrfs", out["avail"]["/mnt/pool"]))
    expected.update(volume(1, "/dev/xvdc", size, "xvdc", ["/mnt/pool", "/mnt/home"],
                           "btrfs"))
    expected.update(volume(2, "/dev/xvdd", size, "xvdd"))
    assert loop_xsd.tree("data/volumes") == tree_of(expected)


# -- the pvs call under both sh APIs ---------------------------------------------------

def debian_sh_dir() -> Path:
    """Debian 12's python3-sh (1.14), unpacked once into the test cache."""
    base = cache_dir() / "python3-sh"
    found = list(base.glob("root/usr/lib/python3/dist-packages/sh.py"))
    if found:
        return found[0].parent
    base.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["apt-get", "download", "-q", "python3-sh"], cwd=base,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if res.returncode != 0:
        pytest.skip("apt-get download python3-sh failed: %s" % res.stderr.strip()[-200:])
    deb = sorted(base.glob("python3-sh_*.deb"))[-1]
    subprocess.run(["dpkg", "-x", str(deb), str(base / "root")], check=True)
    return base / "root/usr/lib/python3/dist-packages"


PROBE = """
import os, time
import sh
from xe_oneshot.sections import volumes
volumes.PVS_TIMEOUT = 1
print("sh", sh.__version__)
print(repr(volumes.run_pvs()))
if os.path.exists("child.pid"):          # the hanging pvs's child: gone with its group
    time.sleep(0.2)
    try:
        state = open("/proc/%s/stat" % open("child.pid").read().strip()).read()
        print(state.rsplit(")", 1)[1].split()[0])
    except FileNotFoundError:
        print("gone")
"""


@pytest.mark.parametrize("flavour", ["installed", "debian-1.14"])
@pytest.mark.parametrize("case", ["ok", "fails", "missing", "hangs"])
def test_run_pvs_with_both_sh_apis(tmp_path, flavour, case):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    if case != "missing":
        script = bindir / "pvs"
        script.write_text(
            "#!/bin/sh\n"
            '[ "$*" = "--noheadings --units b -o pv_name,pv_free,pv_fmt" ] || exit 99\n'
            '[ -t 1 ] && exit 98\n'                    # stdout must not be a terminal
            + ("echo '  /dev/xvdb2  4194304B lvm2'\n" if case == "ok" else
               "/bin/sleep 30 & echo $! > child.pid; exec /bin/sleep 30\n" if case == "hangs"
               else "echo '  Device lock failed' >&2\nexit 5\n"))
        script.chmod(0o755)
    path = [str(CHECKOUT)]
    if flavour == "debian-1.14":
        path.insert(0, str(debian_sh_dir()))
    env = dict(os.environ, PATH=str(bindir), PYTHONPATH=os.pathsep.join(path))
    res = subprocess.run([sys.executable, "-c", PROBE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=60, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    if case == "hangs":
        version, out, child = res.stdout.splitlines()
        assert child in ("gone", "Z"), child      # Z: dead, waiting for init to reap it
    else:
        version, out = res.stdout.splitlines()
    version = version.split()[1]
    assert version.startswith("1.14.") if flavour == "debian-1.14" else \
        int(version.split(".")[0]) >= (2 if sys.version_info >= (3, 8, 1) else 1)  # sh 2: 3.8.1+
    assert (out, res.stderr.splitlines()) == {
        "ok": ("'  /dev/xvdb2  4194304B lvm2\\n'", []),
        "fails": ("None", ["xe-oneshot: pvs failed (exit 5): Device lock failed"]),
        "missing": ("None", ["xe-oneshot: pvs not found (lvm2 not installed?): LVM "
                             "physical volumes published without usage"]),
        "hangs": ("None", ["xe-oneshot: pvs did not answer within 1 s: LVM usage not "
                           "published"]),
    }[case]
