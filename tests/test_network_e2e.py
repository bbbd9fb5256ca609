"""End to end: ``python3 -m xe_oneshot --section network`` run inside a network
namespace over a fake sysfs (--root), publishing into the real daemon. After each step
the exact ``attr/vif`` subtree is checked, and what the toolstack derives from it."""

import os
import sys

import pytest

from tests.support.netns import CHECKOUT, xapi_networks



class Guest:
    """One guest: its namespace, fake root, state dir and the daemon."""

    def __init__(self, ns, tmp_path, xsd):
        self.ns = ns
        self.root = tmp_path / "root"
        self.state = tmp_path / "state"
        self.xsd = xsd
        self.vifs = {}
        self.devices = []

    def run(self, *extra, section="network"):
        self.ns.mirror(self.root, self.vifs, self.devices)
        env = self.xsd.env()
        env["PYTHONPATH"] = str(CHECKOUT)
        res = self.ns.run([sys.executable, "-m", "xe_oneshot", "--section", section,
                           "--root", str(self.root), "--state-dir", str(self.state)]
                          + list(extra), env=env, check=False)
        assert res.returncode == 0, res.stderr
        assert "Traceback" not in res.stderr
        return res

    def tree(self, path="attr/vif"):
        return self.xsd.tree(path)


@pytest.fixture
def net_guest(ns, tmp_path, fresh_xenstored):
    return Guest(ns, tmp_path, fresh_xenstored)


def test_addresses_published_and_kept_stable(net_guest):
    ns, xsd = net_guest.ns, net_guest.xsd
    ns.veth("eth0", "p0")
    ns.veth("eth1", "p1")
    ns.bridge("br0", "eth1")
    ns.addr("eth0", "192.0.2.1/24")
    ns.addr("eth0", "192.0.2.2/24")              # a secondary
    ns.addr("eth0", "fe80::1/64")
    ns.addr("br0", "198.51.100.1/24")
    net_guest.vifs = {"eth0": "0", "eth1": "1"}
    net_guest.run()
    assert net_guest.tree() == {
        "0": "", "0/ipv4": "", "0/ipv4/0": "192.0.2.1", "0/ipv4/1": "192.0.2.2",
        "0/ipv6": "", "0/ipv6/0": "fe80::1",
        "1": "", "1/ipv4": "", "1/ipv4/0": "198.51.100.1"}
    assert xapi_networks(net_guest.tree()) == {
        "0/ip": "192.0.2.1", "0/ipv4/0": "192.0.2.1", "0/ipv4/1": "192.0.2.2",
        "0/ipv6/0": "fe80::1", "1/ip": "198.51.100.1", "1/ipv4/0": "198.51.100.1"}
    assert xsd.read("data/updated")

    # nothing changed: nothing written at all
    mark = xsd.log_mark()
    net_guest.run()
    assert xsd.writes_since(mark) == []

    # the secondary is replaced: the newcomer takes its free index 1, the primary stays
    # at 0 untouched; IPv6 is gone: its node goes with it
    ns.ip("addr", "del", "192.0.2.2/24", "dev", "eth0")
    ns.ip("addr", "del", "fe80::1/64", "dev", "eth0")
    ns.addr("eth0", "192.0.2.3/24")
    mark = xsd.log_mark()
    net_guest.run()
    assert net_guest.tree() == {
        "0": "", "0/ipv4": "", "0/ipv4/0": "192.0.2.1", "0/ipv4/1": "192.0.2.3",
        "1": "", "1/ipv4": "", "1/ipv4/0": "198.51.100.1"}
    assert xapi_networks(net_guest.tree())["0/ip"] == "192.0.2.1"
    changed = sorted((e.op, e.path.split("/local/domain/0/")[-1])
                     for e in xsd.writes_since(mark))
    assert ("write", "attr/vif/0/ipv4/1") in changed
    assert not any(p.startswith("attr/vif/0/ipv4/0") or p.startswith("attr/vif/1")
                   for _, p in changed)

    # the VIF eth1 is unplugged: its subtree goes in the same run
    ns.ip("link", "del", "eth1")
    net_guest.run()
    assert net_guest.tree() == {
        "0": "", "0/ipv4": "", "0/ipv4/0": "192.0.2.1", "0/ipv4/1": "192.0.2.3"}

    # the last address goes: nothing left under attr/vif
    ns.ip("addr", "flush", "dev", "eth0")
    net_guest.run()
    assert net_guest.tree() == {}
    assert xapi_networks(net_guest.tree()) == {}


