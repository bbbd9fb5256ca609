"""What the three commands say and show, and their output errors.

Messages go to stderr as one line each, prefixed with the program's name (:func:`sayer`);
a stderr that is gone loses them quietly. stdout that cannot be written (a full disk, an
I/O error) gets one line on stderr and the command's own exit status; a reader that left
(``| head``) is not an error worth a line: the command exits 141 quietly, as a shell
reports a death by SIGPIPE.
"""

import errno
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Callable, Optional

EXIT_PIPE = 141     # stdout's reader left (128 + SIGPIPE)


def sayer(prog: "Optional[str]") -> "Callable[[str], None]":
    """The command's way to say one thing on stderr: ``prog: text`` (``text`` alone when
    ``prog`` is None). If stderr itself is gone (a closed pipe, a full disk), the message
    is lost and the command goes on: its exit status still tells."""
    prefix = "" if prog is None else prog + ": "

    def say(text: str) -> None:
        try:
            sys.stderr.write(prefix + text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    return say


def show(key: str, value: str) -> str:
    """``key = "value"`` escaped as ``xenstore-ls`` prints it: no control character,
    no newline, nothing but printable ASCII reaches the terminal."""
    from .text import sanitise
    return '%s = "%s"' % (sanitise(key.encode("utf-8", "replace")).decode("ascii"),
                          sanitise(value.encode("utf-8", "replace")).decode("ascii"))


def write(text: str, flush: bool = False) -> None:
    """Write ``text`` to stdout (then flush it, if asked). Raises :class:`OutputError`."""
    try:
        sys.stdout.write(text)
        if flush:
            sys.stdout.flush()
    except OSError as err:
        raise OutputError(err) from None


def flush(stream: "Optional[IO[Any]]" = None) -> None:
    """Flush stdout (or ``stream``): the last of a command's output. Raises
    :class:`OutputError`."""
    try:
        (stream or sys.stdout).flush()
    except OSError as err:
        raise OutputError(err) from None


class OutputError(Exception):
    """stdout could not be written (``err``: the OSError). Not an OSError itself, so
    that it is never taken for a XenStore or state failure."""

    def __init__(self, err: OSError):
        super().__init__(str(err))
        self.err = err


def failed(failure: OutputError, say: "Callable[[str], None]", status: int,
           what: str = "cannot write the output") -> int:
    """The exit status for ``failure`` (``status``, or EXIT_PIPE for a reader that left,
    said by ``say`` only in the first case). stdout is pointed at /dev/null so that the
    interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    if failure.err.errno == errno.EPIPE:
        return EXIT_PIPE
    say("%s: %s" % (what, failure.err.strerror or failure.err))
    return status
