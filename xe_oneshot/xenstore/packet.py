"""XenStore wire format: a header of four native uint32 (type, req_id, tx_id, len), then
``len`` ≤ 4096 payload bytes (xen/io/xs_wire.h)."""

import struct

from .errors import InvalidArgument
from ..text import XS_PATH_BYTES

HEADER = struct.Struct("=IIII")
PAYLOAD_MAX = 4096
ABS_PATH_MAX = 3072
REL_PATH_MAX = 2048


class Op:
    """Message types."""

    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    RESET_WATCHES = 21
    DIRECTORY_PART = 22


OP_NAMES = {v: k.lower() for k, v in vars(Op).items() if k.isupper()}


def encode(op: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """One message, header and payload. Raises InvalidArgument (E2BIG) over 4096 bytes:
    such a message gets a guest's connection killed, so it never leaves."""
    if len(payload) > PAYLOAD_MAX:
        import errno
        raise InvalidArgument(errno.E2BIG, None, OP_NAMES.get(op, str(op)),
                              detail="payload of %d bytes exceeds %d"
                              % (len(payload), PAYLOAD_MAX))
    return HEADER.pack(op, req_id, tx_id, len(payload)) + payload


def check_path(path: str, op: str = "") -> bytes:
    """The path as bytes, or InvalidArgument (EINVAL) for what xenstored would refuse:
    characters outside ``A-Za-z0-9-/_@``, ``//``, a trailing ``/`` (``/`` alone is fine),
    relative > 2048 or absolute > 3072 bytes."""
    import errno
    raw = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else bytes(path)

    def bad(why: str) -> InvalidArgument:
        return InvalidArgument(errno.EINVAL, path, op, detail="invalid path: " + why)

    if not raw:
        raise bad("empty")
    if not XS_PATH_BYTES.issuperset(raw):
        odd = sorted(set(raw) - XS_PATH_BYTES)[0]
        raise bad("character %r not allowed" % chr(odd))
    if b"//" in raw:
        raise bad("contains '//'")
    if raw.endswith(b"/") and raw != b"/":
        raise bad("trailing '/'")
    limit = ABS_PATH_MAX if raw[:1] == b"/" else REL_PATH_MAX
    if len(raw) > limit:
        raise bad("%d bytes, over %d" % (len(raw), limit))
    return raw
