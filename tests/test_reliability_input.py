"""Reliability: bad input from the guest and from dom0, fuzzed with hypothesis.

The collector runs in-process (``xe_oneshot.cli.main``) against the real daemon (one
per module: the store accumulates, which only makes the checks stricter). After every
example: the run answered 0 or 1 without an exception, the daemon's access log shows no
write outside DESIGN.md's keys, every node of /local/domain/0 is ours (or the test's
seed), and every value is clean text (UTF-8, no control characters, <= 2048 bytes).
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.blockdev import mountinfo_escape
from tests.support.fakeguest import MEMINFO, FakeGuest
from tests.support.reliability import (PARTUUID, foreign_writes, log_mark, make_full_guest,
                                       raw_tree, run_in_process, strangers, unclean_values)
from tests.support.collector import HOME
from xe_oneshot.guest import Root

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: Nodes the tests seed (dom0's, not ours).
SEEDED_PREFIXES = ("device", "backend", "xenserver/device")


@pytest.fixture(scope="module")
def exported_xsd(xenstored, tmp_path_factory):
    """The module's daemon, exported to this process; a state dir for the runs."""
    old = os.environ.get("XENSTORED_PATH")
    os.environ["XENSTORED_PATH"] = str(xenstored.socket)
    xenstored.state = tmp_path_factory.mktemp("state")
    yield xenstored
    if old is None:
        del os.environ["XENSTORED_PATH"]
    else:
        os.environ["XENSTORED_PATH"] = old


def publish(xs, root, *sections, allowed=()):
    """One in-process run; returns (exit status, stderr) after the common checks."""
    mark = log_mark(xs)
    rc, stderr = run_in_process("--root", str(root), "--state-dir", str(xs.state),
                                "--section", ",".join(sections))
    assert rc in (0, 1), stderr
    assert "Traceback" not in stderr
    assert foreign_writes(xs, mark) == []
    tree = raw_tree(xs)
    seeded = [k for k in tree if k.startswith(SEEDED_PREFIXES)]
    assert strangers(tree, seeded + list(allowed)) == []
    assert unclean_values({k: v for k, v in tree.items()
                           if k not in seeded and k not in allowed}) == {}
    return rc, stderr


