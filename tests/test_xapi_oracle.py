"""The consumer oracle (tests/support/xapi_oracle.py) against xapi's own unit tests
(ocaml/tests/test_guest_agent.ml, ported case by case with their tree helpers) and
against the facts read in xen-api's and OCaml's source."""

import pytest

from tests.support import xapi_oracle as xo

# -- test_guest_agent.ml's tree helpers, ported ----------------------------------------
# Both build a tree where a child added or touched last is listed first.


def _networks_tree(paths):
    """``Networks``' ``construct_tree`` and ``list`` (a tree of names, no values)."""
    root = ["", []]

    def add(node, parts):
        if not parts:
            return node
        name, children = node
        for child in children:
            if child[0] == parts[0]:
                grown = add(child, parts[1:])
                return [name, [grown] + [c for c in children if c[0] != parts[0]]]
        return [name, [add([parts[0], []], parts[1:])] + children]

    for path in paths:
        root = add(root, [p for p in path.split("/") if p])

    def list_(path):
        children = root[1]
        for part in [p for p in path.split("/") if p]:
            found = [c for c in children if c[0] == part]
            if not found:
                return []
            children = found[0][1]
        return [c[0] for c in children]
    return list_


def _mtree(pairs):
    """``Initial_guest_metrics``' ``construct_mtree``, ``list`` and ``lookup``:
    ``("leaf", name, value)`` or ``("tree", name, children)``."""
    def add(parts, value, node):
        kind, name, body = node
        if kind == "leaf":
            raise ValueError("Can't add a leaf on a leaf")
        if not parts:
            if body:
                raise ValueError("Can't add a leaf on a tree node")
            return ("leaf", name, value)
        for child in body:
            if child[1] == parts[0]:
                if child[0] == "leaf":
                    raise ValueError("Can't overwrite an existing leaf")
                grown = add(parts[1:], value, child)
                return ("tree", name, [grown] + [c for c in body if c[1] != parts[0]])
        return ("tree", name, [add(parts[1:], value, ("tree", parts[0], []))] + body)

    root = ("tree", "", [])
    for path, value in pairs:
        root = add([p for p in path.split("/") if p], value, root)

    def list_(path):
        node = root
        for part in [p for p in path.split("/") if p]:
            found = [c for c in node[2] if c[1] == part]
            if not found or found[0][0] == "leaf":
                return []
            node = found[0]
        return [c[1] for c in node[2]]

    def lookup(path):
        node = root
        for part in [p for p in path.split("/") if p]:
            if node[0] == "leaf":
                continue                # lookup_helper (Lf ...) rest: the leaf's value
            found = [c for c in node[2] if c[1] == part]
            if not found:
                return None
            node = found[0]
        return node[2] if node[0] == "leaf" else None
    return lookup, list_


# -- Networks.tests ----------------------------------------------------------------------

