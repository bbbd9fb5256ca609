"""The mount table, from ``/proc/self/mountinfo`` (a file read, no psutil, no process).

mountinfo rather than ``/proc/mounts``: it carries the device number of each mount
(``major:minor``), which identifies the block device whatever name the mount was made
with (``/dev/disk/by-uuid/...``, ``LABEL=``, a bind mount of a subdirectory). Lines are
in mount order.
"""

from . import log
from .records import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Tuple, Union

    from .guest import Root

LOG = log.getLogger(__name__)

MOUNTINFO = "/proc/self/mountinfo"

_OCTAL = b"01234567"


def _bytes(text: "Union[str, bytes]") -> bytes:
    return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text


def unescape(field: "Union[str, bytes]") -> str:
    r"""Undo the kernel's octal escapes (space, tab, newline, backslash) and decode:
    ``/mnt/my\040disk`` → ``/mnt/my disk``.

    The kernel escapes bytes and passes every other byte of a name as it is, so the
    escapes are undone on bytes and the result decoded once, as UTF-8 (a byte that is
    not UTF-8 becomes U+FFFD).
    """
    return _unescape(_bytes(field))


def _unescape(raw: bytes) -> str:
    if b"\\" in raw:
        out = bytearray()
        i = 0
        while i < len(raw):
            code = raw[i + 1:i + 4]
            if (raw[i] == 0x5C and len(code) == 3 and code[0] in _OCTAL
                    and code[1] in _OCTAL and code[2] in _OCTAL and int(code, 8) < 256):
                out.append(int(code, 8))
                i += 4
            else:
                out.append(raw[i])
                i += 1
        raw = bytes(out)
    return raw.decode("utf-8", "replace")


@record(frozen=True)
class Mount:
    """One mount: which device, which part of it (``root``), where, and its type.

    ``source`` is whatever the mounter passed (for FUSE, any user's free choice): it
    never identifies a device. ``mount_id`` is the kernel's id of this mount (the one
    ``/proc/self/fdinfo/<fd>`` shows as ``mnt_id``); 0 if unknown.
    """

    major: int
    minor: int
    root: str
    mount_point: str
    fstype: str
    source: str
    mount_id: int = 0

    @property
    def devno(self) -> "Tuple[int, int]":
        return (self.major, self.minor)


def parse_line(line: "Union[str, bytes]") -> Mount:
    """One mountinfo line; raises ValueError if it is not one.

    Sample: ``36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw``
    (id, parent id, major:minor, root, mount point, options, optional fields up to
    ``-``, then type, source, super options). Fields are separated by single spaces,
    and only by them: other whitespace (\\v, \\r, NBSP, ...) is part of a name.
    """
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogateescape")
    fields = line.rstrip(b"\n").split(b" ")
    try:
        sep = fields.index(b"-", 6)
    except ValueError:
        raise ValueError("no ' - ' separator in mountinfo line %r" % (line,)) from None
    if len(fields) < sep + 3:
        raise ValueError("truncated mountinfo line %r" % (line,))
    major, colon, minor = fields[2].partition(b":")
    if not colon or not _number(major) or not _number(minor):
        raise ValueError("bad major:minor in mountinfo line %r" % (line,))
    mount_id = int(fields[0]) if _number(fields[0]) else 0
    return Mount(int(major), int(minor), _unescape(fields[3]), _unescape(fields[4]),
                 _unescape(fields[sep + 1]), _unescape(fields[sep + 2]), mount_id)


def _number(field: bytes) -> bool:
    return 0 < len(field) <= 10 and field.isdigit()       # bytes.isdigit(): ASCII only


def parse(text: "Union[str, bytes]") -> "Tuple[List[Mount], int]":
    """All mounts of a mountinfo text in order, and how many lines did not parse.
    Lines end at ``\\n`` only (a name may hold any other byte but NUL)."""
    mounts = []
    bad = 0
    for line in _bytes(text).split(b"\n"):
        if not line.strip(b" "):
            continue
        try:
            mounts.append(parse_line(line))
        except ValueError:
            bad += 1
    return mounts, bad


def read(root: "Root", path: str = MOUNTINFO) -> "Optional[List[Mount]]":
    """The guest's mounts, or None if the mount table is not there."""
    text = root.read_bytes(path, limit=64 << 20)
    if text is None:
        return None
    mounts, bad = parse(text)
    if bad:
        LOG.warning("%s: %d line(s) not understood, skipped", path, bad)
    return mounts
