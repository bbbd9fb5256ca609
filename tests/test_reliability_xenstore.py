"""Reliability: what dom0's XenStore can do to a run, against the real daemon.

Each test publishes a guest once (the "old tree"), changes the guest, then runs the
collector into a fault: through the fault-injecting proxy (EACCES, EAGAIN, EQUOTA,
ENOSPC, E2BIG, dropped connections, bad or missing replies, 1-byte pieces), beside a
real second writer, or with the daemon gone. Afterwards the whole /local/domain/0 tree
is checked: either the new tree exactly, or the old one intact ("nothing
half-published"), and a clean run repairs it.
"""

import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support.fault_proxy import FaultProxy, Rule
from tests.support.reliability import (changes_since, collector, expected_full, foreign_requests,
                               foreign_writes, make_full_guest, full_seed, home_tree, log_mark,
                               oversize_writes, popen, raw_read)
from tests.support.collector import HOME, run
from tests.support.xenstored import Unavailable, XenStored

SECTIONS = "static,memory,volumes"

FEDORA = ('os_distro="fedora"\nos_majorver="40"\nos_minorver="0"\nos_uname="6.8.5"\n'
          'os_name="Fedora release 40 (Forty)"\n')


def change(guest):
    """Change something in every section but misc (writes and removals to publish)."""
    guest.meminfo(available=900000)
    guest.distribution(FEDORA)
    guest.block.swaps()                       # xvda2's swap switched off


def expected_new():
    tree = expected_full(meminfo_free="900000")
    tree.update({"data/os_distro": "fedora", "data/os_majorver": "40",
                 "data/os_minorver": "0", "data/os_uname": "6.8.5",
                 "data/os_name": "Fedora release 40 (Forty)"})
    for key in ("mount_points", "mount_points/0", "filesystem", "free"):
        del tree["data/volumes/1/" + key]
    return tree


@pytest.fixture
def published(daemon, full_guest, state):
    """The old tree is published (checked exactly), then the guest is changed."""
    run(daemon, full_guest.root, state, "--section", SECTIONS)
    old = home_tree(daemon)
    assert old == expected_full()
    change(full_guest)
    return old


def one_line(res, *words):
    """stderr is one ``xe-oneshot: ...`` line holding every word."""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xe-oneshot: "), res.stderr
    for word in words:
        assert word in lines[0], res.stderr
    return lines[0]


def repaired(daemon, guest, state):
    """A clean run afterwards publishes the new tree exactly, leaving no stray files."""
    run(daemon, guest.root, state, "--section", SECTIONS)
    assert home_tree(daemon) == expected_new()
    assert sorted(os.listdir(state)) == ["lock", "state"]


# -- EAGAIN: conflicting commits -------------------------------------------------------

def test_conflicts_within_the_bound_are_retried(daemon, proxy, full_guest, state, published):
    rule = Rule(op="commit", error="EAGAIN", times=9)
    proxy.rules.append(rule)
    res = run(daemon, full_guest.root, state, "--section", SECTIONS, env=proxy.env(daemon.env()))
    assert res.stderr == ""
    assert rule.fired == 9 and proxy.counts["commit"] == 10
    assert home_tree(daemon) == expected_new()


def test_conflicts_beyond_the_bound_fail_cleanly(daemon, proxy, full_guest, state, published):
    proxy.rules.append(Rule(op="commit", error="EAGAIN"))
    mark = log_mark(daemon)
    started = time.monotonic()
    res = run(daemon, full_guest.root, state, "--section", SECTIONS, env=proxy.env(daemon.env()),
              check=False)
    elapsed = time.monotonic() - started
    assert res.returncode == 4
    one_line(res, "EAGAIN", "nothing published")
    assert proxy.counts["commit"] == 10          # the bound: 10 attempts
    assert elapsed < 8, elapsed                   # bounded backoff, not an endless loop
    assert home_tree(daemon) == published
    assert foreign_writes(daemon, mark) == []
    proxy.reset()
    repaired(daemon, full_guest, state)


