"""The ``memory`` section: total and available memory, in kB, from ``/proc/meminfo``.

``data/meminfo_free`` is MemAvailable (memory the guest could hand out without
swapping), else MemFree on kernels older than 3.14. Its one consumer is rrdp-squeezed
(``rrdp_squeezed.ml``): it watches the key itself and reads it with ``Int64.of_string``
as the VM's ``memory_internal_free`` (the memory graph). xenopsd copies both keys, but
xapi keeps nothing of them (``xapi_guest_agent.ml`` ignores memory), so a change here
comes without ``data/updated`` and wakes neither xenopsd nor xapi.

It wanders all the time, so it is marked with a tolerance of 1% of MemTotal: the
publisher holds smaller moves back until the published value is old, at most
``publisher.MAX_AGE`` (110 s: as fresh as the classic agent, which rewrites it every
120 s; see publisher.py)."""

from . import Collected, Context, SectionError
from ..text import parse_decimal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict

OWNS = ("data/meminfo_total", "data/meminfo_free")

MEMINFO = "/proc/meminfo"


def parse_meminfo(text: str) -> "Dict[str, int]":
    """Fields of ``/proc/meminfo`` in kB.

    Sample line: ``MemAvailable:    1534440 kB``. Lines that do not parse are skipped.
    """
    fields = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        value = parse_decimal(rest.split(None, 1)[0] if rest.split() else "")
        if value is not None:       # ASCII only: "٣٣" is no number here
            fields[name.strip()] = value
    return fields


def memory_keys(fields: "Dict[str, int]") -> Collected:
    """``data/meminfo_total`` and ``data/meminfo_free`` (with its tolerance) from the
    fields of :func:`parse_meminfo`. Raises SectionError when one is missing."""
    total = fields.get("MemTotal")
    free = fields.get("MemAvailable", fields.get("MemFree"))
    if not total or free is None:
        raise SectionError("/proc/meminfo has no MemTotal or MemAvailable/MemFree")
    return Collected(
        values={"data/meminfo_total": str(total), "data/meminfo_free": str(free)},
        tolerance={"data/meminfo_free": max(1, total // 100)},
    )


def collect(ctx: Context) -> Collected:
    text = ctx.root.read_text(MEMINFO, limit=64 * 1024)
    if text is None:
        raise SectionError("%s is missing" % MEMINFO)
    return memory_keys(parse_meminfo(text))
