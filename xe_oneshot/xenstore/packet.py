"""XenStore wire format: a header of four native uint32 (type, req_id, tx_id, len), then
``len`` ≤ 4096 payload bytes (xen/io/xs_wire.h). Encoding requests and their payloads,
decoding and checking headers, reassembling replies from the pieces a transport reads
(:func:`take_message`)."""

import struct

from .errors import InvalidArgument, ProtocolError
from ..text import XS_PATH_BYTES

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; this runs on every udev event
    from typing import Optional, Tuple, Union

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


def path_payload(path: str, op: str = "", extra: bytes = b"") -> bytes:
    """A request's payload ``path\\0`` then ``extra`` (READ ``data/os\\0``, WATCH
    ``data\\0token\\0``); InvalidArgument (EINVAL) for a bad path, see :func:`check_path`."""
    return check_path(path, op) + b"\0" + extra


def write_payload(path: str, value: "object") -> bytes:
    """WRITE's payload ``path\\0value`` (no trailing NUL): ``value`` is str (as UTF-8) or
    bytes. InvalidArgument: EINVAL for a bad path, E2BIG when it does not fit a message."""
    head = path_payload(path, "write")
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)  # type: ignore
    if len(head) + len(data) > PAYLOAD_MAX:
        import errno
        raise InvalidArgument(errno.E2BIG, path, "write",
                              detail="value of %d bytes does not fit a message" % len(data))
    return head + data


def decode_header(data: "Union[bytes, bytearray]",
                  limit: int = PAYLOAD_MAX) -> "Tuple[int, int, int, int]":
    """``(type, req_id, tx_id, len)`` from the first 16 bytes of ``data``, e.g.
    ``02000000 07000000 00000000 03000000`` → ``(2, 7, 0, 3)``. ProtocolError (EPROTO)
    when ``len`` exceeds ``limit``: known from the header alone, before the payload."""
    typ, req_id, tx_id, length = HEADER.unpack_from(data)
    if length > limit:
        import errno
        raise ProtocolError(errno.EPROTO, None, OP_NAMES.get(typ, str(typ)),
                            detail="reply of %d bytes exceeds %d" % (length, limit))
    return typ, req_id, tx_id, length


def take_message(buf: bytearray,
                 limit: int = PAYLOAD_MAX) -> "Optional[Tuple[int, int, int, bytes]]":
    """Reassembly: the first whole message ``(type, req_id, tx_id, payload)`` in ``buf``
    (the bytes read so far: the xenbus device hands a reply back in pieces, a socket may
    split one too), removed from it; None until more bytes come. ProtocolError once a
    header announces more than ``limit`` bytes."""
    if len(buf) < HEADER.size:
        return None
    typ, req_id, tx_id, length = decode_header(buf, limit)
    end = HEADER.size + length
    if len(buf) < end:
        return None
    payload = bytes(buf[HEADER.size:end])
    del buf[:end]
    return typ, req_id, tx_id, payload