class Hammer:
    """A real second writer: writes ``data/meminfo_free`` on its own connection as fast
    as it can, until stopped or until ``until()`` says so."""

    def __init__(self, daemon, until=lambda: False):
        from xe_oneshot.xenstore import Client
        self.client = Client.open(env={"XENSTORED_PATH": str(daemon.socket)})
        self.until = until
        self.writes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set() and not self.until():
            self.client.write("data/meminfo_free", str(self.writes))
            self.writes += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        self.client.close()


def test_a_writer_hammering_our_keys_does_not_starve_the_run(daemon, proxy, full_guest, state,
                                                             published):
    """The transaction holds only the run's writes (the plan is read before it), so
    oxenstored replays it over the other writer's commits instead of answering EAGAIN:
    one commit, everything published. (C xenstored would conflict; the bound on retries
    is tested with the proxy above.)"""
    with Hammer(daemon) as hammer:
        res = run(daemon, full_guest.root, state, "--section", SECTIONS,
                  env=proxy.env(daemon.env()), check=False)
    assert hammer.writes > 10
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert proxy.counts["commit"] == 1
    tree = home_tree(daemon)
    assert tree.pop("data/meminfo_free") == str(hammer.writes - 1)   # the last writer's
    new = expected_new()
    del new["data/meminfo_free"]
    assert tree == new
    assert foreign_requests(proxy) == []


def test_eacces_on_one_key_publishes_the_rest(daemon, proxy, full_guest, state, published):
    proxy.rules.append(Rule(op="write", path="^data/os_name$", error="EACCES"))
    mark = log_mark(daemon)
    res = run(daemon, full_guest.root, state, "--section", SECTIONS, env=proxy.env(daemon.env()))
    assert res.stderr.splitlines() == [
        "xe-oneshot: data/os_name: not written (EACCES), the rest is published"]
    expected = expected_new()
    expected["data/os_name"] = published["data/os_name"]     # left as it was
    assert home_tree(daemon) == expected
    assert foreign_writes(daemon, mark) == []


def test_eacces_on_removing_a_stale_node_leaves_it_and_publishes_the_rest(
        daemon, proxy, full_guest, state, published):
    proxy.rules.append(Rule(op="rm", path="^data/volumes/1/", error="EACCES"))
    res = run(daemon, full_guest.root, state, "--section", SECTIONS, env=proxy.env(daemon.env()))
    lines = res.stderr.splitlines()
    assert lines and all("data/volumes/1/" in line and "EACCES" in line for line in lines), \
        res.stderr
    expected = expected_new()
    for key in ("mount_points", "mount_points/0", "filesystem", "free"):
        expected["data/volumes/1/" + key] = published["data/volumes/1/" + key]
    assert home_tree(daemon) == expected


# -- quota and space: the whole run fails, the old tree stays --------------------------

@pytest.mark.parametrize("rule", [
    Rule(op="write", error="EQUOTA", nth=3),
    Rule(op="write", error="ENOSPC", nth=5),
    Rule(op="rm", error="EQUOTA"),
    Rule(op="commit", error="EQUOTA"),
    Rule(op="commit", error="ENOSPC"),
], ids=["equota-3rd-write", "enospc-5th-write", "equota-rm", "equota-commit",
        "enospc-commit"])
def test_quota_or_space_exhausted_mid_transaction_keeps_the_old_tree(
        daemon, proxy, full_guest, state, published, rule):
    proxy.rules.append(rule)
    mark = log_mark(daemon)
    res = run(daemon, full_guest.root, state, "--section", SECTIONS, env=proxy.env(daemon.env()),
              check=False)
    assert rule.fired >= 1      # (pipelined: the batch's other requests were in flight)
    assert res.returncode == 4
    one_line(res, rule.error, "nothing published")
    assert home_tree(daemon) == published
    assert foreign_writes(daemon, mark) == []
    assert sorted(os.listdir(state)) == ["lock", "state"]
    proxy.reset()
    repaired(daemon, full_guest, state)


# -- E2BIG: values over the daemon's limit ---------------------------------------------

