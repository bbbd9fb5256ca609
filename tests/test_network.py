"""The network section's parts: parsers, index policy, real bond/VLAN/VIF sysfs layouts
(fake trees), SR-IOV MACs and published indices read from the real daemon."""

import contextlib
import os
import socket
from pathlib import Path

import pytest

from xe_oneshot.guest import Root
from xe_oneshot.netlink import IfAddr
from xe_oneshot.sections import Context, network


# -- parsers ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,vifid", [
    ("device/vif/0\n", "0"),
    ("device/vif/12", "12"),
    ("device/vbd/768", None),
    ("device/vif/", None),
    ("device/vif/1a", None),
    ("device/vif/\u00b2", None),
    ("device/vif/-1", None),
    ("device/vif/0/x", None),
    ("xenbus/device/vif/0", None),
    ("", None),
    (None, None),
])
def test_parse_vif_nodename(text, vifid):
    assert network.parse_vif_nodename(text) == vifid


@pytest.mark.parametrize("text,mac", [
    ("00:16:3E:0A:0b:0C\n", "00:16:3e:0a:0b:0c"),
    ("00:16:3e:0a:0b", None),
    ("00-16-3e-0a-0b-0c", None),
    ("00:16:3e:0a:0b:0c:0d", None),
    ("zz:16:3e:0a:0b:0c", None),
    ("", None),
    (None, None),
])
def test_parse_mac(text, mac):
    assert network.parse_mac(text) == mac


@pytest.mark.parametrize("text,ok", [
    ("0", True), ("7", True), ("12", True), ("07", False), ("-1", False), ("", False),
    ("x", False), ("1.0", False), ("\u0661", False)])
def test_is_index(text, ok):
    assert network.is_index(text) is ok


@pytest.mark.parametrize("family,text,canonical", [
    (socket.AF_INET, "192.0.2.10", "192.0.2.10"),
    (socket.AF_INET6, "fe80::216:3eff:fe00:1%eth0", "fe80::216:3eff:fe00:1"),
    (socket.AF_INET6, "2001:DB8:0:0::0:5", "2001:db8::5"),
    (socket.AF_INET6, "192.0.2.10", None),
    (socket.AF_INET, "2001:db8::5", None),
    (socket.AF_INET, "not an address", None),
])
def test_canonical(family, text, canonical):
    assert network.canonical(family, text) == canonical


# -- primary and de-duplication ---------------------------------------------------------

def _entry(address, flags=0, scope=0, index=2):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return IfAddr(index, family, address, flags, scope)


def test_primary_is_the_widest_scope_non_secondary_own_address_first_listed():
    addrs = network.Addresses()
    addrs.add(_entry("169.254.1.1", scope=253), 0)      # listed first, link scope
    addrs.add(_entry("192.0.2.10"), 0)
    addrs.add(_entry("10.0.0.1"), 0)                    # a second primary, later
    addrs.add(_entry("192.0.2.11", flags=0x01), 0)      # IFA_F_SECONDARY
    addrs.add(_entry("198.51.100.1"), 1)                # a stacked device's
    addrs.add(_entry("fe80::1", scope=253), 0)
    addrs.add(_entry("2001:db8::7", flags=0x01), 0)     # IFA_F_TEMPORARY (privacy)
    addrs.add(_entry("2001:db8::6", flags=0x20), 0)     # IFA_F_DEPRECATED
    addrs.add(_entry("2001:db8::1"), 1)                 # global, on a bridge over it
    assert addrs.primary == {"ipv4": "192.0.2.10", "ipv6": "2001:db8::1"}
    assert addrs.by_family["ipv4"] == ["169.254.1.1", "192.0.2.10", "10.0.0.1",
                                       "192.0.2.11", "198.51.100.1"]


def test_stacked_device_gives_the_primary_when_the_interface_has_none():
    addrs = network.Addresses()
    addrs.add(_entry("192.0.2.20", index=5), 1)
    addrs.add(_entry("192.0.2.21", index=5, flags=0x01), 1)
    addrs.add(_entry("198.51.100.1", index=6), 2)
    assert addrs.primary == {"ipv4": "192.0.2.20"}


