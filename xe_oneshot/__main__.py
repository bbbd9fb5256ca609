"""``python3 -m xe_oneshot``: the collector (same as ``xe-oneshot``); Ctrl-C exits 130
with no traceback, the modules' import included (see :mod:`xe_oneshot.entry`)."""

try:
    from .entry import xe_oneshot

    status = xe_oneshot()
except KeyboardInterrupt:   # before the handler was in place
    status = 130
raise SystemExit(status)
