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

LOG = log.getLogger(__name__)

OWNS = ("data/os_distro", "data/os_majorver", "data/os_minorver", "data/os_uname",
        "data/os_name")


def collect(ctx: Context) -> Collected:
    """The ``data/os_*`` keys, from the facts file or detected in-process."""
    path = distribution.FACTS_FILE
    text = distribution.read_release_file(ctx.root, path)
    values = distribution.parse_facts(text) if text is not None else {}
    if not values.get("os_distro", "").strip():
        if text is not None:
            LOG.warning("%s has no os_distro: detecting the distribution", path)
        found = distribution.detect(ctx.root)
        if found is None:
            raise SectionError("no Linux distribution recognised (and no %s)" % path)
        values = distribution.facts(found, os.uname().release)
    out = {}
    for key in distribution.KEYS:
        if key in values:
            value = values[key]
            if len(value) > distribution.MAX_VALUE:   # a hand-edited file, say
                LOG.warning("%s: %s of %d characters cut to %d", path, key, len(value),
                            distribution.MAX_VALUE)
                value = value[:distribution.MAX_VALUE]
            out["data/" + key] = value
    return Collected(out)