class _Counted(str):
    """A str that counts the comparisons made with it (in ``calls``)."""

    __slots__ = ()
    calls = [0]

    def __eq__(self, other):
        self.calls[0] += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_dedup_and_indices_of_20k_addresses_are_linear():
    """The attack: 20 000 addresses on one interface (2.3 s when de-duplicating was
    quadratic, before the per-family cap). Counted comparisons, not time: a quadratic
    pass makes ~2*10^8 of them, a linear one about none (hash lookups)."""
    n = 20000
    texts = [_Counted("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255)) for i in range(n)]
    addrs = network.Addresses()
    for text in texts + texts[:1000]:                  # 1000 duplicates too
        addrs.add(_entry(text), 0)
    wanted = addrs.by_family["ipv4"]
    assert len(wanted) == n
    published = {text: i + 1 for i, text in enumerate(reversed(texts))}
    assigned = network.assign_indices(wanted, published, addrs.primary["ipv4"])
    assert assigned[0] == texts[0]
    assert len(assigned) == n
    assert _Counted.calls[0] <= 4 * n, _Counted.calls[0]


# -- index policy ----------------------------------------------------------------------

@pytest.mark.parametrize("current,published,primary,expected", [
    # the primary takes 0; the address that held it moves to the lowest free index
    (["p", "v"], {"v": 0}, "p", {0: "p", 1: "v"}),
    (["p", "v", "w"], {"v": 0, "w": 1}, "p", {0: "p", 1: "w", 2: "v"}),
    # the primary was published elsewhere: it leaves that index
    (["a", "p"], {"a": 0, "p": 3}, "p", {0: "p", 1: "a"}),
    # unchanged: nothing moves
    (["p", "b", "c"], {"p": 0, "c": 1, "b": 2}, "p", {0: "p", 1: "c", 2: "b"}),
])
def test_assign_indices_primary_takes_zero(current, published, primary, expected):
    assert network.assign_indices(current, published, primary) == expected


@pytest.mark.parametrize("current,published,expected", [
    (["a", "b"], {}, {0: "a", 1: "b"}),
    (["a", "b"], {"b": 0, "a": 1}, {1: "a", 0: "b"}),
    # a vanished address frees its index, the newcomer takes the lowest free one
    (["c", "b"], {"a": 0, "b": 1}, {0: "c", 1: "b"}),
    (["a", "d", "e"], {"a": 0, "b": 1, "c": 2}, {0: "a", 1: "d", 2: "e"}),
    # holes are filled from the bottom; kept indices never move
    (["x", "y", "z"], {"z": 3}, {3: "z", 0: "x", 1: "y"}),
    ([], {"a": 0}, {}),
])
def test_assign_indices(current, published, expected):
    assert network.assign_indices(current, published) == expected


def test_assign_indices_caps_newcomers_not_published_addresses():
    assert network.assign_indices(["a", "b", "c", "d"], {"d": 5}, limit=3) == {
        5: "d", 0: "a", 1: "b"}
    assert network.assign_indices(["a", "b", "c"], {"a": 0, "b": 1, "c": 2}, limit=2) == {
        0: "a", 1: "b", 2: "c"}
    assert network.assign_indices(["p", "a", "b"], {"a": 0, "b": 1}, "p", limit=2) == {
        0: "p", 1: "b"}
    many = ["10.0.0.%d" % i for i in range(100)]
    assert len(network.assign_indices(many, {})) == network.MAX_PER_FAMILY


# -- sysfs layouts (fake trees) -------------------------------------------------------------

def _iface(root: Path, name: str, devpath: str, address: str = "00:16:3e:00:00:01",
           links=(), nodename=None, perm=None) -> None:
    """An interface the way sysfs lays it out: /sys/devices/<devpath>/net/<name>, a
    class/net symlink, links given as sysfs-relative device paths of their target."""
    sysdir = root / "sys/devices" / devpath / "net" / name
    sysdir.mkdir(parents=True)
    (sysdir / "address").write_text(address + "\n")
    depth = len(Path(devpath).parts) + 2  # from .../net/<name> back to /sys/devices
    for link, target in links:
        os.symlink("../" * depth + target, str(sysdir / link))
    if nodename is not None:
        (root / "sys/devices" / devpath / "nodename").write_text(nodename + "\n")
        os.symlink("../../../" + devpath.rsplit("/", 1)[-1], str(sysdir / "device"))
    elif devpath != "virtual":
        os.symlink("../../../" + devpath.rsplit("/", 1)[-1], str(sysdir / "device"))
    if perm is not None:
        (sysdir / "bonding_slave").mkdir()
        (sysdir / "bonding_slave/perm_hwaddr").write_text(perm + "\n")
    classnet = root / "sys/class/net"
    classnet.mkdir(parents=True, exist_ok=True)
    os.symlink("../../devices/%s/net/%s" % (devpath, name), str(classnet / name))


def _bond_vlan_bridge_tree(root: Path) -> None:
    """eth0 + eth1 (VIFs 0, 1) in bond0; VLAN bond0.100 on it, bridge br100 over the
    VLAN; ens5 a PCI NIC (an SR-IOV VF) with VLAN ens5.7."""
    bond0 = "virtual/net/bond0"
    _iface(root, "eth0", "vif-0", "00:16:3e:00:00:aa", nodename="device/vif/0",
           perm="00:16:3e:00:00:aa",
           links=[("master", bond0), ("upper_bond0", bond0)])
    _iface(root, "eth1", "vif-1", "00:16:3e:00:00:aa", nodename="device/vif/1",
           perm="00:16:3e:00:00:bb",
           links=[("master", bond0), ("upper_bond0", bond0)])
    _iface(root, "bond0", "virtual", "00:16:3e:00:00:aa",
           links=[("lower_eth0", "vif-0/net/eth0"), ("lower_eth1", "vif-1/net/eth1"),
                  ("upper_bond0.100", "virtual/net/bond0.100")])
    _iface(root, "bond0.100", "virtual", "00:16:3e:00:00:aa",
           links=[("lower_bond0", bond0), ("master", "virtual/net/br100"),
                  ("upper_br100", "virtual/net/br100")])
    _iface(root, "br100", "virtual", "00:16:3e:00:00:aa",
           links=[("lower_bond0.100", "virtual/net/bond0.100")])
    _iface(root, "ens5", "pci0000:00/0000:00:05.0", "0A:00:00:00:00:05",
           links=[("upper_ens5.7", "virtual/net/ens5.7")])
    _iface(root, "ens5.7", "virtual", "0a:00:00:00:00:05",
           links=[("lower_ens5", "pci0000:00/0000:00:05.0/net/ens5")])
    _iface(root, "lo", "virtual", "00:00:00:00:00:00")


def test_real_bond_vlan_bridge_layout(tmp_path):
    _bond_vlan_bridge_tree(tmp_path)
    root = Root(str(tmp_path))
    names = root.listdir(network.SYS_NET)
    targets = network.find_targets(root, names, {"0a:00:00:00:00:05": "3"})
    assert targets == {
        "eth0": network.Target("attr/vif", "0"),
        "eth1": network.Target("attr/vif", "1"),
        "ens5": network.Target("xenserver/attr/net-sriov-vf", "3"),
    }
    assert network.stacked(root, "eth0") == ["bond0", "bond0.100", "br100"]
    assert network.stacked(root, "eth1") == ["bond0", "bond0.100", "br100"]
    assert network.stacked(root, "ens5") == ["ens5.7"]
    assert network.stacked(root, "br100") == []


def test_virtual_devices_never_match_a_vf_mac(tmp_path):
    """bond0, its VLAN and the bridge carry eth0's MAC; only device-backed interfaces
    are VFs, and a bond slave is matched by its permanent MAC."""
    _bond_vlan_bridge_tree(tmp_path)
    root = Root(str(tmp_path))
    # VIFs win over a MAC match; eth1's permanent MAC is ...bb, not the bond's ...aa
    targets = network.find_targets(root, root.listdir(network.SYS_NET),
                                   {"00:16:3e:00:00:aa": "7", "00:16:3e:00:00:bb": "8"})
    assert sorted(targets) == ["eth0", "eth1"]
    assert all(t.prefix == "attr/vif" for t in targets.values())


def test_stacking_loop_terminates(tmp_path):
    net = tmp_path / "sys/class/net"
    for name in ("a", "b", "c"):
        (net / name).mkdir(parents=True)
    os.symlink("../b", str(net / "a/master"))
    os.symlink("../c", str(net / "b/upper_c"))
    os.symlink("../a", str(net / "c/upper_a"))
    os.symlink("../b", str(net / "c/master"))
    assert network.stacked(Root(str(tmp_path)), "a") == ["b", "c"]


def test_no_interfaces_no_keys(tmp_path):
    (tmp_path / "sys/class/net").mkdir(parents=True)
    assert network.collect(Context(root=Root(str(tmp_path)))).values == {}


def test_owns_covers_every_key_shape():
    assert network.OWNS == ("attr/vif", "xenserver/attr/net-sriov-vf")


# -- XenStore reads (real daemon) ---------------------------------------------------------

DOM = "/local/domain/0/"


@contextlib.contextmanager
def _reader(xsd):
    """The collector's own XenStore view (xsreader over the client) of daemon ``xsd``."""
    from xe_oneshot.xenstore import Client
    from xe_oneshot.xsreader import ClientReader
    with Client.open(timeout=10, env={"XENSTORED_PATH": str(xsd.socket)}) as client:
        yield ClientReader(client)


def test_vf_macs_from_xenstore(tmp_path):
    from tests.support.xenstored import XenStored
    seed = [(DOM + "xenserver/device/net-sriov-vf/1/mac", "0A:00:00:00:00:01"),
            (DOM + "xenserver/device/net-sriov-vf/2/mac", "garbage"),
            (DOM + "xenserver/device/net-sriov-vf/3/other", "x"),
            (DOM + "xenserver/device/net-sriov-vf/4/mac", "0a:00:00:00:00:01"),
            (DOM + "xenserver/device/net-sriov-vf/5/mac", "0a:00:00:00:00:05")]
    with XenStored(tmp_path, seed) as xsd, _reader(xsd) as reader:
        macs = network.vf_ids_by_mac(reader)
    assert macs == {"0a:00:00:00:00:01": "1", "0a:00:00:00:00:05": "5"}


def test_no_xenstore_no_vfs():
    assert network.vf_ids_by_mac(None) == {}
    assert network.published_indices(None, "attr/vif/0/ipv4") == {}


def test_published_indices_from_xenstore(tmp_path):
    from tests.support.xenstored import XenStored
    seed = [(DOM + "attr/vif/0/ipv4/0", "192.0.2.10"),
            (DOM + "attr/vif/0/ipv4/3", "192.0.2.13"),
            (DOM + "attr/vif/0/ipv4/5", "192.0.2.10"),   # twice: lowest index wins
            (DOM + "attr/vif/0/ipv4/x", "192.0.2.99"),   # not an integer: not kept
            (DOM + "attr/vif/0/ipv4/07", "192.0.2.98"),  # not canonical: not kept
            (DOM + "attr/vif/0/ipv4/4", "junk"),
            (DOM + "attr/vif/0/ipv6/2", "FE80::0:1")]
    with XenStored(tmp_path, seed) as xsd, _reader(xsd) as reader:
        v4 = network.published_indices(reader, "attr/vif/0/ipv4")
        v6 = network.published_indices(reader, "attr/vif/0/ipv6")
        none = network.published_indices(reader, "attr/vif/9/ipv4")
    assert v4 == {"192.0.2.10": 0, "192.0.2.13": 3}
    assert v6 == {"fe80::1": 2}
    assert none == {}


def test_bond_of_two_vfs_matched_by_permanent_macs(tmp_path):
    """Active-backup bond of two SR-IOV VFs: the bond rewrote both slaves' ``address``
    to its own MAC; each VF is found by its ``bonding_slave/perm_hwaddr``."""
    bond = "virtual/net/bond1"
    _iface(tmp_path, "ens5", "pci0000:00/0000:00:05.0", "0a:00:00:00:00:05",
           perm="0a:00:00:00:00:05", links=[("master", bond), ("upper_bond1", bond)])
    _iface(tmp_path, "ens6", "pci0000:00/0000:00:06.0", "0a:00:00:00:00:05",
           perm="0a:00:00:00:00:06", links=[("master", bond), ("upper_bond1", bond)])
    _iface(tmp_path, "bond1", "virtual", "0a:00:00:00:00:05")
    root = Root(str(tmp_path))
    targets = network.find_targets(root, root.listdir(network.SYS_NET),
                                   {"0a:00:00:00:00:05": "0", "0a:00:00:00:00:06": "1"})
    assert targets == {"ens5": network.Target(network.VF_PREFIX, "0"),
                       "ens6": network.Target(network.VF_PREFIX, "1")}


def test_interface_index_from_sysfs_else_the_kernels_by_name(tmp_path):
    net = tmp_path / "sys/class/net"
    for name, text in (("eth0", "7\n"), ("bad", "x7\n")):
        (net / name).mkdir(parents=True)
        (net / name / "ifindex").write_text(text)
    (net / "lo").mkdir()                           # a hand-made tree without ifindex
    root = Root(str(tmp_path))
    assert network.interface_index(root, "eth0") == 7
    assert network.interface_index(root, "bad") is None
    assert network.interface_index(root, "lo") == socket.if_nametoindex("lo")
    assert network.interface_index(root, "xe-no-such-if") is None
