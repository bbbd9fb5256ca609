"""The XenStore client: operations over a transport.

No router thread (a one-shot process needs none): one exchange path (:meth:`Client._exchange`)
sends requests, pipelined where the transport allows it, and routes each reply by its
req_id; watch events that arrive meanwhile are queued for :meth:`Client.wait_event`. A
single request is the exchange of one. A connection that timed out, dropped or answered
out of turn is closed, never reused.
"""

import errno
import time

from . import packet
from .errors import (ConnectionLost, InvalidArgument, ProtocolError, Timeout, XenStoreError,
                     from_wire)
from .packet import OP_NAMES, PAYLOAD_MAX, Op
from .transport import DEVICE_PATHS, SOCKET_PATH, Transport, connect
from ..text import is_decimal

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; this runs on every udev event
    from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar
    T = TypeVar("T")

_PERM_KINDS = frozenset("nrwb")

#: Xen's first reserved domain id (``DOMID_FIRST_RESERVED`` in xen/include/public/xen.h):
#: every domain's id is below it.
DOMID_FIRST_RESERVED = 0x7FF0


def normal_perm(perm: str) -> "Optional[str]":
    """A permission as sent: ``"r05"`` → ``"r5"``: n|r|w|b, then a domid in ASCII
    decimal below DOMID_FIRST_RESERVED. None if it is not one (``"r\u00b2"``: ``isdigit``
    is true of it, ``int`` of thousands of digits raises)."""
    if len(perm) < 2 or perm[0] not in _PERM_KINDS or not is_decimal(perm[1:]):
        return None
    digits = perm[1:].lstrip("0") or "0"
    if len(digits) > 5 or int(digits) >= DOMID_FIRST_RESERVED:
        return None
    return perm[0] + digits


#: DIRECTORY's reply may exceed PAYLOAD_MAX: oxenstored sends a long listing whole.
_DIRECTORY_MAX = 16 << 20


