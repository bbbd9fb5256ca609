"""The ``network`` section: the IP addresses of every Xen VIF and SR-IOV VF.

Keys (relative to the guest's home)::

    attr/vif/<vifid>/ipv4/<n>                      = 192.0.2.10
    attr/vif/<vifid>/ipv6/<n>                      = fe80::216:3eff:fe00:1
    xenserver/attr/net-sriov-vf/<id>/ipv4|ipv6/<n>  (same, for SR-IOV VFs)

What the toolstack does with them (xapi, ``xapi_guest_agent.ml``): it lists
``attr/vif`` and ``xenserver/attr/net-sriov-vf``, sorts each ``ipv4``/``ipv6``
directory by ``int_of_string`` of the index and maps them to ``<id>/ipv4/<n>`` and
``<id>/ipv6/<n>`` in VM_guest_metrics.networks; the lowest-index IPv4 also becomes
``<id>/ip`` (what admins see as "the" IP). One index that is not a decimal integer
makes it drop that VIF's whole family list, so indices are always plain integers.

Decisions where the toolstack is indifferent:

* A VIF or VF with no address gets no node at all (as the classic Go agent; the Rust
  xen-guest-agent writes an empty ``attr/vif/<id>`` node, which xapi ignores). A VIF
  whose link is down still reports the addresses the kernel keeps on it (IPv4 ones
  stay configured while the link is down; the kernel drops IPv6 ones itself).
* Addresses of devices stacked on the interface (bridge, bond, VLAN, macvlan, any
  depth) are reported under it: with a bond of two VIFs, both VIFs show its address.
* An SR-IOV VF must be a device-backed interface (``/sys/class/net/<if>/device``):
  bridges, bonds and VLANs copy their port's MAC and must not match. A bond slave's
  own MAC is ``bonding_slave/perm_hwaddr`` (the bond rewrites ``address``).
* At most MAX_PER_FAMILY addresses per family and VIF (XenStore quota, see there).
* Order of new addresses: the interface's own first, then each stacked device's
  (nearest first, ``master`` before ``upper_*`` by name), each in the kernel's order
  (IPv4: primaries, secondaries, then labelled ones; IPv6: global before link-local).

Indices are stable without local state: the published ones are read back through
``ctx.xenstore``; an address keeps its index while it exists and a new one takes the
lowest free index. Without XenStore (print mode) numbering starts from 0.
"""

from __future__ import annotations

from _socket import AF_INET, AF_INET6, inet_ntop, inet_pton

from . import Collected
from .. import log
from ..records import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Optional, Tuple

    from . import Context, XenStoreReader
    from ..guest import Root

LOG = log.getLogger(__name__)

VIF_PREFIX = "attr/vif"
VF_PREFIX = "xenserver/attr/net-sriov-vf"
OWNS = (VIF_PREFIX, VF_PREFIX)

#: Where dom0 puts each SR-IOV VF's MAC: ``<VF_DEVICES>/<id>/mac``.
VF_DEVICES = "xenserver/device/net-sriov-vf"

SYS_NET = "/sys/class/net"

#: At most this many addresses per family and interface. Every key is a node counted in
#: the guest's XenStore quota (oxenstored and C xenstored allow 1000 per domain by
#: default; over it the whole transaction fails with EQUOTA): a bridge carrying
#: hundreds of addresses must not cost the guest all its other keys. Published
#: addresses keep their place; newcomers beyond the cap wait for a free one.
MAX_PER_FAMILY = 32

#: Address families as published, with their AF_* constant (psutil and netlink alike).
FAMILIES = (("ipv4", AF_INET), ("ipv6", AF_INET6))

_HEX = frozenset("0123456789abcdef")
_XS_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@-")


@record(frozen=True)
class Target:
    """Where an interface's addresses go: ``attr/vif/0``, ``xenserver/attr/net-sriov-vf/1``."""

    prefix: str
    ident: str

    @property
    def path(self) -> str:
        return "%s/%s" % (self.prefix, self.ident)


@record
class Addresses:
    """One target's current addresses per family, in publishing order, no duplicates."""

    by_family: Dict[str, List[str]] = field(default_factory=lambda: {"ipv4": [], "ipv6": []})

    def add(self, family: str, address: str) -> None:
        known = self.by_family[family]
        if address not in known:
            known.append(address)


