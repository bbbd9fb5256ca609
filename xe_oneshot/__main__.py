"""``python3 -m xe_oneshot``: the collector (same as ``xe-oneshot``).

Ctrl-C exits 130 with no traceback at any moment, the modules' import included (see
packaging/launcher.in: the same handler, for the same reasons).
"""

try:
    import _signal  # what `signal` wraps; `signal` would import enum (milliseconds)

    def _interrupted(signum, frame):
        import posix  # builtin and loaded (os may be half-imported at this moment)
        import sys
        try:
            sys.stdout.flush()
        except BaseException:  # noqa: B036 - a full disk, a closed pipe, a reentrant call
            pass
        posix._exit(130)

    if _signal.getsignal(_signal.SIGINT) is not _signal.SIG_IGN:
        _signal.signal(_signal.SIGINT, _interrupted)
    from .cli import main

    status = main()
except KeyboardInterrupt:
    status = 130
raise SystemExit(status)
