"""``xe-linux-distribution [--root DIR] [FILE]``: print or write the ``os_*`` facts.

Prints the five lines ``os_distro="…"``, ``os_majorver="…"``, ``os_minorver="…"``,
``os_uname="…"``, ``os_name="…"`` (escaping: see :mod:`xe_oneshot.distribution`), or
replaces FILE with them atomically: a temporary file in FILE's directory, mode 0644,
renamed over FILE (a symlink at FILE's place is replaced, not followed). ``--root DIR``
reads the release files under DIR (a test tree, a mounted image); FILE is a path on
this machine and ``os_uname`` is always the running kernel's.

Exit status: 0 written; 1 no distribution recognised (FILE removed, one line on
stderr); 2 bad usage; 3 FILE (or stdout) could not be written; 141 stdout's reader left
(nothing said).
"""

import os
import sys

from . import log
from .output import OutputError, failed, sayer, write
from .distribution import detect, facts, render
from .guest import Root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

PROG = "xe-linux-distribution"
EXIT_OK, EXIT_UNRECOGNISED, EXIT_USAGE, EXIT_WRITE = 0, 1, 2, 3

USAGE = "usage: xe-linux-distribution [--root DIR] [FILE]"
HELP = USAGE + """

Detect the Linux distribution from its release files and print the os_* lines that
the os section publishes, or replace FILE (normally /var/cache/xe-linux-distribution)
with them atomically.

options:
  --root DIR   read the release files under DIR instead of / (os_uname stays the
               running kernel's)
  --version    print the version
  -h, --help   this help

exit status:
  0  printed or written
  1  no distribution recognised (FILE removed)
  2  usage error
  3  FILE (or stdout) could not be written
  141  stdout's reader left (nothing said)
"""


class UsageError(Exception):
    """A bad command line (message is one line)."""


def write_atomically(path: str, text: str) -> None:
    """Replace ``path`` by a file holding ``text`` (mode 0644) in one rename."""
    directory, name = os.path.split(path)
    directory = directory or "."
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    attempt = 0
    while True:
        temp = os.path.join(directory, ".%s.%d.%d.tmp" % (name, os.getpid(), attempt))
        try:
            fd = os.open(temp, flags, 0o644)
            break
        except FileExistsError:  # a leftover of a killed run with our pid
            attempt += 1
            if attempt > 100:
                raise
    try:
        try:
            os.fchmod(fd, 0o644)  # whatever the umask
            data = text.encode("utf-8")
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def remove(path: str) -> "Optional[str]":
    """Remove ``path`` (a symlink itself, not its target); why not, or None."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        return err.strerror or str(err)
    return None


def parse_args(argv: "List[str]") -> "Optional[Tuple[str, Optional[str]]]":
    """``(root, FILE)`` from the arguments, None for ``--help``, ``("--version", None)``
    for ``--version`` (argparse is too slow to import for a boot hook). Raises
    UsageError."""
    root, files, args, options = "/", [], list(argv), True
    while args:
        arg = args.pop(0)
        if options and arg in ("-h", "--help"):
            return None
        if options and arg == "--version":
            return "--version", None
        if options and arg == "--":
            options = False
        elif options and arg == "--root":
            if not args:
                raise UsageError("--root needs a directory")
            root = args.pop(0)
        elif options and arg.startswith("--root="):
            root = arg[len("--root="):]
        elif options and arg.startswith("-") and arg != "-":
            raise UsageError("unknown option %s" % arg)
        else:
            files.append(arg)
    if not root:
        raise UsageError("--root needs a directory")
    if len(files) > 1:
        raise UsageError("only one FILE")
    return root, (files[0] if files else None)


def main(argv: "Optional[List[str]]" = None, uname: "Optional[str]" = None) -> int:
    """Run the command; ``uname`` stands in for ``os.uname().release`` (tests)."""
    log.utf8_stdout()
    try:
        return _main(argv, uname)
    except KeyboardInterrupt:
        return 130
    except OutputError as failure:
        return failed(failure, _say, EXIT_WRITE, "cannot write to stdout")


_say = sayer(PROG)     # one line on stderr (lost, quietly, if stderr is gone)


def _main(argv: "Optional[List[str]]", uname: "Optional[str]") -> int:
    try:
        parsed = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        _say("%s (%s)" % (err, USAGE))
        return EXIT_USAGE
    if parsed is None:
        write(HELP, flush=True)
        return EXIT_OK
    if parsed[0] == "--version":
        from . import __version__
        write("%s %s\n" % (PROG, __version__), flush=True)
        return EXIT_OK
    root, file = parsed
    if not os.path.isdir(root):
        _say("--root %s: not a directory" % root)
        return EXIT_USAGE
    problems: List[str] = []
    found = detect(Root(root), problems)
    if found is None:
        message = "no Linux distribution recognised under %s" % root
        if problems:
            message += " (unreadable: %s)" % "; ".join(problems)
        if file:
            why = remove(file)
            if why:
                message += "; cannot remove %s: %s" % (file, why)
        _say(message)
        return EXIT_UNRECOGNISED
    for problem in problems:
        _say("warning: ignored %s" % problem)
    text = render(facts(found, os.uname().release if uname is None else uname))
    if not file:
        write(text, flush=True)
        return EXIT_OK
    try:
        write_atomically(file, text)
    except OSError as err:
        _say("cannot write %s: %s" % (file, err.strerror or err))
        return EXIT_WRITE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
