"""What the toolstack derives from a guest's XenStore home: a test oracle ported from
xen-api's OCaml source (github.com/xapi-project/xen-api, read at commit e2ee48d6, Aug
2026). Facts only; the code is our own. Each function names the OCaml it follows.

Input everywhere: the guest's home as a flat ``{relative path: value}`` mapping, as the
daemon holds it (``XenStored.tree(HOME)``: interior nodes included, usually with an
empty value; a mapping of leaves only is completed with empty interior nodes). The
daemon's listing order is the mapping's order (first appearance of each child), which
is what ``XenStored.tree`` returns (oxenstored lists children sorted by name). Values
may be ``bytes`` (decoded as xenopsd does).

The chain, as in dom0:

1. xenopsd (``xenops_server_xen.ml``, ``VM.get_state``) copies a flat list of
   (path, value) out of the home: :func:`xenopsd_copy`.
2. xapi (``xapi_xenops.ml``, ``update_vm``) answers ``lookup`` / ``list`` from that list:
   :func:`xapi_lookup`, :func:`xapi_list`.
3. xapi (``xapi_guest_agent.ml``, ``get_initial_guest_metrics``) builds the
   VM_guest_metrics fields: :func:`guest_metrics` (``networks``, ``os_version``,
   ``PV_drivers_version``, ``other``, ...); ``xapi_pv_driver_version.ml`` parses the
   drivers' version: :func:`pv_drivers`.
4. squeezed (``squeeze_xen.ml``) and rrdp-squeezed (``rrdp_squeezed.ml``) read the
   store directly: :func:`can_balloon`, :func:`has_guest_agent`,
   :func:`memory_internal_free`.

:func:`toolstack_view` puts it all together; :func:`wakes_xenopsd` says whether a write
or rm makes xenopsd re-read the guest.
"""

from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

Tree = Mapping[str, Union[str, bytes]]
Pairs = List[Tuple[str, str]]

# -- OCaml's integer parsing ----------------------------------------------------------


def _parse_ocaml_integer(text: str, nbits: int, sixty_four: bool) -> int:
    """OCaml's runtime/ints.c: ``parse_sign_and_base`` + ``parse_intnat`` (or the loop
    of ``caml_int64_of_string`` when ``sixty_four``). Raises ValueError (OCaml:
    ``Failure "int_of_string"``)."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    p, sign = 0, 1
    if data[:1] == b"-":
        sign, p = -1, 1
    elif data[:1] == b"+":
        p = 1
    base, signed = 10, True
    if data[p:p + 1] == b"0" and data[p + 1:p + 2] in (b"x", b"X", b"o", b"O", b"b", b"B",
                                                        b"u", b"U"):
        base = {b"x": 16, b"o": 8, b"b": 2, b"u": 10}[data[p + 1:p + 2].lower()]
        signed = False
        p += 2

    def digit(i: int) -> int:
        if i >= len(data):
            return -1
        c = data[i]
        if 48 <= c <= 57:
            return c - 48
        if 65 <= c <= 70:
            return c - 55
        if 97 <= c <= 102:
            return c - 87
        return -1

    word = 64                      # uintnat / uint64_t on the 64-bit hosts xapi runs on
    d = digit(p)
    if d < 0 or d >= base:
        raise ValueError("int_of_string")
    res = d
    p += 1
    while True:
        if p < len(data) and data[p:p + 1] == b"_":
            p += 1
            continue
        d = digit(p)
        if d < 0 or d >= base:
            break
        if res > ((1 << word) - 1) // base:
            raise ValueError("int_of_string")          # overflow in base * res
        res = base * res + d
        if res >= 1 << word:
            raise ValueError("int_of_string")          # overflow in + d
        p += 1
    if p != len(data):
        raise ValueError("int_of_string")              # trailing garbage (or a NUL)
    if signed:
        limit = 1 << (nbits - 1)
        if (sign >= 0 and res >= limit) or (sign < 0 and res > limit):
            raise ValueError("int_of_string")
    elif not sixty_four and nbits < word and res >= 1 << nbits:
        raise ValueError("int_of_string")
    value = (-res if sign < 0 else res) % (1 << (nbits if not sixty_four else 64))
    top = nbits if not sixty_four else 64
    return value - (1 << top) if value >= 1 << (top - 1) else value


def ocaml_int_of_string(text: str) -> int:
    """OCaml's ``int_of_string`` on a 64-bit host (63-bit ints): optional ``-`` or ``+``,
    ``0x``/``0o``/``0b``/``0u`` prefixes, ``_`` anywhere after the first digit, nothing
    else (no spaces). Decimal must fit -2^62 .. 2^62-1; a prefixed number may use all
    63 bits and wraps to negative (``0x7fffffffffffffff`` is -1). ValueError otherwise.
    """
    return _parse_ocaml_integer(text, 63, False)


def ocaml_int64_of_string(text: str) -> int:
    """OCaml's ``Int64.of_string`` (``caml_int64_of_string``): as above on 64 bits."""
    return _parse_ocaml_integer(text, 64, True)


