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

Symlinks resolve inside the root, as they would on the guest: with a base other than
``/`` every path is resolved component by component (:meth:`Root.resolve`), an absolute
link target starting again at the base and ``..`` stopping there. So a copied guest
whose ``/sys/block/xvda/device`` points at ``/sys/devices/...``, or a link aiming
``../../..`` past the top, reads the guest's files, never the host's. On the real root
the kernel resolves (no cost). Nothing in a section opens a guest path any other way;
the reads that are about the running system whatever the root (netlink, ioctls, statvfs
of a mount through :meth:`Root.fs_path`, ``/proc/self/fd*``) say so in their module's
docstring.
"""

import errno
import os
import stat

from .records import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

#: Errors that mean "not there (any more)": read as absent.
VANISHED = frozenset((errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.ENOTDIR, errno.ELOOP))

#: Symlinks followed in one path before it counts as a loop (the kernel's limit).
MAX_SYMLINKS = 40

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

    @property
    def is_real(self) -> bool:
        """Whether this is the running system's own root (no prefix)."""
        return self.base in ("", "/")

    def path(self, guest_path: str, follow: bool = True) -> str:
        """Host path of the absolute guest path ``guest_path``, its symlinks resolved
        inside the root (the last one only if ``follow``). Raises OSError(ELOOP)."""
        if self.is_real:
            return guest_path
        return os.fsdecode(self._host(os.fsencode(guest_path), follow))

    def fs_path(self, guest_path: str) -> bytes:
        """The host path of a mount point, to call into the mounted filesystem (statvfs,
        an ioctl): the running system's business, so under a root ``DIR/<mount point>``
        is handed to the kernel as it is, symlinks and all (a test or bench puts the
        filesystem that stands for the guest's mount there, or a link to it). As the
        bytes the kernel named it with: mount points are decoded as UTF-8, so they go
        back as UTF-8 whatever the locale (Python 3.6 in the C locale would encode a str
        path as ASCII)."""
        raw = guest_path.encode("utf-8", "surrogateescape")
        return raw if self.is_real else os.path.join(os.fsencode(self.base), raw.lstrip(b"/"))

    def resolve(self, guest_path: str) -> str:
        """The guest path with every symlink resolved inside the root:
        ``/etc/os-release`` -> ``/usr/lib/os-release``. Raises OSError(ELOOP)."""
        if self.is_real:
            return guest_path   # the kernel does the same, faster
        return os.fsdecode(self._resolve(os.fsencode(guest_path), True))

    def _host(self, guest: bytes, follow: bool) -> bytes:
        return getattr(self, "_base") + self._resolve(guest, follow)

    def __post_init__(self) -> None:
        # The base as bytes, and the directories already resolved (guest path ->
        # (resolved parts, missing, links followed)): a run reads many files under the
        # same few directories.
        object.__setattr__(self, "_base", os.fsencode(self.base).rstrip(b"/"))
        object.__setattr__(self, "_resolved", {})

    def _resolve(self, guest: bytes, follow: bool) -> bytes:
        """:meth:`resolve` on bytes; the last component is left as it is unless
        ``follow``. After a missing component the rest is only joined, up to a ``..``:
        nothing under a missing directory can be a link."""
        parts = [part for part in guest.split(b"/") if part]
        cache: "Dict[bytes, Tuple[List[bytes], bool, int]]" = getattr(self, "_resolved")
        start, done, missing, followed = 0, [], False, 0   # type: int, List[bytes], bool, int
        for k in range(len(parts) - 1, 0, -1):        # the longest directory resolved
            hit = cache.get(b"/".join(parts[:k]))
            if hit is not None:
                start, done, missing, followed = k, list(hit[0]), hit[1], hit[2]
                break
        for k in range(start, len(parts)):
            last = k == len(parts) - 1
            missing, followed = self._step(parts[k], done, missing, followed,
                                           follow or not last)
            if not last:
                cache[b"/".join(parts[:k + 1])] = (list(done), missing, followed)
        return b"/" + b"/".join(done)

    def _step(self, part: bytes, done: "List[bytes]", missing: bool, followed: int,
              follow: bool) -> "Tuple[bool, int]":
        """Resolve one component of a path onto ``done`` (the resolved parts so far),
        following it if it is a link (and ``follow``) to the end of its target;
        returns the new ``missing`` and ``followed``. Raises OSError(ELOOP)."""
        base: bytes = getattr(self, "_base")
        todo = [part]
        while todo:
            part = todo.pop()
            if part == b".":
                continue
            if part == b"..":
                if done:
                    done.pop()
                missing = False     # what is above may exist (and be a link) again
                continue
            if missing or (not todo and not follow):
                done.append(part)
                continue
            try:
                target = os.readlink(b"/".join([base] + done + [part]))
            except OSError as err:
                if err.errno not in VANISHED and err.errno != errno.EINVAL:
                    raise
                missing = err.errno != errno.EINVAL
                done.append(part)
                continue
            followed += 1
            if followed > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), b"/" + b"/".join(done))
            if target.startswith(b"/"):
                del done[:]
            todo.extend(part for part in reversed(target.split(b"/")) if part)
        return missing, followed

    def read_bytes(self, guest_path: str, default: "Optional[bytes]" = None,
                   limit: int = MAX_READ) -> "Optional[bytes]":
        """At most ``limit`` bytes of a regular file, or ``default`` if it is not there.
        Raises :class:`NotRegularFile` for anything else (see the module docstring)."""
        try:
            # under a root the path is resolved: its last part must not turn into a
            # link between resolving and opening
            fd = os.open(self.path(guest_path),
                         _OPEN_FLAGS if self.is_real else _OPEN_FLAGS | os.O_NOFOLLOW)
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
            return os.readlink(self.path(guest_path, follow=False))
        except OSError as err:
            if err.errno in VANISHED or err.errno == errno.EINVAL:
                return None
            raise

    def stat(self, guest_path: str) -> "Optional[os.stat_result]":
        """``os.stat`` of the path (symlinks followed inside the root), or None if it
        is not there."""
        try:
            return os.stat(self.path(guest_path))
        except OSError as err:
            if err.errno in VANISHED:
                return None
            raise

    def exists(self, guest_path: str) -> bool:
        """Whether the path exists (following symlinks)."""
        try:
            return os.path.exists(self.path(guest_path))
        except OSError:     # a loop in the guest's links
            return False

    def lexists(self, guest_path: str) -> bool:
        """Whether the path exists (a dangling symlink counts)."""
        try:
            return os.path.lexists(self.path(guest_path, follow=False))
        except OSError:     # a loop in the guest's links
            return False
