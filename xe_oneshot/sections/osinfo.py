"""The ``os`` section: distribution, versions, kernel and name under ``data/os_*``.

Source: the facts file ``/var/cache/xe-linux-distribution`` that ``xe-linux-distribution``
writes at boot (``key="value"`` lines, escaping undone by
:func:`~xe_oneshot.distribution.parse_facts`). When it is missing, or holds no (or an
empty) ``os_distro``, the distribution is detected in-process with the same rules, and
``os_uname`` is the running kernel's.
"""

import os

from .. import distribution, log
from . import Collected, Context, SectionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict

    from ..guest import Root

LOG = log.getLogger(__name__)

OWNS = ("data/os_distro", "data/os_majorver", "data/os_minorver", "data/os_uname",
        "data/os_name")


def find_os(root: "Root") -> "Dict[str, str]":
    """The facts (``os_distro`` ...): from the facts file, or detected in-process.
    Raises SectionError when no distribution is recognised."""
    path = distribution.FACTS_FILE
    text = distribution.read_release_file(root, path)
    values = distribution.parse_facts(text) if text is not None else {}
    if not values.get("os_distro", "").strip():
        if text is not None:
            LOG.warning("%s has no os_distro: detecting the distribution", path)
        found = distribution.detect(root)
        if found is None:
            raise SectionError("no Linux distribution recognised (and no %s)" % path)
        values = distribution.facts(found, os.uname().release)
    return values


def os_keys(facts: "Dict[str, str]") -> "Dict[str, str]":
    """``data/<key>`` for each of ``distribution.KEYS`` in ``facts``, cut to
    ``distribution.MAX_VALUE`` characters."""
    out = {}
    for key in distribution.KEYS:
        if key in facts:
            value = facts[key]
            if len(value) > distribution.MAX_VALUE:   # a hand-edited file, say
                LOG.warning("%s: %s of %d characters cut to %d", distribution.FACTS_FILE,
                            key, len(value), distribution.MAX_VALUE)
                value = value[:distribution.MAX_VALUE]
            out["data/" + key] = value
    return out


def collect(ctx: Context) -> Collected:
    """The ``data/os_*`` keys, from the facts file or detected in-process."""
    return Collected(os_keys(find_os(ctx.root)))