class Client:
    """A connection to xenstored. Use :meth:`open` (or pass a transport); a context
    manager. Not thread-safe: one caller at a time."""

    def __init__(self, transport: Transport, timeout: "Optional[float]" = 10.0):
        self._transport = transport  # type: Optional[Transport]
        self.path = transport.path
        self.timeout = timeout
        self._req_id = 0
        self._incoming = bytearray()  # bytes read, not yet a whole message
        self._events = []  # type: List[Tuple[str, str]]

    # -- connection ------------------------------------------------------------

    @classmethod
    def open(cls, timeout: float = 10.0, env: "Optional[Dict[str, str]]" = None,
             socket_path: str = SOCKET_PATH,
             device_paths: "Sequence[str]" = DEVICE_PATHS) -> "Client":
        """Connect the way libxenstore does (:func:`.transport.connect`: ``XENSTORED_PATH``,
        else the socket, else the xenbus device). Raises NoXenStore naming every path
        tried."""
        return cls(connect(env, socket_path, device_paths), timeout)

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    @property
    def closed(self) -> bool:
        return self._transport is None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the message exchange ----------------------------------------------------

    def _broken(self, err: XenStoreError) -> XenStoreError:
        """Close (the stream can no longer be trusted) and return ``err`` to raise."""
        self.close()
        return err

    def _receive(self, deadline: "Optional[float]", what: str, limit: int = PAYLOAD_MAX,
                 reply_due: bool = True) -> "Tuple[int, int, int, bytes]":
        """One whole message (type, req_id, tx_id, payload), reassembled from pieces.
        A payload over ``limit`` bytes is a protocol error. Errors name the connection.
        A timeout closes the connection when a reply is due (or half a message came)."""
        while True:
            if self._transport is None:
                raise ConnectionLost(errno.ECONNRESET, self.path, what,
                                     detail="connection to xenstored is closed")
            try:
                message = packet.take_message(self._incoming, limit) if self._incoming else None
                if message is not None:
                    return message
                remaining = None if deadline is None else deadline - time.monotonic()
                self._incoming += self._transport.recv(
                    remaining if remaining is None or remaining > 0 else 0)
            except Timeout as err:
                if self._incoming or reply_due:
                    # A request is outstanding (or half a message came): a late reply
                    # would be taken for the next one's.
                    self.close()
                err.op = what
                raise
            except (ConnectionLost, ProtocolError) as err:
                self.close()
                err.path, err.op = self.path, what
                raise

    def _send(self, op: int, payload: bytes, tx: int, path: "object", name: str) -> int:
        """Send one request; its req_id. A failed send closes the connection."""
        self._req_id = (self._req_id + 1) & 0xFFFFFFFF
        # at least a NUL: oxenstored waits for more bytes after an empty payload
        message = packet.encode(op, self._req_id, tx, payload or b"\0")
        if self._transport is None:
            raise ConnectionLost(errno.ECONNRESET, path, name,
                                 detail="connection to xenstored is closed")
        try:
            self._transport.send(message)
        except XenStoreError as err:
            self.close()
            err.path, err.op = path, name
            raise
        return self._req_id

    def _request(self, op: int, payload: bytes, tx: int = 0, path: "object" = None,
                 limit: int = PAYLOAD_MAX) -> bytes:
        """One request's reply payload; its ERROR reply raised as XenStoreError."""
        replies, errors = self._exchange(op, [path], [payload], tx, limit)
        if errors:
            raise errors[0]
        return replies[0] or b""

    def _exchange(self, op: int, paths: "Sequence[object]", payloads: "List[bytes]",
                  tx: int, limit: int = PAYLOAD_MAX
                  ) -> "Tuple[List[Optional[bytes]], Dict[int, XenStoreError]]":
        """Requests of one kind, up to the transport's ``max_in_flight`` outstanding
        (a socket 64; the xenbus device one, see there), replies routed by req_id and
        watch events queued apart: ``(replies, {index: XenStoreError})``. Every reply
        is read before this returns, so the stream stays in step whatever the daemon
        answered; a broken stream (lost connection, timeout, an unexpected reply)
        closes the connection and raises at once, naming the request when there is
        one, the connection otherwise. The deadline restarts with each reply."""
        name = OP_NAMES.get(op) or str(op)
        window = 1 if self._transport is None else self._transport.max_in_flight
        replies: "List[Optional[bytes]]" = [None] * len(paths)
        errors: "Dict[int, XenStoreError]" = {}
        pending: "Dict[int, int]" = {}     # req_id -> index
        sent = 0
        deadline: "Optional[float]" = None
        while sent < len(paths) or pending:
            if sent < len(paths) and len(pending) < window:
                while sent < len(paths) and len(pending) < window:
                    pending[self._send(op, payloads[sent], tx, paths[sent], name)] = sent
                    sent += 1
                deadline = None if self.timeout is None else time.monotonic() + self.timeout
            try:
                typ, req_id, _tx, reply = self._receive(deadline, name, limit)
                index = self._route(typ, req_id, reply, op, pending)
            except XenStoreError as err:
                if len(paths) == 1:
                    err.path = paths[0]
                raise
            if index is None:
                continue                              # a watch event
            if typ == Op.ERROR:
                errors[index] = from_wire(reply.rstrip(b"\0").decode("ascii", "replace"),
                                          paths[index], name)
            else:
                replies[index] = reply
            if pending:
                deadline = None if self.timeout is None else time.monotonic() + self.timeout
        return replies, errors

    def _route(self, typ: int, req_id: int, reply: bytes, op: int,
               pending: "Dict[int, int]") -> "Optional[int]":
        """The index of the request ``reply`` answers (None for a watch event, which is
        queued for :meth:`wait_event`); ProtocolError for a reply to no pending ``op``."""
        if typ == Op.WATCH_EVENT:
            self._events.append(_parse_event(reply))
            return None
        index = pending.get(req_id)
        if index is not None and typ in (op, Op.ERROR):
            del pending[req_id]
            return index
        name = OP_NAMES.get(op, str(op))
        expected = ("%s req_id %d" % (name, next(iter(pending))) if len(pending) == 1
                    else "%s, %d in flight" % (name, len(pending)))
        raise self._broken(ProtocolError(
            errno.EPROTO, self.path, name,
            detail="unexpected reply: type %s req_id %d (expected %s)"
            % (OP_NAMES.get(typ, typ), req_id, expected)))

    def _path_request(self, op: int, path: str, tx: int, extra: bytes = b"",
                      limit: int = PAYLOAD_MAX) -> bytes:
        return self._request(op, packet.path_payload(path, OP_NAMES[op], extra), tx, path,
                             limit)

    # -- operations --------------------------------------------------------------

    def read(self, path: str, tx: int = 0) -> bytes:
        """The value at ``path`` (raises XenStoreError ENOENT if absent)."""
        return self._path_request(Op.READ, path, tx)

    def read_text(self, path: str, tx: int = 0) -> str:
        """The value as text (UTF-8, undecodable bytes replaced)."""
        return self.read(path, tx).decode("utf-8", "replace")

    def exists(self, path: str, tx: int = 0) -> bool:
        """True if ``path`` can be read; False if it is absent (other errors raise)."""
        try:
            self.read(path, tx)
        except XenStoreError as err:
            if err.errno == errno.ENOENT:
                return False
            raise
        return True

    def write(self, path: str, value: "object", tx: int = 0) -> None:
        """Set ``path`` to ``value`` (str as UTF-8, or bytes); creates missing parents."""
        self._request(Op.WRITE, packet.write_payload(path, value), tx, path)

    def mkdir(self, path: str, tx: int = 0) -> None:
        self._path_request(Op.MKDIR, path, tx)

    def rm(self, path: str, tx: int = 0) -> None:
        """Remove ``path`` and its whole subtree."""
        self._path_request(Op.RM, path, tx)

    def directory(self, path: str, tx: int = 0) -> "List[str]":
        """The names of the children of ``path``.

        A listing too long for one message: C xenstored answers E2BIG, and the listing
        is then fetched with DIRECTORY_PART (a daemon without it, ENOSYS / EINVAL, keeps
        the E2BIG); oxenstored 4.17 has no DIRECTORY_PART and sends the whole listing in
        one oversized reply, which is accepted for DIRECTORY (up to 16 MiB)."""
        try:
            reply = self._path_request(Op.DIRECTORY, path, tx, limit=_DIRECTORY_MAX)
        except XenStoreError as err:
            if err.errno != errno.E2BIG or isinstance(err, InvalidArgument):
                raise
            try:
                return self._directory_part(path, tx)
            except XenStoreError as part_err:
                if part_err.errno in (errno.ENOSYS, errno.EINVAL):
                    raise err from None
                raise
        return _split_strings(reply)

    def read_many(self, paths: "List[str]", tx: int = 0) -> "List[Optional[bytes]]":
        """The values at ``paths`` (None where absent), requests pipelined where the
        transport allows it (a socket; not the xenbus device): a guest with hundreds of
        volumes needs thousands of reads, and a round trip costs more than the work. Any
        other error is raised (the first, once every reply is in)."""
        results, errors = self._exchange(Op.READ, paths, self._path_payloads(paths, "read"), tx)
        _raise_first(errors, ignore=(errno.ENOENT,))
        return results

    def directory_many(self, paths: "List[str]", tx: int = 0) -> "List[Optional[List[str]]]":
        """The children of each of ``paths`` (None where absent), pipelined; a listing
        too long for one message is fetched again the way :meth:`directory` does."""
        replies, errors = self._exchange(Op.DIRECTORY, paths,
                                         self._path_payloads(paths, "directory"), tx,
                                         _DIRECTORY_MAX)
        _raise_first(errors, ignore=(errno.ENOENT, errno.E2BIG))
        return [self.directory(path, tx) if n in errors and errors[n].errno == errno.E2BIG
                else None if reply is None else _split_strings(reply)
                for n, (path, reply) in enumerate(zip(paths, replies))]

    def write_many(self, items: "List[Tuple[str, object]]",
                   tx: int = 0) -> "Dict[str, XenStoreError]":
        """Write each ``(path, value)``, pipelined; returns the errors by path (the
        caller decides which matter: a guest may be refused one key, EACCES)."""
        paths = [path for path, _ in items]
        payloads = [packet.write_payload(path, value) for path, value in items]
        _, errors = self._exchange(Op.WRITE, paths, payloads, tx)
        return {paths[n]: err for n, err in sorted(errors.items())}

    def rm_many(self, paths: "List[str]", tx: int = 0) -> "Dict[str, XenStoreError]":
        """Remove each path's subtree, pipelined; returns the errors by path."""
        _, errors = self._exchange(Op.RM, paths, self._path_payloads(paths, "rm"), tx)
        return {paths[n]: err for n, err in sorted(errors.items())}

    @staticmethod
    def _path_payloads(paths: "List[str]", name: str) -> "List[bytes]":
        return [packet.path_payload(path, name) for path in paths]

    def _directory_part(self, path: str, tx: int) -> "List[str]":
        """DIRECTORY_PART: ``path\\0offset\\0`` → ``gen\\0names...\\0\\0``; restarts when
        the node's generation changes between parts."""
        for _attempt in range(8):
            data = b""
            gen = None
            while True:
                reply = self._path_request(Op.DIRECTORY_PART, path, tx,
                                           str(len(data)).encode() + b"\0")
                this_gen, _, chunk = reply.partition(b"\0")
                if gen is None:
                    gen = this_gen
                elif this_gen != gen:
                    break  # changed under us: start again
                if len(chunk) <= 1:
                    return _split_strings(data)
                data += chunk[:-1]
        raise XenStoreError(errno.EAGAIN, path, "directory_part",
                            detail="directory kept changing while being listed")

    def get_perms(self, path: str, tx: int = 0) -> "List[str]":
        """Permissions like ``["n0", "r1"]``: the first names the owner and the default."""
        return _split_strings(self._path_request(Op.GET_PERMS, path, tx))

    def set_perms(self, path: str, perms: "List[str]", tx: int = 0) -> None:
        """Set permissions, e.g. ``["n0", "r5"]`` (n none, r read, w write, b both)."""
        if not perms:
            raise InvalidArgument(errno.EINVAL, path, "set_perms", detail="no permissions given")
        sent = []
        for perm in perms:
            normal = normal_perm(perm) if isinstance(perm, str) else None
            if normal is None:
                raise InvalidArgument(errno.EINVAL, path, "set_perms",
                                      detail="invalid permission %s (want n|r|w|b + a "
                                      "decimal domid below %d)"
                                      % (repr(perm)[:40], DOMID_FIRST_RESERVED))
            sent.append(normal.encode("ascii") + b"\0")
        self._path_request(Op.SET_PERMS, path, tx, b"".join(sent))

    def get_domain_path(self, domid: int) -> str:
        """The home of domain ``domid``, e.g. ``/local/domain/3``."""
        reply = self._request(Op.GET_DOMAIN_PATH, str(int(domid)).encode() + b"\0", 0, domid)
        return reply.rstrip(b"\0").decode("utf-8", "replace")

    # -- watches -----------------------------------------------------------------

    def watch(self, path: str, token: str) -> None:
        """Watch ``path`` (and its subtree; ``@introduceDomain`` style special paths too).
        The daemon sends one event at once."""
        self._watch_request(Op.WATCH, path, token)

    def unwatch(self, path: str, token: str) -> None:
        self._watch_request(Op.UNWATCH, path, token)

    def _watch_request(self, op: int, path: str, token: str) -> None:
        name = OP_NAMES[op]
        self._request(op, packet.path_payload(path, name, token.encode("utf-8") + b"\0"), 0,
                      path)

    def wait_event(self, timeout: "Optional[float]" = None) -> "Tuple[str, str]":
        """The next watch event as (path, token); Timeout (ETIMEDOUT) after ``timeout``
        seconds (None waits forever). The connection stays usable after a timeout."""
        if self._events:
            return self._events.pop(0)
        deadline = None if timeout is None else time.monotonic() + timeout
        typ, req_id, _tx, payload = self._receive(deadline, "watch", reply_due=False)
        if typ == Op.WATCH_EVENT:
            return _parse_event(payload)
        raise self._broken(ProtocolError(
            errno.EPROTO, None, "watch",
            detail="unexpected %s (req_id %d) while waiting for a watch event"
            % (OP_NAMES.get(typ, typ), req_id)))

    # -- transactions ------------------------------------------------------------

    def transaction_start(self) -> int:
        reply = self._request(Op.TRANSACTION_START, b"\0")
        try:
            return int(reply.rstrip(b"\0"))
        except ValueError:
            raise self._broken(ProtocolError(errno.EPROTO, None, "transaction_start",
                                             detail="bad transaction id %r" % reply)) from None

    def transaction_end(self, tx: int, commit: bool = True) -> None:
        """Commit (or abort) ``tx``; XenStoreError EAGAIN when a commit conflicted."""
        self._request(Op.TRANSACTION_END, b"T\0" if commit else b"F\0", tx)

    def transaction(self, fn: "Callable[[int], T]", attempts: int = 8, backoff: float = 0.01,
                    max_backoff: float = 0.5) -> "T":
        """Run ``fn(tx)`` in a transaction and commit. On EAGAIN (at commit or from an
        operation inside) run it again, up to ``attempts`` times in all, sleeping an
        exponential backoff in between (``backoff`` doubling up to ``max_backoff``, times a
        jitter of 0.5-1.5). After the last attempt the EAGAIN error propagates. Any other
        exception aborts the transaction and propagates. ``fn`` must be safe to re-run."""
        delay = backoff
        attempt = 0
        while True:
            attempt += 1
            tx = self.transaction_start()
            try:
                result = fn(tx)
            except XenStoreError as err:
                self._abort_quietly(tx)
                if err.errno != errno.EAGAIN or attempt >= attempts:
                    raise
            except BaseException:
                self._abort_quietly(tx)
                raise
            else:
                try:
                    self.transaction_end(tx, True)
                    return result
                except XenStoreError as err:
                    if err.errno != errno.EAGAIN or attempt >= attempts:
                        raise
            import random
            time.sleep(min(delay, max_backoff) * (0.5 + random.random()))
            delay *= 2

    def _abort_quietly(self, tx: int) -> None:
        if self._transport is None:
            return
        try:
            self.transaction_end(tx, False)
        except XenStoreError:
            pass


def _split_strings(payload: bytes) -> "List[str]":
    """``b"a\\0b\\0"`` → ``["a", "b"]``; an empty payload → ``[]``."""
    if not payload or payload == b"\0":
        return []
    return [s.decode("utf-8", "replace") for s in payload.rstrip(b"\0").split(b"\0")] \
        if payload.rstrip(b"\0") else []


def _parse_event(payload: bytes) -> "Tuple[str, str]":
    """WATCH_EVENT payload ``path\\0token\\0`` → (path, token)."""
    parts = payload.split(b"\0")
    path = parts[0].decode("utf-8", "replace")
    token = parts[1].decode("utf-8", "replace") if len(parts) > 1 else ""
    return path, token


def _raise_first(errors: "Dict[int, XenStoreError]", ignore: "Tuple[int, ...]") -> None:
    """Raise the error of the lowest index whose errno is not in ``ignore``."""
    for index in sorted(errors):
        if errors[index].errno not in ignore:
            raise errors[index]
