"""The volumes section's parsers, on strings: mountinfo, udev db, pvs, /proc/swaps, names."""

import random

import pytest

from xe_oneshot import mountinfo, udevdb
from xe_oneshot.sections import volumes
from xe_oneshot.sections.volumes import BlockDevice, PhysicalVolume, Swap


# -- mountinfo -------------------------------------------------------------------

def test_mountinfo_line_from_the_kernel_documentation():
    m = mountinfo.parse_line(
        "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue")
    assert m == mountinfo.Mount(98, 0, "/mnt1", "/mnt/parent", "ext3", "/dev/root", 36)
    assert m.devno == (98, 0)


@pytest.mark.parametrize("optional", ["", "shared:1", "shared:7 master:2 propagate_from:3",
                                      "unbindable"])
def test_mountinfo_any_number_of_optional_fields(optional):
    line = "40 1 202:1 / /boot rw,relatime %s - ext4 /dev/xvda1 rw" % optional
    m = mountinfo.parse_line(" ".join(line.split()))
    assert (m.major, m.minor, m.mount_point, m.fstype, m.source) == (
        202, 1, "/boot", "ext4", "/dev/xvda1")


@pytest.mark.parametrize("escaped, plain", [
    (r"/mnt/my\040disk", "/mnt/my disk"),
    (r"/mnt/tab\011here", "/mnt/tab\there"),
    (r"/mnt/new\012line", "/mnt/new\nline"),
    (r"/mnt/back\134slash", "/mnt/back\\slash"),
    (r"/mnt/\040lead\040and\040trail\040", "/mnt/ lead and trail "),
    ("/mnt/caf\u00e9", "/mnt/caf\u00e9"),            # UTF-8 is not escaped by the kernel
    (r"/mnt/not\09escape", r"/mnt/not\09escape"),     # not three octal digits: kept
])
def test_mountinfo_octal_escapes(escaped, plain):
    assert mountinfo.unescape(escaped) == plain
    line = "41 1 202:17 / %s rw - xfs /dev/xvdb1 rw" % escaped
    assert mountinfo.parse_line(line).mount_point == plain


@pytest.mark.parametrize("point", ["/mnt/a\vb", "/mnt/a\fb", "/mnt/a\rb", "/mnt/a\x1cb",
                                   "/mnt/a\u00a0b", "/mnt/a\u2028b", "/mnt/a\x85b"])
def test_mountinfo_whitespace_the_kernel_does_not_escape_is_part_of_the_name(point):
    text = "40 1 202:1 / %s rw,relatime shared:1 - ext4 /dev/xvda1 rw\n" % point
    mounts, bad = mountinfo.parse(text.encode("utf-8"))
    assert (bad, [m.mount_point for m in mounts]) == (0, [point])


def test_mountinfo_text_is_decoded_once():
    point = "/mnt/\u00c3\u00a9 x"                     # "Ã© x", not "é x"
    line = "40 1 202:1 / %s rw - ext4 /dev/xvda1 rw" % point.replace(" ", "\\040")
    assert mountinfo.parse_line(line.encode("utf-8")).mount_point == point
    assert mountinfo.parse_line(line).mount_point == point


def test_mountinfo_bytes_that_are_not_utf8_are_replaced():
    line = b"40 1 202:1 / /mnt/\xff\\376x rw - ext4 /dev/xvda1 rw"
    assert mountinfo.parse_line(line).mount_point == "/mnt/\ufffd\ufffdx"


def test_mountinfo_empty_source_field():
    m = mountinfo.parse_line(b"40 1 0:50 / /mnt rw - tmpfs  rw")
    assert (m.fstype, m.source) == ("tmpfs", "")


def test_mountinfo_escaped_bytes_of_a_utf8_name_are_decoded():
    # Seen when a name carries a byte the kernel escapes next to UTF-8 bytes.
    assert mountinfo.unescape("/mnt/\\303\\251t\\303\\251") == "/mnt/\u00e9t\u00e9"


@pytest.mark.parametrize("line", [
    "garbage",
    "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 ext3 /dev/root rw",   # no " - "
    "36 35 98:0 /mnt1 /mnt/parent rw - ext3",                               # truncated
    "36 35 980 /mnt1 /mnt/parent rw - ext3 /dev/root rw",                   # no colon
    "36 35 x:y /mnt1 /mnt/parent rw - ext3 /dev/root rw",
])
def test_mountinfo_bad_lines_raise(line):
    with pytest.raises(ValueError):
        mountinfo.parse_line(line)