# -- the home tree --------------------------------------------------------------------

def _complete(tree: "Tree") -> "OrderedDict[str, str]":
    """The tree with every interior node present (empty value if absent), values as
    text, in the mapping's order."""
    out: "OrderedDict[str, str]" = OrderedDict()
    for key, value in tree.items():
        parts = key.strip("/").split("/")
        for i in range(1, len(parts)):
            out.setdefault("/".join(parts[:i]), "")
        out[key.strip("/")] = value if isinstance(value, str) else value.decode(
            "utf-8", "surrogateescape")
    return out


def _children(tree: Mapping[str, str]) -> Dict[str, List[str]]:
    """Each node's children in listing order (first appearance)."""
    kids: Dict[str, List[str]] = {}
    for key in tree:
        parent, _, name = key.rpartition("/")
        siblings = kids.setdefault(parent, [])
        if name not in siblings:
            siblings.append(name)
    return kids


# -- 1. xenopsd's copy ----------------------------------------------------------------

#: ``VM.get_state`` (xenops_server_xen.ml): (dir, excluded dirs, depth). "depth is the
#: number of directories descended into, keys at depth+1 are still read".
COPIED = (
    ("control", (), 0),
    ("feature/hotplug", (), 0),
    ("xenserver/attr", (), 3),                    # xenserver/attr/net-sriov-vf/0/ipv4/1
    ("attr", ("attr/os/hotfixes",), 3),           # attr/vif/0/ipv4/0, attr/eth0/ipv6/0/addr
    ("drivers", (), 0),
    ("data", (), 0),                              # "in particular avoid data/volumes"
    ("data/service", (), 1),                      # data/service/<service-name>/<key>
    ("data/pvs_target", (), 0),
)

#: ``!Xenopsd.vm_guest_agent_xenstore_quota_bytes`` (xenopsd.ml): 25 MiB.
QUOTA_BYTES = 25 * 1024 * 1024

#: ``entry_overhead`` (xenops_utils.ml): ``String.length "(''%.'')%."``.
_ENTRY_OVERHEAD = 10


def _encoded_length(text: str) -> int:
    """``str_max_encoded_length`` (xenops_utils.ml): per byte, the longer of its JSON and
    XML encodings; 3 for every byte >= 0x80. The ASCII table here is our reading of
    Jsonrpc / Xmlrpc escaping (it only matters near the 25 MiB quota)."""
    n = 0
    for byte in text.encode("utf-8", "surrogateescape"):
        if byte >= 0x80:
            n += 3
        elif byte in b"&":
            n += 5
        elif byte in b"<>":
            n += 4
        elif byte in b"\"'":
            n += 6
        elif byte < 0x20 or byte == 0x7f:
            n += 6 + (byte in b"\t\n\r")           # \u00XX in JSON; xml_spaces adds one
        elif byte in b" %\\":
            n += 2
        else:
            n += 1
    return n


def entry_size(key: str, value: str) -> int:
    """``xenstore_encoded_entry_size_bytes`` (xenops_utils.ml)."""
    return _ENTRY_OVERHEAD + _encoded_length(key) + _encoded_length(value)


def utf8_recode(value: str) -> str:
    """``Xenops_utils.utf8_recode``: malformed UTF-8 becomes U+FFFD."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def xenopsd_copy(tree: "Tree", quota: int = QUOTA_BYTES) -> "Pairs":
    """The ``guest_agent`` list of ``VM.get_state`` (xenops_server_xen.ml), in its
    order: ``ls_lR`` of each :data:`COPIED` dir, every node visited (interior ones with
    their empty value), children listed while the depth is >= 0, an excluded dir and
    all below it skipped, visiting stopped once the quota is spent; entries are
    prepended (so the list runs backwards), then each value ``utf8_recode``'d."""
    home = _complete(tree)
    kids = _children(home)
    acc: List[Tuple[str, str]] = []
    left = [quota]

    def visit(path: str, depth: int, excludes: Iterable[str]) -> None:
        if left[0] <= 0 or path in excludes:
            return
        if path in home:                               # ls_l: Some (dir, read entry)
            left[0] -= entry_size(path, home[path])
            acc.append((path, home[path]))
        subdirs = [] if depth < 0 or path not in home else kids.get(path, [])
        for child in subdirs:
            visit(path + "/" + child, depth - 1, excludes)

    for path, excludes, depth in COPIED:
        visit(path, depth, excludes)
    return [(k, utf8_recode(v)) for k, v in reversed(acc)]    # prepended in OCaml