NETWORKS = [
    (["attr/vif/0/ipv6/0"], [("attr/vif/0/ipv6/0", "0/ipv6/0")]),
    (["attr/vif/0/ipv4/0"], [("attr/vif/0/ipv4/0", "0/ip"), ("attr/vif/0/ipv4/0", "0/ipv4/0")]),
    (["attr/eth0/ip"], [("attr/eth0/ip", "0/ip"), ("attr/eth0/ip", "0/ipv4/0")]),
    (["attr/eth0/ipv6/0/addr"], [("attr/eth0/ip", "0/ip"), ("attr/eth0/ip", "0/ipv4/0"),
                                 ("attr/eth0/ipv6/0/addr", "0/ipv6/0")]),
    (["attr/vif/1/ipv6/2"], [("attr/vif/1/ipv6/2", "1/ipv6/2")]),
    (["attr/vif/1/ipv4/2"], [("attr/vif/1/ipv4/2", "1/ip"), ("attr/vif/1/ipv4/2", "1/ipv4/2")]),
    (["attr/eth1/ip"], [("attr/eth1/ip", "1/ip"), ("attr/eth1/ip", "1/ipv4/0")]),
    (["attr/eth1/ipv6/2/addr"], [("attr/eth1/ip", "1/ip"), ("attr/eth1/ip", "1/ipv4/0"),
                                 ("attr/eth1/ipv6/2/addr", "1/ipv6/2")]),
    (["attr/vif/0/ipv6/0", "attr/vif/0/ipv6/1"],
     [("attr/vif/0/ipv6/1", "0/ipv6/1"), ("attr/vif/0/ipv6/0", "0/ipv6/0")]),
    (["attr/vif/0/ipv4/0", "attr/vif/0/ipv4/1"],
     [("attr/vif/0/ipv4/1", "0/ipv4/1"), ("attr/vif/0/ipv4/0", "0/ip"),
      ("attr/vif/0/ipv4/0", "0/ipv4/0")]),
    (["attr/eth0/ip", "attr/eth0/ipv6/0/addr"],
     [("attr/eth0/ip", "0/ip"), ("attr/eth0/ip", "0/ipv4/0"),
      ("attr/eth0/ipv6/0/addr", "0/ipv6/0")]),
    (["attr/vif/0/ipv4/0", "attr/vif/0/ipv6/0"],
     [("attr/vif/0/ipv4/0", "0/ip"), ("attr/vif/0/ipv4/0", "0/ipv4/0"),
      ("attr/vif/0/ipv6/0", "0/ipv6/0")]),
    (["attr/eth0/ip", "attr/vif/0/ipv4/0", "attr/eth0/ipv6/0/addr", "attr/vif/0/ipv6/0"],
     [("attr/vif/0/ipv4/0", "0/ip"), ("attr/vif/0/ipv4/0", "0/ipv4/0"),
      ("attr/vif/0/ipv6/0", "0/ipv6/0")]),
    (["attr/vif/0/ipv6/0", "attr/vif/0/ipv6/1", "attr/vif/1/ipv6/0", "attr/vif/1/ipv6/1"],
     [("attr/vif/0/ipv6/1", "0/ipv6/1"), ("attr/vif/0/ipv6/0", "0/ipv6/0"),
      ("attr/vif/1/ipv6/1", "1/ipv6/1"), ("attr/vif/1/ipv6/0", "1/ipv6/0")]),
    (["attr/vif/0/ipv4/0", "attr/vif/0/ipv4/1", "attr/vif/1/ipv4/0", "attr/vif/1/ipv4/1"],
     [("attr/vif/0/ipv4/1", "0/ipv4/1"), ("attr/vif/0/ipv4/0", "0/ip"),
      ("attr/vif/0/ipv4/0", "0/ipv4/0"), ("attr/vif/1/ipv4/1", "1/ipv4/1"),
      ("attr/vif/1/ipv4/0", "1/ip"), ("attr/vif/1/ipv4/0", "1/ipv4/0")]),
    (["attr/vif/0/ipv4/a", "attr/vif/0/ipv4/1"], []),
]


@pytest.mark.parametrize("paths,expected", NETWORKS)
def test_networks_cases_of_xapi(paths, expected):
    list_ = _networks_tree(paths)
    got = xo.networks("attr", "vif", list_) + xo.networks("xenserver/attr", "net-sriov-vf",
                                                          list_)
    assert got == expected


# -- Initial_guest_metrics.tests ----------------------------------------------------------

V6A, V6B = "fe80:0000:0000:0000:7870:94ff:fe52:dd06", "fe80:0000:0000:0000:7870:94ff:fe52:dd07"
V6C, V6D = "fe80:0000:0000:0000:7870:94ff:fe52:dd16", "fe80:0000:0000:0000:7870:94ff:fe52:dd17"
SRIOV = "xenserver/attr/net-sriov-vf"