def test_mountinfo_parse_counts_bad_lines_and_keeps_order():
    text = ("22 1 0:21 / /proc rw - proc proc rw\n"
            "broken line\n\n"
            "40 1 202:1 / / rw - ext4 /dev/xvda1 rw\n"
            "41 40 202:1 /srv /mnt/srv rw - ext4 /dev/xvda1 rw\n")
    mounts, bad = mountinfo.parse(text)
    assert bad == 1
    assert [(m.mount_point, m.root) for m in mounts] == [
        ("/proc", "/"), ("/", "/"), ("/mnt/srv", "/srv")]


# -- udev database ---------------------------------------------------------------

UDEV_SAMPLE = """S:disk/by-partuuid/5f2c1a3e-01
S:disk/by-uuid/0b8a1b9e-6a8f-4c4e-9d8e-0d1f0e9a7c11
W:3
I:4213231
E:ID_FS_UUID=0b8a1b9e-6a8f-4c4e-9d8e-0d1f0e9a7c11
E:ID_FS_TYPE=ext4
E:ID_PART_ENTRY_UUID=5f2c1a3e-01
E:ID_PART_ENTRY_TYPE=0x83
E:ODD=a=b
E:=nameless
G:systemd
Q:systemd
V:1
"""


def test_udev_db_properties():
    props = udevdb.parse(UDEV_SAMPLE)
    assert props == {"ID_FS_UUID": "0b8a1b9e-6a8f-4c4e-9d8e-0d1f0e9a7c11",
                     "ID_FS_TYPE": "ext4", "ID_PART_ENTRY_UUID": "5f2c1a3e-01",
                     "ID_PART_ENTRY_TYPE": "0x83", "ODD": "a=b"}


def test_udev_db_reader_missing_record_is_empty(tmp_path):
    from xe_oneshot.guest import Root
    (tmp_path / "run/udev/data").mkdir(parents=True)
    (tmp_path / "run/udev/data/b202:1").write_text(UDEV_SAMPLE)
    assert udevdb.read_block(Root(str(tmp_path)), 202, 1)["ID_FS_TYPE"] == "ext4"
    assert udevdb.read_block(Root(str(tmp_path)), 202, 2) == {}


# -- pvs -------------------------------------------------------------------------

def test_pvs_output():
    text = ("  /dev/xvdb1  1069547520B lvm2\n"
            "  /dev/mapper/mpatha 0B lvm2\n"
            "  WARNING: Device /dev/xvdc has size of 0 sectors\n"
            "  [unknown]   4194304B lvm2\n"
            "  /dev/xvdd   4194304B\n"
            "  /dev/xvde   lots lvm2\n"
            "  /dev/xvdf   20971520 lvm1\n")
    assert volumes.parse_pvs(text) == [
        PhysicalVolume("/dev/xvdb1", 1069547520, "lvm2"),
        PhysicalVolume("/dev/mapper/mpatha", 0, "lvm2"),
        PhysicalVolume("/dev/xvdf", 20971520, "lvm1"),
    ]


def test_pvs_matched_by_device_number_then_name():
    vols = [BlockDevice("xvdb1", "xvdb", (202, 17), 100, 1),
            BlockDevice("xvdc", "xvdc", (202, 32), 100),
            BlockDevice("xvdd1", "xvdd", (202, 49), 100, 1)]
    pvs = [PhysicalVolume("/dev/mapper/mpatha", 5, "lvm2"),   # rdev of xvdb1
           PhysicalVolume("/dev/xvdc", 6, "lvm2"),            # no such node here: by name
           PhysicalVolume("/dev/sdz", 7, "lvm2")]             # not ours
    devnos = {"/dev/mapper/mpatha": (202, 17)}
    found = volumes.match_pvs(pvs, vols, devno_of=devnos.get)
    assert found == {"xvdb1": pvs[0], "xvdc": pvs[1]}


# -- /proc/swaps -----------------------------------------------------------------

def test_proc_swaps():
    text = ("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
            "/dev/xvda5                              partition\t1046524\t\t1024\t\t-2\n"
            "/swap\\040file                          file\t\t524284\t\t0\t\t-3\n"
            "/dev/zram0                              partition\t2097148\t\t0\t\t100\n")
    assert volumes.parse_swaps(text) == [
        Swap("/dev/xvda5", "partition", 1046524 * 1024, 1024 * 1024),
        Swap("/swap file", "file", 524284 * 1024, 0),
        Swap("/dev/zram0", "partition", 2097148 * 1024, 0),
    ]


