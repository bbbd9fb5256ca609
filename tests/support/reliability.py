"""Helpers for the reliability tests (``tests/test_reliability_*.py``).

* The key schema of DESIGN.md, written out here on its own (not taken from the
  sections' ``OWNS``): the oracle for "it wrote nothing outside its own keys".
* :func:`foreign_writes`: the daemon's access-log entries since a mark that change
  anything outside that schema (writes of non-leaves, any mkdir / setperms, an rm
  outside our subtrees, any absolute path elsewhere); :func:`strangers`,
  :func:`unclean_values`, :func:`raw_tree` for the published tree.
* :func:`make_full_guest`: a fake guest for every section: the minimal one of
  ``tests/support/fakeguest.py`` plus a Xen disk with an unmounted ext4 partition and an
  active swap partition (both give figures that do not wander), its XenStore seed
  (:func:`full_seed`) and the tree it publishes (:func:`expected_full`). Network
  interfaces come from a network namespace (tests/support/netns.py) where a test needs
  addresses.
* Runs: :func:`run_in_process` (``cli.main`` here), :func:`collector` / :func:`popen`
  (a process, optionally in a network namespace).
* Fixtures (a plugin of tests/conftest.py): ``daemon`` (a real oxenstored seeded with
  the full guest's disk backend), ``proxy`` (a fault proxy in front of it),
  ``full_guest``.
"""
import re
import subprocess
import sys

import pytest
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from tests.support.blockdev import FakeBlock, backend_seed, tree_of, volume
from tests.support.fakeguest import FakeGuest
from tests.support.collector import CHECKOUT, HOME, expected_static_memory

_ID = r"[A-Za-z0-9_@-]+"
_NUM = r"(?:0|[1-9][0-9]*)"

#: Leaves a run may write (paths relative to the guest's home), from DESIGN.md.
LEAF = re.compile(r"""^(?:
    data/os_(?:distro|majorver|minorver|uname|name)
  | attr/PVAddons/(?:Installed|MajorVersion|MinorVersion|MicroVersion|BuildVersion)
  | control/feature-balloon
  | data/meminfo_(?:total|free)
  | data/updated
  | attr/vif/{num}/ipv[46]/{num}
  | xenserver/attr/net-sriov-vf/{id}/ipv[46]/{num}
  | data/volumes/{num}/(?:extents/0|name|size|mount_points/{num}|filesystem|free)
)$""".format(num=_NUM, id=_ID), re.X)

#: Nodes a run may remove: a leaf, or anything inside the subtrees sections own whole
#: (stale or foreign nodes there are the section's to clean up).
NODE = re.compile(r"""^(?:
    attr/PVAddons
  | attr/vif
  | xenserver/attr/net-sriov-vf
  | data/volumes
)(?:/[^/]+)*$""", re.X)

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

#: The disk of :func:`make_full_guest`: xvda, 10 GiB; xvda1 ext4 (unmounted), xvda2 swap.
DISK_SECTORS = 20971520
PART1_SECTORS, PART2_SECTORS = 16777216, 2097152
PARTUUID = "5f2c1e9a-01"
SWAP_KIB, SWAP_USED_KIB = 1048572, 2048


def relative(path: str) -> str:
    """A logged path relative to the guest's home (absolute ones elsewhere stay so)."""
    if path.startswith(HOME + "/"):
        return path[len(HOME) + 1:]
    return path


def is_ours(op: str, path: str) -> bool:
    """Whether a store-changing operation stays inside DESIGN.md's keys."""
    rel = relative(path)
    if op == "write":
        return bool(LEAF.match(rel))
    if op == "rm":
        return bool(LEAF.match(rel) or NODE.match(rel))
    return False                     # we never mkdir nor set permissions


def log_mark(daemon):
    """A position in the daemon's access log (survives one rotation)."""
    return daemon.log_mark()


def entries_since(daemon, mark) -> list:
    """Access-log entries since ``mark``."""
    return daemon.log_since(mark)