INITIAL = [
    ([("attr/vif/0/ipv6/0", V6A)], [("0/ipv6/0", V6A)]),
    ([(SRIOV + "/0/ipv6/0", V6A)], [("0/ipv6/0", V6A)]),
    ([("attr/vif/0/ipv4/0", "192.168.0.1")], [("0/ip", "192.168.0.1"),
                                              ("0/ipv4/0", "192.168.0.1")]),
    ([(SRIOV + "/0/ipv4/0", "192.168.0.1")], [("0/ip", "192.168.0.1"),
                                              ("0/ipv4/0", "192.168.0.1")]),
    ([("attr/eth0/ip", "192.168.0.1")], [("0/ip", "192.168.0.1"), ("0/ipv4/0", "192.168.0.1")]),
    ([("attr/eth0/ipv6/0/addr", V6A)], [("0/ipv6/0", V6A)]),
    ([("attr/vif/1/ipv6/2", V6A)], [("1/ipv6/2", V6A)]),
    ([(SRIOV + "/1/ipv6/2", V6A)], [("1/ipv6/2", V6A)]),
    ([("attr/vif/1/ipv4/2", "192.168.0.1")], [("1/ip", "192.168.0.1"),
                                              ("1/ipv4/2", "192.168.0.1")]),
    ([("attr/eth1/ip", "192.168.0.1")], [("1/ip", "192.168.0.1"), ("1/ipv4/0", "192.168.0.1")]),
    ([("attr/eth1/ipv6/2/addr", V6A)], [("1/ipv6/2", V6A)]),
    ([("attr/vif/0/ipv6/0", V6A), ("attr/vif/0/ipv6/1", V6B)],
     [("0/ipv6/1", V6B), ("0/ipv6/0", V6A)]),
    ([(SRIOV + "/0/ipv6/0", V6A), (SRIOV + "/0/ipv6/1", V6B)],
     [("0/ipv6/1", V6B), ("0/ipv6/0", V6A)]),
    ([("attr/vif/0/ipv4/0", "192.168.0.1"), ("attr/vif/0/ipv4/1", "192.168.1.1")],
     [("0/ipv4/1", "192.168.1.1"), ("0/ip", "192.168.0.1"), ("0/ipv4/0", "192.168.0.1")]),
    ([("attr/eth0/ip", "192.168.0.1"), ("attr/eth0/ipv6/0/addr", V6A)],
     [("0/ip", "192.168.0.1"), ("0/ipv4/0", "192.168.0.1"), ("0/ipv6/0", V6A)]),
    ([("attr/vif/0/ipv4/0", "192.168.0.1"), ("attr/vif/0/ipv6/0", V6A)],
     [("0/ip", "192.168.0.1"), ("0/ipv4/0", "192.168.0.1"), ("0/ipv6/0", V6A)]),
    ([("attr/eth0/ip", "192.168.0.1"), ("attr/vif/0/ipv4/0", "192.168.0.1"),
      ("attr/eth0/ipv6/0/addr", V6A), ("attr/vif/0/ipv6/0", V6A)],
     [("0/ip", "192.168.0.1"), ("0/ipv4/0", "192.168.0.1"), ("0/ipv6/0", V6A)]),
    ([("attr/vif/0/ipv6/0", V6A), ("attr/vif/0/ipv6/1", V6B), ("attr/vif/1/ipv6/0", V6C),
      ("attr/vif/1/ipv6/1", V6D)],
     [("0/ipv6/1", V6B), ("0/ipv6/0", V6A), ("1/ipv6/1", V6D), ("1/ipv6/0", V6C)]),
    ([("attr/vif/0/ipv4/0", "192.168.0.1"), ("attr/vif/0/ipv4/1", "192.168.0.2"),
      ("attr/vif/1/ipv4/0", "192.168.1.1"), ("attr/vif/1/ipv4/1", "192.168.1.2")],
     [("0/ipv4/1", "192.168.0.2"), ("0/ip", "192.168.0.1"), ("0/ipv4/0", "192.168.0.1"),
      ("1/ipv4/1", "192.168.1.2"), ("1/ip", "192.168.1.1"), ("1/ipv4/0", "192.168.1.1")]),
    ([("attr/vif/0/ipv4/0", "192.168.0.1"), ("attr/vif/0/ipv4/1", "192.168.0.2"),
      ("attr/vif/1/ipv4/0", "192.168.1.1"), ("attr/vif/1/ipv4/1", "192.168.1.2"),
      (SRIOV + "/2/ipv4/0", "192.168.2.1"), (SRIOV + "/2/ipv4/1", "192.168.2.2"),
      (SRIOV + "/3/ipv4/0", "192.168.3.1"), (SRIOV + "/3/ipv4/1", "192.168.3.2")],
     [("0/ipv4/1", "192.168.0.2"), ("0/ip", "192.168.0.1"), ("0/ipv4/0", "192.168.0.1"),
      ("1/ipv4/1", "192.168.1.2"), ("1/ip", "192.168.1.1"), ("1/ipv4/0", "192.168.1.1"),
      ("2/ipv4/1", "192.168.2.2"), ("2/ip", "192.168.2.1"), ("2/ipv4/0", "192.168.2.1"),
      ("3/ipv4/1", "192.168.3.2"), ("3/ip", "192.168.3.1"), ("3/ipv4/0", "192.168.3.1")]),
    ([("attr/vif/0/ipv4/a", "192.168.0.1"), ("attr/vif/0/ipv4/1", "192.168.0.1")], []),
    ([(SRIOV + "/0/ipv4/a", "192.168.0.1"), (SRIOV + "/0/ipv4/1", "192.168.0.1")], []),
    ([("drivers/0", "XenServer XENBUS 9.1.9.105 "), ("drivers/1", "XenServer XENVBD 9.1.8.79 "),
      ("drivers/2", "XenServer XENVIF 9.1.12.101 "),
      ("drivers/3", "XenServer XENIFACE 9.1.10.87 "),
      ("drivers/4", "XenServer XENNET 9.1.7.65 ")],
     [("micro", "-1"), ("xennet", "XenServer 9.1.7.65 "), ("xeniface", "XenServer 9.1.10.87 "),
      ("xenvif", "XenServer 9.1.12.101 "), ("xenvbd", "XenServer 9.1.8.79 "),
      ("xenbus", "XenServer 9.1.9.105 ")]),
    ([("drivers/0", "XenServer XENBUS 9.1.9.105 (DEBUG) (MOREDEBUG)"),
      ("drivers/2", "XCP_ng XENVIF 9.1.12.101 ")],
     [("micro", "-1"), ("xenvif", "XCP_ng 9.1.12.101 "),
      ("xenbus", "XenServer 9.1.9.105 (DEBUG) (MOREDEBUG)")]),
]