def test_bond_and_vlan_stand_ins(net_guest):
    ns = net_guest.ns
    ns.veth("eth0", "p0")
    ns.veth("eth1", "p1")
    ns.bridge("bond0", "eth0", "eth1")
    ns.macvlan("bond0.100", "bond0")
    ns.addr("bond0", "192.0.2.10/24")
    ns.addr("bond0.100", "198.51.100.10/24")
    ns.addr("bond0.100", "2001:db8:100::10/64")
    net_guest.vifs = {"eth0": "0", "eth1": "1"}
    net_guest.run()
    per_vif = {"ipv4": "", "ipv4/0": "192.0.2.10", "ipv4/1": "198.51.100.10",
               "ipv6": "", "ipv6/0": "2001:db8:100::10"}
    expected = {"0": "", "1": ""}
    for vif in ("0", "1"):
        expected.update({"%s/%s" % (vif, k): v for k, v in per_vif.items()})
    assert net_guest.tree() == expected
    assert xapi_networks(net_guest.tree())["1/ip"] == "192.0.2.10"


def test_sriov_vf_end_to_end(ns, tmp_path, tmp_path_factory):
    from tests.support.xenstored import XenStored
    ns.veth("ens5", "p0")
    ns.veth("eth0", "p1")
    ns.addr("ens5", "192.0.2.50/24")
    ns.addr("ens5", "2001:db8::50/64")
    ns.addr("eth0", "192.0.2.1/24")
    mac = ns.snapshot()["ens5"]["address"]
    seed = [("/local/domain/0/xenserver/device/net-sriov-vf/2/mac", mac.upper())]
    with XenStored(tmp_path_factory.mktemp("xsdvf"), seed) as xsd:
        guest = Guest(ns, tmp_path, xsd)
        guest.vifs = {"eth0": "0"}
        guest.devices = ["ens5"]
        guest.run()
        assert guest.tree("xenserver/attr/net-sriov-vf") == {
            "2": "", "2/ipv4": "", "2/ipv4/0": "192.0.2.50",
            "2/ipv6": "", "2/ipv6/0": "2001:db8::50"}
        assert guest.tree() == {"0": "", "0/ipv4": "", "0/ipv4/0": "192.0.2.1"}
        assert xapi_networks(guest.tree("xenserver/attr/net-sriov-vf"))["2/ip"] == \
            "192.0.2.50"
        # the device MAC table is dom0's: never touched
        assert xsd.read("xenserver/device/net-sriov-vf/2/mac") == mac.upper()
        ns.ip("link", "del", "ens5")
        guest.run()
        assert guest.tree("xenserver/attr/net-sriov-vf") == {}
        assert guest.tree() == {"0": "", "0/ipv4": "", "0/ipv4/0": "192.0.2.1"}


def test_print_mode_needs_no_xenstore(ns, tmp_path):
    import json
    ns.veth("enX0", "p0")
    ns.addr("enX0", "192.0.2.7/24")
    ns.addr("enX0", "fe80::7/64")
    ns.mirror(tmp_path, {"enX0": "3"})
    env = {k: v for k, v in os.environ.items() if k != "XENSTORED_PATH"}
    env["PYTHONPATH"] = str(CHECKOUT)
    res = ns.run([sys.executable, "-m", "xe_oneshot", "--section", "network", "--root",
                  str(tmp_path), "--format", "json"], env=env, check=False)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"attr/vif/3/ipv4/0": "192.0.2.7",
                                      "attr/vif/3/ipv6/0": "fe80::7"}


