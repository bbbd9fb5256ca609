"""Every read of the guest's files goes through a :class:`Root`.

Collectors never open ``/proc`` or ``/sys`` directly: they ask a ``Root`` for a guest
path (``"/proc/meminfo"``), which maps it under a base directory. Tests build a fake
guest in a temp dir and pass it as the base, the way psutil reads ``/proc`` through one
configurable prefix.

Tolerance policy (as psutil's Linux backend): an entry that vanished while we looked
(hot-unplug race: ENOENT, ENODEV, ENXIO, ENOTDIR) reads as the given default; any other
error (EACCES, EIO, ...) is raised for the section to report.

Only regular files are read (as ``xe-linux-distribution`` does): every file in /proc,
/sys and the udev database is one, and a FIFO, device or socket planted where one is
expected (a hostile ``--root`` tree) would block the run in open() or read(). The file
is opened non-blocking and checked with fstat() on the open descriptor, so nothing can
be swapped in between check and read; anything else raises :class:`NotRegularFile`.
"""

import errno
import os
import stat

from .records import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional

#: Errors that mean "not there (any more)": read as absent.
VANISHED = frozenset((errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.ENOTDIR, errno.ELOOP))

#: Largest file a collector reads; sysfs and procfs files are far smaller.
MAX_READ = 1 << 20

#: open() flags of every read: a FIFO opens at once instead of waiting for a writer, and
#: a terminal does not become our controlling one.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class NotRegularFile(OSError):
    """A guest file that should be a regular file is a FIFO, device, socket or directory."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.EINVAL, "not a regular file", path)

    def __str__(self) -> str:
        return "%s: %s" % (self.filename, self.strerror)


@record(frozen=True)
class Root:
    """The guest's filesystem as seen under ``base`` (``/`` on a real guest)."""

    base: str = "/"

    def path(self, guest_path: str) -> str:
        """Host path of the absolute guest path ``guest_path``."""
        if self.base in ("", "/"):
            return guest_path
        return os.path.join(self.base, guest_path.lstrip("/"))

    def fs_path(self, guest_path: str) -> bytes:
        """:meth:`path` as the bytes the kernel named it with: paths from the kernel's
        tables (mount points) are decoded as UTF-8, so they go back as UTF-8 whatever the
        locale (Python 3.6 in the C locale would encode a str path as ASCII)."""
        return self.path(guest_path).encode("utf-8", "surrogateescape")

    def read_bytes(self, guest_path: str, default: "Optional[bytes]" = None,
                   limit: int = MAX_READ) -> "Optional[bytes]":
        """At most ``limit`` bytes of a regular file, or ``default`` if it is not there.
        Raises :class:`NotRegularFile` for anything else (see the module docstring)."""
        try:
            fd = os.open(self.path(guest_path), _OPEN_FLAGS)
        except OSError as err:
            if err.errno in VANISHED:      # ENXIO: a socket, or a FIFO opened for write
                return default
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NotRegularFile(guest_path)
            chunks = []
            left = limit
            while left > 0:             # procfs/sysfs files may answer in pieces
                chunk = os.read(fd, min(left, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        except OSError as err:
            if err.errno in VANISHED and not isinstance(err, NotRegularFile):
                return default
            raise
        finally:
            os.close(fd)

    def read_text(self, guest_path: str, default: "Optional[str]" = None,
                  limit: int = MAX_READ) -> "Optional[str]":
        """A file's text (UTF-8, undecodable bytes replaced), or ``default``."""
        data = self.read_bytes(guest_path, None, limit)
        if data is None:
            return default
        return data.decode("utf-8", "replace")

    def read_line(self, guest_path: str, default: "Optional[str]" = None) -> "Optional[str]":
        """The first line of a file, stripped (sysfs attributes), or ``default``."""
        text = self.read_text(guest_path, None, 64 * 1024)
        if text is None:
            return default
        return text.split("\n", 1)[0].strip()

    def listdir(self, guest_path: str) -> "List[str]":
        """Names in a directory, sorted; empty if it is not there."""
        try:
            return sorted(os.listdir(self.path(guest_path)))
        except OSError as err:
            if err.errno in VANISHED:
                return []
            raise

    def readlink(self, guest_path: str) -> "Optional[str]":
        """A symlink's target, or None if it is not a symlink or not there."""
        try:
            return os.readlink(self.path(guest_path))
        except OSError as err:
            if err.errno in VANISHED or err.errno == errno.EINVAL:
                return None
            raise

    def exists(self, guest_path: str) -> bool:
        """Whether the path exists (following symlinks)."""
        return os.path.exists(self.path(guest_path))

    def lexists(self, guest_path: str) -> bool:
        """Whether the path exists (a dangling symlink counts)."""
        return os.path.lexists(self.path(guest_path))