@contextlib.contextmanager
def guest_dir():
    path = Path(tempfile.mkdtemp(prefix="guest-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _client():
    from xe_oneshot.xenstore import Client
    return Client.open()


def _rm(client, path):
    from xe_oneshot.xenstore import XenStoreError
    try:
        client.rm(path)
    except XenStoreError as err:
        if err.errno != 2:
            raise


def shown(text, limit=2048):
    """A value as it must appear in XenStore: control characters (C0, DEL, C1) as
    spaces, at most ``limit`` bytes of UTF-8 cut at a character boundary."""
    text = "".join(" " if c < " " or "\x7f" <= c <= "\x9f" else c for c in text)
    return text.encode()[:limit].decode("utf-8", "ignore")


# -- /proc/meminfo ---------------------------------------------------------------------

def _meminfo_line():
    name = st.sampled_from(["MemTotal", "MemFree", "MemAvailable", "Buffers", "", "Mem Total"])
    number = st.one_of(st.integers(-10, 10 ** 30).map(str), st.text(max_size=12),
                       st.just("9" * 5000), st.just("\u0663\u0663"), st.just("\u00b2"))
    unit = st.sampled_from([" kB", "", " MB", " kB kB", "\x00"])
    sep = st.sampled_from([":", ": ", ":\t", " ", "::"])
    return st.tuples(name, sep, number, unit).map(lambda t: "%s%s%s%s" % t)


VALID_MEMINFO = MEMINFO.format(total=2048000, free=300000,
                               available="MemAvailable:    1500000 kB\n")

MEMINFO_TEXTS = st.one_of(
    st.binary(max_size=3000),
    st.lists(_meminfo_line(), max_size=8).map(lambda ls: "\n".join(ls).encode()),
    st.integers(0, len(VALID_MEMINFO)).map(lambda n: VALID_MEMINFO[:n].encode()),
    st.just(b""), st.just(b"\xff\xfe" * 5000), st.just(b"MemTotal: 1 kB\n" * 5000))


@FUZZ
@given(data=MEMINFO_TEXTS)
def test_meminfo_garbage_or_truncated(exported_xsd, data):
    before = {k: exported_xsd.read(HOME + "/" + k)
              for k in ("data/meminfo_total", "data/meminfo_free")}
    with guest_dir() as root:
        FakeGuest(root).minimal()
        (root / "proc/meminfo").write_bytes(data)
        rc, stderr = publish(exported_xsd, root, "memory")
    after = {k: exported_xsd.read(HOME + "/" + k) for k in before}
    if rc == 1:
        assert after == before                  # a failed section keeps its keys
        assert len(stderr.splitlines()) == 1 and "section memory failed" in stderr
    else:
        assert all(v is not None and v.isdigit() and max(v) < "\x80" for v in after.values())


# -- the distribution cache file -------------------------------------------------------

_FACT = st.tuples(st.sampled_from(["os_distro", "os_majorver", "os_minorver", "os_uname",
                                   "os_name", "OS_NAME", "os_name ", "export os_name"]),
                  st.sampled_from(["=", " = ", "=="]),
                  st.one_of(st.text(max_size=40), st.just('"\\x1b[2J\\x9b"'),
                            st.just('"' + "x" * 3000), st.just("'a'\"b\"\\ c # d"))
                  ).map(lambda t: "%s%s%s" % t)
CACHE_TEXTS = st.one_of(st.binary(max_size=2000),
                        st.lists(_FACT, max_size=7).map(lambda ls: "\n".join(ls).encode()))


@FUZZ
@given(data=CACHE_TEXTS)
def test_distribution_cache_file_garbage(exported_xsd, data):
    with guest_dir() as root:
        guest = FakeGuest(root).minimal()
        guest.file("/etc/debian_version", "12.7\n")
        (root / "var/cache/xe-linux-distribution").write_bytes(data)
        rc, stderr = publish(exported_xsd, root, "os")
    assert rc == 0, stderr                  # detected in-process when the file is useless
    assert exported_xsd.read(HOME + "/data/os_distro") is not None


@pytest.mark.parametrize("text", ['os_distro=\n', 'os_distro=""\nos_name="x"\n',
                                  'os_distro="  "\n'])
def test_an_empty_os_distro_in_the_cache_means_detect(exported_xsd, text):
    with guest_dir() as root:
        guest = FakeGuest(root).minimal()
        guest.file("/etc/debian_version", "12.7\n")
        guest.distribution(text)
        publish(exported_xsd, root, "os")
    assert exported_xsd.read(HOME + "/data/os_distro") == "debian"
    assert exported_xsd.read(HOME + "/data/os_majorver") == "12"


# -- sysfs and udev files of block devices ---------------------------------------------

SYSFS_TEXT = st.one_of(
    st.just(b""), st.just(b"\n"), st.just(b"9" * 70000), st.just(b"1" * 5000 + b"\n"),
    st.just(b"-1\n"), st.just(b"202:\n"), st.just(b":1\n"), st.just(b"0x10\n"),
    st.just(b"\xff\xfe\n"), st.just(b"1 2\n"), st.binary(max_size=40),
    st.text(max_size=20).map(str.encode), st.integers(-5, 2 ** 70).map(lambda n: b"%d\n" % n))

SYSFS_FILES = ["/sys/block/xvda/size", "/sys/block/xvda/dev", "/sys/block/xvda/xvda1/size",
               "/sys/block/xvda/xvda1/dev", "/sys/block/xvda/xvda1/partition",
               "/sys/block/xvda/xvda2/partition", "/sys/block/xvda/device/nodename",
               "/sys/block/xvda/xvda2/size", "/run/udev/data/b202:1", "/run/udev/data/b202:2",
               "/proc/swaps"]


@FUZZ
@given(files=st.dictionaries(st.sampled_from(SYSFS_FILES), SYSFS_TEXT, min_size=1))
def test_sysfs_and_udev_files_empty_huge_or_non_numeric(exported_xsd, files):
    with guest_dir() as root:
        make_full_guest(root)
        for guest_path, data in files.items():
            path = Path(Root(str(root)).path(guest_path))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        rc, stderr = publish(exported_xsd, root, "volumes")
    assert rc == 0, stderr                      # a garbled device is skipped, not fatal


@pytest.mark.parametrize("guest_path,data", [
    ("/sys/block/xvda/xvda1/partition", b"\xc2\xb2\n"),          # "²"
    ("/sys/block/xvda/xvda1/partition", b"9" * 5000 + b"\n"),
    ("/proc/swaps", b"Filename Type Size Used Priority\n/dev/xvda2 partition \xc2\xb2 0 -2\n"),
    ("/proc/swaps", b"/dev/xvda2 partition 1 " + b"9" * 5000 + b" -2\n"),
], ids=["partition-superscript", "partition-5000-digits", "swaps-superscript",
        "swaps-5000-digits"])
def test_digit_strings_int_refuses_skip_only_that_device(exported_xsd, guest_path, data):
    with guest_dir() as root:
        make_full_guest(root)
        (root / guest_path.lstrip("/")).write_bytes(data)
        rc, stderr = publish(exported_xsd, root, "volumes")
    assert rc == 0, stderr
    assert exported_xsd.read(HOME + "/data/volumes/0/size") == "8589934592"


# -- mount points: spaces, octal escapes, non-UTF-8 --------------------------------------

_COMPONENT = st.binary(min_size=1, max_size=20).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))
MOUNT_POINTS = st.lists(st.lists(_COMPONENT, min_size=1, max_size=3).map(
    lambda parts: b"/" + b"/".join(parts)), min_size=1, max_size=5)


