"""One run (xe_oneshot/run.py) against the real daemon: how a failing section is told,
each section's own options, the publisher's one input and its sinks, and the dry run's
lock-free look at the state."""

import errno
import os
import subprocess
import sys

import pytest

from tests.support.collector import CHECKOUT, HOME
from tests.support.fakeguest import FakeGuest
from tests.support.reliability import run_in_process
from xe_oneshot import cli, run
from xe_oneshot.publisher import (PartlyPublished, Policy, PrintSink, Publisher,
                                  TransactionSink, Wanted)
from xe_oneshot.sections import misc
from xe_oneshot.xenstore import Client, XenStoreError


@pytest.fixture
def guest_tree(tmp_path):
    return FakeGuest(tmp_path / "guest").minimal()


@pytest.fixture
def in_process(xs_env, guest_tree, state):
    """``xe-oneshot --root GUEST --state-dir STATE ARGS...`` in this process against a
    fresh daemon: (exit status, stderr)."""
    def call(*args):
        return run_in_process("--root", str(guest_tree.root), "--state-dir", str(state),
                              *args)
    return call


# -- a failing section ------------------------------------------------------------------

def test_a_section_that_fails_with_a_bug_logs_its_traceback_and_the_others_publish(
        in_process, xs_env, monkeypatch):
    """Not OSError, ValueError nor SectionError: a bug, not bad guest data. The journal
    gets the error line and the traceback; the run still exits 1 and publishes misc."""
    from xe_oneshot.sections import memory

    def collect(ctx):
        return {}["no such key"]

    monkeypatch.setattr(memory, "collect", collect)
    rc, err = in_process("--section", "misc,memory")
    assert rc == cli.EXIT_SECTION_FAILED
    lines = err.splitlines()
    assert lines[0] == "xe-oneshot: section memory failed: KeyError: 'no such key'", err
    assert lines[1] == "Traceback (most recent call last):", err
    assert 'in collect\n    return {}["no such key"]' in err
    assert lines[-1] == "KeyError: 'no such key'"
    assert xs_env.read(HOME + "/attr/PVAddons/Installed") == "1"
    assert xs_env.read(HOME + "/data/meminfo_total") is None


def test_a_declared_failure_is_one_line_and_its_traceback_only_at_vv(in_process,
                                                                     guest_tree):
    guest_tree.file("/proc/meminfo", "garbage\n")
    line = ("xe-oneshot: section memory failed: /proc/meminfo has no MemTotal or "
            "MemAvailable/MemFree")
    rc, err = in_process("--section", "misc,memory")
    assert (rc, err.splitlines()) == (1, [line])
    rc, err = in_process("--section", "misc,memory", "-vv")
    lines = err.splitlines()
    assert rc == 1 and lines[lines.index(line) + 1] == "Traceback (most recent call last):"


# -- per-section options ----------------------------------------------------------------

def test_no_balloon_is_the_misc_sections_own_option():
    opts = cli.parse_args(["--no-balloon"])
    assert run.section_options(opts, ["os", "misc"]) == {"misc": misc.Options(balloon=False)}
    assert run.section_options(cli.parse_args([]), ["misc"]) == {"misc": misc.Options()}
    assert run.section_options(opts, ["memory"]) == {}


# -- the publisher: one input, one sink -----------------------------------------------

def _volumes(count, prefix="v"):
    return {"data/volumes/%d/%s" % (n, k): prefix + str(n) for n in range(count)
            for k in "abc"}


def test_publishing_changes_neither_the_wanted_state_nor_the_policy(xs_env):
    values = dict(_volumes(2), **{"data/meminfo_free": "100"})
    wanted = Wanted(["data/volumes", "data/meminfo_free"], dict(values),
                    {"data/meminfo_free": 10})
    policy = Policy(now=50.0, published={"data/meminfo_free": 1.0, "data/volumes/9/free": 2.0,
                                         "elsewhere": 3.0})
    with Client.open() as client:
        done = Publisher(client, policy).publish(wanted)
    assert wanted == Wanted(["data/volumes", "data/meminfo_free"], values,
                            {"data/meminfo_free": 10})
    assert policy.published == {"data/meminfo_free": 1.0, "data/volumes/9/free": 2.0,
                                "elsewhere": 3.0}
    # written now; no longer reported (under the owned paths): forgotten; others: kept
    assert done.published == {"data/meminfo_free": 50.0, "elsewhere": 3.0}
    assert list(done.writes) == list(values) + ["data/updated"]


