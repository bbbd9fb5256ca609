"""The read-only XenStore view collectors get (``Context.xenstore``).

Collectors ask dom0's tree for a few facts (SR-IOV MACs, disk backends, published
indices). What is absent or unreadable there reads as None / an empty listing: a
collector never fails because dom0 left something out.
"""

from .sections import XenStoreReader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional
    from .xenstore import Client


class ClientReader(XenStoreReader):
    """``XenStoreReader`` over a :class:`xe_oneshot.xenstore.Client`."""

    def __init__(self, client: "Client") -> None:
        self.client = client

    def read(self, path: str) -> "Optional[str]":
        try:
            return self.client.read(path).decode("utf-8", "replace")
        except (OSError, ValueError):
            return None

    def directory(self, path: str) -> "List[str]":
        try:
            return self.client.directory(path)
        except (OSError, ValueError):
            return []

    def read_many(self, paths: "List[str]") -> "List[Optional[str]]":
        """The values, pipelined; one refused read falls back to reading each alone."""
        try:
            raw = self.client.read_many(paths)
        except ValueError:
            return [self.read(path) for path in paths]
        except OSError:
            if self.client.closed:         # the connection is gone: nothing to read
                return [None] * len(paths)
            return [self.read(path) for path in paths]
        return [None if value is None else value.decode("utf-8", "replace")
                for value in raw]
