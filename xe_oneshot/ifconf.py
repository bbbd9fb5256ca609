"""Addresses without netlink: ``/proc/net/if_inet6`` (IPv6) and SIOCGIFCONF (IPv4).

The fallback of :mod:`.netlink` where ``AF_NETLINK`` is refused (seccomp,
``RestrictAddressFamilies=``). glibc's ``getifaddrs()``, which psutil uses, needs
netlink too; these two do not. What each can know:

* IPv6, ``/proc/net/if_inet6``: address, interface index, scope and flags of each:
  exact. The file is in hash order, not the kernel's order per interface, so the
  addresses are sorted by scope, then address: among several global addresses the
  primary is the lowest, not (as over netlink) the newest.
* IPv4, SIOCGIFCONF: (label, address) pairs, each interface's addresses together and in
  the kernel's order (primaries first). A label is free text (``label backup``, or the
  name of another interface), so it does not say where an address is. The kernel does,
  when asked right: SIOCGIFADDR with a label and an address finds that address only on
  the interface the label's stem (before ``:``) names, carrying that label. A pair the
  kernel does not confirm is placed by its neighbours (an interface's pairs are
  contiguous) when the confirmed pairs on both sides are on the same interface, and is
  otherwise left out, with one line at ``-v``. Neither flags nor scope are known: the
  first address listed counts as the primary (a link-scope one added later is listed
  first, over netlink it would not win).

A label whose stem is not a known interface is never passed to an ioctl: for an unknown
name the kernel may try to load a module of that name (``dev_load``). Names are bytes
to the kernel and may not be UTF-8: they are decoded with ``surrogateescape`` like
``os.listdir``'s.

The ioctls are about the running system whatever ``--root`` says; ``if_inet6`` is read
through the root like any guest file.
"""

import _socket
import struct

from . import log
from .netlink import IfAddr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

    from .guest import Root

LOG = log.getLogger(__name__)

IF_INET6 = "/proc/net/if_inet6"

