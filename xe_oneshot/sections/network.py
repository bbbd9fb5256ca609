"""The ``network`` section: the IP addresses of every Xen VIF and SR-IOV VF.

Keys (relative to the guest's home)::

    attr/vif/<vifid>/ipv4/<n>                      = 192.0.2.10
    attr/vif/<vifid>/ipv6/<n>                      = fe80::216:3eff:fe00:1
    xenserver/attr/net-sriov-vf/<id>/ipv4|ipv6/<n>  (same, for SR-IOV VFs)

What the toolstack does with them (xapi, ``xapi_guest_agent.ml``): it lists
``attr/vif`` and ``xenserver/attr/net-sriov-vf``, sorts each ``ipv4``/``ipv6``
directory by ``int_of_string`` of the index and maps them to ``<id>/ipv4/<n>`` and
``<id>/ipv6/<n>`` in VM_guest_metrics.networks; the lowest-index IPv4 also becomes
``<id>/ip`` (what admins see as "the" IP). An index ``int_of_string`` refuses, in a
family of two or more, voids that family and those read before it for that VIF (tests/
support/xapi_oracle.py), so indices are always plain integers.

Decisions where the toolstack is indifferent:

* A VIF or VF with no address gets no node at all (as the classic Go agent; the Rust
  xen-guest-agent writes an empty ``attr/vif/<id>`` node, which xapi ignores). A VIF
  whose link is down still reports the addresses the kernel keeps on it (IPv4 ones
  stay configured while the link is down; the kernel drops IPv6 ones itself).
* An address belongs to the interface the kernel puts it on (its interface index),
  never to the one its label names: ``ip addr add ... dev eth0 label eth1`` is eth0's.
* Addresses of devices stacked on the interface (bridge, bond, VLAN, macvlan, any
  depth) are reported under it: with a bond of two VIFs, both VIFs show its address.
* An SR-IOV VF must be a device-backed interface (``/sys/class/net/<if>/device``):
  bridges, bonds and VLANs copy their port's MAC and must not match. A bond slave's
  own MAC is ``bonding_slave/perm_hwaddr`` (the bond rewrites ``address``). A VF id
  whose keys would exceed XenStore's path limit is ignored with a warning (one bad id
  from dom0 must not keep everything else from being published).
* At most MAX_PER_FAMILY addresses per family and VIF (XenStore quota, see there).

Indices, without local state (the published ones are read back through
``ctx.xenstore``):

* Index 0 of each family is the primary address: xapi shows the lowest-index IPv4 as
  "the" IP of the VM. The primary is the kernel's: among the addresses that are not
  IPv4 secondaries / IPv6 temporary (privacy) ones, nor deprecated, the one of the
  widest scope, the interface's own before a stacked device's, then the first the
  kernel lists (IPv4: the first primary added; IPv6: the newest). When the primary
  changes, the address that held index 0 moves to the lowest free index.
* Every other address keeps its index while it exists; a new one takes the lowest
  free index (in the order: the interface's own addresses in the kernel's order, then
  each stacked device's, nearest first). Nothing else shuffles.
* Without XenStore (print mode) numbering starts from 0 in that order.

Finding (``find_addresses``) reads sysfs through ``Root``; the addresses themselves are
the running system's whatever the root (an rtnetlink dump, or SIOCGIFCONF in
:mod:`..ifconf`), and so is ``if_nametoindex`` where the tree has no ``ifindex``. Laying
out (``network_keys``) is pure: records and the published indices in, keys out.
"""

from _socket import AF_INET, AF_INET6, if_nametoindex, inet_ntop, inet_pton

from . import Collected
from .. import log
from ..records import field, record
from ..text import HEX_LOWER, is_decimal, is_xs_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Optional, Tuple

    from . import Context, XenStoreReader
    from ..guest import Root
    from ..netlink import IfAddr

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

#: Address families as published, with their AF_* constant.
FAMILIES = (("ipv4", AF_INET), ("ipv6", AF_INET6))
_FAMILY_KEY = {AF_INET: "ipv4", AF_INET6: "ipv6"}

