"""The network section over real interfaces: a network namespace per test (veth,
bridge, macvlan), the collector running inside it, a fake sysfs mirroring it under
--root, and the real XenStore daemon for SR-IOV MACs and published indices.

Between runs these tests store the collected keys the way the publisher does (the
section's subtrees replaced by what it reported), so that index stability is checked
on the section alone; tests/test_network_e2e.py does the same through the CLI.
"""

from tests.support.netns import xapi_networks
from xe_oneshot.sections import network



def publish(xsd, values):
    """Replace the section's subtrees in the daemon with ``values``."""
    for owned in network.OWNS:
        xsd.run_tool("xenstore-rm", owned, check=False)
    args = [x for item in sorted(values.items()) for x in item]
    if args:
        xsd.run_tool("xenstore-write", *args)


def step(ns, root, xsd, vifs, devices=()):
    """Mirror sysfs, collect inside the namespace, publish; return the keys."""
    ns.mirror(root, vifs, devices)
    values = ns.collect(root, xsd.env())
    publish(xsd, values)
    return values


def test_veth_ipv4_ipv6_secondary_and_labels(ns, tmp_path, fresh_xenstored):
    ns.veth("eth0", "peer0")
    ns.addr("eth0", "192.0.2.10/24")
    ns.addr("eth0", "192.0.2.11/24")                     # secondary
    ns.addr("eth0", "10.0.0.1/8")                        # second primary
    ns.addr("eth0", "192.0.2.12/24", "label", "eth0:1")  # ifconfig-style alias
    ns.addr("eth0", "fe80::10/64")
    ns.addr("eth0", "2001:db8::10/64")
    ns.addr("peer0", "198.51.100.1/24")                  # not a VIF: not reported
    values = step(ns, tmp_path, fresh_xenstored, {"eth0": "0"})
    # kernel order: primaries, then secondaries, then other labels; IPv6 global first
    assert values == {
        "attr/vif/0/ipv4/0": "192.0.2.10",
        "attr/vif/0/ipv4/1": "10.0.0.1",
        "attr/vif/0/ipv4/2": "192.0.2.11",
        "attr/vif/0/ipv4/3": "192.0.2.12",
        "attr/vif/0/ipv6/0": "2001:db8::10",
        "attr/vif/0/ipv6/1": "fe80::10",
    }
    tree = fresh_xenstored.tree("attr/vif")
    assert xapi_networks(tree)["0/ip"] == "192.0.2.10"


def test_any_interface_name_is_a_vif_by_its_nodename(ns, tmp_path, fresh_xenstored):
    ns.veth("enX0", "p0")
    ns.veth("lan-uplink", "p1")
    ns.veth("eth7", "p2")
    ns.addr("enX0", "192.0.2.1/32")
    ns.addr("lan-uplink", "192.0.2.2/32")
    ns.addr("eth7", "192.0.2.3/32")   # no nodename in the fake tree: not a VIF
    values = step(ns, tmp_path, fresh_xenstored, {"enX0": "0", "lan-uplink": "5"})
    assert values == {"attr/vif/0/ipv4/0": "192.0.2.1", "attr/vif/5/ipv4/0": "192.0.2.2"}


def test_bridge_over_the_vif_holds_the_ip(ns, tmp_path, fresh_xenstored):
    ns.veth("eth0", "p0")
    ns.bridge("br0", "eth0")
    ns.addr("br0", "192.0.2.10/24")
    ns.addr("br0", "2001:db8::1/64")
    values = step(ns, tmp_path, fresh_xenstored, {"eth0": "0"})
    assert values == {"attr/vif/0/ipv4/0": "192.0.2.10",
                      "attr/vif/0/ipv6/0": "2001:db8::1"}
    assert xapi_networks(fresh_xenstored.tree("attr/vif")) == {
        "0/ip": "192.0.2.10", "0/ipv4/0": "192.0.2.10", "0/ipv6/0": "2001:db8::1"}


def test_bridge_of_two_vifs_stands_in_for_a_bond(ns, tmp_path, fresh_xenstored):
    ns.veth("eth0", "p0")
    ns.veth("eth1", "p1")
    ns.bridge("bond0", "eth0", "eth1")
    ns.addr("eth1", "192.0.2.99/24")   # its own address comes before the bond's
    ns.addr("bond0", "192.0.2.20/24")
    values = step(ns, tmp_path, fresh_xenstored, {"eth0": "0", "eth1": "1"})
    assert values == {"attr/vif/0/ipv4/0": "192.0.2.20",
                      "attr/vif/1/ipv4/0": "192.0.2.99",
                      "attr/vif/1/ipv4/1": "192.0.2.20"}