# -- 2. xapi's lookup and list over the copy ------------------------------------------

def xapi_lookup(state: "Pairs", key: str) -> Optional[str]:
    """``lookup`` of ``update_vm`` (xapi_xenops.ml): ``List.assoc_opt key``: exact key,
    first match."""
    for k, v in state:
        if k == key:
            return v
    return None


def xapi_list(state: "Pairs", directory: str) -> List[str]:
    """``list`` of ``update_vm`` (xapi_xenops.ml): for every copied path that starts with
    ``directory`` *as a string* (no ``/`` added: ``attr/vif`` also matches
    ``attr/vif2/x``), the first non-empty component of the rest; duplicates removed by
    ``Listext.setify``, which keeps each name's *last* occurrence. The copy runs
    backwards, so this is the daemon's listing order reversed."""
    if directory.startswith("/"):
        directory = directory[1:]
    names = []
    for path, _ in state:
        if path.startswith(directory):
            rest = [x for x in path[len(directory):].split("/") if x]
            if rest:
                names.append(rest[0])
    out = []
    for i, name in enumerate(names):
        if name not in names[i + 1:]:
            out.append(name)
    return out


# -- 3. xapi_guest_agent.ml -----------------------------------------------------------

PV_DRIVERS_VERSION = (("attr/PVAddons/MajorVersion", "major"),
                      ("attr/PVAddons/MinorVersion", "minor"),
                      ("attr/PVAddons/MicroVersion", "micro"),
                      ("attr/PVAddons/BuildVersion", "build"),
                      ("attr/PVAddons/Application", "application"))
OS_VERSION = (("data/os_name", "name"), ("data/os_uname", "uname"),
              ("data/os_distro", "distro"), ("data/os_majorver", "major"),
              ("data/os_minorver", "minor"), ("attr/os/spmajor", "spmajor"),
              ("attr/os/spminor", "spminor"))
MEMORY = (("data/meminfo_free", "free"), ("data/meminfo_total", "total"))

_IFACE_PREFIXES = ("eth", "xenbr", "eno", "ens", "emp", "enx")


class _Failure(Exception):
    """OCaml's ``Failure``."""


def networks(path: str, vif_type: str, list_: Callable[[str], List[str]]) -> "Pairs":
    """``networks`` (xapi_guest_agent.ml): (xenstore key, networks map key) pairs.

    For each ``<path>/<vif_type>/<id>`` (listing reversed by the fold): each of its
    ``ipv4`` / ``ipv6`` children in listing order; a family's indices stable-sorted by
    ``int_of_string``, which raises on a non-integer index when the family has two or
    more entries (a lone entry is never compared): the exception makes the whole VIF
    yield nothing read so far, later families still count. The lowest IPv4 index also
    gives ``<id>/ip``. Only when ``<path>/<vif_type>`` lists nothing, the old layout:
    ``<path>/eth<n>/ip`` (also xenbr, eno, ens, emp, enx) and ``…/ipv6/<k>/addr``.
    """
    def cmp_key(name: str) -> int:
        try:
            return ocaml_int_of_string(name)
        except ValueError:
            raise _Failure(name) from None

    def extract_ip_ver(vif_path: str, vif_id: str, acc: "Pairs", ip_ver: str) -> "Pairs":
        ids = list_(vif_path + "/" + ip_ver)
        try:
            if len(ids) >= 2:
                keys = [cmp_key(i) for i in ids]       # every element gets compared
                ids = [ids[n] for n in sorted(range(len(ids)), key=lambda n: keys[n])]
            out: Pairs = []
            for ip_id in ids:
                left = "%s/%s/%s" % (vif_path, ip_ver, ip_id)
                right = "%s/%s/%s" % (vif_id, ip_ver, ip_id)
                if not out and ip_ver == "ipv4":
                    out = [(left, vif_id + "/ip"), (left, right)]
                else:
                    out.insert(0, (left, right))
            return out + acc
        except _Failure:
            return []

    def find_all_vif_ips(vif_path: str, vif_id: str) -> "Pairs":
        acc: Pairs = []
        for ip_ver in [a for a in list_(vif_path) if a in ("ipv4", "ipv6")]:
            acc = extract_ip_ver(vif_path, vif_id, acc, ip_ver)
        return acc

    vifs = [(path + "/" + vif_type + "/" + vif_id, vif_id)
            for vif_id in reversed(list_(path + "/" + vif_type))]
    if vifs:
        return [pair for vif_path, vif_id in vifs for pair in find_all_vif_ips(vif_path,
                                                                              vif_id)]
    eths = []
    for eth in list_(path):
        for prefix in _IFACE_PREFIXES:
            if eth.startswith(prefix):
                eths.insert(0, (path + "/" + eth, eth[len(prefix):]))
                break
    out: Pairs = []
    for eth_path, n in eths:
        out += [(eth_path + "/ip", n + "/ip"), (eth_path + "/ip", n + "/ipv4/0")]
        if "ipv6" in list_(eth_path):
            out += [(eth_path + "/ipv6/" + s + "/addr", n + "/ipv6/" + s)
                    for s in list_(eth_path + "/ipv6")]
    return out


