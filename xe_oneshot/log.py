"""Logging that costs nothing until something is logged.

The stdlib ``logging`` module takes several milliseconds to import, a good part of a
run's whole budget, and a quiet run logs nothing. ``getLogger(name)`` returns a stand-in
with the usual methods; the first message that passes the level imports ``logging`` and
hands it over. Only the CLI decides the level and where records go (stderr, which
journald captures under systemd and udev).

The level and the prefix are a :class:`Config` object's. The process has one
(``CONFIG``, which :func:`configure` sets): the loggers are made when their modules are
imported, before the command line is read, and the ``logging`` machinery they hand over
to is per process too. A logger can be given another ``Config`` (a test's own).
"""

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40


class Config:
    """Where the package's records go: the threshold and the prefix (``prog: message``
    on stderr). ``logging`` is imported and set up at the first record that passes."""

    __slots__ = ("level", "prog", "_ready")

    def __init__(self, level: int = WARNING, prog: str = "xe-oneshot"):
        self.level = level
        self.prog = prog
        self._ready = False

    def configure(self, verbose: int = 0, prog: str = "xe-oneshot") -> None:
        """Set the threshold (WARNING; INFO with -v; DEBUG with -vv) and the prefix."""
        self.level = WARNING if verbose <= 0 else INFO if verbose == 1 else DEBUG
        self.prog = prog
        self._ready = False

    def enabled(self, level: int) -> bool:
        return level >= self.level

    def emit(self, name: str, level: int, msg: str, args: tuple,
             exc_info: bool = False) -> None:
        """Hand a record that passed the threshold to ``logging``."""
        self._logging().getLogger(name).log(level, msg, *args, exc_info=exc_info)

    def _logging(self) -> "Any":
        import logging
        if not self._ready:
            root = logging.getLogger("xe_oneshot")
            if not root.handlers:
                handler = _stderr_handler(logging)
                handler.setFormatter(logging.Formatter(self.prog + ": %(message)s"))
                root.addHandler(handler)
                root.propagate = False
            root.setLevel(self.level)
            self._ready = True
        return logging


#: The process's configuration (see the module docstring).
CONFIG = Config()


def configure(verbose: int = 0, prog: str = "xe-oneshot") -> None:
    """Configure the process's logging (:meth:`Config.configure` of ``CONFIG``)."""
    CONFIG.configure(verbose, prog)


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

    __slots__ = ("name", "config")

    def __init__(self, name: str, config: Config = CONFIG):
        self.name = name
        self.config = config

    def log(self, level: int, msg: str, *args) -> None:
        if self.config.enabled(level):
            self.config.emit(self.name, level, msg, args)

    def debug(self, msg: str, *args) -> None:
        self.log(DEBUG, msg, *args)

    def info(self, msg: str, *args) -> None:
        self.log(INFO, msg, *args)

    def warning(self, msg: str, *args) -> None:
        self.log(WARNING, msg, *args)

    def error(self, msg: str, *args) -> None:
        self.log(ERROR, msg, *args)

    def exception(self, msg: str, *args) -> None:
        """``error`` followed by the traceback of the exception being handled."""
        if self.config.enabled(ERROR):
            self.config.emit(self.name, ERROR, msg, args, exc_info=True)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging's name)
        return self.config.enabled(level)


def getLogger(name: str) -> Logger:  # noqa: N802 (logging's name)
    """A logger for module ``name`` (``__name__``)."""
    return Logger(name)