def test_macvlan_stands_in_for_a_vlan_and_stacks_deeper(ns, tmp_path, fresh_xenstored):
    ns.veth("eth0", "p0")
    ns.macvlan("eth0.100", "eth0")
    ns.addr("eth0", "192.0.2.30/24")
    ns.addr("eth0.100", "198.51.100.1/24")
    ns.addr("eth0.100", "2001:db8:100::1/64")
    values = step(ns, tmp_path, fresh_xenstored, {"eth0": "0"})
    assert values == {"attr/vif/0/ipv4/0": "192.0.2.30",
                      "attr/vif/0/ipv4/1": "198.51.100.1",
                      "attr/vif/0/ipv6/0": "2001:db8:100::1"}
    # a bridge over the "VLAN": three levels up from the VIF
    ns.bridge("br100", "eth0.100")
    ns.addr("br100", "203.0.113.1/24")
    values = step(ns, tmp_path, fresh_xenstored, {"eth0": "0"})
    assert values == {"attr/vif/0/ipv4/0": "192.0.2.30",
                      "attr/vif/0/ipv4/1": "198.51.100.1",
                      "attr/vif/0/ipv4/2": "203.0.113.1",
                      "attr/vif/0/ipv6/0": "2001:db8:100::1"}


def test_indices_are_stable_and_reused(ns, tmp_path, fresh_xenstored):
    xsd = fresh_xenstored
    ns.veth("eth0", "p0")
    ns.addr("eth0", "192.0.2.1/24")
    ns.addr("eth0", "192.0.2.2/24")       # secondaries (same subnet)
    ns.addr("eth0", "192.0.2.3/24")
    ns.addr("eth0", "2001:db8::1/64")
    assert step(ns, tmp_path, xsd, {"eth0": "0"}) == {
        "attr/vif/0/ipv4/0": "192.0.2.1", "attr/vif/0/ipv4/1": "192.0.2.2",
        "attr/vif/0/ipv4/2": "192.0.2.3", "attr/vif/0/ipv6/0": "2001:db8::1"}
    # a secondary goes: the others keep their indices, the hole stays
    ns.ip("addr", "del", "192.0.2.2/24", "dev", "eth0")
    assert step(ns, tmp_path, xsd, {"eth0": "0"}) == {
        "attr/vif/0/ipv4/0": "192.0.2.1", "attr/vif/0/ipv4/2": "192.0.2.3",
        "attr/vif/0/ipv6/0": "2001:db8::1"}
    # a newcomer takes the lowest free index; the primary keeps 0
    ns.addr("eth0", "192.0.2.4/24")
    ns.addr("eth0", "192.0.2.5/24")
    assert step(ns, tmp_path, xsd, {"eth0": "0"}) == {
        "attr/vif/0/ipv4/0": "192.0.2.1", "attr/vif/0/ipv4/1": "192.0.2.4",
        "attr/vif/0/ipv4/2": "192.0.2.3", "attr/vif/0/ipv4/3": "192.0.2.5",
        "attr/vif/0/ipv6/0": "2001:db8::1"}
    assert xapi_networks(xsd.tree("attr/vif"))["0/ip"] == "192.0.2.1"
    # a new primary in another subnet is listed after the first: nothing moves
    ns.addr("eth0", "198.51.100.1/24")
    values = step(ns, tmp_path, xsd, {"eth0": "0"})
    assert values["attr/vif/0/ipv4/0"] == "192.0.2.1"
    assert values["attr/vif/0/ipv4/4"] == "198.51.100.1"


def test_primary_replaced_by_a_promoted_secondary(ns, tmp_path, fresh_xenstored):
    """With promote_secondaries the kernel makes a secondary the primary when the
    primary goes: it moves to index 0 (xapi's IP is the VM's primary again)."""
    xsd = fresh_xenstored
    ns.veth("eth0", "p0")
    ns.run(["sysctl", "-q", "-w", "net.ipv4.conf.eth0.promote_secondaries=1"])
    ns.addr("eth0", "192.0.2.1/24")
    ns.addr("eth0", "192.0.2.2/24")
    ns.addr("eth0", "192.0.2.3/24")
    assert step(ns, tmp_path, xsd, {"eth0": "0"}) == {
        "attr/vif/0/ipv4/0": "192.0.2.1", "attr/vif/0/ipv4/1": "192.0.2.2",
        "attr/vif/0/ipv4/2": "192.0.2.3"}
    ns.ip("addr", "del", "192.0.2.1/24", "dev", "eth0")
    assert step(ns, tmp_path, xsd, {"eth0": "0"}) == {
        "attr/vif/0/ipv4/0": "192.0.2.2", "attr/vif/0/ipv4/2": "192.0.2.3"}
    assert xapi_networks(xsd.tree("attr/vif"))["0/ip"] == "192.0.2.2"


