"""A XenStore client library, usable on its own (no psutil, no sh; light to import).

    from xe_oneshot.xenstore import Client, XenStoreError, NoXenStore

    with Client.open(timeout=5) as xs:
        xs.write("data/os_distro", "debian")
        xs.transaction(lambda tx: xs.write("data/updated", "now", tx))

Layers: :mod:`.transport` (finds and opens the Unix socket or the xenbus device, moves
bytes) → :mod:`.packet` (payloads, headers and their checks, reassembly of replies) →
:mod:`.client` (operations over one exchange path: requests sent, pipelined where the
transport allows, replies routed by req_id); :mod:`.errors` holds the exceptions.
"""

from .client import Client
from .errors import (ConnectionLost, InvalidArgument, NoXenStore, ProtocolError, Timeout,
                     XenStoreError)
from .packet import Op
from .transport import DeviceTransport, SocketTransport, Transport

__all__ = ["Client", "ConnectionLost", "DeviceTransport", "InvalidArgument", "NoXenStore",
           "Op", "ProtocolError", "SocketTransport", "Timeout", "Transport", "XenStoreError"]