def _escape_bytes(path: bytes) -> bytes:
    """The kernel's mountinfo escaping of a path (space, tab, newline, backslash)."""
    return mountinfo_escape(path.decode("latin-1")).encode("latin-1")


@FUZZ
@given(points=MOUNT_POINTS)
def test_mount_points_with_spaces_escapes_and_non_utf8_bytes(exported_xsd, points):
    with guest_dir() as root:
        make_full_guest(root)
        lines = (root / "proc/self/mountinfo").read_bytes()
        for n, point in enumerate(points):
            os.makedirs(os.fsencode(str(root)) + point, exist_ok=True)
            lines += b"%d 1 202:1 / %s rw,relatime shared:1 - ext4 /dev/xvda1 rw\n" % (
                60 + n, _escape_bytes(point))
        (root / "proc/self/mountinfo").write_bytes(lines)
        rc, stderr = publish(exported_xsd, root, "volumes")
    assert rc == 0, stderr
    expected = []
    for point in points:
        text = point.decode("utf-8", "replace")
        if text not in expected:
            expected.append(text)
    volume = raw_tree(exported_xsd, HOME + "/data/volumes/0")
    published = [volume["mount_points/%d" % k].decode() for k in range(len(expected))]
    assert "mount_points/%d" % len(expected) not in volume
    assert published == [shown(t) for t in expected]     # tab, newline: spaces
    assert exported_xsd.read(HOME + "/data/volumes/0/name") == "/dev/xvda1(%s)" % PARTUUID


@pytest.mark.parametrize("point", ["/mnt/a\vb", "/mnt/a\fb", "/mnt/a\rb", "/mnt/a\x1cb",
                                   "/mnt/a\u00a0b", "/mnt/a\u2028b", "/mnt/a\x85b"])
def test_mount_point_with_unescaped_whitespace_is_kept(exported_xsd, point):
    with guest_dir() as root:
        guest = make_full_guest(root)
        guest.block.mount((202, 1), point, "ext4", "/dev/xvda1")
        publish(exported_xsd, root, "volumes")
    assert raw_tree(exported_xsd, HOME + "/data/volumes/0").get("mount_points/0") == \
        shown(point).encode()


