"""A fault-injecting XenStore proxy for tests: a Unix socket between a client and the real
daemon that forwards every message, and on demand breaks things dom0 never sees.

    from tests.support.fault_proxy import FaultProxy, Rule

    with FaultProxy(xenstored.socket, tmp_path / "proxy.sock") as proxy:
        proxy.rules.append(Rule(op="write", path="control/feature-balloon", error="EACCES"))
        proxy.rules.append(Rule(op="commit", error="EAGAIN", times=2))   # first 2 commits
        proxy.rules.append(Rule(op="write", error="EQUOTA", nth=3))      # the 3rd write
        env = dict(os.environ, XENSTORED_PATH=str(proxy.path))          # or proxy.env()
        ... run the code under test ...
        assert proxy.counts["write"] == 4 and proxy.counts["commit"] == 3

Requests are counted in ``proxy.counts`` (a Counter) by lower-case op name (``read``,
``write``, ``rm``, ``mkdir``, ``directory``, ``transaction_start``, ``watch``...);
TRANSACTION_END also counts as ``commit`` or ``abort``. ``proxy.requests`` lists every
request as ``(op, path, tx_id)`` in arrival order (``path`` is the first NUL-terminated
field of the payload). Counting includes requests a rule answered.

A :class:`Rule` matches by ``op`` (a name as above, ``"commit"``/``"abort"``, an
:class:`Op` number, or None for any) and ``path`` (a regular expression searched in the
request path, or None). ``nth`` fires only on the nth matching request (1-based),
``times`` on at most that many; ``rule.matched`` / ``rule.fired`` count. Its action:

- ``error="EACCES"`` (default): answer with an ERROR instead of forwarding. A failed
  commit is forwarded as an abort so the daemon's transaction does not linger.
- ``action="drop"``: close both connections instead of forwarding.
- ``action="bad_reply"``: answer with a reply carrying the wrong req_id.
- ``action="swallow"``: never answer (the client's timeout must fire).

Proxy-wide settings (change them any time): ``split`` (reply piece size in bytes, e.g. 1,
like the xenbus device may deliver; 0 = whole), ``delay`` (seconds to wait before each
reply piece), ``drop_after`` (close the connection when request N+1 arrives, N forwarded),
``emulate_directory_part`` (answer DIRECTORY_PART itself, from a DIRECTORY sent upstream,
as C xenstored would: oxenstored 4.17 answers ENOSYS; pair it with a rule answering
E2BIG to DIRECTORY to exercise a client's fallback), ``xenbus_frontend`` (forward the
way Linux's xenbus device frontend does, see :meth:`FaultProxy._frontend`).
``proxy.connections`` counts
accepted clients. ``proxy.reset()`` clears rules, counts and settings.
"""

import os
import re
import select
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

HEADER = struct.Struct("=IIII")
OPS = {
    "control": 0, "directory": 1, "read": 2, "get_perms": 3, "watch": 4, "unwatch": 5,
    "transaction_start": 6, "transaction_end": 7, "introduce": 8, "release": 9,
    "get_domain_path": 10, "write": 11, "mkdir": 12, "rm": 13, "set_perms": 14,
    "watch_event": 15, "error": 16, "is_domain_introduced": 17, "resume": 18,
    "set_target": 19, "reset_watches": 21, "directory_part": 22,
}
OP_NAMES = {v: k for k, v in OPS.items()}
ERROR, TRANSACTION_END, DIRECTORY, DIRECTORY_PART = 16, 7, 1, 22


@dataclass
class Rule:
    """Which requests to break, and how (see the module docstring)."""

    op: Union[str, int, None] = None
    path: Optional[str] = None
    error: str = "EACCES"
    action: str = "error"  # error | drop | bad_reply | swallow
    nth: Optional[int] = None
    times: Optional[int] = None
    matched: int = 0
    fired: int = 0

    def wants(self, op_names: "Tuple[str, ...]", op: int, path: str) -> bool:
        """Called for every request; updates the counters; True to fire."""
        if self.op is not None:
            if isinstance(self.op, int):
                if self.op != op:
                    return False
            elif self.op not in op_names:
                return False
        if self.path is not None and not re.search(self.path, path):
            return False
        self.matched += 1
        if self.nth is not None and self.matched != self.nth:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True