def test_removed_vif_and_address_less_vif(ns, tmp_path, fresh_xenstored):
    ns.veth("eth0", "p0")
    ns.veth("eth1", "p1")
    ns.veth("eth2", "p2")   # a VIF without any address: no node at all
    ns.addr("eth0", "192.0.2.1/32")
    ns.addr("eth1", "192.0.2.2/32")
    vifs = {"eth0": "0", "eth1": "1", "eth2": "2"}
    assert step(ns, tmp_path, fresh_xenstored, vifs) == {
        "attr/vif/0/ipv4/0": "192.0.2.1", "attr/vif/1/ipv4/0": "192.0.2.2"}
    ns.ip("link", "del", "eth1")
    assert step(ns, tmp_path, fresh_xenstored, vifs) == {
        "attr/vif/0/ipv4/0": "192.0.2.1"}
    # a link that is down keeps its IPv4 addresses configured: still reported
    ns.ip("link", "set", "eth0", "down")
    assert step(ns, tmp_path, fresh_xenstored, vifs) == {
        "attr/vif/0/ipv4/0": "192.0.2.1"}


def test_sriov_vf_by_mac(ns, tmp_path, tmp_path_factory):
    from tests.support.xenstored import XenStored
    ns.veth("ens5", "p0")
    ns.veth("ens6", "p1")
    ns.veth("eth0", "p2")
    ns.bridge("br5", "ens5")
    ns.addr("ens5", "192.0.2.5/32")
    ns.addr("br5", "192.0.2.55/24")
    ns.addr("ens6", "192.0.2.6/32")
    ns.addr("eth0", "192.0.2.1/32")
    snap = ns.snapshot()
    dom = "/local/domain/0/xenserver/device/net-sriov-vf/"
    seed = [(dom + "0/mac", snap["ens5"]["address"].upper()),   # case does not matter
            (dom + "1/mac", "not-a-mac"),
            (dom + "2/mac", snap["ens6"]["address"]),
            (dom + "3/mac", snap["br5"]["address"])]   # br5 copies ens5's MAC
    with XenStored(tmp_path_factory.mktemp("xsdvf"), seed) as xsd:
        # ens6 has no device directory (a virtual link): never a VF
        values = step(ns, tmp_path, xsd, {"eth0": "0"}, devices=["ens5"])
        assert values == {
            "attr/vif/0/ipv4/0": "192.0.2.1",
            "xenserver/attr/net-sriov-vf/0/ipv4/0": "192.0.2.5",
            "xenserver/attr/net-sriov-vf/0/ipv4/1": "192.0.2.55"}
        assert xapi_networks(xsd.tree("xenserver/attr/net-sriov-vf")) == {
            "0/ip": "192.0.2.5", "0/ipv4/0": "192.0.2.5", "0/ipv4/1": "192.0.2.55"}
        # the VF goes away: its keys with it
        ns.ip("link", "del", "ens5")
        assert step(ns, tmp_path, xsd, {"eth0": "0"}, devices=["ens5"]) == {
            "attr/vif/0/ipv4/0": "192.0.2.1"}


def test_print_mode_numbers_from_zero(ns, tmp_path, fresh_xenstored):
    ns.veth("eth0", "p0")
    ns.addr("eth0", "192.0.2.1/24")
    ns.addr("eth0", "192.0.2.2/24")
    ns.addr("eth0", "192.0.2.3/24")
    ns.mirror(tmp_path, {"eth0": "0"})
    publish(fresh_xenstored, {"attr/vif/0/ipv4/0": "192.0.2.1",
                              "attr/vif/0/ipv4/1": "192.0.2.3",
                              "attr/vif/0/ipv4/2": "192.0.2.2"})
    assert ns.collect(tmp_path, fresh_xenstored.env()) == {
        "attr/vif/0/ipv4/0": "192.0.2.1", "attr/vif/0/ipv4/1": "192.0.2.3",
        "attr/vif/0/ipv4/2": "192.0.2.2"}
    assert ns.collect(tmp_path) == {
        "attr/vif/0/ipv4/0": "192.0.2.1", "attr/vif/0/ipv4/1": "192.0.2.2",
        "attr/vif/0/ipv4/2": "192.0.2.3"}


