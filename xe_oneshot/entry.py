"""The commands' entry points (setup.cfg's ``console_scripts``).

Ctrl-C exits 130 with no traceback at any moment: each function first replaces Python's
KeyboardInterrupt by an immediate exit (a KeyboardInterrupt can surface in the middle of
an import, or be swallowed by a callback and exit 0), then imports its command and runs
it. This module imports nothing at its top, so that the wrapper that imports it (pip's
console scripts, the launchers, ``python3 -m xe_oneshot``) spends next to no time
before the handler is in place. A transaction in flight dies with its connection, the
run lock with the process. An inherited SIG_IGN (nohup, a background job) is kept.
"""


def _interrupted(signum, frame):
    import posix  # builtin and loaded: os may be half-imported at this moment
    import sys
    try:
        sys.stdout.flush()               # what was printed so far
    except BaseException:  # noqa: B036 - a full disk, a closed pipe, a reentrant call
        pass
    posix._exit(130)


def exit_130_on_sigint() -> None:
    """Make SIGINT exit the process with status 130 at once (unless it is ignored)."""
    import _signal  # what `signal` wraps; `signal` would import enum (milliseconds)
    if _signal.getsignal(_signal.SIGINT) is not _signal.SIG_IGN:
        _signal.signal(_signal.SIGINT, _interrupted)


def xe_oneshot() -> int:
    """``xe-oneshot``.

    The cyclic garbage collector is off for the run: a run lives some 20 ms and makes
    almost no cycles (reference counting frees the rest), while the collections its
    imports' allocations set off cost about 1 ms of every run (measured: BENCHMARKS.md,
    "Before and after the house redesign"). ``xenstore watch``, which can run for
    days, keeps it."""
    exit_130_on_sigint()
    import gc   # builtin: no cost
    enabled = gc.isenabled()
    gc.disable()
    try:
        from .cli import main
        return main()
    finally:
        if enabled:
            gc.enable()


def xenstore() -> int:
    """``xenstore`` and ``xenstore-<command>``."""
    exit_130_on_sigint()
    from .xenstore_cli import main
    return main()


def xe_linux_distribution() -> int:
    """``xe-linux-distribution``."""
    exit_130_on_sigint()
    from .distribution_cli import main
    return main()
