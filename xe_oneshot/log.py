"""Logging that costs nothing until something is logged.

The stdlib ``logging`` module takes several milliseconds to import, a good part of a
run's whole budget, and a quiet run logs nothing. ``getLogger(name)`` returns a stand-in
with the usual methods; the first message that passes the level imports ``logging`` and
hands it over. Only the CLI decides the level and where records go (stderr, which
journald captures under systemd and udev).
"""

import sys

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

_config = {"level": WARNING, "prog": "xe-oneshot", "ready": False}


def configure(verbose: int = 0, prog: str = "xe-oneshot") -> None:
    """Set the threshold (WARNING; INFO with -v; DEBUG with -vv) and the message prefix."""
    _config["level"] = WARNING if verbose <= 0 else INFO if verbose == 1 else DEBUG
    _config["prog"] = prog
    _config["ready"] = False


def utf8_stdout() -> None:
    """Print UTF-8 in the C locale (udev's, a bare init's) as Python 3.7+ does (PEP 538,
    540): Python 3.6 would encode stdout as ASCII and die on a non-ASCII fact."""
    out = sys.stdout
    if (sys.version_info < (3, 7) and hasattr(out, "buffer")
            and out.encoding.lower() in ("ascii", "ansi_x3.4-1968")):
        import io
        line_buffering = out.line_buffering
        sys.stdout = io.TextIOWrapper(out.detach(), "utf-8", "surrogateescape",
                                      line_buffering=line_buffering)


def _handoff():
    import logging
    if not _config["ready"]:
        root = logging.getLogger("xe_oneshot")
        if not root.handlers:
            handler = _stderr_handler(logging)
            handler.setFormatter(logging.Formatter(_config["prog"] + ": %(message)s"))
            root.addHandler(handler)
            root.propagate = False
        root.setLevel(_config["level"])
        _config["ready"] = True
    return logging


def _stderr_handler(logging):
    """A handler writing to stderr that drops a message stderr cannot take (a closed
    pipe, a full disk): lost diagnostics must not stop a run, nor print a traceback."""

    class StderrHandler(logging.StreamHandler):
        def emit(self, record):
            self.stream = sys.stderr     # whatever stderr is now (tests swap it)
            super().emit(record)

        def handleError(self, record):  # noqa: N802 (logging's name)
            if isinstance(sys.exc_info()[1], (OSError, ValueError)):
                return
            super().handleError(record)

    return StderrHandler(sys.stderr)


class Logger:
    """The part of ``logging.Logger`` the project uses, imported on first use."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def log(self, level: int, msg: str, *args) -> None:
        if level >= _config["level"]:
            _handoff().getLogger(self.name).log(level, msg, *args)

    def debug(self, msg: str, *args) -> None:
        self.log(DEBUG, msg, *args)

    def info(self, msg: str, *args) -> None:
        self.log(INFO, msg, *args)

    def warning(self, msg: str, *args) -> None:
        self.log(WARNING, msg, *args)

    def error(self, msg: str, *args) -> None:
        self.log(ERROR, msg, *args)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging's name)
        return level >= _config["level"]


def getLogger(name: str) -> Logger:  # noqa: N802 (logging's name)
    """A logger for module ``name`` (``__name__``)."""
    return Logger(name)