def test_e2big_from_the_daemon_skips_that_key_with_a_warning(daemon, proxy, full_guest, state,
                                                            published):
    proxy.rules.append(Rule(op="write", path="^data/os_name$", error="E2BIG"))
    res = run(daemon, full_guest.root, state, "--section", SECTIONS, env=proxy.env(daemon.env()))
    assert res.stderr.splitlines() == [
        "xe-oneshot: data/os_name: not written (E2BIG), the rest is published"]
    expected = expected_new()
    expected["data/os_name"] = published["data/os_name"]
    assert home_tree(daemon) == expected


@pytest.mark.parametrize("name", ["Huge Linux " + "x" * 10000,
                                  "\u00e9" * 3000,            # 2 bytes each
                                  "\U0001f427" * 1500],       # 4 bytes each
                         ids=["ascii", "latin", "emoji"])
def test_huge_os_name_is_cut_and_never_sent_oversize(daemon, proxy, full_guest, state, name):
    full_guest.distribution('os_distro="debian"\nos_majorver="12"\nos_minorver="7"\n'
                       'os_uname="6.1.0-25-amd64"\nos_name="%s"\n' % name)
    mark = log_mark(daemon)
    run(daemon, full_guest.root, state, "--section", "os", env=proxy.env(daemon.env()))
    published = raw_read(daemon, HOME + "/data/os_name").decode("utf-8")   # valid UTF-8
    assert published and name.startswith(published)
    assert len(published.encode()) <= 2048
    assert oversize_writes(daemon, mark) == []
    assert daemon.read(HOME + "/data/os_distro") == "debian"


def test_huge_os_name_is_cut_with_a_warning(daemon, full_guest, state):
    full_guest.distribution('os_distro="debian"\nos_majorver="12"\nos_minorver="7"\n'
                       'os_uname="6.1.0-25-amd64"\nos_name="%s"\n' % ("x" * 10000))
    res = run(daemon, full_guest.root, state, "--section", "os")
    assert len(res.stderr.splitlines()) == 1 and "os_name" in res.stderr, res.stderr


def test_a_value_over_the_limit_is_cut_by_the_publisher(daemon, full_guest, state):
    """A PARTUUID of 3000 bytes in the udev database ends up in a volume's name."""
    uuid = "u" * 3000
    full_guest.block.udev((202, 1), {"ID_FS_TYPE": "ext4", "ID_PART_ENTRY_UUID": uuid})
    mark = log_mark(daemon)
    res = run(daemon, full_guest.root, state, "--section", "volumes")
    assert res.stderr.splitlines() == [
        "xe-oneshot: data/volumes/0/name: value of 3012 bytes cut to 2048"]
    assert daemon.read(HOME + "/data/volumes/0/name") == ("/dev/xvda1(" + uuid)[:2048]
    assert oversize_writes(daemon, mark) == []


def test_a_mount_point_over_the_limit_is_cut_or_skipped_with_a_warning(daemon, full_guest, state):
    """A mount point of 3000 bytes (legal: PATH_MAX is 4096)."""
    point = "/" + "/".join(["m" * 199] * 15)
    assert len(point) == 3000
    full_guest.block.mount((202, 1), point, "ext4", "/dev/xvda1")
    mark = log_mark(daemon)
    res = run(daemon, full_guest.root, state, "--section", "volumes")
    assert len(res.stderr.splitlines()) == 1, res.stderr
    published = daemon.read(HOME + "/data/volumes/0/mount_points/0")
    if published is not None:
        assert published == point[:2048] and "cut to 2048" in res.stderr
    assert oversize_writes(daemon, mark) == []


# -- the connection or the daemon goes away --------------------------------------------

@pytest.mark.parametrize("rule", [
    Rule(op="read", path="^device/vbd/", action="drop"),
    Rule(op="directory", action="drop", nth=2),
    Rule(op="write", action="drop", nth=4),
    Rule(op="rm", action="drop"),
    Rule(op="commit", action="drop"),
    Rule(op="read", action="bad_reply", nth=2),
    Rule(op="write", action="swallow", nth=2),
], ids=["dropped-while-collecting", "dropped-while-reading", "dropped-while-writing",
        "dropped-while-removing", "dropped-at-commit", "bad-reply", "no-reply"])