def _windows_driver_versions(lookup: Callable[[str], Optional[str]],
                             list_: Callable[[str], List[str]]) -> "Pairs":
    """``get_windows_driver_versions``: ``drivers/<int>`` = "vendor NAME version attr"
    -> (name lower-cased, "vendor version attr"). Our reading of
    ``Scanf.sscanf "%s@ %s@ %s@ %s@\\n"``: split at the first three spaces, the last
    field ends at a newline; missing fields are empty."""
    out = []
    for x in list_("drivers"):
        try:
            ocaml_int_of_string(x)
        except ValueError:
            continue
        value = lookup("drivers/" + x)
        if value is None:
            continue
        fields = value.split(" ", 3) + ["", "", ""]
        vendor, name, version, attr = fields[:4]
        out.append((name.lower(), " ".join([vendor, version, attr.split("\n", 1)[0]])))
    return out


def guest_metrics(lookup: Callable[[str], Optional[str]],
                  list_: Callable[[str], List[str]]) -> Dict[str, object]:
    """``get_initial_guest_metrics`` (xapi_guest_agent.ml): each field as the ordered
    list of (key, value) xapi stores; ``can_use_hotplug_vbd|vif`` as "yes" / "no" /
    "unspecified"."""
    all_control = list_("control")
    cant_suspend_reason = lookup("data/cant_suspend_reason")

    def to_map(pairs: Iterable[Tuple[str, str]]) -> "Pairs":
        out = []
        for xskey, mapkey in pairs:
            value = lookup(xskey)
            if value is not None and xskey == "control/feature-suspend" and \
                    cant_suspend_reason is not None:
                out.append(("data-cant-suspend-reason", cant_suspend_reason))
            elif value is not None:
                out.append((mapkey, value))
        return out

    def tristate(key: str) -> str:
        return {"0": "no", "1": "yes"}.get(lookup(key) or "", "unspecified")

    pv = to_map(PV_DRIVERS_VERSION) + _windows_driver_versions(lookup, list_)
    if pv and not any(k == "micro" for k, _ in pv):
        pv.insert(0, ("micro", "-1"))
    ts = lookup("data/ts")
    services = []
    for service in list_("data/service"):
        for key in list_("data/service/" + service):
            services.append((service + "/" + key,
                             lookup("data/service/%s/%s" % (service, key)) or ""))
    return {
        "PV_drivers_version": pv,
        "os_version": to_map(OS_VERSION),
        "networks": to_map(networks("attr", "vif", list_) +
                           networks("xenserver/attr", "net-sriov-vf", list_)),
        "other": to_map(("control/" + x, x) for x in all_control) +
        ([("data-ts", ts)] if ts is not None else []),
        "memory": to_map(MEMORY),        # computed, never stored ("Nb. we're ignoring")
        "services": services,
        "can_use_hotplug_vbd": tristate("feature/hotplug/vbd"),
        "can_use_hotplug_vif": tristate("feature/hotplug/vif"),
    }


