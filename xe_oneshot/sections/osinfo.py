"""The ``os`` section: distribution, versions, kernel and name under ``data/os_*``.

Source: the facts file ``/var/cache/xe-linux-distribution`` that ``xe-linux-distribution``
writes at boot (``key="value"`` lines, escaping undone by
:func:`~xe_oneshot.distribution.parse_facts`). When it is missing, or holds no
``os_distro``, the distribution is detected in-process with the same rules, and
``os_uname`` is the running kernel's.
"""

from __future__ import annotations

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
    if "os_distro" not in values:
        if text is not None:
            LOG.warning("%s has no os_distro line: detecting the distribution", path)
        found = distribution.detect(ctx.root)
        if found is None:
            raise SectionError("no Linux distribution recognised (and no %s)" % path)
        values = distribution.facts(found, os.uname().release)
    # A hand-edited file must not make the transaction fail (E2BIG).
    return Collected({"data/" + key: values[key][:distribution.MAX_VALUE]
                      for key in distribution.KEYS if key in values})