def test_a_lost_connection_or_a_wrong_or_missing_reply_publishes_nothing(
        daemon, proxy, full_guest, state, published, rule):
    proxy.rules.append(rule)
    mark = log_mark(daemon)
    res = run(daemon, full_guest.root, state, "--section", SECTIONS, env=proxy.env(daemon.env()),
              check=False)
    assert rule.fired == 1
    assert res.returncode == 4
    one_line(res, "nothing published")
    assert home_tree(daemon) == published
    assert foreign_writes(daemon, mark) == []
    proxy.reset()
    repaired(daemon, full_guest, state)


def test_daemon_stopped_is_exit_3_in_one_line(daemon, full_guest, state):
    run(daemon, full_guest.root, state, "--section", SECTIONS)
    daemon.stop()
    res = run(daemon, full_guest.root, state, "--section", SECTIONS, check=False)
    assert res.returncode == 3
    one_line(res, "no XenStore", str(daemon.socket))
    assert sorted(os.listdir(state)) == ["lock", "state"]


def test_daemon_dying_mid_run_is_a_clean_failure(daemon, proxy, full_guest, state):
    proxy.delay = 0.02                         # a run of a second or so
    proc = popen(proxy.env(daemon.env()), collector(full_guest.root, state, "--section", SECTIONS))
    deadline = time.monotonic() + 30
    while proxy.counts["transaction_start"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    # SIGKILL: on SIGTERM oxenstored first serves what its clients keep sending.
    daemon._proc.kill()
    daemon.stop()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and "nothing published" in err, err


# -- replies in pieces -----------------------------------------------------------------

def test_replies_in_one_byte_pieces_give_the_same_tree(daemon, proxy, full_guest, state):
    proxy.split = 1
    mark = log_mark(daemon)
    res = run(daemon, full_guest.root, state, "--section", SECTIONS, env=proxy.env(daemon.env()))
    assert res.stderr == ""
    assert home_tree(daemon) == expected_full()
    assert foreign_writes(daemon, mark) == []
    mark = log_mark(daemon)
    run(daemon, full_guest.root, state, "--section", SECTIONS, env=proxy.env(daemon.env()))
    assert changes_since(daemon, mark) == []          # unchanged: nothing written
    assert proxy.counts["transaction_start"] == 1     # ... and no transaction either
    assert proxy.counts["read"] > 10                  # though it read it all, in pieces


# -- any single fault: all or nothing --------------------------------------------------

@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One daemon and proxy for the property test; XENSTORED_PATH set to the proxy."""
    base = tmp_path_factory.mktemp("shared")
    try:
        d = XenStored(base / "xsd", seed=full_seed()).start()
    except Unavailable as err:
        pytest.skip("real xenstored unavailable: %s" % err)
    old = os.environ.get("XENSTORED_PATH")
    with FaultProxy(d.socket, base / "proxy.sock") as p:
        os.environ["XENSTORED_PATH"] = str(p.path)
        try:
            yield d, p
        finally:
            if old is None:
                del os.environ["XENSTORED_PATH"]
            else:
                os.environ["XENSTORED_PATH"] = old
    d.stop()


_OWNED_PATH = "^(data|attr|control)/"      # faults on our own nodes, not on what we read
_FAULTS = st.one_of(
    st.builds(lambda op, nth, error: Rule(op=op, nth=nth, error=error,
                                          path=None if op in ("transaction_start", "commit")
                                          else _OWNED_PATH),
              st.sampled_from(["read", "directory", "write", "rm", "transaction_start",
                               "commit"]),
              st.integers(1, 6),
              st.sampled_from(["EACCES", "EAGAIN", "EQUOTA", "ENOSPC", "E2BIG", "EINVAL",
                               "EIO", "ENOMEM", "EBUSY"])),
    st.builds(lambda op, nth, action: Rule(op=op, nth=nth, action=action,
                                           path=None if op in ("transaction_start", "commit")
                                           else _OWNED_PATH),
              st.sampled_from(["read", "directory", "write", "rm", "transaction_start",
                               "commit"]),
              st.integers(1, 6), st.sampled_from(["drop", "bad_reply"])))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rule=_FAULTS)
def test_any_single_fault_publishes_all_or_nothing(shared, rule):
    """Whatever one request dom0 breaks: either the new tree (minus keys named in a
    warning as not written or not removed), exit 0; or exactly the old tree, exit 4,
    one line."""
    import tempfile
    from tests.support.reliability import run_in_process
    daemon, proxy = shared
    with tempfile.TemporaryDirectory() as tmp:
        guest = make_full_guest(Path(tmp) / "guest")
        state = Path(tmp) / "state"
        proxy.reset()
        args = ("--root", str(guest.root), "--state-dir", str(state), "--section", SECTIONS)
        assert run_in_process(*args) == (0, "")
        old = home_tree(daemon)
        assert old == expected_full()
        change(guest)
        proxy.rules.append(rule)
        rc, stderr = run_in_process(*args)
        proxy.reset()
    event("exit %d, fault %s" % (rc, "fired" if rule.fired else "not reached"))
    tree = home_tree(daemon)
    assert "Traceback" not in stderr
    if not rule.fired:
        assert rc == 0 and stderr == "" and tree == expected_new()
    if rc == 4:
        assert len(stderr.splitlines()) == 1 and "nothing published" in stderr, stderr
        assert tree == old
        return
    assert rc == 0, stderr
    new = expected_new()
    differ = sorted(k for k in set(tree) | set(new) if tree.get(k) != new.get(k))
    named = [k for k in differ
             if any(k.startswith(line.split(": ")[1]) for line in stderr.splitlines())]
    assert differ == named, (differ, stderr)
    for key in differ:                              # what was not done is the old state
        assert tree.get(key) == old.get(key), key


@pytest.mark.parametrize("kind", ["missing", "regular-file", "directory", "dead-socket"])
def test_no_usable_xenstore_socket_is_exit_3_in_one_line(full_guest, state, tmp_path, kind):
    import socket
    path = tmp_path / "xs-socket"
    if kind == "regular-file":
        path.write_text("")
    elif kind == "directory":
        path.mkdir()
    elif kind == "dead-socket":                # a daemon that died and left its socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.close()
    env = dict(os.environ, XENSTORED_PATH=str(path))
    res = run(None, full_guest.root, state, "--section", SECTIONS, env=env, check=False)
    assert res.returncode == 3
    one_line(res, "no XenStore", str(path))


# -- a change too large for one guest transaction --------------------------------------

def _many_partitions(guest, count=350):
    for n in range(3, 3 + count):
        guest.block.partition("xvda", n, (202, n), 2048)


def test_a_change_cut_into_transactions_fails_visibly_half_way(daemon, proxy, full_guest, state,
                                                              published):
    """350 new partitions are ~1050 writes: more than oxenstored lets a guest's
    transaction hold, so the publisher cuts them between volumes. When a later
    transaction fails, what the first ones published stays: the run must not claim
    that nothing was published, and the next run completes the tree."""
    _many_partitions(full_guest)
    proxy.rules.append(Rule(op="commit", nth=2, error="EQUOTA"))
    res = run(daemon, full_guest.root, state, "--section", SECTIONS, env=proxy.env(daemon.env()),
              check=False)
    assert proxy.counts["commit"] >= 2
    assert res.returncode == 4
    lines = res.stderr.splitlines()
    assert any("more than one transaction" in line for line in lines), res.stderr
    assert len(lines) == 2 and "EQUOTA" in lines[1], res.stderr
    assert home_tree(daemon) != published                  # the first transaction's part
    assert lines[1].endswith("published in part, the next run completes it")
    proxy.reset()
    run(daemon, full_guest.root, state, "--section", SECTIONS)
    tree = home_tree(daemon)
    assert len([k for k in tree if k.startswith("data/volumes/") and
                k.endswith("/name")]) == 2 + 350
