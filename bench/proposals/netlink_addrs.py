"""Proposal (not used by the package): the interfaces' addresses from one rtnetlink dump,
without psutil.

``import psutil`` pulls in subprocess, socket, selectors, shutil, traceback, locale, re,
enum... (25-40 ms on the bench machine, more than the whole bare interpreter), and the
network section only needs ``psutil.net_if_addrs()``'s IPv4 and IPv6 entries. glibc's
``getifaddrs()`` (what psutil calls) reads them from an RTM_GETADDR dump; so does this,
with ``_socket`` and ``struct`` only.

    python3 bench/proposals/netlink_addrs.py          # compare with psutil, time both

prints whether the two agree (interface -> sorted (family, address)) and what each costs
as a whole process.
"""

import _socket
import struct

AF_INET, AF_INET6 = 2, 10
NETLINK_ROUTE = 0
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3

_NLMSGHDR = struct.Struct("=IHHII")     # len, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")    # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")          # len, type


def parse_addr_messages(data: bytes, names: dict, out: list) -> bool:
    """Append (interface, family, address) for each RTM_NEWADDR in ``data``; True at
    NLMSG_DONE. IPv4 takes IFA_LOCAL over IFA_ADDRESS (the peer on point-to-point links)
    and IFA_LABEL as its name (``br0:1``), as getifaddrs() does."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            raise OSError("rtnetlink: bad message length %d" % length)
        if kind == NLMSG_DONE:
            return True
        if kind == NLMSG_ERROR:
            code = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0]
            raise OSError(-code, "rtnetlink RTM_GETADDR failed")
        if kind == RTM_NEWADDR:
            family, _plen, _fl, _scope, index = _IFADDRMSG.unpack_from(
                data, offset + _NLMSGHDR.size)
            attrs = {}
            pos = offset + _NLMSGHDR.size + _IFADDRMSG.size
            end = offset + length
            while pos + _RTATTR.size <= end:
                rta_len, rta_type = _RTATTR.unpack_from(data, pos)
                if rta_len < _RTATTR.size:
                    break
                attrs[rta_type] = data[pos + _RTATTR.size:pos + rta_len]
                pos += (rta_len + 3) & ~3
            raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
            if raw is not None and family in (AF_INET, AF_INET6):
                if family == AF_INET and IFA_LABEL in attrs:
                    name = attrs[IFA_LABEL].rstrip(b"\0").decode("utf-8", "replace")
                else:
                    name = names.get(index)
                    if name is None:
                        try:
                            name = names[index] = _socket.if_indextoname(index)
                        except OSError:      # the link vanished meanwhile
                            name = None
                if name is not None:
                    out.append((name, family, _socket.inet_ntop(family, raw)))
        offset += (length + 3) & ~3
    return False


def interface_addresses() -> list:
    """[(interface, family, address)] of every IPv4 and IPv6 address, kernel order."""
    sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
        body = _IFADDRMSG.pack(0, 0, 0, 0, 0)
        sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETADDR,
                                 NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
        out: list = []
        names: dict = {}
        while not parse_addr_messages(sock.recv(65536), names, out):
            pass
        return out
    finally:
        sock.close()


class Address:
    """One entry of :func:`net_if_addrs` (the two fields of psutil's ``snicaddr`` the
    network section reads)."""

    __slots__ = ("family", "address")

    def __init__(self, family: int, address: str):
        self.family = family
        self.address = address


def net_if_addrs() -> dict:
    """``psutil.net_if_addrs()``'s shape, IPv4 and IPv6 entries only: name -> [Address]."""
    out: dict = {}
    for name, family, address in interface_addresses():
        out.setdefault(name, []).append(Address(family, address))
    return out


def _compare() -> int:
    import os
    import subprocess
    import sys
    import time

    import psutil

    ours = {}
    for name, family, addr in interface_addresses():
        ours.setdefault(name, []).append((family, addr))
    theirs = {}
    for name, entries in psutil.net_if_addrs().items():
        for e in entries:
            if e.family in (AF_INET, AF_INET6):
                theirs.setdefault(name, []).append((int(e.family), e.address.split("%")[0]))
    same = {k: sorted(v) for k, v in ours.items()} == {k: sorted(v) for k, v in theirs.items()}
    count = sum(len(v) for v in ours.values())
    print("same as psutil.net_if_addrs(): %s (%d addresses on %d interfaces)"
          % (same, count, len(ours)))

    def cpu(code: str, runs: int = 20) -> float:
        spent = []
        for _ in range(runs):
            pid = os.posix_spawn(sys.executable, [sys.executable, "-I", "-c", code],
                                 dict(PYTHONPATH=os.path.dirname(os.path.abspath(__file__))))
            _, _, usage = os.wait4(pid, 0)
            spent.append(usage.ru_utime + usage.ru_stime)
        spent.sort()
        return spent[len(spent) // 2] * 1000

    here = os.path.dirname(os.path.abspath(__file__))
    bare = cpu("pass")
    mine = cpu("import sys; sys.path.insert(0, %r); import netlink_addrs; "
               "netlink_addrs.interface_addresses()" % here)
    ps = cpu("import psutil; psutil.net_if_addrs()")
    print("CPU per process (median): bare %.1f ms, netlink %.1f ms (+%.1f), psutil %.1f ms "
          "(+%.1f)" % (bare, mine, mine - bare, ps, ps - bare))
    started = time.perf_counter()
    for _ in range(100):
        interface_addresses()
    print("in process: %.3f ms per dump" % ((time.perf_counter() - started) * 10))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(_compare())