@pytest.mark.parametrize("pairs,expected", INITIAL)
def test_initial_guest_metrics_cases_of_xapi(pairs, expected):
    lookup, list_ = _mtree(pairs)
    metrics = xo.guest_metrics(lookup, list_)
    assert metrics["networks"] + metrics["PV_drivers_version"] == expected


# -- Services.tests: the copy's list semantics (xapi_xenops.ml's, as the test's) ------------

SERVICES = [
    ([("data/key1", "v1"), ("data/key2", "v2")], []),
    ([("data/service/key1", "v1"), ("data/service/key2", "v2")], []),
    ([("data/service/service-a/sub/key1", "sab-v1"),
      ("data/service/service-a/sub/key2", "sab-v2")], [("service-a/sub", "")]),
    ([("data/service", ""), ("data/service/service-a", ""), ("data/service/service-b", ""),
      ("data/service/service-a/key1", "sa-v1"), ("data/service/service-a/key2", "sa-v2"),
      ("data/service/service-b/key1", "sb-v1"), ("data/service/service-b/key2", "sb-v2")],
     [("service-a/key1", "sa-v1"), ("service-a/key2", "sa-v2"),
      ("service-b/key1", "sb-v1"), ("service-b/key2", "sb-v2")]),
]


@pytest.mark.parametrize("state,expected", SERVICES)
def test_services_cases_of_xapi_over_the_copy_semantics(state, expected):
    metrics = xo.guest_metrics(lambda k: xo.xapi_lookup(state, k),
                               lambda d: xo.xapi_list(state, d))
    assert metrics["services"] == expected


