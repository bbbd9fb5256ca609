"""Reliability under load and sudden death, against the real daemon.

* A udev storm: 200 invocations at once across all sections (network in a real network
  namespace), with the guest changing half-way: all exit 0, the runs coalesce, the final
  tree is exact (the change included: no event lost), no lock or temp file is left.
* A run SIGKILLed mid-transaction leaves the old tree and a state the next run uses.
* An invocation that waited behind a run that then died (or failed) is not skipped:
  the run it trusted to cover it published nothing.
"""

import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.fakeguest import set_meminfo
from tests.support.fault_proxy import Rule
from tests.support.netns import Netns, Unavailable as NetnsUnavailable
from tests.support.reliability import (changes_since, collector, entries_since, expected_full,
                               foreign_writes, home_tree, log_mark, popen)
from tests.support.collector import CHECKOUT, HOME, run

SECTIONS = "static,memory,volumes"
#: What udev, the dispatchers, the timer and people ask for, mixed.
MIX = ["network", "memory", "volumes", "all", "ephemeral", "static", "os,misc",
       "memory,network", "misc", "os"]


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.01)


# -- the storm -------------------------------------------------------------------------

def test_200_invocations_at_once_across_all_sections(daemon, full_guest, state):
    try:
        ns = Netns().__enter__()
    except NetnsUnavailable as err:
        pytest.skip(str(err))
    try:
        ns.veth("eth0", "p0")
        ns.addr("eth0", "192.0.2.10/24")
        ns.addr("eth0", "2001:db8::10/64")
        ns.mirror(full_guest.root, {"eth0": "0"})
        mark = log_mark(daemon)
        procs = []
        # A storm arrives while a run holds the lock (udev's coldplug during the boot
        # run): all 200 are asked for before any of them runs, whatever the machine's
        # speed, so how many run depends on the agent alone.
        state.mkdir(mode=0o700)
        lock = os.open(str(state / "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for i in range(200):
                if i == 100:        # the guest changes while the storm is on
                    set_meminfo(full_guest, 500000)
                    ns.addr("eth0", "192.0.2.11/24")
                procs.append(popen(daemon.env(), collector(
                    full_guest.root, state, "-v", "--section", MIX[i % len(MIX)],
                    netns=ns.name)))
            wait_for(lambda: all(_waiting_on_lock(p.pid) or p.poll() is not None
                                 for p in procs), timeout=240, what="the storm to queue")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            os.close(lock)
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        ns.__exit__(None, None, None)
    errors = [err for _, err in outs if "Traceback" in err]
    assert errors == []
    assert [p.returncode for p in procs] == [0] * 200, [o[1] for o in outs if o[1]][:3]
    ran = sum(1 for _, err in outs if " written, " in err)
    skipped = sum(1 for _, err in outs if "skipped" in err)
    assert ran + skipped == 200
    # they coalesce: once a run of a MIX entry's sections has started, every invocation
    # of that entry waiting behind it is covered (and an "all" run covers every one)
    assert 1 <= ran <= len(MIX), ran
    commits = [e for e in entries_since(daemon, mark) if e.op == "commit"]
    assert 2 <= len(commits) <= ran
    assert home_tree(daemon) == expected_full(meminfo_free="500000", vif={
        "0/ipv4/0": "192.0.2.10", "0/ipv4/1": "192.0.2.11", "0/ipv6/0": "2001:db8::10"})
    assert foreign_writes(daemon, mark) == []
    assert sorted(os.listdir(state)) == ["lock", "state"]


# -- sudden death ----------------------------------------------------------------------

@pytest.fixture
def dom0_edited_tree(daemon, full_guest, state):
    run(daemon, full_guest.root, state, "--section", SECTIONS)
    assert home_tree(daemon) == expected_full()
    # dom0 changed a key of ours: the next run writes two keys (memory and volumes
    # changes come without data/updated, so they alone write only meminfo_free)
    daemon.write(HOME + "/data/meminfo_total", "1")
    old = home_tree(daemon)
    set_meminfo(full_guest, 900000)
    full_guest.block.swaps()
    return old


def expected_new():
    tree = expected_full(meminfo_free="900000")
    for key in ("mount_points", "mount_points/0", "filesystem", "free"):
        del tree["data/volumes/1/" + key]
    return tree


@pytest.mark.parametrize("rule", [
    Rule(op="commit", action="swallow"),
    Rule(op="write", action="swallow", nth=2),
    Rule(op="rm", action="swallow", nth=2),
    Rule(op="directory", action="swallow", nth=2),
], ids=["at-commit", "mid-writes", "mid-removals", "mid-reads"])
def test_sigkill_mid_transaction_then_the_next_run_repairs(daemon, proxy, full_guest, state,
                                                           dom0_edited_tree, rule):
    proxy.rules.append(rule)
    mark = log_mark(daemon)
    proc = popen(proxy.env(daemon.env()), collector(full_guest.root, state, "--section", SECTIONS))
    wait_for(lambda: rule.fired == 1, what="the run to reach the held request")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    wait_for(lambda: entries_since(daemon, mark)[-1:] and entries_since(daemon, mark)[-1].op == "endconn",
             what="the daemon to see the connection end")
    assert home_tree(daemon) == dom0_edited_tree           # nothing of the killed run
    assert foreign_writes(daemon, mark) == []
    proxy.reset()
    started = time.monotonic()
    run(daemon, full_guest.root, state, "--section", SECTIONS)
    assert time.monotonic() - started < 5           # the lock died with the process
    assert home_tree(daemon) == expected_new()
    assert sorted(os.listdir(state)) == ["lock", "state"]
    mark = log_mark(daemon)
    run(daemon, full_guest.root, state, "--section", SECTIONS)
    assert changes_since(daemon, mark) == []          # and the state is consistent


def _waiting_on_lock(pid):
    """Whether process ``pid`` is blocked on a lock (a ``->`` line in /proc/locks)."""
    with open("/proc/locks") as f:        # "1: -> FLOCK  ADVISORY  WRITE <pid> ..."
        return any(fields[1:2] == ["->"] and fields[5:6] == [str(pid)]
                   for fields in (line.split() for line in f))


@pytest.mark.parametrize("death", ["killed", "failed", "section-failed"])
def test_an_invocation_waiting_behind_a_run_that_died_is_not_skipped(
        daemon, proxy, full_guest, state, dom0_edited_tree, death):
    """B is requested; A takes the lock after that, starts, and dies (SIGKILL at its
    commit, or fails: endless EAGAIN), or its memory section fails (a garbled
    /proc/meminfo while A reads it). B must still run: A published nothing of memory."""
    lock = os.open(str(state / "lock"), os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)                 # hold every run back
    try:
        b = popen(daemon.env(), collector(full_guest.root, state, "--section", "memory"))
        wait_for(lambda: _waiting_on_lock(b.pid), what="B to wait on the lock")
        b.send_signal(signal.SIGSTOP)               # so that A gets the lock first
        rule = Rule(op="commit", action="swallow" if death == "killed" else "error",
                    error="EAGAIN")
        if death == "section-failed":
            good = (full_guest.root / "proc/meminfo").read_text()
            (full_guest.root / "proc/meminfo").write_text("MemTotal: garbled\n")
        else:
            proxy.rules.append(rule)
        a = popen(proxy.env(daemon.env()), collector(full_guest.root, state, "--section", "memory"))
        wait_for(lambda: _waiting_on_lock(a.pid), what="A to wait on the lock")
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    if death == "killed":
        wait_for(lambda: rule.fired == 1, what="A to reach its commit")
        a.send_signal(signal.SIGKILL)
    _, a_err = a.communicate(timeout=60)
    assert a.returncode == {"killed": -signal.SIGKILL, "failed": 4,
                            "section-failed": 1}[death], a_err
    assert daemon.read(HOME + "/data/meminfo_free") == "1500000"    # A published nothing
    if death == "section-failed":
        (full_guest.root / "proc/meminfo").write_text(good)
    b.send_signal(signal.SIGCONT)
    _, b_err = b.communicate(timeout=60)
    assert b.returncode == 0 and "Traceback" not in b_err and "skipped" not in b_err, b_err
    assert daemon.read(HOME + "/data/meminfo_free") == "900000"


_FALLBACK_DRIVER = r"""
import os, sys
from xe_oneshot.cli import main
state = os.environ["STATE"]
args = ["--state-dir", state] + sys.argv[1:]
try:
    os.listxattr(state)
    os.setxattr(state, "user.probe", b"1")
    sys.exit("xattrs work here: not the fallback")
except OSError:
    pass
first = main(args)
# What runs killed in the middle of saving leave behind: one from long ago, and one
# whose pid is this process's (pids are reused within a boot).
for pid in (1, os.getpid()):
    with open(os.path.join(state, "state.%d.tmp" % pid), "w") as f:
        f.write("started.memory\t1")
second = main(args)
print(first, second, " ".join(sorted(os.listdir(state))))
"""


def test_a_run_killed_while_saving_the_fallback_state_file_is_repaired(daemon, full_guest,
                                                                       tmp_path):
    """Where xattrs are refused (ramfs here; tmpfs before Linux 6.6) the state is a file
    replaced through a temp file: what a killed save leaves must not stay or break."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    env = dict(daemon.env(), PYTHONPATH=str(CHECKOUT), STATE=str(state))
    res = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         'mount -t ramfs -o mode=0700 none "$STATE" && exec "$0" -c "$1" --root "$2" '
         '--section memory', sys.executable, _FALLBACK_DRIVER, str(full_guest.root)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0", "0", "lock", "state"], res.stdout + res.stderr


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, -signal.SIGTERM),
                                        (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_stopped_mid_transaction_quietly_then_the_next_run_repairs(daemon, proxy, full_guest,
                                                                   state, dom0_edited_tree, sig,
                                                                   status):
    """systemd's stop (SIGTERM) or a person's Ctrl-C at the worst moment."""
    rule = Rule(op="commit", action="swallow")
    proxy.rules.append(rule)
    proc = popen(proxy.env(daemon.env()), collector(full_guest.root, state, "--section", SECTIONS))
    wait_for(lambda: rule.fired == 1, what="the run to reach its commit")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status and "Traceback" not in err, err
    assert home_tree(daemon) == dom0_edited_tree
    proxy.reset()
    run(daemon, full_guest.root, state, "--section", SECTIONS)
    assert home_tree(daemon) == expected_new()
    assert sorted(os.listdir(state)) == ["lock", "state"]