#: XenStore refuses a relative path over this many bytes (xenstore.packet.REL_PATH_MAX;
#: oxenstored checks the part after /local/domain/<domid>/).
REL_PATH_MAX = 2048

#: IFA_F_* flags of an address that is never the primary: IFA_F_SECONDARY (IPv4) /
#: IFA_F_TEMPORARY (IPv6, a privacy address: same bit), IFA_F_DADFAILED,
#: IFA_F_DEPRECATED.
NOT_PRIMARY = 0x01 | 0x08 | 0x20



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
    """One target's current addresses per family, in publishing order, no duplicates
    (a set beside each list: de-duplicating stays linear), and each family's primary."""

    by_family: "Dict[str, List[str]]" = field(default_factory=lambda: {"ipv4": [], "ipv6": []})
    seen: "Dict[str, set]" = field(default_factory=lambda: {"ipv4": set(), "ipv6": set()})
    #: family -> the primary address (see the module docstring) and its rank.
    primary: "Dict[str, str]" = field(default_factory=dict)
    rank: "Dict[str, Tuple[int, int]]" = field(default_factory=dict)

    def add(self, entry: "IfAddr", position: int) -> None:
        """Add one kernel entry of the device ``position`` steps up from the interface
        (0: the interface itself); entries come in the kernel's order."""
        family = _FAMILY_KEY.get(entry.family)
        if family is None:
            return
        address = entry.address
        seen = self.seen[family]
        if address in seen:
            return
        seen.add(address)
        self.by_family[family].append(address)
        if entry.flags & NOT_PRIMARY:
            return
        rank = (entry.scope, position)
        best = self.rank.get(family)
        if best is None or rank < best:
            self.rank[family] = rank
            self.primary[family] = address


# -- parsers ---------------------------------------------------------------------------

def parse_vif_nodename(text: "Optional[str]") -> "Optional[str]":
    """The VIF id in a netfront ``device/nodename``: ``device/vif/0`` -> ``"0"``."""
    if text is None:
        return None
    prefix, _, vifid = text.strip().rpartition("/")
    return vifid if prefix == "device/vif" and is_decimal(vifid) else None


def parse_mac(text: "Optional[str]") -> "Optional[str]":
    """A MAC address, lower-cased: ``00:16:3E:0A:0B:0C`` -> ``00:16:3e:0a:0b:0c``;
    None if malformed."""
    if text is None:
        return None
    mac = text.strip().lower()
    parts = mac.split(":")
    if len(parts) == 6 and all(len(p) == 2 and HEX_LOWER.issuperset(p) for p in parts):
        return mac
    return None


def is_index(text: str) -> bool:
    """An index as xapi's ``int_of_string`` reads it and we write it: ``0``, ``12``;
    not ``07``, ``-1``, ``x``."""
    return is_decimal(text) and (text == "0" or text[0] != "0")


def canonical(family: int, text: str) -> "Optional[str]":
    """An address in its canonical text form, without psutil's ``%<iface>`` scope:
    ``fe80::0:1%eth0`` -> ``fe80::1``; None if it is not an address of ``family``."""
    text = text.split("%", 1)[0].strip()
    try:
        return inet_ntop(family, inet_pton(family, text))
    except (OSError, ValueError):
        return None


def fits(prefix: str, ident: str) -> bool:
    """Whether every key of target ``prefix/ident`` (``<id>/ipv4/<n>``, n below
    MAX_PER_FAMILY) stays within XenStore's path limit."""
    longest = "%s/%s/ipv4/%d" % (prefix, ident, MAX_PER_FAMILY - 1)
    return len(longest.encode("utf-8", "surrogateescape")) <= REL_PATH_MAX


# -- readers ---------------------------------------------------------------------------

