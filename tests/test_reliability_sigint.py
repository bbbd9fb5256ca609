"""Ctrl-C at any moment of an installed command: exit 130, no traceback (issue 12, 14).

The installed launcher (``make install``) is started again and again and interrupted
after a random delay within one run's duration, so that SIGINT lands everywhere: in the
interpreter's start, in site's .pth files, while the modules import (most of a short
run), in the run, at exit.

What the launcher cannot own is the interpreter's start before its first line; those
outcomes are recognised and allowed (they are CPython's, whatever the program): killed
by the signal before the interpreter installed its handler (a shell reports 130 for it
too), or a KeyboardInterrupt of Python's default handler from before the launcher's
first statement replaced it (a "Fatal Python error: init_..." of the interpreter's own
start, a signal pending from it raised at line 0 of the launcher, one swallowed by a
weakref callback of the import system). Every other outcome must be exit 130 with
nothing on stderr (or a run that finished before the signal came).
"""

import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support.reliability import default_sigint, make_full_guest

TRIALS = 150


def _interpreter_owned(rc: int, err: str, launcher: str) -> bool:
    """An outcome decided before the launcher's first statement installed its handler.

    Once installed, that handler ends the process at once: no KeyboardInterrupt is ever
    raised again. So any KeyboardInterrupt (a traceback, or one swallowed by an import
    lock's weakref callback) comes from Python's default handler, i.e. from before that
    statement, unless a frame shows code that runs after it: the launcher past line 0,
    site (run by the launcher under -S), or the package.
    """
    if rc == -signal.SIGINT and err == "":
        return True                       # before the interpreter installed any handler
    if err.startswith("Fatal Python error: init_") and "init_import_site" not in err:
        return rc == 1                    # the interpreter's own start, any exception
    lines = err.splitlines()
    if not lines or not lines[-1].startswith("KeyboardInterrupt"):
        return False
    if "init_import_site" in err or "<frozen site>" in err or "xe_oneshot" in err:
        return False
    for match in re.finditer(r'File "%s", line (\d+)' % re.escape(launcher), err):
        if match.group(1) != "0":
            return False
    return True


def _run(cmd, env, delay=None):
    """One run; SIGINT after ``delay`` seconds (None: none). (rc, stdout, stderr)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, preexec_fn=default_sigint)
    if delay is not None:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            pass                              # spin: sleep() is too coarse here
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_sigint_at_any_moment_exits_130_without_traceback(staged, tmp_path):
    launcher = str(staged / "usr/bin/xe-oneshot")
    guest = make_full_guest(tmp_path / "guest")
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "no-xenstore"))
    cmd = [launcher, "--root", str(guest.root), "--print"]
    rc, complete, err = _run(cmd, env)
    assert (rc, err) == (0, ""), err
    started = time.monotonic()
    for _ in range(3):
        _run(cmd, env)
    duration = (time.monotonic() - started) / 3
    rng = random.Random(14)
    outcomes = {"130": 0, "finished": 0, "interpreter": 0}
    bad = []
    for _ in range(TRIALS):
        rc, out, err = _run(cmd, env, rng.uniform(0, duration))
        if rc == 130 and err == "":
            outcomes["130"] += 1
        elif rc == 0 and err == "" and out == complete:
            outcomes["finished"] += 1         # done before the signal came
        elif _interpreter_owned(rc, err, launcher):
            outcomes["interpreter"] += 1
        else:
            bad.append((rc, err[-800:]))
    print(outcomes)
    assert bad == [], (outcomes, bad[:3])
    assert outcomes["130"] >= TRIALS // 5, outcomes


def test_a_traceback_of_our_own_is_never_interpreter_owned():
    """The allowance above is narrow: what an interrupted import of ours or of site
    prints is not taken for the interpreter's."""
    ours = ('Traceback (most recent call last):\n  File "/usr/bin/xe-oneshot", line 24, in '
            '<module>\n    from xe_oneshot.cli import main\nKeyboardInterrupt\n')
    site = ("Fatal Python error: init_import_site: Failed to import the site module\n"
            "Python runtime state: initialized\nTraceback (most recent call last):\n")
    assert not _interpreter_owned(-signal.SIGINT, ours, "/usr/bin/xe-oneshot")
    assert not _interpreter_owned(1, site, "/usr/bin/xe-oneshot")
    late = ('Traceback (most recent call last):\n  File "/usr/bin/xe-oneshot", line 3, in '
            '<module>\nKeyboardInterrupt\n')
    assert not _interpreter_owned(-signal.SIGINT, late, "/usr/bin/xe-oneshot")
    assert _interpreter_owned(-signal.SIGINT, late.replace("line 3", "line 0"),
                              "/usr/bin/xe-oneshot")
    assert re.search(r"^KeyboardInterrupt$", ours, re.M)


def test_inherited_sigint_ignored_is_kept(staged, tmp_path):
    """nohup / a background job: SIGINT stays ignored, as Python itself leaves it."""
    launcher = str(staged / "usr/bin/xe-oneshot")
    guest = make_full_guest(tmp_path / "guest")
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "no-xenstore"))
    proc = subprocess.Popen([launcher, "--root", str(guest.root), "--print"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    for _ in range(20):
        try:
            proc.send_signal(signal.SIGINT)
        except ProcessLookupError:
            break
        time.sleep(0.002)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, b"")
    assert b"data/meminfo_total" in out


@pytest.mark.parametrize("entry", ["xe_oneshot", "xenstore", "xe_linux_distribution"])
def test_console_script_entry_points_exit_130_on_sigint(entry, tmp_path):
    """pip's console scripts import the entry function and call it: the function puts
    the handler in place before it imports its command. Here SIGINT comes in the middle
    of the command's import (a module that sends it while being imported)."""
    from tests.support.collector import CHECKOUT
    module = {"xe_oneshot": "xe_oneshot.cli", "xenstore": "xe_oneshot.xenstore_cli",
              "xe_linux_distribution": "xe_oneshot.distribution_cli"}[entry]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, signal, sys\n"
        "class Finder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == %r:\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "            for _ in range(10 ** 6): pass\n"
        "        return None\n"
        "sys.meta_path.insert(0, Finder())\n" % module)
    wrapper = ("import re, sys\nfrom xe_oneshot.entry import %s\n"
               "sys.exit(%s())\n" % (entry, entry))      # what pip writes
    res = subprocess.run([sys.executable, "-c", wrapper, "--version"],
                         env=dict(os.environ, PYTHONPATH="%s:%s" % (hook, CHECKOUT)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=60, preexec_fn=default_sigint)
    assert (res.returncode, res.stderr) == (130, "")
