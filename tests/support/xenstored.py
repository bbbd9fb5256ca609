"""The real XenStore daemon for tests: oxenstored (Xen 4.17, Debian 12) on a Unix socket.

No Xen needed: the daemon is started as after a live restart (its event channel is a
dummy fd, so /dev/xen/evtchn is never opened), in a private mount namespace where /run
and /dev are replaced by our own directories. Every socket connection is dom0: relative
paths land under /local/domain/0 and permissions are never enforced (faults come from
tests/support/fault_proxy.py).

The Debian packages are downloaded once (``apt-get download``) into a cache directory
(``XE_ONESHOT_TEST_CACHE``, else ``.cache/`` in the checkout) and unpacked there. They
also provide the C peers (``xenstore-read`` ... over libxenstore).
"""

import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

XEN_VERSION = "4.17"
PACKAGES = (
    "xen-utils-%s libxenmisc%s libxenevtchn1 libxentoollog1 libxencall1 libxengnttab1 "
    "libxenforeignmemory1 libxendevicemodel1 libxentoolcore1 libxenstore4 xenstore-utils"
    % (XEN_VERSION, XEN_VERSION)).split()

from tests.support.paths import CHECKOUT


class Unavailable(Exception):
    """The real daemon cannot run here (reason in the message)."""


def cache_dir() -> Path:
    return Path(os.environ.get("XE_ONESHOT_TEST_CACHE") or CHECKOUT / ".cache")