def vf_ids_by_mac(xenstore: "Optional[XenStoreReader]") -> "Dict[str, str]":
    """MAC -> SR-IOV VF id from ``xenserver/device/net-sriov-vf/<id>/mac``; malformed
    MACs are ignored, and a MAC given twice keeps its first id. An id that is not a
    XenStore name, or whose keys would be too long to publish, is ignored with a
    warning."""
    if xenstore is None:
        return {}
    out: Dict[str, str] = {}
    for ident in xenstore.directory(VF_DEVICES):
        if not is_xs_name(ident):
            LOG.warning("SR-IOV VF id %s ignored: not a XenStore name",
                        ascii(ident[:64]))
            continue
        if not fits(VF_PREFIX, ident):
            LOG.warning("SR-IOV VF id of %d characters ignored: its keys would exceed "
                        "XenStore's %d-byte path limit", len(ident), REL_PATH_MAX)
            continue
        mac = parse_mac(xenstore.read("%s/%s/mac" % (VF_DEVICES, ident)))
        if mac is None:
            LOG.debug("SR-IOV VF %s: no valid MAC, ignored", ident)
            continue
        out.setdefault(mac, ident)
    return out


def interface_mac(root: "Root", name: str) -> "Optional[str]":
    """The interface's own MAC: a bond slave's permanent one, else ``address``."""
    base = "%s/%s" % (SYS_NET, name)
    mac = parse_mac(root.read_line(base + "/bonding_slave/perm_hwaddr"))
    return mac or parse_mac(root.read_line(base + "/address"))


def find_targets(root: "Root", names: "Iterable[str]",
                 vf_by_mac: "Dict[str, str]") -> "Dict[str, Target]":
    """Interface name -> target, for the VIFs and SR-IOV VFs among ``names``."""
    out: Dict[str, Target] = {}
    for name in names:
        base = "%s/%s" % (SYS_NET, name)
        vifid = parse_vif_nodename(root.read_line(base + "/device/nodename"))
        if vifid is not None:
            if fits(VIF_PREFIX, vifid):
                out[name] = Target(VIF_PREFIX, vifid)
            else:
                LOG.warning("VIF id of %d digits ignored: its keys would exceed "
                            "XenStore's %d-byte path limit", len(vifid), REL_PATH_MAX)
            continue
        if vf_by_mac and root.lexists(base + "/device"):
            ident = vf_by_mac.get(interface_mac(root, name) or "")
            if ident is not None:
                out[name] = Target(VF_PREFIX, ident)
    return out


def stacked(root: "Root", name: str) -> "List[str]":
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


def published_indices(xenstore: "Optional[XenStoreReader]", path: str) -> "Dict[str, int]":
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


def assign_indices(current: "List[str]", published: "Dict[str, int]",
                   primary: "Optional[str]" = None,
                   limit: int = MAX_PER_FAMILY) -> "Dict[int, str]":
    """Index -> address: ``primary`` takes index 0; every other published address
    keeps its index; the others (in order, the one that held index 0 among them)
    take the lowest free indices while fewer than ``limit`` are taken. Linear.

    >>> assign_indices(["c", "b"], {"a": 0, "b": 1})
    {1: 'b', 0: 'c'}
    >>> assign_indices(["p", "v"], {"v": 0}, primary="p")
    {0: 'p', 1: 'v'}
    """
    out: Dict[int, str] = {}
    placed = set()
    if primary is not None:
        out[0] = primary
        placed.add(primary)
    for address in current:
        index = published.get(address)
        if index is not None and index not in out and address not in placed:
            out[index] = address
            placed.add(address)
    free = 0
    for address in current:
        if address in placed:
            continue
        if len(out) >= limit:
            LOG.warning("more than %d addresses of one family on an interface: %s and "
                        "later ones not published", limit, address)
            break
        while free in out:
            free += 1
        out[free] = address
    return out


def interface_index(root: "Root", name: str) -> "Optional[int]":
    """The interface's index: ``/sys/class/net/<if>/ifindex``; where the tree has no
    such file (a hand-made guest tree), the kernel's for that name (``if_nametoindex``:
    an ioctl, no netlink); None if neither knows it."""
    text = root.read_line("%s/%s/ifindex" % (SYS_NET, name))
    if text is not None:
        return int(text) if is_decimal(text) else None
    try:
        return if_nametoindex(name) or None
    except (OSError, ValueError):
        return None


