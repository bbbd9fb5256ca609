"""A XenStore client library, usable on its own (no psutil, no sh; light to import).

    from xe_oneshot.xenstore import Client, XenStoreError, NoXenStore

    with Client.open(timeout=5) as xs:
        xs.write("data/os_distro", "debian")
        xs.transaction(lambda tx: xs.write("data/updated", "now", tx))

Layers: :mod:`.transport` (Unix socket or xenbus device) → :mod:`.packet` (header,
validation) → :mod:`.client` (operations); :mod:`.errors` holds the exceptions.
"""

from .client import Client
from .errors import (ConnectionLost, InvalidArgument, NoXenStore, ProtocolError, Timeout,
                     XenStoreError)
from .packet import Op
from .transport import DeviceTransport, SocketTransport, Transport

__all__ = ["Client", "ConnectionLost", "DeviceTransport", "InvalidArgument", "NoXenStore",
           "Op", "ProtocolError", "SocketTransport", "Timeout", "Transport", "XenStoreError"]
