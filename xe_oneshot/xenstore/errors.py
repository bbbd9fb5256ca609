"""XenStore exceptions: one base class carrying the errno and the path.

The daemon answers a failed request with an ERROR message whose payload is the errno
*name* (``ENOENT\\0``); :func:`from_wire` turns it into a :class:`XenStoreError`.
"""

import errno as _errno
import os

# Names the daemon sends that Linux spells differently.
_ALIASES = {"EQUOTA": _errno.EDQUOT}


def errno_from_name(name: str) -> int:
    """``"ENOENT"`` → 2; ``"EQUOTA"`` → EDQUOT; an unknown name → EIO."""
    code = _ALIASES.get(name)
    if code is None:
        code = getattr(_errno, name, None)
    return code if isinstance(code, int) else _errno.EIO


class XenStoreError(OSError):
    """A XenStore operation failed: ``.errno``, ``.path`` (or None), ``.op``, ``.name``.

    ``str(err)`` is one line: ``xenstore read /nope: ENOENT (No such file or directory)``.
    """

    def __init__(self, code: int, path: "object" = None, op: str = "",
                 name: str = "", detail: str = ""):
        super().__init__(code, detail or os.strerror(code))
        self.path = path
        self.op = op
        self.name = name or _errno.errorcode.get(code, str(code))

    def __str__(self) -> str:
        where = "xenstore"
        if self.op:
            where += " " + self.op
        if self.path is not None:
            where += " " + str(self.path)
        return "%s: %s (%s)" % (where, self.name, self.strerror)

    def __reduce__(self):
        return (type(self), (self.errno, self.path, self.op, self.name, self.strerror))


class InvalidArgument(XenStoreError, ValueError):
    """Refused before sending: bad path, oversized payload, bad permission string."""


class NoXenStore(XenStoreError):
    """No transport found: not a Xen guest (or xenfs not mounted). Names every path tried."""


class ConnectionLost(XenStoreError):
    """The daemon closed the connection (errno ECONNRESET)."""


class Timeout(XenStoreError):
    """No (complete) reply in time (errno ETIMEDOUT); the connection is closed."""


class ProtocolError(XenStoreError):
    """A reply that does not answer the request (wrong req_id / type, oversized); the
    connection is closed (errno EPROTO)."""


def from_wire(name: str, path: "object" = None, op: str = "") -> XenStoreError:
    """The exception for an ERROR reply carrying ``name`` (e.g. ``EACCES``)."""
    return XenStoreError(errno_from_name(name), path, op, name)
