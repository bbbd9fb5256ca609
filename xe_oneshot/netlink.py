"""The interfaces' IPv4 and IPv6 addresses from one rtnetlink dump, without psutil.

``import psutil`` costs 25-45 ms of CPU (it pulls in subprocess, threading, socket,
shutil, re, ...), more than the bare interpreter's whole start. The network section
needs, for each address, the interface the kernel puts it on and whether it is that
interface's primary: one ``RTM_GETADDR`` dump on an ``AF_NETLINK``/``NETLINK_ROUTE``
socket gives both, with the C ``_socket`` module and ``struct`` only:

* the address is ``IFA_LOCAL`` when present, else ``IFA_ADDRESS`` (on a point-to-point
  link ``IFA_ADDRESS`` is the peer);
* the interface is ``ifa_index``, never ``IFA_LABEL``: a label is free text
  (``ip addr add ... label backup``, or one naming another interface);
* ``ifa_flags`` and ``ifa_scope`` say which address is the primary (IPv4: not
  ``IFA_F_SECONDARY``; IPv6: not ``IFA_F_TEMPORARY``, the same bit);
* entries come in the kernel's order: per interface, IPv4 primaries (in the order they
  were added, a narrower scope first) then secondaries; IPv6 by scope, newest first.

A caller treats any OSError as "rtnetlink refused here" (seccomp,
``RestrictAddressFamilies=``, an odd kernel) and falls back to :mod:`.ifconf`, which
needs no netlink. The reader is bounded: a receive timeout, a total size limit, and
malformed data raises OSError.

Always the running system's addresses: a netlink socket has no ``--root``.
"""

import _socket
import struct

from .records import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List

AF_INET, AF_INET6 = 2, 10
NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x2, 0x10, 0x300
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8

_NLMSGHDR = struct.Struct("=IHHII")     # len, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")    # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")          # len, type
_ERRNO = struct.Struct("=i")            # nlmsgerr.error (negative errno)
_U32 = struct.Struct("=I")
_ADDR_SIZE = {AF_INET: 4, AF_INET6: 16}

#: Seconds to wait for each part of the dump (the kernel answers in microseconds).
TIMEOUT = 2.0
#: Give up beyond this many bytes of dump: ~80 bytes per address, so some 100 000
#: addresses; a guest with more is not one this agent can describe anyway.
MAX_DUMP_BYTES = 8 << 20
#: Receive buffer: the kernel's dump parts are at most 32 KiB.
RECV_SIZE = 65536
#: Dumps restarted when the kernel flags one as interrupted by a concurrent change.
RETRIES = 3


@record(frozen=True)
class IfAddr:
    """One address as the kernel lists it."""

    #: The interface it is on (``ifa_index``; ``/sys/class/net/<if>/ifindex``).
    index: int
    family: int
    #: Canonical text (``inet_ntop``).
    address: str
    #: ``IFA_F_*``: 0x01 is IFA_F_SECONDARY (IPv4) / IFA_F_TEMPORARY (IPv6).
    flags: int = 0
    #: ``RT_SCOPE_*``: 0 universe (global), 200 site, 253 link, 254 host.
    scope: int = 0


@record
class AddrDump:
    """What :func:`parse_addr_messages` has gathered of one dump so far."""

    seq: int
    #: IfAddr in the kernel's order.
    entries: list = field(default_factory=list)
    done: bool = False
    #: The kernel changed the address list while dumping (NLM_F_DUMP_INTR).
    interrupted: bool = False


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_addr_messages(data: bytes, dump: AddrDump) -> bool:
    """Add the IPv4/IPv6 addresses of the ``RTM_NEWADDR`` messages in ``data`` (one
    datagram of the dump) to ``dump``; True once ``NLMSG_DONE`` is seen. Messages of
    another sequence number are skipped. Raises OSError for an ``NLMSG_ERROR`` reply
    (with its errno) and for malformed or truncated data."""
    offset, size = 0, len(data)
    while offset < size:
        if size - offset < _NLMSGHDR.size:
            raise OSError("rtnetlink: truncated message header")
        length, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        end = offset + length
        if length < _NLMSGHDR.size or end > size:
            raise OSError("rtnetlink: bad message length %d" % length)
        body = offset + _NLMSGHDR.size
        offset = _align(end)
        if seq != dump.seq:
            continue
        if flags & NLM_F_DUMP_INTR:
            dump.interrupted = True
        if kind == NLMSG_DONE:
            dump.done = True
            return True
        if kind == NLMSG_ERROR:
            if end - body < _ERRNO.size:
                raise OSError("rtnetlink: truncated error message")
            code = -_ERRNO.unpack_from(data, body)[0]
            if code == 0:        # an acknowledgement, not part of a dump
                continue
            raise OSError(code, "rtnetlink RTM_GETADDR failed")
        if kind == RTM_NEWADDR:
            _parse_newaddr(data, body, end, dump.entries)
    return False


def _parse_newaddr(data: bytes, pos: int, end: int, out: list) -> None:
    """One ``RTM_NEWADDR`` body (``ifaddrmsg`` then ``rtattr``s) in ``data[pos:end]``."""
    if end - pos < _IFADDRMSG.size:
        raise OSError("rtnetlink: truncated ifaddrmsg")
    family, _plen, flags, scope, index = _IFADDRMSG.unpack_from(data, pos)
    pos += _IFADDRMSG.size
    attrs = {}
    while end - pos >= _RTATTR.size:
        rta_len, rta_type = _RTATTR.unpack_from(data, pos)
        if rta_len < _RTATTR.size or pos + rta_len > end:
            raise OSError("rtnetlink: bad attribute length %d" % rta_len)
        attrs[rta_type] = data[pos + _RTATTR.size:pos + rta_len]
        pos += _align(rta_len)
    if family not in _ADDR_SIZE:
        return
    raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
    if raw is None:
        return
    if len(raw) != _ADDR_SIZE[family]:
        raise OSError("rtnetlink: address of %d bytes for family %d" % (len(raw), family))
    extended = attrs.get(IFA_FLAGS)
    if extended is not None and len(extended) == _U32.size:   # the 32-bit flags
        flags |= _U32.unpack(extended)[0]
    out.append(IfAddr(index, family, _socket.inet_ntop(family, raw), flags, scope))


def _dump(sock, seq: int, max_bytes: int) -> AddrDump:
    body = _IFADDRMSG.pack(0, 0, 0, 0, 0)
    sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETADDR,
                             NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
    dump = AddrDump(seq)
    total = 0
    while True:
        data = sock.recv(RECV_SIZE)
        if not data:
            raise OSError("rtnetlink: empty read before the end of the dump")
        total += len(data)
        if total > max_bytes:
            raise OSError("rtnetlink: address dump larger than %d bytes" % max_bytes)
        if parse_addr_messages(data, dump):
            return dump


def interface_addresses(timeout: float = TIMEOUT,
                        max_bytes: int = MAX_DUMP_BYTES) -> "List[IfAddr]":
    """Every IPv4 and IPv6 address of every interface, in the kernel's order. Raises
    OSError when rtnetlink cannot be used or answers nonsense."""
    sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                          NETLINK_ROUTE)
    try:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        dump = _dump(sock, 1, max_bytes)
        for seq in range(2, RETRIES + 2):
            if not dump.interrupted:
                break
            dump = _dump(sock, seq, max_bytes)
    finally:
        sock.close()
    return dump.entries