def by_index(entries: "Iterable[IfAddr]") -> "Dict[int, List[IfAddr]]":
    """Interface index -> its entries, in the kernel's order."""
    out: Dict[int, List[IfAddr]] = {}
    for entry in entries:
        out.setdefault(entry.index, []).append(entry)
    return out


def gather(root: "Root", targets: "Dict[str, Target]",
           entries: "Dict[int, List[IfAddr]]") -> "Dict[Target, Addresses]":
    """Each target's addresses: its interface's own, then each stacked device's."""
    current: Dict[Target, Addresses] = {}
    for name in sorted(targets):
        addrs = current.setdefault(targets[name], Addresses())
        for position, dev in enumerate([name] + stacked(root, name)):
            index = interface_index(root, dev)
            for entry in entries.get(index, ()) if index is not None else ():
                addrs.add(entry, position)
    return current


def read_addresses(root: "Root", names: "List[str]") -> "List[IfAddr]":
    """Every interface's addresses: from one rtnetlink dump, or, where rtnetlink is
    refused (seccomp, ``RestrictAddressFamilies=``), from /proc/net/if_inet6 and the
    SIOCGIFCONF ioctl (:mod:`..ifconf`, which knows less: see there). Neither imports
    psutil (25-45 ms of CPU)."""
    from .. import netlink
    try:
        return netlink.interface_addresses()
    except OSError as err:
        LOG.info("network: rtnetlink unavailable (%s), reading /proc/net/if_inet6 and "
                 "SIOCGIFCONF", err)
    from .. import ifconf
    known: Dict[str, int] = {}
    for name in names:
        index = interface_index(root, name)
        if index is not None:
            known[name] = index
    return ifconf.interface_addresses(root, known)


# -- finding, then laying out -----------------------------------------------------------

def find_addresses(root: "Root", xenstore: "Optional[XenStoreReader]"
                   ) -> "Dict[Target, Addresses]":
    """Each VIF's and SR-IOV VF's current addresses (targets in interface-name order)."""
    names = root.listdir(SYS_NET)
    targets = find_targets(root, names, vf_ids_by_mac(xenstore) if names else {})
    if not targets:
        return {}
    current = gather(root, targets, by_index(read_addresses(root, names)))
    LOG.debug("network: %d interfaces, %d targets", len(names), len(current))
    return current


def find_published(xenstore: "Optional[XenStoreReader]",
                   current: "Dict[Target, Addresses]") -> "Dict[str, Dict[str, int]]":
    """``<target>/<family>`` -> its published address -> index, for each family that
    has addresses now (the only ones whose indices matter)."""
    out: Dict[str, Dict[str, int]] = {}
    for target, addrs in current.items():
        for family, _ in FAMILIES:
            if addrs.by_family[family]:
                path = "%s/%s" % (target.path, family)
                out[path] = published_indices(xenstore, path)
    return out


def network_keys(current: "Dict[Target, Addresses]",
                 published: "Dict[str, Dict[str, int]]") -> "Dict[str, str]":
    """The ``<target>/<family>/<n>`` keys: the primary at index 0, the published
    indices (``published``, as :func:`find_published` gives them) kept, newcomers in the
    lowest free ones (:func:`assign_indices`)."""
    values: Dict[str, str] = {}
    for target, addrs in current.items():
        for family, _ in FAMILIES:
            wanted = addrs.by_family[family]
            if not wanted:
                continue
            path = "%s/%s" % (target.path, family)
            assigned = assign_indices(wanted, published.get(path, {}),
                                      addrs.primary.get(family))
            for index, address in assigned.items():
                values["%s/%d" % (path, index)] = address
    return values


def collect(ctx: "Context") -> Collected:
    """Addresses of every VIF and SR-IOV VF, the primary at index 0, others stable."""
    current = find_addresses(ctx.root, ctx.xenstore)
    if not current:
        return Collected()
    values = network_keys(current, find_published(ctx.xenstore, current))
    LOG.debug("network: %d keys", len(values))
    return Collected(values)
