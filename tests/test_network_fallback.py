"""The network section where AF_NETLINK is refused (seccomp, RestrictAddressFamilies=):
xe_oneshot.ifconf reads /proc/net/if_inet6 and the SIOCGIFCONF ioctl, on real interfaces
in a network namespace. Only the refusal is simulated (socket(AF_NETLINK, ...) raises
EAFNOSUPPORT in the collector's process); every address comes from the kernel."""

import json
import os
import socket
import struct
import sys

import pytest

from tests.support.netns import CHECKOUT
from xe_oneshot import ifconf
from xe_oneshot.netlink import IfAddr

# -- parsers -------------------------------------------------------------------------

IF_INET6 = (
    "20010db8000000000000000000000010 02 40 00 80     eth0\n"
    "fe800000000000000000000000000010 02 40 20 80     eth0\n"
    "00000000000000000000000000000001 01 80 10 80       lo\n"
    "20010db8000000000000000000000007 02 40 00 01     eth0\n"     # temporary
    "20010db8000000000000000000000009 0a 40 00 80 \udcff\udcfe0\n"  # non-UTF-8 name
    "garbage line\n"
    "zz010db8000000000000000000000010 02 40 00 80     eth0\n")


def test_parse_if_inet6_sorted_by_scope_then_address_flags_kept():
    assert ifconf.parse_if_inet6(IF_INET6) == [
        IfAddr(2, 10, "2001:db8::7", 0x01, 0),
        IfAddr(10, 10, "2001:db8::9", 0x80, 0),
        IfAddr(2, 10, "2001:db8::10", 0x80, 0),
        IfAddr(2, 10, "fe80::10", 0x80, 253),
        IfAddr(1, 10, "::1", 0x80, 254)]


def _ifreq(label: bytes, address: str, family: int = socket.AF_INET) -> bytes:
    record = bytearray(ifconf.IFREQ_SIZE)
    record[:len(label)] = label
    struct.pack_into("H", record, 16, family)
    record[20:24] = socket.inet_aton(address)
    return bytes(record)


def test_parse_ifconf_reads_labels_and_addresses():
    data = (_ifreq(b"eth0", "192.0.2.1") + _ifreq(b"\xff\xfe0:1", "192.0.2.2")
            + _ifreq(b"x", "0.0.0.0", family=0))
    assert ifconf.parse_ifconf(data) == [(b"eth0", socket.inet_aton("192.0.2.1")),
                                         (b"\xff\xfe0:1", socket.inet_aton("192.0.2.2"))]


@pytest.mark.parametrize("confirmed,placed", [
    ([2, None, None, 2], [2, 2, 2, 2]),       # between two of eth0's: eth0's
    ([2, None, 3], [2, None, 3]),             # at a boundary: cannot be known
    ([None, 2], [None, 2]),
    ([2, None], [2, None]),
    ([None], [None]),
])
def test_place_by_confirmed_neighbours(confirmed, placed):
    assert ifconf.place([(b"", b"")] * len(confirmed), confirmed) == placed


def test_ifreq_size_is_the_kernels():
    assert ifconf.IFREQ_SIZE == (40 if struct.calcsize("P") == 8 else 32)


# -- real interfaces, netlink refused ----------------------------------------------------

#: Runs inside the namespace over ROOT (argv[1]); argv[2] == "refuse": socket(AF_NETLINK)
#: fails as under RestrictAddressFamilies= (EAFNOSUPPORT), every attempt counted.
_SECTION = r"""
import errno, json, sys
import _socket
attempts = []
if sys.argv[2] == "refuse":
    class Refusing(_socket.socket):
        def __init__(self, family=-1, *args, **kwargs):
            if family == _socket.AF_NETLINK:
                attempts.append(family)
                raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
            super().__init__(family, *args, **kwargs)
    _socket.socket = Refusing
before = set(sys.modules)
from xe_oneshot import log
from xe_oneshot.guest import Root
from xe_oneshot.sections import Context, network
log.configure(verbose=1)
values = network.collect(Context(root=Root(sys.argv[1]))).values
imported = sorted(m for m in ("psutil", "socket", "ctypes")
                  if m in sys.modules and m not in before)
print(json.dumps({"values": values, "imported": imported, "netlink": len(attempts)}))
"""


def run_section(ns, root, mode):
    env = dict(os.environ, PYTHONPATH=str(CHECKOUT))
    env.pop("XENSTORED_PATH", None)
    res = ns.run([sys.executable, "-c", _SECTION, str(root), mode], env=env)
    return json.loads(res.stdout), res.stderr


