"""Output errors, the same in the three commands.

stdout that cannot be written (a full disk, an I/O error) gets one line on stderr and the
command's own exit status; a reader that left (``| head``) is not an error worth a line:
the command exits 141 quietly, as a shell reports a death by SIGPIPE.
"""

import errno
import os
import sys

EXIT_PIPE = 141     # stdout's reader left (128 + SIGPIPE)


class OutputError(Exception):
    """stdout could not be written (``err``: the OSError). Not an OSError itself, so
    that it is never taken for a XenStore or state failure."""

    def __init__(self, err: OSError):
        super().__init__(str(err))
        self.err = err


def failed(failure: OutputError, say, status: int, what: str = "cannot write the output") -> int:
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