# -- OCaml's int_of_string (runtime/ints.c) ---------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("0", 0), ("42", 42), ("007", 7), ("-3", -3), ("+5", 5), ("1_000", 1000), ("1_", 1),
    ("0x1f", 31), ("0X1F", 31), ("0o17", 15), ("0b101", 5), ("0u42", 42), ("-0x1", -1),
    ("4611686018427387903", 2 ** 62 - 1), ("-4611686018427387904", -2 ** 62),
    ("0x3fffffffffffffff", 2 ** 62 - 1), ("0x7fffffffffffffff", -1),
    ("0x4000000000000000", -2 ** 62),
])
def test_int_of_string_accepts(text, value):
    assert xo.ocaml_int_of_string(text) == value


@pytest.mark.parametrize("text", [
    "", "-", "+", " 1", "1 ", "1\n", "_1", "0x", "0x_1", "1e3", "1.0", "a", "0xg", "0b2",
    "0o8", "12a", "\u0663", "1\x002", "4611686018427387904", "-4611686018427387905",
    "0x8000000000000000", "0u4611686018427387904a", "--1", "+-1",
])
def test_int_of_string_refuses(text):
    with pytest.raises(ValueError):
        xo.ocaml_int_of_string(text)


def test_int64_of_string_uses_64_bits():
    assert xo.ocaml_int64_of_string("9223372036854775807") == 2 ** 63 - 1
    assert xo.ocaml_int64_of_string("-9223372036854775808") == -2 ** 63
    assert xo.ocaml_int64_of_string("0xffffffffffffffff") == -1
    for bad in ("9223372036854775808", "0x10000000000000000", "12 kB"):
        with pytest.raises(ValueError):
            xo.ocaml_int64_of_string(bad)


# -- xenopsd's copy and xapi's list over it ---------------------------------------------------

HOME = {
    "control/feature-balloon": "1", "control/shutdown": "",
    "data/os_name": "Debian", "data/meminfo_free": "1000", "data/updated": "x",
    "data/volumes/0/name": "/dev/xvda1", "data/service/ssh/port": "22",
    "data/service/ssh/deep/x": "no",
    "attr/PVAddons/MajorVersion": "1", "attr/os/hotfixes/0/uuid": "h",
    "attr/vif/0/ipv4/0": "192.0.2.1", "attr/a/b/c/d/e": "too deep",
    "xenserver/attr/net-sriov-vf/2/ipv4/0": "192.0.2.2",
    "drivers/0": "d", "feature/hotplug/vif": "1", "memory/target": "1024",
    "device/vif/0/state": "4",
}


def test_copy_takes_the_listed_subtrees_at_their_depths():
    copied = dict(xo.xenopsd_copy(HOME))
    for key in ("control/feature-balloon", "control/shutdown", "data/os_name",
                "data/meminfo_free", "data/updated", "data/service/ssh/port",
                "attr/PVAddons/MajorVersion", "attr/vif/0/ipv4/0", "attr/a/b/c/d",
                "xenserver/attr/net-sriov-vf/2/ipv4/0", "drivers/0",
                "feature/hotplug/vif", "attr", "attr/vif", "data", "data/volumes"):
        assert key in copied, key
    for key in ("data/volumes/0", "data/volumes/0/name", "data/service/ssh/deep/x",
                "attr/os/hotfixes", "attr/os/hotfixes/0/uuid", "attr/a/b/c/d/e",
                "memory/target", "device/vif/0/state"):
        assert key not in copied, key


def test_copy_runs_backwards_and_list_reverses_the_daemon_order():
    state = xo.xenopsd_copy({"attr/vif/0/ipv4/0": "a", "attr/vif/0/ipv6/0": "b"})
    assert state[0] == ("attr/vif/0/ipv6/0", "b") and state[-1] == ("attr", "")
    assert xo.xapi_list(state, "attr/vif/0") == ["ipv6", "ipv4"]