# -- parsers ---------------------------------------------------------------------------

def parse_vif_nodename(text: Optional[str]) -> Optional[str]:
    """The VIF id in a netfront ``device/nodename``: ``device/vif/0`` -> ``"0"``."""
    if text is None:
        return None
    prefix, _, vifid = text.strip().rpartition("/")
    return vifid if prefix == "device/vif" and _is_decimal(vifid) else None


def parse_mac(text: Optional[str]) -> Optional[str]:
    """A MAC address, lower-cased: ``00:16:3E:0A:0B:0C`` -> ``00:16:3e:0a:0b:0c``;
    None if malformed."""
    if text is None:
        return None
    mac = text.strip().lower()
    parts = mac.split(":")
    if len(parts) == 6 and all(len(p) == 2 and _HEX.issuperset(p) for p in parts):
        return mac
    return None


def _is_decimal(text: str) -> bool:
    """``0``, ``12``: ASCII digits only (``str.isdigit`` also takes ``²``)."""
    return bool(text) and max(text) < "\x80" and text.isdigit()  # str.isascii: 3.7+


def is_index(text: str) -> bool:
    """An index as xapi's ``int_of_string`` reads it and we write it: ``0``, ``12``;
    not ``07``, ``-1``, ``x``."""
    return _is_decimal(text) and (text == "0" or text[0] != "0")


def canonical(family: int, text: str) -> Optional[str]:
    """An address in its canonical text form, without psutil's ``%<iface>`` scope:
    ``fe80::0:1%eth0`` -> ``fe80::1``; None if it is not an address of ``family``."""
    text = text.split("%", 1)[0].strip()
    try:
        return inet_ntop(family, inet_pton(family, text))
    except (OSError, ValueError):
        return None


def base_name(psutil_name: str) -> str:
    """The interface of a psutil entry: IPv4 labels ``br0:1`` belong to ``br0``
    (kernel interface names cannot contain ``:``)."""
    return psutil_name.split(":", 1)[0]


# -- readers ---------------------------------------------------------------------------

def vf_ids_by_mac(xenstore: Optional[XenStoreReader]) -> Dict[str, str]:
    """MAC -> SR-IOV VF id from ``xenserver/device/net-sriov-vf/<id>/mac``; malformed
    MACs are ignored, and a MAC given twice keeps its first id."""
    if xenstore is None:
        return {}
    out: Dict[str, str] = {}
    for ident in xenstore.directory(VF_DEVICES):
        if not ident or not _XS_NAME.issuperset(ident):
            continue
        mac = parse_mac(xenstore.read("%s/%s/mac" % (VF_DEVICES, ident)))
        if mac is None:
            LOG.debug("SR-IOV VF %s: no valid MAC, ignored", ident)
            continue
        out.setdefault(mac, ident)
    return out


def interface_mac(root: Root, name: str) -> Optional[str]:
    """The interface's own MAC: a bond slave's permanent one, else ``address``."""
    base = "%s/%s" % (SYS_NET, name)
    mac = parse_mac(root.read_line(base + "/bonding_slave/perm_hwaddr"))
    return mac or parse_mac(root.read_line(base + "/address"))


def find_targets(root: Root, names: Iterable[str],
                 vf_by_mac: Dict[str, str]) -> Dict[str, Target]:
    """Interface name -> target, for the VIFs and SR-IOV VFs among ``names``."""
    out: Dict[str, Target] = {}
    for name in names:
        base = "%s/%s" % (SYS_NET, name)
        vifid = parse_vif_nodename(root.read_line(base + "/device/nodename"))
        if vifid is not None:
            out[name] = Target(VIF_PREFIX, vifid)
            continue
        if vf_by_mac and root.lexists(base + "/device"):
            ident = vf_by_mac.get(interface_mac(root, name) or "")
            if ident is not None:
                out[name] = Target(VF_PREFIX, ident)
    return out


def stacked(root: Root, name: str) -> List[str]:
    """Devices stacked on ``name`` (its ``master`` and ``upper_*`` links, any depth),
    nearest first; each once, loops ignored."""
    seen = {name}
    order: List[str] = []
    queue = [name]
    while queue:
        current = queue.pop(0)
        base = "%s/%s" % (SYS_NET, current)
        links = ["master"] + [n for n in root.listdir(base) if n.startswith("upper_")]
        for link in links:
            target = root.readlink("%s/%s" % (base, link))
            if not target:
                continue
            upper = target.rstrip("/").rsplit("/", 1)[-1]
            if upper and upper not in seen:
                seen.add(upper)
                order.append(upper)
                queue.append(upper)
    return order


