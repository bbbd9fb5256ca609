"""The volumes section's key layout (``volume_keys``) on hand-built records: no sysfs,
no mounts, no XenStore. What a guest's devices become is tested in test_volumes*.py."""

from xe_oneshot.sections import Collected
from xe_oneshot.sections.volumes import Usage, Volume, volume_keys

GIB = 1 << 30


def test_no_volumes_no_keys():
    assert volume_keys([]) == Collected({}, {})


def test_unmounted_volume_has_name_size_and_extent_only():
    out = volume_keys([Volume("xvdc", 4 * GIB, extent="xvdc")])
    assert out.values == {"data/volumes/0/extents/0": "xvdc",
                          "data/volumes/0/name": "/dev/xvdc",
                          "data/volumes/0/size": "4294967296"}
    assert out.tolerance == {}


def test_partuuid_goes_into_the_name_and_a_non_xen_disk_has_an_empty_extent():
    out = volume_keys([Volume("sda1", 2048, partuuid="5f2c1a3e-01")])
    assert out.values == {"data/volumes/0/extents/0": "",
                          "data/volumes/0/name": "/dev/sda1(5f2c1a3e-01)",
                          "data/volumes/0/size": "2048"}


def test_several_mount_points_in_order_then_filesystem_and_free_with_1_percent():
    usage = Usage(["/", "/srv/bind", "/var/lib/x"], "btrfs", 123456789)
    out = volume_keys([Volume("xvda1", 20 * GIB + 99, "xvda", "ab-01", usage)])
    assert out.values == {
        "data/volumes/0/extents/0": "xvda",
        "data/volumes/0/name": "/dev/xvda1(ab-01)",
        "data/volumes/0/size": "21474836579",
        "data/volumes/0/mount_points/0": "/",
        "data/volumes/0/mount_points/1": "/srv/bind",
        "data/volumes/0/mount_points/2": "/var/lib/x",
        "data/volumes/0/filesystem": "btrfs",
        "data/volumes/0/free": "123456789",
    }
    assert out.tolerance == {"data/volumes/0/free": 214748365}     # size // 100
    assert [k.split("/", 3)[3] for k in out.values] == [
        "extents/0", "name", "size", "mount_points/0", "mount_points/1",
        "mount_points/2", "filesystem", "free"]          # the order keys are written in


def test_usage_without_free_publishes_no_free_and_no_tolerance():
    """A btrfs member after the first, a hung statvfs: mount points and type only."""
    out = volume_keys([Volume("xvdb", GIB, "xvdb", "", Usage(["/data"], "btrfs", None))])
    assert out.values == {"data/volumes/0/extents/0": "xvdb",
                          "data/volumes/0/name": "/dev/xvdb",
                          "data/volumes/0/size": "1073741824",
                          "data/volumes/0/mount_points/0": "/data",
                          "data/volumes/0/filesystem": "btrfs"}
    assert out.tolerance == {}


def test_free_zero_is_published():
    out = volume_keys([Volume("xvda2", GIB, "xvda", "", Usage(["[SWAP]"], "swap", 0))])
    assert out.values["data/volumes/0/free"] == "0"
    assert out.values["data/volumes/0/mount_points/0"] == "[SWAP]"


def test_numbering_follows_the_list_and_each_volume_keeps_its_own_extent():
    vols = [Volume("xvda1", 10, "xvda", "u1", Usage(["/"], "ext4", 5)),
            Volume("xvda2", 20, "xvda", "", Usage(["[LVM]"], "lvm2", 7)),
            Volume("nvme0n1", 30)]
    values = volume_keys(vols).values
    assert {k: v for k, v in values.items() if k.endswith(("/name", "/extents/0"))} == {
        "data/volumes/0/extents/0": "xvda", "data/volumes/0/name": "/dev/xvda1(u1)",
        "data/volumes/1/extents/0": "xvda", "data/volumes/1/name": "/dev/xvda2",
        "data/volumes/2/extents/0": "", "data/volumes/2/name": "/dev/nvme0n1"}
    assert values["data/volumes/1/filesystem"] == "lvm2"
    assert "data/volumes/2/filesystem" not in values


def test_layout_does_not_change_the_records():
    usage = Usage(["/"], "ext4", 1)
    vol = Volume("xvda1", 100, "xvda", "", usage)
    volume_keys([vol])
    assert vol == Volume("xvda1", 100, "xvda", "", Usage(["/"], "ext4", 1))