def xen_root() -> Path:
    """Unpack the Debian packages once; returns the unpacked root. Raises Unavailable."""
    base = cache_dir() / ("xen-" + XEN_VERSION)
    root = base / "root"
    daemon = root / "usr/lib/xen-{0}/bin/oxenstored".format(XEN_VERSION)
    if daemon.exists():
        return root
    if os.geteuid() != 0:
        raise Unavailable("the real xenstored needs root")
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise Unavailable("the real xenstored needs apt-get and dpkg to fetch it")
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if daemon.exists():
            return root
        debs = base / "debs"
        debs.mkdir(exist_ok=True)
        res = subprocess.run(["apt-get", "download", "-q"] + PACKAGES, cwd=debs,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        if res.returncode != 0:
            raise Unavailable("apt-get download failed (run apt-get update?): "
                              + res.stdout.strip().splitlines()[-1:][0] if res.stdout else "")
        tmp = base / "root.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True)
        os.rename(tmp, root)
    return root


@dataclass
class LogEntry:
    """One line of the daemon's access log: ``A5.1  write  data/x value``."""

    conn: str
    tx: Optional[str]
    op: str
    path: str
    value: str


_LOG_LINE = re.compile(r"^\[[^\]]*\]\s+(?P<conn>[A-Z]?\d+)(?:\.(?P<tx>\d+))?\s+(?P<op>\S+)\s*(?P<rest>.*)$")


class XenStored:
    """One running oxenstored in directory ``workdir``."""

    def __init__(self, workdir: Path, seed: Iterable[Tuple[str, str]] = ()):
        self.workdir = Path(workdir)
        self.root = xen_root()
        self.lib = self.root / "usr/lib/x86_64-linux-gnu"
        self.socket = self.workdir / "run/xenstored/socket"
        self.access_log = self.workdir / "log/access.log"
        self._seed = list(seed)
        self._proc: Optional[subprocess.Popen] = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> "XenStored":
        d = self.workdir
        for sub in ("run/xenstored", "run/xen", "devup/xen", "devwork", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "nr_open").write_text("%d\n" % _hard_nofile())
        (d / "devup/xen/privcmd").write_text("")
        (d / "oxenstored.conf").write_text(
            "pid-file = {0}/run/xen/xenstored.pid\n"
            "xenstored-log-file = {0}/log/xenstored.log\n"
            "access-log-file = {0}/log/access.log\n".format(d))
        db = ["$xenstored-dump-format", "global,6", "evtchn-dev,3,1"]
        seen = {"/"}
        for path, value in self._seed:
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts) + 1):
                node = "/" + "/".join(parts[:depth])
                if depth == len(parts) or node not in seen:
                    seen.add(node)
                    db.append("store,%s,%s,%s" % (
                        node.encode().hex(), b"n0".hex(),
                        (value if depth == len(parts) else "").encode().hex()))
        (d / "run/xenstored/db").write_text("\n".join(db) + "\n")
        if self.socket.exists():
            self.socket.unlink()
        # fds 3 and 6 must be free for the daemon (event channel and its listening
        # socket): close_fds leaves only 0-2 open.
        script = (
            'mount --bind "$D/nr_open" /proc/sys/fs/nr_open && '
            'mount --bind "$D/run" /run && '
            'mount -t overlay overlay -o lowerdir=/dev,upperdir="$D/devup",'
            'workdir="$D/devwork" /dev && '
            'exec "$DAEMON" --no-fork --no-domain-init --restart --config-file "$D/oxenstored.conf"')
        env = dict(os.environ, D=str(d), LD_LIBRARY_PATH=str(self.lib),
                   DAEMON=str(self.root / "usr/lib/xen-{0}/bin/oxenstored".format(XEN_VERSION)))
        with open(d / "log/stdout", "wb") as out:
            self._proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, close_fds=True, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self.socket.exists():
                res = subprocess.run([str(self.tool("xenstore-read")), "/tool/xenstored"],
                                     env=self.env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, timeout=5)
                if res.returncode == 0:
                    return self
            time.sleep(0.02)
        self.stop()
        raise Unavailable("oxenstored did not start: "
                          + (d / "log/stdout").read_text(errors="replace")[-500:])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> "XenStored":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- clients ---------------------------------------------------------------

    def env(self, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """Environment for a client: XENSTORED_PATH set, C tools' libraries found."""
        env = dict(os.environ if base is None else base)
        env["XENSTORED_PATH"] = str(self.socket)
        env["LD_LIBRARY_PATH"] = str(self.lib)
        return env

    def tool(self, name: str) -> Path:
        """Path of a Debian C tool (``xenstore-read``, ``xenstore-ls``, ...)."""
        return self.root / "usr/bin" / name

    def run_tool(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a Debian C tool against this daemon; stdout/stderr as text."""
        return subprocess.run([str(self.tool(name))] + list(args), env=self.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=20, check=check)

    # -- inspection ------------------------------------------------------------

    def read(self, path: str) -> Optional[str]:
        """A value as the C ``xenstore-read`` sees it, or None if absent."""
        res = self.run_tool("xenstore-read", path, check=False)
        return res.stdout[:-1] if res.returncode == 0 else None

    def write(self, path: str, value: str) -> None:
        self.run_tool("xenstore-write", path, value)

    def tree(self, path: str) -> Dict[str, str]:
        """Every node under ``path`` (relative names) with its value, via the C tools.

        Intermediate directory nodes appear with their value (usually empty).
        """
        res = self.run_tool("xenstore-ls", "-f", path, check=False)
        if res.returncode != 0:
            return {}
        prefix = path.rstrip("/") + "/"
        out = {}
        for line in res.stdout.splitlines():
            key, _, value = line.partition(" = ")
            key = key[len(prefix):] if key.startswith(prefix) else key
            out[key] = _unquote_ls(value)
        return out

    def log_mark(self) -> Tuple[int, int]:
        """Position in the access log; pass it to :meth:`log_since`. It survives one
        rotation (oxenstored renames the log to ``access.log.1`` every 13215 lines, so
        a plain offset would silently read a new, nearly empty log)."""
        try:
            info = self.access_log.stat()
        except FileNotFoundError:
            return (0, 0)
        return (info.st_ino, info.st_size)

    def log_since(self, mark: Tuple[int, int] = (0, 0)) -> List[LogEntry]:
        """Access-log entries after ``mark`` (writes, rms, commits, connections...)."""
        inode, offset = mark
        if inode and self.access_log.stat().st_ino != inode:
            rotated = self.access_log.with_name(self.access_log.name + ".1")
            assert rotated.stat().st_ino == inode, "access log rotated twice since the mark"
            return _log_entries(rotated, offset) + _log_entries(self.access_log, 0)
        return _log_entries(self.access_log, offset)

    def writes_since(self, mark: Tuple[int, int] = (0, 0)) -> List[LogEntry]:
        """Only the entries that change the store: write, mkdir, rm, setperms."""
        return [e for e in self.log_since(mark)
                if e.op in ("write", "mkdir", "rm", "setperms")]


def _log_entries(path: Path, offset: int) -> List[LogEntry]:
    """The entries of one access-log file after byte ``offset``."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read().decode("utf-8", "replace")
    entries = []
    for line in data.splitlines():
        m = _LOG_LINE.match(line)
        if not m:
            continue
        path_, _, value = m.group("rest").partition(" ")
        entries.append(LogEntry(m.group("conn"), m.group("tx"), m.group("op"), path_, value))
    return entries


def _unquote_ls(value: str) -> str:
    """Undo xenstore-ls's quoting: ``"abc"`` → ``abc`` (backslash escapes kept simple)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value.replace('\\"', '"').replace("\\\\", "\\")


def _hard_nofile() -> int:
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]