def changes_since(daemon, mark) -> list:
    """The entries since ``mark`` that change the store: write, mkdir, rm, setperms."""
    return [e for e in entries_since(daemon, mark)
            if e.op in ("write", "mkdir", "rm", "setperms")]


def foreign_writes(daemon, mark, ignore_conns: Iterable[str] = ()) -> List[str]:
    """Access-log entries since ``mark`` that change anything outside our keys."""
    skip = set(ignore_conns)
    return ["%s %s %s" % (e.conn, e.op, e.path) for e in changes_since(daemon, mark)
            if e.conn not in skip and not is_ours(e.op, e.path)]


def foreign_requests(proxy) -> List[str]:
    """Requests that went through ``proxy`` and change anything outside our keys (the
    access log cannot tell when another writer makes the daemon rotate it)."""
    ops = {"write": "write", "rm": "rm", "mkdir": "mkdir", "set_perms": "setperms"}
    return ["%s %s" % (op, path) for op, path, _tx in list(proxy.requests)
            if op in ops and not is_ours(ops[op], path)]


def oversize_writes(daemon, mark, limit: int = 2048) -> List[str]:
    """Writes since ``mark`` whose value is over ``limit`` bytes."""
    return ["%s (%d bytes)" % (e.path, len(e.value.encode()))
            for e in changes_since(daemon, mark)
            if e.op == "write" and len(e.value.encode("utf-8", "surrogateescape")) > limit]


def raw_read(daemon, path: str) -> Optional[bytes]:
    """A value's exact bytes, read by an independent client (pyxs), or None if absent.
    (The C ``xenstore-read`` escapes non-ASCII bytes.)"""
    import pyxs
    with pyxs.Client(unix_socket_path=str(daemon.socket)) as peer:
        try:
            return peer.read(path.encode())
        except pyxs.PyXSError:
            return None


def raw_tree(daemon, path: str = HOME) -> Dict[str, bytes]:
    """Every node under ``path`` (relative names) with its exact value (pyxs)."""
    import pyxs
    out: Dict[str, bytes] = {}
    with pyxs.Client(unix_socket_path=str(daemon.socket)) as peer:
        def walk(node: bytes, rel: str) -> None:
            try:
                children = peer.list(node)
            except pyxs.PyXSError:       # absent (or removed meanwhile)
                return
            for child in children:
                name = child.decode()
                sub = rel + "/" + name if rel else name
                out[sub] = peer.read(node + b"/" + child)
                walk(node + b"/" + child, sub)
        walk(path.encode(), "")
    return out


def unclean_values(tree: Dict[str, bytes], limit: int = 2048) -> Dict[str, bytes]:
    """Values that are not clean text: invalid UTF-8, control characters (C0, DEL,
    C1) or over ``limit`` bytes."""
    bad = {}
    for key, value in tree.items():
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            bad[key] = value
            continue
        if _CONTROL.search(text) or len(value) > limit:
            bad[key] = value
    return bad


#: Parents of our keys that are not themselves owned by a section.
_PARENTS = {"data", "attr", "control", "xenserver", "xenserver/attr"}


def strangers(tree: Dict[str, object], allowed: Iterable[str] = ()) -> List[str]:
    """Keys of a home tree that are not ours (nor their parents, nor ``allowed``)."""
    extra = set(allowed)
    return sorted(k for k in tree if k not in extra and k not in _PARENTS
                  and not LEAF.match(k) and not NODE.match(k))


def control_characters(tree: Dict[str, str]) -> Dict[str, str]:
    """The values of a tree that hold C0 / DEL / C1 control characters."""
    return {k: v for k, v in tree.items() if _CONTROL.search(v)}


def home_tree(daemon) -> Dict[str, str]:
    """The whole /local/domain/0 tree, ``data/updated`` checked for format and dropped."""
    tree = daemon.tree(HOME)
    updated = tree.pop("data/updated", None)
    if updated is not None:
        assert re.fullmatch(r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}",
                            updated), updated
    return tree