def published_indices(xenstore: Optional[XenStoreReader], path: str) -> Dict[str, int]:
    """Canonical address -> index as published under ``path`` (``attr/vif/0/ipv4``).
    Non-integer indices are not ours to keep; an address published twice keeps its
    lowest index."""
    if xenstore is None:
        return {}
    family = AF_INET if path.endswith("ipv4") else AF_INET6
    found: Dict[str, int] = {}
    names = [name for name in xenstore.directory(path) if is_index(name)]
    values = xenstore.read_many(["%s/%s" % (path, name) for name in names])
    for name, value in zip(names, values):
        address = canonical(family, value) if value is not None else None
        if address is None:
            continue
        index = int(name)
        if address not in found or index < found[address]:
            found[address] = index
    return found


def assign_indices(current: List[str], published: Dict[str, int],
                   limit: int = MAX_PER_FAMILY) -> Dict[int, str]:
    """Index -> address: a published address keeps its index, new ones (in order)
    take the lowest free indices, while fewer than ``limit`` are taken.

    >>> assign_indices(["c", "b"], {"a": 0, "b": 1})
    {1: 'b', 0: 'c'}
    """
    out: Dict[int, str] = {}
    for address in current:
        if address in published:
            out[published[address]] = address
    free = 0
    for address in current:
        if address in published:
            continue
        if len(out) >= limit:
            LOG.warning("more than %d addresses of one family on an interface: %s and "
                        "later ones not published", limit, address)
            break
        while free in out:
            free += 1
        out[free] = address
    return out


def addresses_by_interface(raw: Dict[str, list]) -> Dict[str, List[Tuple[str, str]]]:
    """psutil.net_if_addrs() (or netlink.interface_addresses(), same shape) ->
    interface -> [(family key, canonical address)], labels folded into their
    interface, MAC (AF_PACKET) entries dropped."""
    out: Dict[str, List[Tuple[str, str]]] = {}
    for name, entries in raw.items():
        found = out.setdefault(base_name(name), [])
        for entry in entries:
            for key, family in FAMILIES:
                if entry.family == family:
                    address = canonical(family, entry.address)
                    if address is not None:
                        found.append((key, address))
    return out


def read_addresses() -> Dict[str, list]:
    """Name -> entries with ``family`` and ``address``, as ``psutil.net_if_addrs()``
    gives them: from one rtnetlink dump (no psutil import: 25-45 ms of CPU), or through
    psutil when rtnetlink is refused here (seccomp, ``RestrictAddressFamilies=``)."""
    from .. import netlink
    try:
        return netlink.interface_addresses()
    except OSError as err:
        LOG.info("network: rtnetlink unavailable (%s), reading addresses with psutil", err)
    import psutil  # lazily: the fallback only
    return psutil.net_if_addrs()


# -- the section -----------------------------------------------------------------------

def collect(ctx: Context) -> Collected:
    """Addresses of every VIF and SR-IOV VF, with stable indices."""
    root = ctx.root
    names = root.listdir(SYS_NET)
    targets = find_targets(root, names, vf_ids_by_mac(ctx.xenstore) if names else {})
    if not targets:
        return Collected()
    by_interface = addresses_by_interface(read_addresses())

    current: Dict[Target, Addresses] = {}
    for name in sorted(targets):
        addrs = current.setdefault(targets[name], Addresses())
        for dev in [name] + stacked(root, name):
            for family, address in by_interface.get(dev, ()):
                addrs.add(family, address)

    values: Dict[str, str] = {}
    for target, addrs in current.items():
        for family, _ in FAMILIES:
            wanted = addrs.by_family[family]
            if not wanted:
                continue
            path = "%s/%s" % (target.path, family)
            for index, address in assign_indices(wanted, published_indices(
                    ctx.xenstore, path)).items():
                values["%s/%d" % (path, index)] = address
    LOG.debug("network: %d interfaces, %d targets, %d keys", len(names), len(current),
              len(values))
    return Collected(values)