SIOCGIFCONF, SIOCGIFADDR = 0x8912, 0x8915
AF_INET, AF_INET6 = 2, 10
IFNAMSIZ = 16
_LONG = struct.calcsize("l")
#: sizeof(struct ifreq): the name, then a union whose largest member is struct ifmap
#: (two longs, a short, three chars: 24 bytes on 64-bit, 16 on 32-bit).
IFREQ_SIZE = IFNAMSIZ + max(16, (2 * _LONG + 5 + _LONG - 1) // _LONG * _LONG)
_IFCONF = struct.Struct("iP")           # ifc_len, ifc_buf (native padding between)
_SIN_FAMILY = struct.Struct("H")        # sockaddr_in.sin_family (host order)
#: Give up beyond this many bytes of SIOCGIFCONF answer (some 200 000 addresses).
MAX_IFCONF_BYTES = 8 << 20

#: if_inet6's scope column (IPV6_ADDR_* type bits) -> RT_SCOPE_* as netlink gives it.
_SCOPE6 = {0x00: 0, 0x40: 200, 0x20: 253, 0x10: 254}


def parse_if_inet6(text: str) -> "List[IfAddr]":
    """``/proc/net/if_inet6`` lines, sorted by (scope, address); malformed lines are
    skipped. Sample line (address, index, prefix length, scope, flags, name)::

        20010db8000000000000000000000010 02 40 00 80     eth0
    """
    out: List[Tuple[int, bytes, IfAddr]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32:
            continue
        try:
            raw = bytes.fromhex(fields[0])
            index, scope, flags = (int(fields[i], 16) for i in (1, 3, 4))
        except ValueError:
            continue
        scope = _SCOPE6.get(scope, 0)
        entry = IfAddr(index, AF_INET6, _socket.inet_ntop(AF_INET6, raw), flags, scope)
        out.append((scope, raw, entry))
    out.sort(key=lambda item: item[:2])
    return [entry for _, _, entry in out]


def parse_ifconf(data: bytes, size: int = IFREQ_SIZE) -> "List[Tuple[bytes, bytes]]":
    """The (label, 4-byte address) pairs of a SIOCGIFCONF answer: ``size``-byte
    ``struct ifreq`` records, a NUL-padded name then a ``sockaddr_in``."""
    out = []
    for pos in range(0, len(data) - size + 1, size):
        label = data[pos:pos + IFNAMSIZ].split(b"\0", 1)[0]
        if _SIN_FAMILY.unpack_from(data, pos + IFNAMSIZ)[0] != AF_INET:
            continue
        out.append((label, bytes(data[pos + IFNAMSIZ + 4:pos + IFNAMSIZ + 8])))
    return out


def place(pairs: "List[Tuple[bytes, bytes]]", confirmed: "List[Optional[int]]"
          ) -> "List[Optional[int]]":
    """The interface index of each pair: the confirmed one, else that of the nearest
    confirmed pairs before and after it when they agree, else None.

    >>> place([(b"a", b""), (b"x", b""), (b"a", b""), (b"y", b"")], [1, None, 1, None])
    [1, 1, 1, None]
    """
    out = list(confirmed)
    before: Optional[int] = None
    pending: List[int] = []
    for i, index in enumerate(confirmed):
        if index is None:
            pending.append(i)
            continue
        if pending and before == index:
            for j in pending:
                out[j] = index
        pending = []
        before = index
    return out


def _ifconf(fd: int) -> bytes:
    """The SIOCGIFCONF answer, in a buffer grown until it is not full."""
    from array import array
    from fcntl import ioctl
    size = 4096
    while True:
        buf = array("B", bytes(size))
        request = bytearray(_IFCONF.pack(size, buf.buffer_info()[0]))
        ioctl(fd, SIOCGIFCONF, request, True)
        used = _IFCONF.unpack(request)[0]
        if used + IFREQ_SIZE <= size:
            return buf.tobytes()[:used]
        if size >= MAX_IFCONF_BYTES:
            raise OSError("SIOCGIFCONF: more than %d bytes of addresses" % size)
        size *= 4


def _on(fd: int, label: bytes, raw: bytes) -> bool:
    """Whether the kernel finds ``raw`` with ``label`` on the interface the label's stem
    names (SIOCGIFADDR compares label and address before falling back to the label)."""
    from fcntl import ioctl
    request = bytearray(IFREQ_SIZE)
    request[:len(label)] = label
    _SIN_FAMILY.pack_into(request, IFNAMSIZ, AF_INET)
    request[IFNAMSIZ + 4:IFNAMSIZ + 8] = raw
    try:
        ioctl(fd, SIOCGIFADDR, request, True)
    except OSError:
        return False
    return bytes(request[IFNAMSIZ + 4:IFNAMSIZ + 8]) == raw


def ipv4_addresses(known: "Dict[str, int]") -> "List[IfAddr]":
    """IPv4 addresses from SIOCGIFCONF, placed on their interface as the module
    docstring says; ``known``: interface name -> index (the only names asked about)."""
    sock = _socket.socket(AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        fd = sock.fileno()
        pairs = parse_ifconf(_ifconf(fd))
        stems = [known.get(label.split(b":", 1)[0].decode("utf-8", "surrogateescape"))
                 for label, _ in pairs]
        confirmed: "List[Optional[int]]" = [None] * len(pairs)
        start = 0
        while start < len(pairs):
            # a run of pairs whose labels name the same interface: when its first and
            # last pairs are there, all of the run is (pairs of one interface are
            # contiguous); otherwise ask for each
            end = start
            while end + 1 < len(pairs) and stems[end + 1] == stems[start]:
                end += 1
            index = stems[start]
            if index is not None:
                ends = {start, end}
                if all(_on(fd, *pairs[i]) for i in ends):
                    confirmed[start:end + 1] = [index] * (end + 1 - start)
                else:
                    for i in range(start, end + 1):
                        if _on(fd, *pairs[i]):
                            confirmed[i] = index
            start = end + 1
    finally:
        sock.close()
    placed = place(pairs, confirmed)
    lost = placed.count(None)
    if lost:
        LOG.info("network: %d IPv4 addresses left out: their label does not name their "
                 "interface, and without netlink the kernel does not say which it is", lost)
    return [IfAddr(index, AF_INET, _socket.inet_ntop(AF_INET, raw))
            for (_, raw), index in zip(pairs, placed) if index is not None]


def interface_addresses(root: "Root", known: "Dict[str, int]") -> "List[IfAddr]":
    """IPv4 (SIOCGIFCONF) then IPv6 (``/proc/net/if_inet6`` under ``root``) addresses.
    Raises OSError when IPv4 cannot be listed (publishing IPv6 alone would remove the
    published IPv4 addresses)."""
    data = root.read_bytes(IF_INET6, b"") or b""
    return ipv4_addresses(known) + parse_if_inet6(data.decode("utf-8", "surrogateescape"))