def make_full_guest(root: Path) -> FakeGuest:
    """Every section's files under ``root`` (network: see :func:`vif_tree`)."""
    guest = FakeGuest(root).minimal()
    block = FakeBlock(root)
    block.xen_disk("xvda", 0, DISK_SECTORS)
    block.partition("xvda", 1, (202, 1), PART1_SECTORS,
                    udev={"ID_FS_TYPE": "ext4", "ID_PART_ENTRY_UUID": PARTUUID})
    block.partition("xvda", 2, (202, 2), PART2_SECTORS, udev={"ID_FS_TYPE": "swap"})
    block.swaps(("/dev/xvda2", "partition", SWAP_KIB, SWAP_USED_KIB))
    guest.block = block              # type: ignore[attr-defined]
    return guest


def full_seed() -> List:
    """XenStore seed of :func:`make_full_guest`: xvda's backend (``dev`` = ``xvda``)."""
    return backend_seed(["xvda"])


def expected_full(meminfo_free: str = "1500000", vif: Optional[Dict[str, str]] = None,
                  seeded: bool = True) -> Dict[str, str]:
    """The whole home tree after publishing :func:`make_full_guest` (seed included)."""
    tree = expected_static_memory(meminfo_free)
    volumes = {}
    volumes.update(volume(0, "/dev/xvda1(%s)" % PARTUUID, PART1_SECTORS * 512, "xvda"))
    volumes.update(volume(1, "/dev/xvda2", PART2_SECTORS * 512, "xvda", ["[SWAP]"], "swap",
                          (SWAP_KIB - SWAP_USED_KIB) * 1024))
    tree.update({"data/volumes/" + k: v for k, v in tree_of(volumes).items()})
    tree["data/volumes"] = ""
    if vif:
        tree.update({"attr/vif/" + k: v for k, v in tree_of(vif).items()})
        tree["attr/vif"] = ""
    if seeded:
        for path, value in full_seed():
            rel = relative(path)
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                tree.setdefault("/".join(parts[:depth]), "")
            tree[rel] = value
    return tree


def run_in_process(*argv: str) -> Tuple[int, str]:
    """``xe_oneshot.cli.main(argv)`` in this process (XenStore from XENSTORED_PATH);
    returns (exit status, what it wrote to stderr)."""
    import contextlib
    import io
    import logging
    from xe_oneshot.cli import main
    logging.getLogger("xe_oneshot").handlers.clear()   # log to this call's stderr
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(list(argv))
    return rc, err.getvalue()


def collector(root: Path, state: Path, *args: str, netns: Optional[str] = None) -> List[str]:
    """The argv of one ``xe-oneshot`` process (inside network namespace ``netns``)."""
    cmd = [sys.executable, "-m", "xe_oneshot", "--root", str(root), "--state-dir",
           str(state)] + list(args)
    if netns:
        cmd = ["nsenter", "--net=/run/netns/" + netns] + cmd
    return cmd


def default_sigint() -> None:
    """In the child before exec: SIGINT as a terminal gives it. A suite run as a
    background job (`make test &`) passes SIGINT on ignored, and the collector keeps an
    inherited SIG_IGN (as Python does), so a test that sends SIGINT must undo that."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen(daemon_env: Dict[str, str], cmd: List[str]) -> subprocess.Popen:
    env = dict(daemon_env, PYTHONPATH=str(CHECKOUT))
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, preexec_fn=default_sigint)


# -- fixtures shared by the reliability tests (a plugin: tests/conftest.py) ------------

@pytest.fixture
def daemon(tmp_path):
    """A real oxenstored of the test's own, seeded with the fake guest's disk backend."""
    from tests.support.xenstored import Unavailable, XenStored
    try:
        d = XenStored(tmp_path / "xsd", seed=full_seed()).start()
    except Unavailable as err:
        pytest.skip("real xenstored unavailable: %s" % err)
    yield d
    d.stop()


@pytest.fixture
def proxy(daemon, tmp_path):
    from tests.support.fault_proxy import FaultProxy
    with FaultProxy(daemon.socket, tmp_path / "proxy.sock") as p:
        yield p


@pytest.fixture
def full_guest(tmp_path):
    return make_full_guest(tmp_path / "guest")