def test_overlong_sriov_vf_id_from_dom0_is_ignored_and_the_rest_published(
        ns, tmp_path, tmp_path_factory):
    """The attack: dom0's VF table names an id whose keys would exceed XenStore's
    2048-byte path limit (the device path itself is legal). Every run used to exit 4
    with nothing published; now that VF is left out with one warning."""
    from tests.support.xenstored import XenStored
    ns.veth("ens5", "p0")
    ns.veth("ens6", "p1")
    ns.veth("eth0", "p2")
    ns.addr("ens5", "192.0.2.50/24")
    ns.addr("ens6", "192.0.2.60/24")
    ns.addr("eth0", "192.0.2.1/24")
    snap = ns.snapshot()
    dev = "xenserver/device/net-sriov-vf/"
    long_id = "v" * (2048 - len(dev) - len("/mac"))     # its mac path: exactly 2048
    assert len("xenserver/attr/net-sriov-vf/%s/ipv4/0" % long_id) > 2048
    seed = [("/local/domain/0/" + dev + long_id + "/mac", snap["ens5"]["address"]),
            ("/local/domain/0/" + dev + "1/mac", snap["ens6"]["address"])]
    with XenStored(tmp_path_factory.mktemp("xsdlong"), seed) as xsd:
        guest = Guest(ns, tmp_path, xsd)
        guest.vifs = {"eth0": "0"}
        guest.devices = ["ens5", "ens6"]
        res = guest.run()
        assert guest.tree("xenserver/attr/net-sriov-vf") == {
            "1": "", "1/ipv4": "", "1/ipv4/0": "192.0.2.60"}
        assert guest.tree() == {"0": "", "0/ipv4": "", "0/ipv4/0": "192.0.2.1"}
        assert xapi_networks(guest.tree("xenserver/attr/net-sriov-vf"))["1/ip"] == \
            "192.0.2.60"
        warnings = res.stderr.splitlines()
        assert len(warnings) == 1 and "SR-IOV VF id of 2014 characters ignored" in \
            warnings[0], res.stderr
        assert long_id not in res.stderr


def timer_group() -> str:
    """The section group the 60 s timer starts (its ``Unit=xe-oneshot@<group>.service``)."""
    text = (CHECKOUT / "hooks/xe-oneshot-ephemeral.timer").read_text()
    unit = next(line.split("=", 1)[1].strip() for line in text.splitlines()
                if line.startswith("Unit="))
    assert unit.startswith("xe-oneshot@") and unit.endswith(".service"), unit
    return unit[len("xe-oneshot@"):-len(".service")].split("_", 1)[0]


def test_address_added_with_no_event_is_published_by_the_timers_run(net_guest):
    """``ip addr add`` by hand (or a VIP, SLAAC, ifupdown without hooks): no event runs
    the network section; the timer's next run must publish it (issue 13.1)."""
    from tests.support.fakeguest import FakeGuest
    FakeGuest(net_guest.root).minimal()
    ns = net_guest.ns
    ns.veth("eth0", "p0")
    ns.addr("eth0", "192.0.2.10/24")
    net_guest.vifs = {"eth0": "0"}
    group = timer_group()
    net_guest.run(section=group)
    assert xapi_networks(net_guest.tree()) == {"0/ip": "192.0.2.10", "0/ipv4/0": "192.0.2.10"}
    ns.addr("eth0", "192.0.2.100/32")                 # a VIP, no event
    ns.addr("eth0", "2001:db8::5/64")                 # SLAAC-like, no event
    net_guest.run(section=group)
    assert xapi_networks(net_guest.tree()) == {
        "0/ip": "192.0.2.10", "0/ipv4/0": "192.0.2.10", "0/ipv4/1": "192.0.2.100",
        "0/ipv6/0": "2001:db8::5"}
    # and the next tick with nothing changed writes nothing
    mark = net_guest.xsd.log_mark()
    net_guest.run(section=group)
    assert net_guest.xsd.writes_since(mark) == []
