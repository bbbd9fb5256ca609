"""Byte transports to xenstored: a Unix socket (dom0 tools, tests) or the xenbus device
(a guest's kernel relays the messages)."""

import errno
import os
import select

from .errors import ConnectionLost, Timeout, XenStoreError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; this runs on every udev event
    from typing import Optional

SOCKET_PATH = "/var/run/xenstored/socket"
DEVICE_PATHS = ("/dev/xen/xenbus", "/proc/xen/xenbus")
_CHUNK = 65536


class Transport:
    """Sends whole messages, receives whatever bytes are there (the client reassembles)."""

    path = ""

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
    come back in pieces; a read() of 0 bytes would block, so reads always ask for 64 KiB."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._fd

    def send(self, data: bytes) -> None:
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