def test_list_matches_a_string_prefix_not_a_directory():
    state = [("attr/vif/0/ipv4/0", "a"), ("attr/vif2/x", "b"), ("attr/vif", "")]
    assert xo.xapi_list(state, "attr/vif") == ["0", "2"]
    assert xo.xapi_lookup(state, "attr/vif2/x") == "b"


def test_copy_replaces_invalid_utf8():
    state = dict(xo.xenopsd_copy({"data/os_name": b"caf\xe9 \xc3\xa9"}))
    assert state["data/os_name"] == "caf\ufffd \u00e9"


def test_copy_stops_at_the_quota():
    state = xo.xenopsd_copy({"control/a": "x" * 100, "data/b": "y"}, quota=50)
    assert [k for k, _ in state] == ["control/a", "control"]


# -- networks through the whole chain ------------------------------------------------------

def _view_networks(tree):
    return xo.toolstack_view(tree)["networks"]


def test_bad_index_in_a_family_of_two_voids_the_families_read_before_it():
    # daemon order ipv4 then ipv6: xapi reads ipv6 first, then ipv4 fails and takes
    # ipv6 down with it; the other VIF is untouched
    tree = {"attr/vif/0/ipv4/0": "192.0.2.1", "attr/vif/0/ipv4/x": "192.0.2.9",
            "attr/vif/0/ipv6/0": "2001:db8::1", "attr/vif/1/ipv4/0": "192.0.2.5"}
    assert _view_networks(tree) == {"1/ip": "192.0.2.5", "1/ipv4/0": "192.0.2.5"}
    # a bad index in ipv6 (read first) drops only ipv6
    tree = {"attr/vif/0/ipv4/0": "192.0.2.1", "attr/vif/0/ipv6/0": "2001:db8::1",
            "attr/vif/0/ipv6/y": "2001:db8::2"}
    assert _view_networks(tree) == {"0/ip": "192.0.2.1", "0/ipv4/0": "192.0.2.1"}


def test_a_lone_bad_index_is_never_compared_and_counts():
    tree = {"attr/vif/1/ipv4/a": "192.0.2.99", "attr/vif/1/ipv6/0": "::1"}
    assert _view_networks(tree) == {"1/ip": "192.0.2.99", "1/ipv4/a": "192.0.2.99",
                                    "1/ipv6/0": "::1"}


def test_ip_is_the_lowest_index_by_int_of_string():
    tree = {"attr/vif/0/ipv4/10": "192.0.2.20", "attr/vif/0/ipv4/2": "192.0.2.12",
            "attr/vif/0/ipv4/0x1": "192.0.2.11"}
    assert _view_networks(tree) == {"0/ip": "192.0.2.11", "0/ipv4/0x1": "192.0.2.11",
                                    "0/ipv4/2": "192.0.2.12", "0/ipv4/10": "192.0.2.20"}


def test_old_eth_layout_counts_only_without_attr_vif():
    old = {"attr/eth0/ip": "192.0.2.7", "attr/eth0/ipv6/0/addr": "2001:db8::7"}
    assert _view_networks(old) == {"0/ip": "192.0.2.7", "0/ipv4/0": "192.0.2.7",
                                   "0/ipv6/0": "2001:db8::7"}
    both = dict(old, **{"attr/vif/3/ipv4/0": "192.0.2.8"})
    assert _view_networks(both) == {"3/ip": "192.0.2.8", "3/ipv4/0": "192.0.2.8"}


def test_addresses_deeper_than_the_copy_are_invisible():
    tree = {"attr/vif/0/ipv4/0/x": "192.0.2.1"}
    assert _view_networks(tree) == {"0/ip": "", "0/ipv4/0": ""}


# -- the rest of the view -------------------------------------------------------------------