def test_the_dry_run_sink_prints_the_plan_and_writes_nothing(xs_env):
    wanted = Wanted(["data/volumes"], {"data/volumes/0/name": 'a\tb"\\\u00e9'})
    xs_env.write(HOME + "/data/volumes/7/name", "old")
    shown = []
    mark = xs_env.log_mark()
    with Client.open() as client:
        done = Publisher(client, Policy(), PrintSink(shown.append)).publish(wanted)
    assert xs_env.writes_since(mark) == []
    assert shown == [r'+data/volumes/0/name = "a\tb"\\\xc3\xa9"' + "\n"
                     + '+data/updated = "%s"\n' % done.writes["data/updated"]
                     + "-data/volumes/7\n"]


def test_debug_lines_are_what_the_transaction_made(in_process, monkeypatch, xs_env,
                                                   tmp_path):
    """-vv's ``+key=value`` / ``-key`` lines come from the sink: a refused key is not
    among them."""
    from tests.support.fault_proxy import FaultProxy, Rule
    with FaultProxy(xs_env.socket, tmp_path / "proxy.sock") as proxy:
        monkeypatch.setenv("XENSTORED_PATH", str(proxy.path))
        proxy.rules.append(Rule(op="write", path="control/feature-balloon", error="EACCES"))
        rc, err = in_process("--section", "misc", "-vv")
    lines = err.splitlines()
    assert rc == 0
    assert "xe-oneshot: +attr/PVAddons/Installed=1" in lines
    assert any(line.startswith("xe-oneshot: +data/updated=") for line in lines)
    assert not any(line.startswith("xe-oneshot: +control/") for line in lines), err
    assert ("xe-oneshot: control/feature-balloon: not written (EACCES), the rest is "
            "published") in lines


@pytest.mark.parametrize("failing, partly", [(1, False), (2, True)])
def test_a_cut_change_that_fails_half_way_raises_partly_published(xs_env, tmp_path,
                                                                  failing, partly):
    from tests.support.fault_proxy import FaultProxy, Rule
    with FaultProxy(xs_env.socket, tmp_path / "proxy.sock") as proxy:
        proxy.rules.append(Rule(op="commit", nth=failing, error="EQUOTA"))
        with Client.open(env={"XENSTORED_PATH": str(proxy.path)}) as client:
            publisher = Publisher(client, Policy(), TransactionSink(client, max_ops=10))
            with pytest.raises(XenStoreError) as caught:
                publisher.publish(Wanted(["data/volumes"], _volumes(10)))
    assert isinstance(caught.value, PartlyPublished) is partly
    assert caught.value.errno == errno.EDQUOT and "EQUOTA" in str(caught.value)
    if partly:
        assert caught.value.__cause__.errno == errno.EDQUOT
        assert str(caught.value) == str(caught.value.__cause__)
        assert xs_env.read(HOME + "/data/volumes/0/a") == "v0"
    else:
        assert xs_env.read(HOME + "/data/volumes") is None


# -- the dry run and the lock -------------------------------------------------------------

def test_a_dry_run_does_not_wait_for_the_run_lock(xs_env, guest_tree, state):
    """A dry run reads the state without the lock: a run holding it does not stop it."""
    from xe_oneshot.runstate import RunState
    env = dict(xs_env.env(), PYTHONPATH=str(CHECKOUT))
    cmd = [sys.executable, "-m", "xe_oneshot", "--root", str(guest_tree.root),
           "--state-dir", str(state), "--section", "memory"]
    subprocess.run(cmd, env=env, check=True, timeout=60)
    with RunState(str(state)) as held:
        held.lock()
        res = subprocess.run(cmd + ["--dry-run"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, timeout=20)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


def test_the_cli_imports_the_run_only_when_it_runs():
    code = ("import sys; import xe_oneshot.cli; print(sorted(m for m in sys.modules if m in "
            "('xe_oneshot.run', 'xe_oneshot.publisher', 'xe_oneshot.runstate', "
            "'xe_oneshot.xenstore')))")
    res = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         universal_newlines=True, timeout=60, cwd=str(CHECKOUT),
                         env=dict(os.environ, PYTHONPATH=str(CHECKOUT)))
    assert res.stdout == "[]\n"


def test_logging_is_imported_at_the_first_record_that_passes_a_loggers_config():
    """A logger follows its Config (the process's CONFIG by default, a test's own here):
    nothing below the threshold costs the ``logging`` import."""
    code = ("import sys\nfrom xe_oneshot import log\n"
            "config = log.Config()\nlogger = log.Logger('xe_oneshot.t', config)\n"
            "logger.info('quiet')\nprint('logging' in sys.modules)\n"
            "config.configure(1, prog='prog')\nlogger.info('said %s', 1)\n"
            "print(log.CONFIG.level, config.level, 'logging' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                         cwd=str(CHECKOUT), env=dict(os.environ, PYTHONPATH=str(CHECKOUT)))
    assert (res.stdout, res.stderr) == ("False\n30 20 True\n", "prog: said 1\n")
