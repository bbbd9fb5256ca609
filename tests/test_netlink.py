"""xe_oneshot.netlink: the parser on hand-built rtnetlink messages, and the reader over
real interfaces in network namespaces, with iproute2's ``ip -j addr show`` as the
oracle (run in the same namespace, reduced to the same shape)."""

import json
import os
import struct
import sys

import pytest

from xe_oneshot import netlink
from xe_oneshot.netlink import AddrDump, IfAddr, parse_addr_messages
from tests.support.netns import CHECKOUT, Netns, Unavailable

# -- hand-built messages (kernel constants written out, not taken from the module) ------

SEQ = 7


def rta(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def nlmsg(kind, body, seq=SEQ, flags=0x2):
    length = 16 + len(body)
    return struct.pack("=IHHII", length, kind, flags, seq, 4242) + body + b"\0" * (-length % 4)


def newaddr(family, index, *attrs, prefix=24, scope=0, flags=0):
    body = struct.pack("=BBBBI", family, prefix, flags, scope, index) + b"".join(attrs)
    return nlmsg(20, body)


def v4(text):
    return bytes(int(x) for x in text.split("."))


def done(seq=SEQ):
    return nlmsg(3, struct.pack("=i", 0), seq=seq)


def error(errno_value, seq=SEQ):
    return nlmsg(2, struct.pack("=i", -errno_value) + b"\0" * 16, seq=seq, flags=0)


def parse(*chunks):
    """Feed ``chunks`` (datagrams) to the parser; the dump and per-chunk results."""
    dump = AddrDump(SEQ)
    finished = [parse_addr_messages(c, dump) for c in chunks]
    return dump, finished


LINK_LOCAL = bytes.fromhex("fe800000000000000216 3eff fe00 0001".replace(" ", ""))
GLOBAL6 = bytes.fromhex("20010db8000000000000000000000010")


def test_ipv4_point_to_point_takes_ifa_local_not_the_peer():
    msg = newaddr(2, 3, rta(1, v4("10.1.0.2")), rta(2, v4("10.1.0.1")),
                  rta(3, b"ppp0\0"), prefix=32)
    dump, finished = parse(msg + done())
    assert finished == [True] and dump.done
    assert dump.entries == [IfAddr(3, 2, "10.1.0.1")]


def test_label_attack_the_index_not_the_label_names_the_interface():
    data = (newaddr(2, 2, rta(1, v4("192.0.2.10")), rta(2, v4("192.0.2.10")),
                    rta(3, b"eth1\0"))
            + newaddr(2, 2, rta(2, v4("192.0.2.11")), rta(3, b"backup\0"), flags=0x01)
            + newaddr(10, 2, rta(1, LINK_LOCAL), prefix=64, scope=253, flags=0x80)
            + newaddr(10, 2, rta(1, GLOBAL6), rta(8, struct.pack("=I", 0x201)), prefix=64)
            + done())
    dump, _ = parse(data)
    assert dump.entries == [IfAddr(2, 2, "192.0.2.10", 0, 0),
                            IfAddr(2, 2, "192.0.2.11", 0x01, 0),
                            IfAddr(2, 10, "fe80::216:3eff:fe00:1", 0x80, 253),
                            IfAddr(2, 10, "2001:db8::10", 0x201, 0)]


def test_multi_part_dump_ends_at_done_only():
    first = newaddr(2, 2, rta(2, v4("192.0.2.1")), rta(3, b"eth0\0"))
    second = newaddr(2, 4, rta(2, v4("198.51.100.1")), rta(3, b"eth1\0"))
    dump, finished = parse(first, second, done())
    assert finished == [False, False, True]
    assert [e.address for e in dump.entries] == ["192.0.2.1", "198.51.100.1"]


def test_other_families_other_sequences_and_addressless_messages_are_skipped():
    data = (newaddr(17, 2, rta(1, b"\0" * 6))                       # AF_PACKET-ish
            + nlmsg(20, struct.pack("=BBBBI", 2, 24, 0, 0, 2) + rta(1, v4("10.0.0.9")),
                    seq=SEQ + 1)                                     # not our request
            + newaddr(2, 2, rta(3, b"eth0\0"))                       # no address at all
            + newaddr(2, 2, rta(2, v4("10.0.0.1")), rta(9, b"\0" * 4))   # unknown attr
            + done())
    dump, _ = parse(data)
    assert dump.entries == [IfAddr(2, 2, "10.0.0.1")]


def test_dump_interrupted_flag_is_reported():
    dump, _ = parse(nlmsg(20, struct.pack("=BBBBI", 2, 24, 0, 0, 2)
                          + rta(2, v4("10.0.0.1")), flags=0x2 | 0x10) + done())
    assert dump.interrupted and dump.entries == [IfAddr(2, 2, "10.0.0.1")]


def test_nlmsg_error_raises_with_its_errno():
    with pytest.raises(OSError) as err:
        parse(error(1))
    assert err.value.errno == 1


@pytest.mark.parametrize("data", [
    b"\x01\x02\x03",                                                 # short header
    nlmsg(20, b""),                                                  # body missing
    struct.pack("=IHHII", 8, 20, 2, SEQ, 0),                         # length < header
    struct.pack("=IHHII", 400, 20, 2, SEQ, 0) + b"\0" * 20,          # length > data
    nlmsg(20, struct.pack("=BBBBI", 2, 24, 0, 0, 2) + struct.pack("=HH", 2, 1)),  # rta < 4
    nlmsg(20, struct.pack("=BBBBI", 2, 24, 0, 0, 2) + struct.pack("=HH", 40, 1) + b"ab"),
    newaddr(2, 2, rta(2, b"\x0a\x00\x00")),                          # 3-byte IPv4
    newaddr(10, 2, rta(1, v4("10.0.0.1"))),                          # 4-byte IPv6
    nlmsg(2, b"\xff"),                                               # truncated error
    bytes(range(256)) * 4,                                           # garbage
], ids=["short-header", "no-body", "len-too-small", "len-too-big", "rta-too-small",
        "rta-past-end", "short-ipv4", "short-ipv6", "short-error", "garbage"])
def test_malformed_data_raises_oserror(data):
    with pytest.raises(OSError):
        parse(data + done())


# -- real interfaces ---------------------------------------------------------------------

@pytest.fixture
def netlink_ns():
    try:
        with Netns("xenl") as netns:
            yield netns
    except Unavailable as err:
        pytest.skip(str(err))


#: Runs inside the namespace: our reader and ``ip -j addr show`` reduced to
#: [index, family, address, primary?, scope] in their order (IPv4/IPv6 only), plus
#: which modules the netlink reader imported.
_COMPARE = r"""
import json, subprocess, sys
before = set(sys.modules)
from xe_oneshot import netlink
ours = [[a.index, a.family, a.address, not a.flags & 1, a.scope]
        for a in netlink.interface_addresses()]
imported = sorted(m for m in ("psutil", "socket") if m in sys.modules and m not in before)
scopes = {"global": 0, "site": 200, "link": 253, "host": 254}
theirs = []
for link in json.loads(subprocess.check_output(["ip", "-j", "addr", "show"])):
    for a in link.get("addr_info", []):
        if a["family"] in ("inet", "inet6"):
            theirs.append([link["ifindex"], 2 if a["family"] == "inet" else 10, a["local"],
                           not (a.get("secondary") or a.get("temporary")),
                           scopes[a["scope"]]])
names = {link["ifname"]: link["ifindex"]
         for link in json.loads(subprocess.check_output(["ip", "-j", "link", "show"]))}
print(json.dumps({"ours": ours, "ip": theirs, "imported": imported, "names": names}))
"""


def compare(ns):
    """name -> [(family, address)] as our reader gives it, checked against ip's."""
    env = dict(os.environ, PYTHONPATH=str(CHECKOUT))
    res = ns.run([sys.executable, "-c", _COMPARE], env=env)
    out = json.loads(res.stdout)
    assert out["imported"] == []

    def per_interface(entries):    # the dump lists IPv4 of all links, then IPv6
        grouped = {}
        for entry in entries:
            grouped.setdefault((entry[0], entry[1]), []).append(entry)
        return grouped

    assert per_interface(out["ours"]) == per_interface(out["ip"])
    assert len(out["ours"]) == len(out["ip"])
    by_index = {index: name for name, index in out["names"].items()}
    got = {}
    for index, family, address, _, _ in out["ours"]:
        got.setdefault(by_index[index], []).append((family, address))
    return got


def test_veth_primary_secondary_label_peer_and_ipv6(netlink_ns):
    netlink_ns.veth("veth0", "peer0")
    netlink_ns.addr("veth0", "192.0.2.10/24")
    netlink_ns.addr("veth0", "192.0.2.11/24")                        # secondary
    netlink_ns.addr("veth0", "192.0.2.12/24", "label", "veth0:1")   # alias
    netlink_ns.addr("veth0", "10.1.0.1", "peer", "10.1.0.2/32")     # IFA_LOCAL != IFA_ADDRESS
    netlink_ns.addr("veth0", "2001:db8::10/64")
    netlink_ns.addr("veth0", "fe80::10/64")
    netlink_ns.addr("peer0", "fe80::20/64")
    got = compare(netlink_ns)
    assert sorted(got["veth0"]) == [(2, "10.1.0.1"), (2, "192.0.2.10"), (2, "192.0.2.11"),
                                    (2, "192.0.2.12"), (10, "2001:db8::10"),
                                    (10, "fe80::10")]
    assert got["peer0"] == [(10, "fe80::20")]
    assert got["lo"] == [(2, "127.0.0.1"), (10, "::1")]


def test_bridge_holding_the_ip_and_a_macvlan(netlink_ns):
    netlink_ns.veth("eth0", "peer0")
    netlink_ns.veth("eth1", "peer1")
    netlink_ns.bridge("br0", "eth0")
    netlink_ns.addr("br0", "192.0.2.1/24")
    netlink_ns.addr("br0", "2001:db8::1/64")
    netlink_ns.macvlan("mv0", "eth1")
    netlink_ns.addr("mv0", "198.51.100.5/24")
    netlink_ns.addr("mv0", "fe80::5/64")
    got = compare(netlink_ns)
    assert got["br0"] == [(2, "192.0.2.1"), (10, "2001:db8::1")]
    assert got["mv0"] == [(2, "198.51.100.5"), (10, "fe80::5")]
    assert "eth0" not in got and "eth1" not in got


def test_hundreds_of_addresses_span_several_dump_parts(netlink_ns):
    netlink_ns.veth("eth0", "peer0")
    commands = ["addr add 10.0.%d.%d/16 dev eth0" % (i // 200, 1 + i % 200) for i in range(400)]
    commands += ["addr add 2001:db8::%x/64 dev eth0 nodad" % (i + 1) for i in range(120)]
    netlink_ns.batch(commands)
    got = compare(netlink_ns)
    assert len(got["eth0"]) == 520
    assert (2, "10.0.1.200") in got["eth0"] and (10, "2001:db8::78") in got["eth0"]


def test_renamed_interface_and_its_alias_show_the_new_name(netlink_ns):
    netlink_ns.veth("eth0", "peer0")
    netlink_ns.addr("eth0", "192.0.2.10/24")
    netlink_ns.addr("eth0", "192.0.2.12/24", "label", "eth0:7")
    netlink_ns.ip("link", "set", "eth0", "down")                    # drops IPv6, keeps IPv4
    netlink_ns.ip("link", "set", "eth0", "name", "lan0")
    netlink_ns.ip("link", "set", "lan0", "up")
    netlink_ns.addr("lan0", "2001:db8::10/64")
    got = compare(netlink_ns)
    assert got["lan0"] == [(2, "192.0.2.10"), (2, "192.0.2.12"), (10, "2001:db8::10")]
    assert "eth0" not in got


def test_bounds_are_enforced_with_oserror(netlink_ns):
    netlink_ns.veth("eth0", "peer0")
    netlink_ns.batch(["addr add 10.0.0.%d/24 dev eth0" % i for i in range(1, 200)])
    code = ("from xe_oneshot import netlink\n"
            "try:\n    netlink.interface_addresses(max_bytes=4096)\n"
            "except OSError as err:\n    print('OSError', err)\n")
    res = netlink_ns.run([sys.executable, "-c", code],
                         env=dict(os.environ, PYTHONPATH=str(CHECKOUT)))
    assert res.stdout.startswith("OSError rtnetlink: address dump larger than 4096 bytes")


# -- the network section: imports -------------------------------------------------

def test_network_run_imports_neither_psutil_nor_socket(netlink_ns, tmp_path):
    netlink_ns.veth("eth0", "peer0")
    netlink_ns.addr("eth0", "192.0.2.10/24")
    netlink_ns.mirror(tmp_path, {"eth0": "0"})
    code = ("import sys; before = set(sys.modules); from xe_oneshot.cli import main; "
            "rc = main(['--print', '--root', %r, '--section', 'network']); "
            "print(rc, sorted(m for m in ('psutil', 'socket', 'sh') "
            "if m in sys.modules and m not in before))" % str(tmp_path))
    env = dict(os.environ, PYTHONPATH=str(CHECKOUT), XENSTORED_PATH=str(tmp_path / "none"))
    res = netlink_ns.run([sys.executable, "-c", code], env=env)
    lines = res.stdout.splitlines()
    assert lines[-1] == "0 []", res.stderr
    assert any("192.0.2.10" in line for line in lines[:-1]), res.stdout