def test_mount_point_text_is_not_decoded_twice(exported_xsd):
    point = "/mnt/\u00c3\u00a9 x"            # "Ã© x": UTF-8 c3 83 c2 a9 20 78
    with guest_dir() as root:
        guest = make_full_guest(root)
        guest.block.mount((202, 1), point, "ext4", "/dev/xvda1")
        publish(exported_xsd, root, "volumes")
    assert raw_tree(exported_xsd, HOME + "/data/volumes/0").get("mount_points/0") == point.encode()


# -- network interface names -----------------------------------------------------------

_IFNAME = st.binary(min_size=1, max_size=15).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..", b"lo"))


@FUZZ
@given(names=st.lists(_IFNAME, max_size=4, unique=True))
def test_interface_names_with_spaces_shell_and_non_utf8_bytes(exported_xsd, names):
    """Hostile VIF names in sysfs beside a VIF named ``lo`` (the host's loopback gives
    it real addresses): the names reach no value, the good VIF is published."""
    with guest_dir() as root:
        FakeGuest(root).minimal()
        net = os.fsencode(str(root / "sys/class/net"))
        for n, name in enumerate([b"lo"] + names):
            d = net + b"/" + name
            os.makedirs(d + b"/device")
            with open(d + b"/device/nodename", "w") as f:
                f.write("device/vif/%d\n" % (9 if name == b"lo" else n))
            with open(d + b"/address", "w") as f:
                f.write("00:16:3e:00:00:%02x\n" % n)
        publish(exported_xsd, root, "network")
    tree = raw_tree(exported_xsd, HOME + "/attr/vif")
    assert tree["9/ipv4/0"] == b"127.0.0.1"
    for value in tree.values():
        for name in names:
            assert name not in value or value in (b"127.0.0.1", b"::1")


# -- a device vanishing between listing and reading (hot-unplug) --------------------------

class RacyRoot(Root):
    """A Root that removes a device for real right after the ``nth`` file access."""

    def __init__(self, base, nth, victim):
        super().__init__(base)
        object.__setattr__(self, "state", {"n": 0, "nth": nth, "victim": victim})

    def _tick(self):
        self.state["n"] += 1
        if self.state["n"] == self.state["nth"]:
            self.state["victim"]()

    def read_bytes(self, *args, **kw):
        self._tick()
        return super().read_bytes(*args, **kw)

    def listdir(self, *args, **kw):
        out = super().listdir(*args, **kw)
        self._tick()
        return out

    def readlink(self, *args, **kw):
        self._tick()
        return super().readlink(*args, **kw)


@contextlib.contextmanager
def racy(nth, victim):
    """Runs of this process read the guest through a RacyRoot."""
    import xe_oneshot.guest as guest_module
    real = guest_module.Root
    guest_module.Root = lambda base: RacyRoot(base, nth, victim)
    try:
        yield
    finally:
        guest_module.Root = real


@FUZZ
@given(nth=st.integers(1, 60), victim=st.sampled_from(["xvdb", "xvdb1", "xvda2"]))
def test_block_device_vanishing_between_listing_and_reading(exported_xsd, nth, victim):
    with guest_dir() as root:
        guest = make_full_guest(root)
        block = guest.block
        block.xen_disk("xvdb", 16, 2097152)
        block.partition("xvdb", 1, (202, 17), 2095104, udev={"ID_FS_TYPE": "xfs"})
        block.mount((202, 17), "/srv", "xfs", "/dev/xvdb1")
        with racy(nth, lambda: block.remove(victim)):
            rc, stderr = publish(exported_xsd, root, "volumes")
    assert rc == 0, stderr
    tree = raw_tree(exported_xsd, HOME + "/data/volumes")
    names = [v.decode() for k, v in sorted(tree.items()) if k.endswith("/name")]
    assert "/dev/xvda1(%s)" % PARTUUID in names           # the others stay
    assert set(names) <= {"/dev/xvda1(%s)" % PARTUUID, "/dev/xvda2", "/dev/xvdb1"}
    survivors = {"xvdb": {"/dev/xvda2"}, "xvdb1": {"/dev/xvda2"},
                 "xvda2": {"/dev/xvdb1"}}[victim]
    assert survivors <= set(names)
    sizes = [v for k, v in tree.items() if k.endswith("/size")]
    assert len(sizes) == len(names)
    assert set(sizes) <= {b"8589934592", b"1073741824", b"%d" % (2095104 * 512)}