@dataclass
class _Conn:
    client: socket.socket
    upstream: socket.socket
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    # req_id -> how to transform the daemon's reply (("error", name) / ("dirpart", off))
    rewrite: Dict[int, Tuple[str, object]] = field(default_factory=dict)
    closed: bool = False
    # xenbus_frontend: the open file's one message buffer, and the requests queued to the
    # kernel's xenbus thread (their headers) that it has not sent yet
    buffer: bytearray = field(default_factory=lambda: bytearray(4096))
    queued: List[Tuple[int, int, int, int]] = field(default_factory=list)


class FaultProxy:
    """A thread-based proxy from ``path`` (a Unix socket it creates) to ``upstream``."""

    def __init__(self, upstream: Union[str, Path], path: Union[str, Path]):
        self.upstream = str(upstream)
        self.path = Path(path)
        self.rules: List[Rule] = []
        self.counts: Counter = Counter()
        self.requests: List[Tuple[str, str, int]] = []
        self.split = 0
        self.delay = 0.0
        self.drop_after: Optional[int] = None
        self.emulate_directory_part = False
        self.xenbus_frontend = False
        self.frontend_lag = 0.05
        self.connections = 0
        self._lock = threading.Lock()
        self._forwarded = 0
        self._listener: Optional[socket.socket] = None
        self._conns: List[_Conn] = []
        self._threads: List[threading.Thread] = []
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> "FaultProxy":
        if self.path.exists():
            self.path.unlink()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(16)
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        for conn in list(self._conns):
            self._close(conn)
        for thread in self._threads:
            thread.join(5)
        if self.path.exists():
            self.path.unlink()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """An environment whose XENSTORED_PATH points at the proxy."""
        env = dict(os.environ if base is None else base)
        env["XENSTORED_PATH"] = str(self.path)
        return env

    def reset(self) -> None:
        with self._lock:
            self.rules.clear()
            self.counts.clear()
            self.requests.clear()
            self.split, self.delay, self.drop_after = 0, 0.0, None
            self.emulate_directory_part = False
            self.xenbus_frontend = False
            self._forwarded = 0

    # -- plumbing ----------------------------------------------------------------

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.upstream)
            except OSError:
                client.close()
                continue
            conn = _Conn(client, upstream)
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            self._spawn(self._client_loop, conn)
            self._spawn(self._daemon_loop, conn)

    def _close(self, conn: _Conn) -> None:
        conn.closed = True
        for sock in (conn.client, conn.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    @staticmethod
    def _read_message(sock: socket.socket) -> Optional[Tuple[Tuple[int, int, int, int], bytes]]:
        def exact(n: int) -> Optional[bytes]:
            buf = b""
            while len(buf) < n:
                try:
                    chunk = sock.recv(n - len(buf))
                except OSError:
                    return None
                if not chunk:
                    return None
                buf += chunk
            return buf
        head = exact(HEADER.size)
        if head is None:
            return None
        header = HEADER.unpack(head)
        payload = exact(header[3]) if header[3] else b""
        if payload is None:
            return None
        return header, payload

    def _to_client(self, conn: _Conn, data: bytes) -> None:
        with conn.send_lock:
            step = self.split or len(data)
            for i in range(0, len(data), step):
                if self.delay:
                    time.sleep(self.delay)
                elif self.split:
                    time.sleep(0.0002)  # let the client see the pieces separately
                try:
                    conn.client.sendall(data[i:i + step])
                except OSError:
                    return

    def _frontend(self, conn: _Conn, message: Optional[bytes]) -> None:
        """Linux's /dev/xen/xenbus (xenbus_dev_frontend.c + xenbus_xs.c, 4.11 to 6.x):
        write() copies a request into the open file's one 4096-byte buffer and queues it to
        the xenbus thread with a copy of its header but a pointer to the payload in that
        buffer, then returns. Here the thread is late by ``frontend_lag`` seconds (a busy
        guest): it sends what is queued, each header with whatever the buffer then holds,
        once the client has written nothing for that long. ``message`` None: flush."""
        if message is not None:
            head = HEADER.unpack_from(message)
            conn.buffer[:len(message) - HEADER.size] = message[HEADER.size:]
            conn.queued.append(head)
            return
        for op, req_id, tx_id, length in conn.queued:
            self._to_daemon(conn, HEADER.pack(op, req_id, tx_id, length)
                            + bytes(conn.buffer[:length]))
        conn.queued.clear()

    def _client_loop(self, conn: _Conn) -> None:
        while not conn.closed:
            if conn.queued:
                try:
                    ready, _, _ = select.select([conn.client], [], [], self.frontend_lag)
                except (OSError, ValueError):
                    break
                if not ready:
                    self._frontend(conn, None)
            msg = self._read_message(conn.client)
            if msg is None:
                break
            (op, req_id, tx_id, _length), payload = msg
            path = payload.split(b"\0", 1)[0].decode("utf-8", "replace")
            names: Tuple[str, ...] = (OP_NAMES.get(op, str(op)),)
            if op == TRANSACTION_END:
                names += ("commit",) if payload[:1] == b"T" else ("abort",)
            with self._lock:
                for name in names:
                    self.counts[name] += 1
                self.requests.append((names[0], path, tx_id))
                if self.drop_after is not None and self._forwarded >= self.drop_after:
                    rule: Optional[Rule] = Rule(action="drop")
                else:
                    rule = next((r for r in list(self.rules) if r.wants(names, op, path)), None)
                if rule is None or rule.action == "error" and op == TRANSACTION_END:
                    self._forwarded += 1
            if rule is None:
                if op == DIRECTORY_PART and self.emulate_directory_part:
                    parts = payload.split(b"\0")
                    offset = int(parts[1] or b"0") if len(parts) > 1 else 0
                    conn.rewrite[req_id] = ("dirpart", offset)
                    op, payload = DIRECTORY, parts[0] + b"\0"
                message = HEADER.pack(op, req_id, tx_id, len(payload)) + payload
                if self.xenbus_frontend:
                    self._frontend(conn, message)
                else:
                    self._to_daemon(conn, message)
            elif rule.action == "drop":
                self._close(conn)
                break
            elif rule.action == "swallow":
                continue
            elif rule.action == "bad_reply":
                reply = b"OK\0"
                self._to_client(conn, HEADER.pack(op, req_id + 1000, tx_id, len(reply)) + reply)
            elif op == TRANSACTION_END:
                # Abort the daemon's transaction for real, then report the error.
                conn.rewrite[req_id] = ("error", rule.error)
                self._to_daemon(conn, HEADER.pack(op, req_id, tx_id, 2) + b"F\0")
            else:
                err = rule.error.encode() + b"\0"
                self._to_client(conn, HEADER.pack(ERROR, req_id, tx_id, len(err)) + err)
        self._close(conn)

    def _to_daemon(self, conn: _Conn, data: bytes) -> None:
        try:
            conn.upstream.sendall(data)
        except OSError:
            self._close(conn)

    def _daemon_loop(self, conn: _Conn) -> None:
        while not conn.closed:
            msg = self._read_message(conn.upstream)
            if msg is None:
                break
            (op, req_id, tx_id, _length), payload = msg
            how = conn.rewrite.pop(req_id, None) if op != 15 else None
            if how is not None and how[0] == "error":
                op, payload = ERROR, str(how[1]).encode() + b"\0"
            elif how is not None and how[0] == "dirpart" and op == DIRECTORY:
                op, payload = DIRECTORY_PART, _directory_part(payload, int(how[1]))  # type: ignore
            self._to_client(conn, HEADER.pack(op, req_id, tx_id, len(payload)) + payload)
        self._close(conn)


def _directory_part(children: bytes, offset: int) -> bytes:
    """C xenstored's DIRECTORY_PART reply for a full DIRECTORY listing ``children``:
    ``gen\\0`` then whole names from ``offset`` that fit in 4096 bytes, then ``\\0``."""
    gen = b"%d\0" % zlib.crc32(children)
    if offset >= len(children):
        return gen + b"\0"
    maxlen = 4096 - len(gen) - 1
    end = offset
    while end < len(children):
        name_end = children.index(b"\0", end)
        if (name_end - offset) >= maxlen:
            break
        end = name_end + 1
    return gen + children[offset:end] + b"\0"