def pv_drivers(os_version: "Pairs", pv_drivers_version: "Pairs"):
    """``get_drivers_version`` (xapi_pv_driver_version.ml): ("Linux" or "Windows", major,
    minor, micro, build), or "Unknown" (= no PV drivers for xapi's operation checks)
    when major or minor is missing or any present field fails ``int_of_string``; micro
    and build default to -1. ``List.assoc``: the first pair of a key counts."""
    os_map, pv_map = {}, {}
    for k, v in os_version:
        os_map.setdefault(k, v)
    for k, v in pv_drivers_version:
        pv_map.setdefault(k, v)
    try:
        major = ocaml_int_of_string(pv_map["major"])
        minor = ocaml_int_of_string(pv_map["minor"])
        micro = ocaml_int_of_string(pv_map["micro"]) if "micro" in pv_map else -1
        build = ocaml_int_of_string(pv_map["build"]) if "build" in pv_map else -1
    except (KeyError, ValueError):
        return "Unknown"
    kind = "Windows" if os_map.get("distro") == "windows" else "Linux"
    return (kind, major, minor, micro, build)


# -- 4. squeezed and rrdp-squeezed (they read the store itself) -----------------------

def can_balloon(tree: "Tree") -> bool:
    """``Domain.get_feature_balloon`` (squeeze_xen.ml): ``control/feature-balloon`` can
    be read (its value is ignored: ``0`` still means "can balloon")."""
    return "control/feature-balloon" in _complete(tree)


def has_guest_agent(tree: "Tree") -> bool:
    """``Domain.get_guest_agent`` (squeeze_xen.ml): ``data/updated`` can be read."""
    return "data/updated" in _complete(tree)


def memory_internal_free(tree: "Tree") -> Optional[int]:
    """The VM's ``memory_internal_free`` (KiB) of rrdp_squeezed.ml: its watch on
    ``data/meminfo_free`` reads the value with ``Int64.of_string``. None when absent
    (the plugin forgets the value) or unparsable (the plugin's watch callback raises and
    keeps no new value)."""
    value = _complete(tree).get("data/meminfo_free")
    if value is None:
        return None
    try:
        return ocaml_int64_of_string(value)
    except ValueError:
        return None


# -- xenopsd's watches ----------------------------------------------------------------

#: ``interesting_paths_for_domain`` (xenops_server_xen.ml), relative to the home
#: (``/vm/<uuid>/rtc/timeoffset`` and ``qemu-pid-signal`` left out: a guest does not
#: write them).
WATCHED = ("attr", "data/ts", "data/service", "data/pvs_target", "memory/target",
           "memory/uncooperative", "console/vnc-port", "console/tc-port", "control",
           "device", "rrd", "vm-data", "feature", "xenserver/attr")

#: Watched as well before xen-api v25.23.0 (June 2025): every XenServer 8 and XCP-ng
#: 8.x host in the field.
WATCHED_LEGACY = WATCHED + ("data/updated",)


def wakes_xenopsd(op: str, path: str, legacy: bool = True) -> bool:
    """Whether a ``write`` / ``mkdir`` / ``rm`` / ``setperms`` of ``path`` (relative to
    the home) fires one of xenopsd's watches: a watch fires for its path and anything
    below it, and an rm fires the watches below the removed node too."""
    path = path.strip("/")
    for watched in (WATCHED_LEGACY if legacy else WATCHED):
        if path == watched or path.startswith(watched + "/"):
            return True
        if op == "rm" and watched.startswith(path + "/"):
            return True
    return False


# -- all of it ------------------------------------------------------------------------

def toolstack_view(tree: "Tree") -> Dict[str, object]:
    """What an admin sees of the guest: the VM_guest_metrics fields xapi stores (as
    dicts; the order xapi keeps is in :func:`guest_metrics`), ``PV_drivers`` as parsed
    for operation checks, and squeezed's / rrdp-squeezed's view."""
    state = xenopsd_copy(tree)
    metrics = guest_metrics(lambda k: xapi_lookup(state, k), lambda d: xapi_list(state, d))
    return {
        "os_version": dict(metrics["os_version"]),
        "PV_drivers_version": dict(metrics["PV_drivers_version"]),
        "PV_drivers": pv_drivers(metrics["os_version"], metrics["PV_drivers_version"]),
        "networks": dict(metrics["networks"]),
        "other": dict(metrics["other"]),
        "can_balloon": can_balloon(tree),
        "has_guest_agent": has_guest_agent(tree),
        "memory_internal_free": memory_internal_free(tree),
    }