def test_network_interface_vanishing_between_listing_and_reading(exported_xsd, tmp_path):
    FakeGuest(tmp_path).minimal()
    for nth in range(1, 12):
        for n, name in enumerate(["xeracevif0", "xeracevif1", "lo"]):  # not on the host but lo
            d = tmp_path / "sys/class/net" / name / "device"
            d.mkdir(parents=True, exist_ok=True)
            (d / "nodename").write_text("device/vif/%d\n" % n)
        with racy(nth, lambda: shutil.rmtree(tmp_path / "sys/class/net/xeracevif1")):
            rc, stderr = publish(exported_xsd, tmp_path, "network")
        assert rc == 0, stderr
        tree = raw_tree(exported_xsd, HOME + "/attr/vif")
        assert tree["2/ipv4/0"] == b"127.0.0.1", nth
        assert all(k.startswith("2") for k in tree), tree


# -- what dom0 says: SR-IOV VF MACs, disk backends ---------------------------------------

_XS_NAME = st.text("abcXYZ019_-@", min_size=1, max_size=8)
_MAC = st.one_of(st.just(b"00:00:00:00:00:00"), st.just(b" 00:00:00:00:00:00\n"),
                 st.just(b"00-00-00-00-00-00"), st.just(b"00:00:00:00:00"),
                 st.just(b"00:00:00:00:00:00:00"), st.just(b"zz:zz:zz:zz:zz:zz"),
                 st.just(b"0" * 2048), st.binary(max_size=30))


@FUZZ
@given(vfs=st.dictionaries(_XS_NAME, _MAC, max_size=4))
def test_malformed_sriov_vf_macs(exported_xsd, vfs):
    """The VF interface here is ``lo`` (MAC 00:00:00:00:00:00, real addresses)."""
    with _client() as c:
        _rm(c, "xenserver")
        for ident, mac in vfs.items():
            c.write("xenserver/device/net-sriov-vf/%s/mac" % ident, mac)
    with guest_dir() as root:
        FakeGuest(root).minimal()
        d = root / "sys/class/net/lo"
        (d / "device").mkdir(parents=True)
        (d / "address").write_text("00:00:00:00:00:00\n")
        publish(exported_xsd, root, "network")
    tree = raw_tree(exported_xsd, HOME + "/xenserver/attr/net-sriov-vf")
    matching = sorted(i for i, mac in vfs.items()
                      if mac.strip().lower() == b"00:00:00:00:00:00")
    if matching:
        assert tree[matching[0] + "/ipv4/0"] == b"127.0.0.1"
    assert {k.split("/")[0] for k in tree} == set(matching[:1])


_BACKEND = st.one_of(
    st.sampled_from(["/local/domain/0/data", "/local/domain/0/backend/../../data",
                     "/tool/xenstored", "/local/domain/0/backend/vbd/7/51712/dev",
                     "/local/domain/5/backend/vbd/5/51712", "/local/domain/0/backend",
                     "backend/vbd/7/51712", "/local/domain/0/backend/vbd/7/51712/",
                     "/local/domain/0/backend/vbd/7/51712\n/x", "x" * 3000]),
    st.text(max_size=40))
_DEV = st.one_of(st.just("xvda"), st.text(max_size=30), st.just("d" * 2048),
                 st.just("\x1b[31mred\x07"))


