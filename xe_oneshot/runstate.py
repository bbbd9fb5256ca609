"""Run coordination and the little a run remembers, in the state directory.

Two files in ``--state-dir`` (default ``/run/xe-oneshot``, a tmpfs: forgotten at boot):

* ``lock``: runs serialize on an exclusive ``flock`` of it.
* ``state``: the run state, kept as ``user.xe-oneshot.*`` extended attributes on the file
  (``os.setxattr`` on its fd, or the ``xattr`` package where ``os`` lacks it), or, where
  the filesystem refuses ``user.`` attributes (tmpfs before Linux 6.6), as
  ``name<TAB>value`` lines in the file itself, replaced atomically.

What is remembered: ``boot`` (the kernel's ``boot_id``), ``domid`` (the last
``unique-domain-id`` seen, to notice a migration or resume), ``started.<section>`` (when
the last run of a section started, on the boot clock shared by all processes), and
``published.<key>`` (when a wandering value was last written, for the publisher's change
policy).

Tied to the boot: the stamps are on the boot clock, which starts again at 0, so a state
dir that survives a reboot (not a tmpfs, or ``--state-dir`` elsewhere) would make runs
skip until the uptime caught up. State recorded under another ``boot_id`` (or none) is
treated as absent, and replaced at the next save.

Saving can fail after the run has published (the state's filesystem is full or
read-only): :meth:`RunState.save` raises OSError and the caller reports it. The state
then stays what it was; what it lacks only makes later runs publish what differs.

Coalescing: an invocation notes when it was requested, then waits for the lock. A run
that *started* after that moment saw everything the invocation was started for, so the
invocation skips the sections such runs covered. A storm of udev events costs a couple
of runs and no event is lost.

Safety: the directory is created 0700 and must be a real directory (not a symlink) owned
by us and not writable by others; files are opened relative to it with O_NOFOLLOW and
created 0600, so a planted symlink is never written through.
"""

import errno
import os
import stat
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional

PREFIX = "user.xe-oneshot."
_NOT_SUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)


class StateError(Exception):
    """The state directory cannot be used (message is one line); ``errno`` is the
    system error behind it, or None when it is unsafe (symlink, owner, mode)."""

    def __init__(self, message: str, code: "Optional[int]" = None):
        super().__init__(message)
        self.errno = code


def now() -> float:
    """Seconds on the boot clock: shared by all processes, counts suspend, never steps."""
    return time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", 7))  # Linux's 7; named in 3.7


