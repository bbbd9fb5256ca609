"""Byte transports to xenstored: a Unix socket (dom0 tools, tests) or the xenbus device
(a guest's kernel relays the messages); :func:`connect` finds the one this host has."""

import errno
import os
import select

from .errors import ConnectionLost, InvalidArgument, NoXenStore, Timeout, XenStoreError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; this runs on every udev event
    from typing import List, Mapping, Optional, Sequence

SOCKET_PATH = "/var/run/xenstored/socket"
DEVICE_PATHS = ("/dev/xen/xenbus", "/proc/xen/xenbus")
_CHUNK = 65536


class Transport:
    """Sends whole messages, receives whatever bytes are there (the client reassembles)."""

    path = ""
    #: How many requests the client may have in flight on this connection at once.
    max_in_flight = 64

    def fileno(self) -> int:
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def _read(self) -> bytes:
        raise NotImplementedError

    def recv(self, timeout: "Optional[float]") -> bytes:
        """At least one byte; Timeout when nothing came within ``timeout`` seconds
        (None waits forever), ConnectionLost at end of stream."""
        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN | select.POLLPRI)
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        while True:
            try:
                ready = poller.poll(ms)
            except InterruptedError:  # pragma: no cover - PEP 475 retries already
                continue
            break
        if not ready:
            raise Timeout(errno.ETIMEDOUT, self.path, detail="no reply from xenstored in time")
        try:
            data = self._read()
        except OSError as err:
            raise ConnectionLost(err.errno or errno.ECONNRESET, self.path,
                                 detail="connection to xenstored lost: %s" % err) from err
        if not data:
            raise ConnectionLost(errno.ECONNRESET, self.path,
                                 detail="xenstored closed the connection")
        return data

    def close(self) -> None:
        raise NotImplementedError


class SocketTransport(Transport):
    """A Unix stream socket (``XENSTORED_PATH`` or /var/run/xenstored/socket)."""

    def __init__(self, path: str):
        # The C module: socket.py costs 6-9 ms of a ~25 ms run (its IntEnums, selectors,
        # collections); _socket's type has all we use and is close-on-exec too.
        import _socket
        self.path = path
        self._sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            self._sock.connect(path)
        except OSError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as err:
            raise ConnectionLost(err.errno or errno.ECONNRESET, self.path,
                                 detail="connection to xenstored lost: %s" % err) from err

    def _read(self) -> bytes:
        return self._sock.recv(_CHUNK)

    def close(self) -> None:
        self._sock.close()


class DeviceTransport(Transport):
    """The xenbus character device. Each message must go down in one write(); replies may
    come back in pieces; a read() of 0 bytes would block, so reads always ask for 64 KiB.

    One request at a time. Linux's device frontend (drivers/xen/xenbus/xenbus_dev_frontend.c
    since 4.11, still so in 6.1) keeps one message buffer per open file. A complete write()
    is queued to the xenbus thread with a copy of its header but with its payload left in
    that buffer (xenbus_dev_request_and_reply: ``iov_base = msg + 1``), and write() returns
    before the thread has copied it to the ring. The next write() reuses the buffer: a
    pipelined request can overwrite the payload of the one before, and xenstored gets the
    first header with the second payload -- EINVAL for a path without its NUL or of the
    wrong length (``xenstore read data/os_name: EINVAL``), or a well-formed request for the
    wrong key. It only shows when the thread is late, on a busy guest (many collections at
    once at boot). Only the reply proves that a request has left the buffer, so none is
    sent before the previous one's reply: a round trip per request (a few hundred
    microseconds in a guest), where a socket to xenstored (dom0) pipelines."""

    max_in_flight = 1
    #: The frontend's buffer holds header and payload: 4096 bytes in all (it answers a
    #: longer write() with EINVAL and drops it).
    message_max = 4096

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._fd

    def send(self, data: bytes) -> None:
        if len(data) > self.message_max:
            raise InvalidArgument(errno.E2BIG, self.path,
                                  detail="message of %d bytes exceeds the xenbus device's %d"
                                  % (len(data), self.message_max))
        try:
            done = os.write(self._fd, data)
        except OSError as err:
            raise XenStoreError(err.errno or errno.EIO, self.path,
                                detail="write to xenbus failed: %s" % err) from err
        if done != len(data):
            raise ConnectionLost(errno.EIO, self.path,
                                 detail="short write to xenbus (%d of %d bytes)"
                                 % (done, len(data)))

    def _read(self) -> bytes:
        return os.read(self._fd, _CHUNK)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def connect(env: "Optional[Mapping[str, str]]" = None, socket_path: str = SOCKET_PATH,
            device_paths: "Sequence[str]" = DEVICE_PATHS) -> Transport:
    """The transport libxenstore would use: ``XENSTORED_PATH`` (no fallback when set),
    else ``/var/run/xenstored/socket`` if it exists, else ``/dev/xen/xenbus``, then
    ``/proc/xen/xenbus``. NoXenStore names every path tried; a device that exists but
    may not be opened is a XenStoreError (EACCES, "run as root")."""
    environ = os.environ if env is None else env
    explicit = environ.get("XENSTORED_PATH")
    if explicit:
        try:
            return SocketTransport(explicit)
        except OSError as err:
            raise NoXenStore(err.errno or errno.ENOENT, explicit, "open",
                             detail="no XenStore: cannot connect to XENSTORED_PATH=%s (%s)"
                             % (explicit, err.strerror or err)) from None
    tried: "List[str]" = []
    if os.path.exists(socket_path):
        try:
            return SocketTransport(socket_path)
        except OSError as err:
            tried.append("%s (%s)" % (socket_path, err.strerror or err))
    else:
        tried.append(socket_path)
    for dev in device_paths:
        try:
            return DeviceTransport(dev)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM):
                raise XenStoreError(err.errno, dev, "open",
                                    detail="cannot open %s: %s (run as root)"
                                    % (dev, err.strerror)) from None
            tried.append(dev if err.errno == errno.ENOENT
                         else "%s (%s)" % (dev, err.strerror or err))
    raise NoXenStore(errno.ENOENT, None, "open",
                     detail="no XenStore (not a Xen guest?); tried " + ", ".join(tried))