@FUZZ
@given(backend=_BACKEND, dev=_DEV)
def test_disk_backend_path_pointing_elsewhere(exported_xsd, backend, dev):
    with _client() as c:
        _rm(c, "device")
        _rm(c, "/local/domain/5")
        c.write("device/vbd/51712/backend", backend[:2000])
        c.write("/local/domain/5/backend/vbd/5/51712/dev", dev)
        c.write("/local/domain/0/backend/vbd/7/51712/dev", dev)
    with guest_dir() as root:
        make_full_guest(root)
        rc, _ = publish(exported_xsd, root, "volumes")
    assert rc == 0
    extent = raw_tree(exported_xsd, HOME + "/data/volumes/0")["extents/0"].decode()
    assert extent in ("", shown(dev))


# -- garbage already under our keys (an older agent, a person, a half-done tool) -----------

_NAME = st.text("abzAZ09_@-", min_size=1, max_size=5)
#: Planted values are text: what others leave on nodes we do not write is not ours to
#: check (a control character on data/volumes/0 itself would stay, see below).
_PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs"))
_OWNED_ROOTS = ["attr/vif", "xenserver/attr/net-sriov-vf", "data/volumes", "attr/PVAddons"]
_GARBAGE = st.dictionaries(
    st.tuples(st.sampled_from(_OWNED_ROOTS), st.lists(_NAME, min_size=1, max_size=3)).map(
        lambda t: "/".join([t[0]] + t[1])),
    st.one_of(st.text(_PRINTABLE, max_size=20), st.just("192.0.2.1"), st.just("x" * 2000)),
    max_size=8)
_NEIGHBOURS = st.dictionaries(
    st.tuples(st.sampled_from(["data", "attr", "control", "xenserver/attr"]), _NAME).map(
        lambda t: "%s/zz-%s" % t),
    st.text(_PRINTABLE, max_size=20), max_size=4)


@FUZZ
@given(garbage=_GARBAGE, neighbours=_NEIGHBOURS)
def test_garbage_under_our_keys_is_replaced_and_neighbours_kept(exported_xsd, garbage, neighbours):
    """With a VIF (``lo``, the host's loopback addresses): stale nodes under attr/vif go
    one by one, not with the whole subtree."""
    import psutil
    from tests.support.reliability import expected_full, full_seed
    with _client() as c:
        for root in ("attr", "data", "control", "xenserver", "device", "backend"):
            _rm(c, root)
        for path, value in list(garbage.items()) + list(neighbours.items()) + full_seed():
            c.write(path, value)
    with guest_dir() as root:
        make_full_guest(root)
        (root / "sys/class/net/lo/device").mkdir(parents=True)
        (root / "sys/class/net/lo/device/nodename").write_text("device/vif/9\n")
        publish(exported_xsd, root, "all", allowed=neighbours)
    lo = {a.address for a in psutil.net_if_addrs()["lo"]}
    vif = {"9/ipv4/0": "127.0.0.1"}
    if "::1" in lo:
        vif["9/ipv6/0"] = "::1"
    expected = {k: v for k, v in expected_full(vif=vif).items()
                if not k.startswith(SEEDED_PREFIXES)}
    tree = {k: v.decode() for k, v in raw_tree(exported_xsd).items()
            if not k.startswith(SEEDED_PREFIXES)}
    tree.pop("data/updated", None)
    for path, value in neighbours.items():          # not ours: left exactly as they were
        assert tree.pop(path) == value
    for parent in ("xenserver/attr", "xenserver"):  # made for a neighbour or the garbage
        if parent not in expected and not any(k.startswith(parent + "/") for k in tree):
            tree.pop(parent, None)
    # Exactly our nodes; leaf values exact. A value planted on a node that has children
    # of ours (data/volumes/0 = "0") stays: the toolstack reads only leaves, and clearing
    # it would cost a read of every interior node on every run.
    interior = {k.rsplit("/", 1)[0] for k in expected if "/" in k}
    assert sorted(tree) == sorted(expected)
    assert {k: v for k, v in tree.items() if k not in interior} == \
        {k: v for k, v in expected.items() if k not in interior}