# -- names and numbers -----------------------------------------------------------

def test_disk_order_of_absurd_names_does_not_fail():
    names = ["sd" + "9" * 5000, "sd1", "nvme" + "0" * 30 + "1n1", "nvme1n1", "xvd" + "z" * 40]
    ordered = sorted(names, key=volumes.disk_order)
    assert ordered.index("sd1") < ordered.index("sd" + "9" * 5000)
    assert ordered.index("nvme1n1") < ordered.index("sd1")


def test_disk_natural_order():
    natural = (["hda", "hdb"]
               + ["nvme0n1", "nvme0n2", "nvme1n1", "nvme2n1", "nvme10n1"]
               + ["sda", "sdb", "sdz", "sdaa", "sdab", "sdba", "sdzz", "sdaaa"]
               + ["sr0", "sr1", "sr10"]
               + ["vda", "vdb"]
               + ["xvda", "xvdb", "xvdp", "xvdq", "xvdz", "xvdaa", "xvdaz", "xvdba"])
    shuffled = list(natural)
    random.Random(5).shuffle(shuffled)
    assert sorted(shuffled, key=volumes.disk_order) == natural


@pytest.mark.parametrize("text, number", [
    ("0", 0), ("512\n", 512), ("18446744073709551615", 18446744073709551615),
    ("", None), ("-1", None), ("1.5", None), ("\u00b2", None), ("\u0663", None),
    ("1" * 21, None), ("9" * 5000, None), ("0x10", None), ("1 2", None),
])
def test_number(text, number):
    assert volumes.parse_number(text) == number


@pytest.mark.parametrize("text, devno", [("202:1\n", (202, 1)), ("259:0", (259, 0))])
def test_devno(text, devno):
    assert volumes.parse_devno(text) == devno


@pytest.mark.parametrize("text", ["2021", "", "a:b", "\u00b2:1", "1:" + "9" * 5000])
def test_devno_garbage(text):
    with pytest.raises(ValueError):
        volumes.parse_devno(text)


@pytest.mark.parametrize("text, ok", [
    ("device/vbd/51712", True), ("device/vbd/268440320", True), ("device/vbd3/51712", True),
    ("device/vbd/5171a", False), ("device/vbd/", False), ("device//51712", False),
    ("device/vbd/51712/x", False), ("/device/vbd/51712", False), ("../../etc/passwd", False),
    ("device/v.d/51712", False), ("", False),
])
def test_nodename(text, ok):
    assert volumes.is_nodename(text) is ok


@pytest.mark.parametrize("path, ok", [
    ("/local/domain/0/backend/vbd/7/51712", True),
    ("/local/domain/12/backend/vbd3/7/51712", True),       # a driver domain's backend
    ("/local/domain/0/backend/vbd", True),
    ("/local/domain/0/backend", False),
    ("/local/domain/0/device/vbd/51712", False),
    ("/local/domain/x/backend/vbd/7/51712", False),
    ("/local/domain/0/backend/vbd/7/51712/", False),
    ("/local/domain/0/backend/vbd//51712", False),
    ("/local/domain/0/backend/../../../vm", False),
    ("local/domain/0/backend/vbd/7/51712", False),
    ("/vm/0/backend/vbd/7/51712", False),
    ("data", False), ("", False),
])
def test_backend_path(path, ok):
    assert volumes.is_backend(path) is ok


def test_garbled_partition_number_falls_back_to_the_name(tmp_path):
    from tests.support.blockdev import FakeBlock
    from xe_oneshot.guest import Root
    from xe_oneshot.sections import Context
    g = FakeBlock(tmp_path)
    g.xen_disk("xvda", 0, 8 << 21)
    for number in (1, 2, 10):
        g.partition("xvda", number, (202, number), 2048 * number)
    g.file("/sys/block/xvda/xvda10/partition", "\u00b2\n")
    g.file("/sys/block/xvda/xvda2/partition", "9" * 5000 + "\n")
    values = volumes.collect(Context(root=Root(str(tmp_path)))).values
    assert [values["data/volumes/%d/name" % n] for n in range(3)] == [
        "/dev/xvda1", "/dev/xvda2", "/dev/xvda10"]