def test_view_of_a_linux_guest():
    tree = {"data/os_name": "Debian GNU/Linux 12", "data/os_distro": "debian",
            "data/os_majorver": "12", "data/os_minorver": "7", "data/os_uname": "6.1",
            "attr/PVAddons/Installed": "1", "attr/PVAddons/MajorVersion": "1",
            "attr/PVAddons/MinorVersion": "2", "control/feature-balloon": "0",
            "control/feature-shutdown": "1", "data/meminfo_free": "1500000"}
    view = xo.toolstack_view(tree)
    assert view["os_version"] == {"name": "Debian GNU/Linux 12", "distro": "debian",
                                  "major": "12", "minor": "7", "uname": "6.1"}
    assert view["PV_drivers_version"] == {"major": "1", "minor": "2", "micro": "-1"}
    assert view["PV_drivers"] == ("Linux", 1, 2, -1, -1)
    assert view["other"] == {"feature-balloon": "0", "feature-shutdown": "1"}
    assert view["can_balloon"] is True           # the value is never looked at
    assert view["has_guest_agent"] is False      # no data/updated
    assert view["memory_internal_free"] == 1500000


@pytest.mark.parametrize("versions,parsed", [
    ({"MajorVersion": "1", "MinorVersion": "0", "MicroVersion": "3", "BuildVersion": "7"},
     ("Linux", 1, 0, 3, 7)),
    ({"MajorVersion": "0x2", "MinorVersion": "1_0"}, ("Linux", 2, 10, -1, -1)),
    ({"MajorVersion": "1"}, "Unknown"),
    ({"MajorVersion": "1", "MinorVersion": " 0"}, "Unknown"),
    ({"MajorVersion": "1", "MinorVersion": "0", "MicroVersion": "@MICRO@"}, "Unknown"),
    ({"Installed": "1"}, "Unknown"),
])
def test_pv_drivers_parse_with_int_of_string(versions, parsed):
    tree = {"attr/PVAddons/" + k: v for k, v in versions.items()}
    assert xo.toolstack_view(tree)["PV_drivers"] == parsed


def test_squeezed_and_rrdp_views():
    assert not xo.can_balloon({"data/x": "1"})
    assert xo.has_guest_agent({"data/updated": "Sun Nov 29 10:00:00 2026"})
    assert xo.memory_internal_free({"data/meminfo_free": "12 kB"}) is None
    assert xo.memory_internal_free({}) is None


@pytest.mark.parametrize("op,path,legacy,wakes", [
    ("write", "data/meminfo_free", True, False),
    ("write", "data/meminfo_total", True, False),
    ("write", "data/volumes/0/free", True, False),
    ("rm", "data/volumes", True, False),
    ("write", "data/updated", True, True),
    ("write", "data/updated", False, False),
    ("write", "data/os_name", True, False),
    ("write", "attr/vif/0/ipv4/0", False, True),
    ("rm", "control/feature-balloon", False, True),
    ("write", "xenserver/attr/net-sriov-vf/1/ipv4/0", False, True),
    ("rm", "data", False, True),            # takes data/ts and data/service with it
    ("write", "attribute", False, False),
])
def test_wakes_xenopsd(op, path, legacy, wakes):
    assert xo.wakes_xenopsd(op, path, legacy=legacy) is wakes


def test_real_daemon_lists_by_name_so_a_bad_ipv4_index_voids_ipv6_too(fresh_xenstored):
    """oxenstored lists children sorted by name, whatever the order they were written
    in: ipv4 before ipv6, so xapi reads ipv6 first and a failing ipv4 takes it along."""
    home = "/local/domain/0/"
    for key, value in (("attr/vif/0/ipv6/0", "2001:db8::1"), ("attr/vif/1/ipv4/0", "192.0.2.5"),
                       ("attr/vif/0/ipv4/x", "192.0.2.9"), ("attr/vif/0/ipv4/0", "192.0.2.1")):
        fresh_xenstored.write(home + key, value)
    tree = fresh_xenstored.tree(home.rstrip("/"))
    assert [k for k in tree if k.startswith("attr/vif/0/")] == [
        "attr/vif/0/ipv4", "attr/vif/0/ipv4/0", "attr/vif/0/ipv4/x", "attr/vif/0/ipv6",
        "attr/vif/0/ipv6/0"]
    assert xo.toolstack_view(tree)["networks"] == {"1/ip": "192.0.2.5",
                                                   "1/ipv4/0": "192.0.2.5"}
