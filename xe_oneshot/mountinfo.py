"""The mount table, from ``/proc/self/mountinfo`` (a file read, no psutil, no process).

mountinfo rather than ``/proc/mounts``: it carries the device number of each mount
(``major:minor``), which identifies the block device whatever name the mount was made
with (``/dev/disk/by-uuid/...``, ``LABEL=``, a bind mount of a subdirectory). Lines are
in mount order.
"""

from __future__ import annotations

from . import log
from .records import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

    from .guest import Root

LOG = log.getLogger(__name__)

MOUNTINFO = "/proc/self/mountinfo"

_OCTAL = "01234567"


def unescape(field: str) -> str:
    r"""Undo the kernel's octal escapes (space, tab, newline, backslash):
    ``/mnt/my\040disk`` → ``/mnt/my disk``."""
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if (field[i] == "\\" and len(code) == 3 and code[0] in _OCTAL and code[1] in _OCTAL
                and code[2] in _OCTAL):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    raw = "".join(out)
    # The kernel escapes bytes; other bytes of a UTF-8 name arrive as they are.
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


@record(frozen=True)
class Mount:
    """One mount: which device, which part of it (``root``), where, and its type."""

    major: int
    minor: int
    root: str
    mount_point: str
    fstype: str
    source: str

    @property
    def devno(self) -> Tuple[int, int]:
        return (self.major, self.minor)


def parse_line(line: str) -> Mount:
    """One mountinfo line; raises ValueError if it is not one.

    Sample: ``36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw``
    (id, parent id, major:minor, root, mount point, options, optional fields up to
    ``-``, then type, source, super options).
    """
    fields = line.split()
    try:
        sep = fields.index("-", 6)
    except ValueError:
        raise ValueError("no ' - ' separator in mountinfo line %r" % line) from None
    if len(fields) < sep + 3:
        raise ValueError("truncated mountinfo line %r" % line)
    major, colon, minor = fields[2].partition(":")
    if not colon:
        raise ValueError("bad major:minor in mountinfo line %r" % line)
    return Mount(int(major), int(minor), unescape(fields[3]), unescape(fields[4]),
                 unescape(fields[sep + 1]), unescape(fields[sep + 2]))


def parse(text: str) -> Tuple[List[Mount], int]:
    """All mounts of a mountinfo text in order, and how many lines did not parse."""
    mounts = []
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            mounts.append(parse_line(line))
        except ValueError:
            bad += 1
    return mounts, bad


def read(root: Root, path: str = MOUNTINFO) -> Optional[List[Mount]]:
    """The guest's mounts, or None if the mount table is not there."""
    text = root.read_text(path, limit=64 << 20)
    if text is None:
        return None
    mounts, bad = parse(text)
    if bad:
        LOG.warning("%s: %d line(s) not understood, skipped", path, bad)
    return mounts
