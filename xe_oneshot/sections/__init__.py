"""Sections: what each run collects, and the contract between collectors and publisher.

A section is a module in this package with:

* ``OWNS``: a tuple of XenStore paths, relative to the guest's home, that the section
  owns. A path is a single key or a whole subtree. The publisher reads what is there
  under them, writes what differs and removes what the section no longer reports, and
  never touches anything outside them.
* ``collect(ctx: Context) -> Collected``: reads the guest (files through ``ctx.root``)
  and returns the wanted keys. It knows nothing of transactions. It raises (OSError,
  ValueError, :class:`SectionError`) when it cannot produce a trustworthy answer: the
  publisher then leaves that section's keys as they are.

Sections are imported only when asked for, so that a ``memory`` run loads neither
psutil nor sh.

Adding a section ``<name>`` (tests/test_section_registry.py checks 1, 2 and the budget):

1. **Module** ``sections/<module>.py``: a docstring with its keys and who reads them;
   ``OWNS``, disjoint from every other section's (no path equal to or under another's);
   ``collect(ctx)``. Find, then lay out: ``find_<x>(root, ...)`` returns records,
   ``<x>_keys(records)`` the keys (the layout is then tested without a fake guest).
   Every guest file through ``ctx.root`` (:class:`~xe_oneshot.guest.Root`); what must
   be the running system's (netlink, an ioctl, statvfs) is said in the docstring.
   Import at module level nothing beyond the package and C builtins: no psutil, sh,
   logging (``..log`` stands in), typing (under ``TYPE_CHECKING``), argparse,
   dataclasses (``..records``); a heavy module inside the function that needs it.
   Options, if any: an ``Options`` record in the module, read from ``ctx.options``.
2. **Registry**: one line ``"<name>": "<module>",`` in :data:`SECTIONS` (its place is
   the publishing order). ``<name>`` is lowercase letters only: the unit template
   ``xe-oneshot@<name>[_<tag>].service`` ends the name at the first ``_``.
3. **Trigger**: what starts a run of it. Something the timer should refresh goes into
   ``GROUPS["ephemeral"]``, boot-time facts into ``GROUPS["static"]`` (``all``, the
   boot run, follows :data:`SECTIONS`); an event gets a udev rule
   (``udev-rules/80-xe-oneshot.rules``) or a hook (``hooks/``, ``ifupdown/``,
   ``networkd-dispatcher/``) that runs ``systemctl --no-block start
   xe-oneshot@<name>.service``.
4. **Docs**: README's "What it publishes" and "What runs when" tables; the
   ``--section`` list in ``man/xe-oneshot.8`` (``--help`` is built from the registry).
5. **Tests**: ``tests/test_section_<name>.py`` (parsers on strings, the layout on
   records, ``collect`` on a fake guest under ``--root``, anything XenStore against the
   real daemon), and the section's row in the import budget of
   ``tests/test_section_registry.py``.
"""

import sys

from ..guest import Root
from ..records import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Optional, Set, Tuple

#: Section name -> module (in this package) implementing it, in publishing order.
SECTIONS: "Dict[str, str]" = {
    "os": "osinfo",
    "misc": "misc",
    "memory": "memory",
    "network": "network",
    "volumes": "volumes",
}

#: Names accepted by ``--section`` besides the sections themselves. ``ephemeral`` is
#: what the 60 s timer runs: what changes with no event to announce it (free memory,
#: free space, and addresses set by ifupdown, SLAAC, a VIP or ``ip addr add``).
GROUPS: "Dict[str, Tuple[str, ...]]" = {
    "static": ("os", "misc"),
    "ephemeral": ("memory", "network", "volumes"),
    "all": tuple(SECTIONS),
}


class SectionError(Exception):
    """A section could not collect a trustworthy answer (message is one line)."""


class XenStoreReader:
    """Read-only XenStore access for collectors that need it (SR-IOV MACs, disk backends).

    The interface only (a duck type; ``xsreader.ClientReader`` implements it). Paths are
    relative to the guest's home or absolute. Absent or unreadable nodes read as None /
    empty: a collector never fails because dom0 left something out.
    """

    def read(self, path: str) -> "Optional[str]":
        raise NotImplementedError

    def directory(self, path: str) -> "List[str]":
        raise NotImplementedError

    def read_many(self, paths: "List[str]") -> "List[Optional[str]]":
        """``read`` of each path (a reader may pipeline them)."""
        return [self.read(path) for path in paths]


@record
class Context:
    """What a collector may use: the guest's files, XenStore (if any), options."""

    root: Root = field(default_factory=Root)
    #: None when there is no XenStore (print mode on a machine that is not a Xen guest).
    xenstore: "Optional[XenStoreReader]" = None
    #: Section name -> that section's options record (e.g. ``misc.Options``), set by
    #: the run from the command line; a section without an entry uses its defaults.
    options: "Dict[str, object]" = field(default_factory=dict)


@record
class Collected:
    """A section's answer: keys (relative to the guest's home) and their text values."""

    values: "Dict[str, str]" = field(default_factory=dict)
    #: Keys whose value is an integer that wanders (free memory, free space): a change
    #: smaller than the tolerance is not republished until the published value is older
    #: than the publisher's maximum age. Key -> tolerance (same unit as the value).
    tolerance: "Dict[str, int]" = field(default_factory=dict)


def expand(names: "Iterable[str]") -> "List[str]":
    """Section names for ``--section`` arguments (names, groups, comma lists), in
    publishing order. Raises ValueError naming an unknown one."""
    wanted: "Set[str]" = set()
    for arg in names:
        for name in arg.split(","):
            name = name.strip()
            if not name:
                continue
            if name in GROUPS:
                wanted.update(GROUPS[name])
            elif name in SECTIONS:
                wanted.add(name)
            else:
                raise ValueError("unknown section %r (choose from %s)" % (
                    name, ", ".join(list(SECTIONS) + list(GROUPS))))
    return [name for name in SECTIONS if name in wanted]


def load(name: str):
    """The module implementing section ``name`` (imported on first use)."""
    module = __name__ + "." + SECTIONS[name]
    __import__(module)          # not importlib: its import costs ~1 ms (warnings...)
    return sys.modules[module]