WEIRD = "\udcff\udcfe0"     # b"\xff\xfe0": a legal interface name, not UTF-8


def test_fallback_without_netlink_label_attack_and_non_utf8_name(ns, tmp_path):
    ns.veth("eth0", "peer0")
    ns.veth("eth1", "peer1")
    ns.veth(WEIRD, "peer2")
    ns.addr("eth0", "192.0.2.10/24")
    ns.addr("eth0", "198.51.100.50/24", "label", "eth1")     # names another VIF
    ns.addr("eth0", "203.0.113.51/24", "label", "backup")    # names no interface
    ns.addr("eth0", "192.0.2.12/24", "label", "eth0:7")
    ns.addr("eth0", "2001:db8::10/64")
    ns.addr("eth0", "fe80::10/64")
    ns.addr("eth1", "10.1.0.1/24")
    ns.addr(WEIRD, "10.2.0.1/24")
    ns.addr(WEIRD, "10.2.0.2/24", "label", WEIRD + ":1")
    ns.addr(WEIRD, "2001:db8:2::1/64")
    ns.mirror(tmp_path, {"eth0": "0", "eth1": "1", WEIRD: "2"})
    fast, fast_log = run_section(ns, tmp_path, "netlink")
    slow, slow_log = run_section(ns, tmp_path, "refuse")
    expected = {
        "attr/vif/0/ipv4/0": "192.0.2.10",
        "attr/vif/0/ipv4/1": "198.51.100.50",
        "attr/vif/0/ipv4/2": "203.0.113.51",
        "attr/vif/0/ipv4/3": "192.0.2.12",
        "attr/vif/0/ipv6/0": "2001:db8::10",
        "attr/vif/0/ipv6/1": "fe80::10",
        "attr/vif/1/ipv4/0": "10.1.0.1",
        "attr/vif/2/ipv4/0": "10.2.0.1",
        "attr/vif/2/ipv4/1": "10.2.0.2",
        "attr/vif/2/ipv6/0": "2001:db8:2::1",
    }
    assert fast["values"] == expected
    assert slow["values"] == expected
    assert (fast["netlink"], slow["netlink"]) == (0, 1)
    assert fast["imported"] == [] and fast_log == ""
    assert slow["imported"] == []          # no psutil, no socket.py, no ctypes
    assert slow_log.splitlines() == [
        "xe-oneshot: network: rtnetlink unavailable ([Errno 97] Address family not "
        "supported by protocol), reading /proc/net/if_inet6 and SIOCGIFCONF"]


def test_fallback_leaves_out_what_it_cannot_place_never_misattributes(ns, tmp_path):
    """A secondary on eth0 labelled ``eth1`` is the last of eth0's pairs, just before
    eth1's: SIOCGIFCONF cannot say whose it is. Left out (one line at -v), never
    published under VIF 1."""
    ns.veth("eth0", "peer0")
    ns.veth("eth1", "peer1")
    ns.addr("eth0", "192.0.2.10/24")
    ns.addr("eth0", "192.0.2.99/24", "label", "eth1")        # a secondary: listed last
    ns.addr("eth1", "10.1.0.1/24")
    ns.mirror(tmp_path, {"eth0": "0", "eth1": "1"})
    fast, _ = run_section(ns, tmp_path, "netlink")
    slow, slow_log = run_section(ns, tmp_path, "refuse")
    assert fast["values"] == {"attr/vif/0/ipv4/0": "192.0.2.10",
                              "attr/vif/0/ipv4/1": "192.0.2.99",
                              "attr/vif/1/ipv4/0": "10.1.0.1"}
    assert slow["values"] == {"attr/vif/0/ipv4/0": "192.0.2.10",
                              "attr/vif/1/ipv4/0": "10.1.0.1"}
    assert "1 IPv4 addresses left out" in slow_log


def test_fallback_without_ipv6_in_the_kernel(ns, tmp_path):
    """ipv6.disable=1 leaves no /proc/net/if_inet6: IPv4 alone, no error."""
    ns.veth("eth0", "peer0")
    ns.addr("eth0", "192.0.2.10/24")
    ns.mirror(tmp_path, {"eth0": "0"})
    (tmp_path / "proc/net").unlink()
    (tmp_path / "proc/net").mkdir()
    slow, _ = run_section(ns, tmp_path, "refuse")
    assert slow["values"] == {"attr/vif/0/ipv4/0": "192.0.2.10"}