class RunState:
    """The state directory: lock, remembered values. Use as a context manager."""

    def __init__(self, directory: str, boot: "Optional[str]" = None):
        self.directory = directory
        self.boot = boot             # this boot's boot_id (None: unknown)
        self._dir_fd = -1
        self._lock_fd = -1
        self._state_fd = -1
        self._values: Optional[Dict[str, str]] = None
        self._xattrs: "Any" = None    # the state file's attributes (see _xattrs_of)
        self._dirty: Dict[str, Optional[str]] = {}
        self._detached = False

    # -- opening ------------------------------------------------------------------

    def open(self, create: bool = True) -> "RunState":
        """Open (and create) the directory and files safely. Raises StateError."""
        try:
            if create:
                try:
                    os.mkdir(self.directory, 0o700)
                except FileExistsError:
                    pass
            self._dir_fd = os.open(self.directory,
                                   os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            info = os.fstat(self._dir_fd)
            if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise StateError("state dir %s is not ours alone (owner or mode)"
                                 % self.directory)
            self._lock_fd = self._open_file("lock")
            self._state_fd = self._open_file("state")
        except OSError as err:
            self.close()
            if err.errno == errno.ELOOP or err.errno == errno.ENOTDIR:
                raise StateError("state dir %s: a symlink or not a directory, refusing"
                                 % self.directory) from None
            raise StateError("state dir %s: %s" % (self.directory, err.strerror),
                             err.errno) from None
        except StateError:
            self.close()
            raise
        return self

    def _open_file(self, name: str) -> int:
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=self._dir_fd)
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
            raise StateError("state file %s/%s is a symlink, refusing"
                             % (self.directory, name)) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise StateError("state file %s/%s is not a plain file" % (self.directory, name))
        return fd

    def close(self) -> None:
        for attr in ("_state_fd", "_lock_fd", "_dir_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)          # closing the lock fd releases the lock
                setattr(self, attr, -1)

    def __enter__(self) -> "RunState":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def detached(self) -> "RunState":
        """This state as a run without a state dir sees it: empty, no lock, and
        :meth:`save` does nothing."""
        self.close()
        self._values = {} if self.boot is None else {"boot": self.boot}
        self._dirty = {}
        self._detached = True
        return self

    def lock(self) -> None:
        """Wait for the exclusive run lock (released by close())."""
        import fcntl
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    # -- values -------------------------------------------------------------------

    def _load(self) -> "Dict[str, str]":
        if self._values is not None:
            return self._values
        values: Dict[str, str] = {}
        try:
            self._xattrs = _xattrs_of(self._state_fd)
            for name in self._xattrs.list():
                if name.startswith(PREFIX):
                    values[name[len(PREFIX):]] = self._xattrs.get(name).decode(
                        "utf-8", "replace")
        except ImportError:       # a bare install without the package: the file will do
            self._xattrs = None
        except OSError as err:
            if err.errno not in _NOT_SUPPORTED:
                raise
            self._xattrs = None
        text = _read_fd(self._state_fd)
        if text:                  # the fallback is in use (xattrs refused before)
            self._xattrs = None
            values.update(_parse_state_file(text))
        if values.get("boot") != self.boot:
            # Another boot's state (or one that did not say): its stamps are on another
            # boot's clock. Forget it all; the next save removes it.
            # The new boot_id is saved after the stale values are removed.
            self._dirty = {name: None for name in values if name != "boot"}
            self._dirty["boot"] = self.boot
            values = {}
            if self.boot is not None:
                values["boot"] = self.boot
        self._values = values
        return values

    def get(self, name: str) -> "Optional[str]":
        return self._load().get(name)

    def get_float(self, name: str) -> "Optional[float]":
        try:
            return float(self._load()[name])
        except (KeyError, ValueError):
            return None

    def items(self, prefix: str) -> "Dict[str, str]":
        """Remembered values whose name starts with ``prefix`` (prefix removed)."""
        return {k[len(prefix):]: v for k, v in self._load().items() if k.startswith(prefix)}

    def set(self, name: str, value: "Optional[str]") -> None:
        """Remember (None: forget) a value; saved by :meth:`save`."""
        values = self._load()
        if values.get(name) != value:
            if value is None:
                values.pop(name, None)
            else:
                values[name] = value
            self._dirty[name] = value

    def save(self) -> None:
        """Write the changed values (xattrs one by one, or the whole fallback file)."""
        if not self._dirty or self._detached:
            self._dirty = {}
            return
        dirty, self._dirty = self._dirty, {}
        if self._xattrs is not None:
            try:
                for name, value in dirty.items():
                    if value is None:
                        try:
                            self._xattrs.remove(PREFIX + name)
                        except OSError as err:
                            if err.errno != errno.ENODATA:
                                raise
                    else:
                        self._xattrs.set(PREFIX + name, value.encode())
                return
            except OSError as err:
                if err.errno not in _NOT_SUPPORTED + (errno.ENOSPC, errno.E2BIG):
                    raise
                self._xattrs = None   # out of xattr room: fall back to the file
        self._write_state_file()

    def _write_state_file(self) -> None:
        text = "".join("%s\t%s\n" % (k, v.replace("\n", " "))
                       for k, v in sorted(self._load().items()))
        # A run killed while saving leaves its temp file (and pids are reused): remove
        # such leftovers first (saves happen under the run lock).
        for name in os.listdir(self._dir_fd):
            if name.startswith("state.") and name.endswith(".tmp"):
                os.unlink(name, dir_fd=self._dir_fd)
        tmp = "state.%d.tmp" % os.getpid()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=self._dir_fd)
        try:
            try:
                data = text.encode()
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, "state", src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        except OSError:           # full or read-only: the old file stays as it was
            try:
                os.unlink(tmp, dir_fd=self._dir_fd)
            except OSError:
                pass
            raise
        os.close(self._state_fd)
        self._state_fd = self._open_file("state")

    # -- coordination -------------------------------------------------------------

    def pending(self, sections: "Iterable[str]", requested: float) -> "List[str]":
        """The sections no run has started since ``requested`` (call under the lock)."""
        out = []
        for name in sections:
            started = self.get_float("started." + name)
            if started is None or started < requested:
                out.append(name)
        return out

    def mark_started(self, sections: "Iterable[str]", when: float) -> None:
        """Note that a run of ``sections`` started at ``when`` (saved by save())."""
        for name in sections:
            self.set("started." + name, repr(when))


def _xattrs_of(fd: int):
    """The ``user.`` attributes of an open file: through ``os.*xattr`` where the
    interpreter has them (CPython on Linux), else through the ``xattr`` package (the same
    syscalls, but its cffi import costs ~2 ms, 7% of a ``memory`` run)."""
    if hasattr(os, "setxattr"):
        return _FdXattrs(fd)
    import xattr
    return xattr.xattr(fd)


class _FdXattrs:
    """The ``user.`` attributes of an open file through ``os.*xattr``: the same calls
    the ``xattr`` package makes, without its cffi import (~2 ms of every run)."""

    def __init__(self, fd: int):
        self.fd = fd

    def list(self) -> "List[str]":
        return os.listxattr(self.fd)

    def get(self, name: str) -> bytes:
        return os.getxattr(self.fd, name)

    def set(self, name: str, value: bytes) -> None:
        os.setxattr(self.fd, name, value)

    def remove(self, name: str) -> None:
        os.removexattr(self.fd, name)


def _read_fd(fd: int) -> str:
    chunks = []
    offset = 0
    while True:
        chunk = os.pread(fd, 65536, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        if offset > 1 << 22:     # a state file is a few kB; never slurp a huge one
            break
    return b"".join(chunks).decode("utf-8", "replace")


def _parse_state_file(text: str) -> "Dict[str, str]":
    """The fallback file's values. Sample line: ``started.memory<TAB>1234.5``."""
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("\t")
        if sep:
            values[name] = value
    return values