def test_scale_64_vifs_16_addresses_each(ns, tmp_path, fresh_xenstored):
    """64 VIFs x 16 addresses (8 IPv4 + 8 IPv6), all published: collect() with the
    published indices read back stays well under a second (measured ~0.1 s)."""
    commands = []
    for i in range(64):
        commands += ["link add eth%d type veth peer name p%d" % (i, i),
                     "link set eth%d addrgenmode none" % i, "link set eth%d up" % i]
        for j in range(8):
            commands.append("addr add 10.%d.%d.1/32 dev eth%d" % (i, j, i))
            commands.append("addr add 2001:db8:%x:%x::1/64 dev eth%d nodad" % (i, j, i))
    ns.batch(commands)
    vifs = {"eth%d" % i: str(i) for i in range(64)}
    values = step(ns, tmp_path, fresh_xenstored, vifs)
    assert len(values) == 64 * 16
    assert values["attr/vif/63/ipv4/7"] == "10.63.7.1"
    timed = ns.time_collect(tmp_path, fresh_xenstored.env())
    assert timed["keys"] == 64 * 16
    assert timed["seconds"] < 1.0, timed
    # and the indices held: collecting again gives the same keys
    assert ns.collect(tmp_path, fresh_xenstored.env()) == values


def test_label_attack_address_stays_with_the_interface_it_is_on(ns, tmp_path,
                                                                 fresh_xenstored):
    """Labels are free text: an address on eth0 labelled ``eth1`` (another VIF) or
    ``backup`` (no interface) is eth0's, by the interface index the kernel gives."""
    ns.veth("eth0", "p0")
    ns.veth("eth1", "p1")
    ns.addr("eth0", "192.0.2.10/24")
    ns.addr("eth0", "198.51.100.50/24", "label", "eth1")
    ns.addr("eth0", "203.0.113.51/24", "label", "backup")
    ns.addr("eth0", "192.0.2.12/24", "label", "eth0:7")
    ns.addr("eth1", "10.1.0.1/24")
    values = step(ns, tmp_path, fresh_xenstored, {"eth0": "0", "eth1": "1"})
    assert values == {
        "attr/vif/0/ipv4/0": "192.0.2.10",
        "attr/vif/0/ipv4/1": "198.51.100.50",
        "attr/vif/0/ipv4/2": "203.0.113.51",
        "attr/vif/0/ipv4/3": "192.0.2.12",
        "attr/vif/1/ipv4/0": "10.1.0.1",
    }
    assert xapi_networks(fresh_xenstored.tree("attr/vif"))["1/ip"] == "10.1.0.1"


def test_primary_is_index_0_again_after_remove_and_readd(ns, tmp_path, fresh_xenstored):
    """A network restart while a VIP (keepalived) was added meanwhile: xapi's IP of
    the VIF is the kernel's primary again, the VIP moves to the lowest free index."""
    xsd = fresh_xenstored
    ns.veth("eth0", "p0")
    ns.addr("eth0", "192.0.2.10/24")
    ns.addr("eth0", "2001:db8::10/64")
    assert step(ns, tmp_path, xsd, {"eth0": "0"})["attr/vif/0/ipv4/0"] == "192.0.2.10"
    # the primary goes (DHCP lease lost, ifdown); the VIP arrives meanwhile
    ns.ip("addr", "del", "192.0.2.10/24", "dev", "eth0")
    ns.addr("eth0", "192.0.2.100/32")
    assert step(ns, tmp_path, xsd, {"eth0": "0"}) == {
        "attr/vif/0/ipv4/0": "192.0.2.100", "attr/vif/0/ipv6/0": "2001:db8::10"}
    # network restart: addresses flushed, the primary first, the VIP after it
    ns.ip("addr", "flush", "dev", "eth0")
    ns.addr("eth0", "192.0.2.10/24")
    ns.addr("eth0", "2001:db8::10/64")
    ns.addr("eth0", "192.0.2.100/32")
    assert step(ns, tmp_path, xsd, {"eth0": "0"}) == {
        "attr/vif/0/ipv4/0": "192.0.2.10", "attr/vif/0/ipv4/1": "192.0.2.100",
        "attr/vif/0/ipv6/0": "2001:db8::10"}
    assert xapi_networks(xsd.tree("attr/vif"))["0/ip"] == "192.0.2.10"
