"""``xenstore``: a XenStore command line, compatible with Debian's C ``xenstore-*`` tools.

    xenstore read [-p] [-R] PATH...        xenstore write [-R] PATH VALUE [PATH VALUE]...
    xenstore list [-p] PATH...             xenstore ls [-f] [-p] [PATH]
    xenstore exists PATH...                xenstore rm [-t] PATH...
    xenstore chmod [-u] [-r] PATH MODE...  xenstore watch [-n N] PATH...

Also callable as ``xenstore-read``, ``xenstore-write``, ... (dispatch on argv[0]).
``read``, ``list``, ``ls`` and ``exists`` print exactly what the C tools print (values
escaped as ``xs_sanitise_value`` does; ``ls`` truncates long lines to 80 columns, or to
the terminal width on a tty, unless ``-f``); ``write`` takes the same escapes
(``\\n``, ``\\t``, ``\\xNN``, ``\\NNN``) unless ``-R``. Several paths are read, written,
listed or removed in one transaction, retried on EAGAIN.

Exit status: 0 success; 1 a XenStore operation failed (one line on stderr naming the
path and the errno); 2 usage error; 3 no XenStore here (not a Xen guest); 4 the output
could not be written (one line); 141 the output's reader left (nothing said).
"""

import errno
import os
import sys

from .output import OutputError, failed, flush, sayer
from .text import HEX_BYTES, sanitise

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds; this runs from shell hooks
    from typing import Callable, Dict, List, Optional, Tuple

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_XENSTORE = 3
EXIT_OUTPUT = 4     # stdout could not be written (a full disk, an I/O error)

# command -> (usage, short options taking no value, options taking a value)
COMMANDS = {
    "read": ("[-h] [-p] [-R] PATH...", "psR", ""),
    "write": ("[-h] [-R] PATH VALUE [PATH VALUE]...", "sR", ""),
    "rm": ("[-h] [-t] PATH...", "st", ""),
    "exists": ("[-h] PATH...", "s", ""),
    "list": ("[-h] [-p] PATH...", "ps", ""),
    "ls": ("[-h] [-f] [-p] [PATH]", "fps", ""),
    "chmod": ("[-h] [-u] [-r] PATH MODE...", "urs", ""),
    "watch": ("[-h] [-n N] PATH...", "", "n"),
}
LONG_OPTIONS = {"help": "h", "version": "V", "prefix": "p", "socket": "s", "raw": "R",
                "tidy": "t", "upto": "u", "recurse": "r", "full": "f", "number": "n"}
HELP = {
    "read": "Print the value of each PATH (escaped; -R raw; -p prefix 'PATH: ').",
    "write": "Set each PATH to VALUE (\\n \\t \\xNN \\NNN escapes unless -R).",
    "rm": "Remove each PATH and its subtree (-t: also empty parents without a value).",
    "exists": "Exit 0 if every PATH exists, 1 otherwise (nothing printed).",
    "list": "Print the children of each PATH (-p: as full paths).",
    "ls": "Print the tree under PATH (default /) like xenstore-ls (-f full paths, no "
          "truncation; -p permissions).",
    "chmod": "Set the permissions of PATH: MODE is n|r|w|b + domid, e.g. n0 r1 (first: "
             "owner and default); -r recursive, -u also the parents.",
    "watch": "Watch each PATH and print the path of every event (-n N: stop after N).",
}

# xenstore-ls layout (xenstore_client.c): TAG is ' = "..."'
_TAG_LEN = 8
_INT_MAX_HALF = (2 ** 31 - 1) // 2


class UsageError(Exception):
    """Bad command line; the message is printed with the usage line."""



# -- pure helpers (tested on their own) ---------------------------------------------------


def unsanitise(text: bytes) -> bytes:
    """Undo :func:`sanitise` as ``xenstore-write`` does (``xs_unsanitise_value``):
    ``\\t \\n \\r \\\\``, ``\\xNN`` (1-2 hex digits), ``\\NNN`` (1-3 octal digits); any
    other escaped character stands for itself; a trailing backslash gives a NUL byte."""
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        i += 1
        if c != 92:
            out.append(c)
            continue
        if i >= n:
            out.append(0)
            break
        c = text[i]
        i += 1
        if c in b"tnr\\":
            out.append({116: 9, 110: 10, 114: 13, 92: 92}[c])
        elif c == 120:  # x
            j = i
            while j < n and j < i + 2 and text[j] in HEX_BYTES:
                j += 1
            out.append(int(text[i:j], 16) & 0xFF if j > i else c)
            i = j
        elif 48 <= c <= 55:  # octal digit: up to 3 of them, this one included
            j = i - 1
            while j < n and j < i + 2 and 48 <= text[j] <= 55:
                j += 1
            out.append(int(text[i - 1:j], 8) & 0xFF)
            i = j
        else:
            out.append(c)
    return bytes(out)


def c_precision(text: bytes, precision: int) -> bytes:
    """printf's ``%.*s``: a negative precision means none."""
    return text if precision < 0 else text[:precision]


def parse_args(command: str, args: "List[str]") -> "Tuple[Dict[str, str], List[str]]":
    """GNU-style options (anywhere, combined ``-fp``, ``--long``, ``--`` ends them) for
    ``command``; returns (options, operands). Raises UsageError."""
    _usage, flags, valued = COMMANDS[command]
    opts = {}  # type: Dict[str, str]
    operands = []  # type: List[str]
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operands.extend(args[i:])
            break
        if arg.startswith("--"):
            name, eq, val = arg[2:].partition("=")
            short = LONG_OPTIONS.get(name)
            if short is None or (short not in flags + valued + "hV"):
                raise UsageError("unknown option --%s" % name)
            if short in valued:
                if not eq:
                    if i >= len(args):
                        raise UsageError("option --%s needs a value" % name)
                    val = args[i]
                    i += 1
                opts[short] = val
            elif eq:
                raise UsageError("option --%s takes no value" % name)
            else:
                opts[short] = ""
            continue
        if arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                ch = arg[j]
                j += 1
                if ch in valued:
                    val = arg[j:]
                    if not val:
                        if i >= len(args):
                            raise UsageError("option -%s needs a value" % ch)
                        val = args[i]
                        i += 1
                    opts[ch] = val
                    break
                if ch not in flags and ch != "h":
                    raise UsageError("unknown option -%s" % ch)
                opts[ch] = ""
            continue
        operands.append(arg)
    return opts, operands


def parse_mode(mode: str) -> str:
    """``r1`` → ``r1``; the letter is n (none), r (read), w (write) or b (both), then a
    domid in ASCII decimal below 32752 (Xen's reserved ids start there). Raises
    UsageError."""
    from xe_oneshot.xenstore.client import normal_perm
    normal = normal_perm(mode)
    if normal is None:
        raise UsageError("invalid permission %r (want n|r|w|b followed by a domid below "
                         "32752, e.g. r1)" % (mode if len(mode) <= 40 else mode[:40] + "..."))
    return normal


# -- the commands -------------------------------------------------------------------------


class _Failed(Exception):
    """An operation failed inside a transaction: abort it, report ``err``."""

    def __init__(self, err: Exception):
        super().__init__(str(err))
        self.err = err


def _in_transaction(xs, use_tx: bool, perform: "Callable[[int, List[bytes]], None]") \
        -> "Tuple[List[bytes], Optional[Exception]]":
    """Run ``perform(tx, out)`` (in a transaction when ``use_tx``, retried on EAGAIN);
    returns the output lines and the error that stopped it, as the C tools do."""
    from xe_oneshot.xenstore import XenStoreError
    holder = []  # type: List[List[bytes]]

    def attempt(tx: int) -> None:
        out = []  # type: List[bytes]
        holder[:] = [out]
        try:
            perform(tx, out)
        except XenStoreError as err:
            if use_tx and err.errno == errno.EAGAIN:  # the whole transaction again
                raise
            raise _Failed(err) from None

    try:
        if use_tx:
            xs.transaction(attempt, attempts=16)
        else:
            attempt(0)
    except _Failed as failed:
        return holder[0] if holder else [], failed.err
    return holder[0] if holder else [], None


def cmd_read(xs, opts: "Dict[str, str]", paths: "List[str]") -> "Tuple[List[bytes], Optional[Exception]]":
    def perform(tx: int, out: "List[bytes]") -> None:
        for path in paths:
            value = xs.read(path, tx)
            prefix = (path.encode() + b": ") if "p" in opts else b""
            out.append(prefix + (value if "R" in opts else sanitise(value) + b"\n"))
    return _in_transaction(xs, len(paths) > 1, perform)


def cmd_write(xs, opts: "Dict[str, str]", args: "List[str]") -> "Tuple[List[bytes], Optional[Exception]]":
    pairs = [(args[i], _arg_bytes(args[i + 1])) for i in range(0, len(args), 2)]

    def perform(tx: int, out: "List[bytes]") -> None:
        for path, value in pairs:
            xs.write(path, value if "R" in opts else unsanitise(value), tx)
    return _in_transaction(xs, len(pairs) > 1, perform)


def cmd_rm(xs, opts: "Dict[str, str]", paths: "List[str]") -> "Tuple[List[bytes], Optional[Exception]]":
    def perform(tx: int, out: "List[bytes]") -> None:
        for path in paths:
            xs.rm(path, tx)
            parent = path
            while "t" in opts and "/" in parent:
                parent = parent.rsplit("/", 1)[0]
                if not parent:
                    break
                try:
                    if xs.read(parent, tx) or xs.directory(parent, tx):
                        break
                except Exception:  # noqa: BLE001 - as xenstore-rm -t: stop quietly
                    break
                xs.rm(parent, tx)
    return _in_transaction(xs, True, perform)


def cmd_exists(xs, opts: "Dict[str, str]", paths: "List[str]") -> "Tuple[List[bytes], Optional[Exception]]":
    def perform(tx: int, out: "List[bytes]") -> None:
        for path in paths:
            xs.read(path, tx)
    return _in_transaction(xs, True, perform)


def cmd_list(xs, opts: "Dict[str, str]", paths: "List[str]") -> "Tuple[List[bytes], Optional[Exception]]":
    def perform(tx: int, out: "List[bytes]") -> None:
        for path in paths:
            prefix = (path.encode() + b"/") if "p" in opts else b""
            for name in xs.directory(path, tx):
                out.append(prefix + name.encode() + b"\n")
    return _in_transaction(xs, True, perform)


def cmd_chmod(xs, opts: "Dict[str, str]", args: "List[str]") -> "Tuple[List[bytes], Optional[Exception]]":
    path, perms = args[0], [parse_mode(m) for m in args[1:]]

    def perform(tx: int, out: "List[bytes]") -> None:
        xs.set_perms(path, perms, tx)
        parent = path
        while "u" in opts and "/" in parent.strip("/"):     # -u: the parents, upwards
            parent = parent.rsplit("/", 1)[0]
            xs.set_perms(parent, perms, tx)
        if "r" in opts:
            # -r: the subtree, depth first, without recursion (a guest can build a
            # legal path a thousand levels deep)
            stack = [(path, iter(xs.directory(path, tx)))]
            while stack:
                node, children = stack[-1]
                child = next(children, None)
                if child is None:
                    stack.pop()
                    continue
                child = node.rstrip("/") + "/" + child
                xs.set_perms(child, perms, tx)
                stack.append((child, iter(xs.directory(child, tx))))
    return _in_transaction(xs, True, perform)


def cmd_ls(xs, opts: "Dict[str, str]", paths: "List[str]", write: "Callable[[bytes], None]",
           warn: "Callable[[str], None]") -> "Optional[Exception]":
    """xenstore-ls: one line per node, one space of indent per level."""
    full = "f" in opts
    perms = "p" in opts
    if full:
        max_width, desired_width = _INT_MAX_HALF, 0
    else:
        max_width, desired_width = 80, 60
        try:
            max_width = os.get_terminal_size(1).columns - 2
        except (OSError, ValueError):
            pass
    from xe_oneshot.xenstore import XenStoreError
    for path in paths or ["/"]:
        try:
            _ls_tree(xs, path, xs.directory(path), full, perms, max_width,
                     desired_width, write, warn)
        except XenStoreError as err:
            return err
    return None


def _ls_tree(xs, top: str, names: "List[str]", full: bool, perms: bool, max_width: int,
             desired_width: int, write: "Callable[[bytes], None]",
             warn: "Callable[[str], None]") -> None:
    """The nodes below ``top`` (whose children are ``names``), depth first, in listing
    order, as xenstore-ls's recursion prints them; iterative, because a guest may build
    a legal path a thousand levels deep."""
    from xe_oneshot.xenstore import XenStoreError
    stack = [(top, iter(names))]
    while stack:
        path, level = stack[-1]
        name = next(level, None)
        if name is None:
            stack.pop()
            continue
        depth = len(stack) - 1
        newpath = path + ("" if path.endswith("/") else "/") + name
        line = bytearray()
        if full:
            line += newpath.encode()
            width = 0
        else:
            line += b" " * depth
            shown = c_precision(name.encode(), max_width - _TAG_LEN - depth)
            line += shown
            width = depth + len(shown)
        try:
            value = xs.read(newpath)  # type: Optional[bytes]
        except XenStoreError:
            value = None
        if value is None:
            line += b":\n"
        elif max_width < width + len(value) + _TAG_LEN:
            line += b' = "' + c_precision(sanitise(value), max_width - _TAG_LEN - width) \
                + b'\\..."'
        else:
            shown = b' = "' + sanitise(value) + b'"'
            line += shown
            width += len(shown)
            if perms:
                line += b" "
                width += 1
                while width < min(desired_width, max_width):
                    line += b"." if width & 1 else b" "
                    width += 1
        if perms:
            try:
                line += b"  (" + ",".join(xs.get_perms(newpath)).encode() + b")"
            except XenStoreError as err:
                write(bytes(line))
                line = bytearray()
                warn("\ncould not access permissions for %s: %s" % (name, err.strerror))
        line += b"\n"
        write(bytes(line))
        # A child that cannot be listed ends the walk with an error, as xenstore-ls 4.17
        # does (newer ones skip ENOENT / EACCES below the top).
        stack.append((newpath, iter(xs.directory(newpath))))


def cmd_watch(xs, opts: "Dict[str, str]", paths: "List[str]",
              write: "Callable[[bytes], None]") -> None:
    limit = _watch_limit(opts)
    for index, path in enumerate(paths):
        xs.watch(path, str(index))
    seen = 0
    while limit is None or seen < limit:
        event_path, _token = xs.wait_event(None)
        write(event_path.encode("utf-8", "replace") + b"\n")
        seen += 1


def _watch_limit(opts: "Dict[str, str]") -> "Optional[int]":
    """``-n N``: stop after N events (None: never)."""
    if "n" not in opts:
        return None
    try:
        limit = int(opts["n"])
    except ValueError:
        raise UsageError("-n wants a number, not %r" % opts["n"]) from None
    if limit < 1:
        raise UsageError("-n wants a positive number")
    return limit


def _arg_bytes(arg: str) -> bytes:
    """A command-line argument back to the bytes the user typed."""
    return os.fsencode(arg)


# -- entry point ----------------------------------------------------------------------------


def _usage_line(prog: str, command: "Optional[str]") -> str:
    if command is None:
        return "usage: %s {%s} ..." % (prog, "|".join(COMMANDS))
    return "usage: %s %s" % (prog, COMMANDS[command][0])


def _help(prog: str, command: "Optional[str]", sub: str) -> str:
    if command is not None:
        return "usage: %s %s\n\n%s\n" % (" ".join(filter(None, (prog, sub))),
                                         COMMANDS[command][0], HELP[command])
    lines = [_usage_line(prog, None), "", "Commands:"]
    for name, (usage, _f, _v) in COMMANDS.items():
        lines.append("  %s %s" % (name, usage))
        lines.append("      " + HELP[name])
    lines += ["", "Also callable as xenstore-read, xenstore-write, ... XenStore is found "
              "through XENSTORED_PATH,", "/var/run/xenstored/socket, /dev/xen/xenbus or "
              "/proc/xen/xenbus. --version prints the version.",
              "Exit status: 0 ok, 1 operation failed, 2 usage error, 3 no XenStore, 4 the "
              "output could not be", "written (141: its reader left, nothing said)."]
    return "\n".join(lines) + "\n"


def main(argv: "Optional[List[str]]" = None, prog: "Optional[str]" = None) -> int:
    """Run one command; ``argv`` excludes the program name. Returns the exit status."""
    if argv is None:
        argv = sys.argv[1:]
    if prog is None:
        prog = os.path.basename(sys.argv[0] or "xenstore")
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None

    def write(data: bytes) -> None:
        try:
            if out is not None:
                out.write(data)
            else:  # pragma: no cover - a text-only stdout (embedded use)
                sys.stdout.write(data.decode("utf-8", "replace"))
        except OSError as err:
            raise OutputError(err) from None

    warn = sayer(None)      # lines already name the command: no prefix

    try:
        status = _main(prog, argv, write, warn)
        flush(out)
        return status
    except KeyboardInterrupt:
        return 130
    except OutputError as failure:
        return failed(failure, sayer(prog), EXIT_OUTPUT)


def _main(prog: str, argv: "List[str]", write: "Callable[[bytes], None]",
          warn: "Callable[[str], None]") -> int:
    command = None  # type: Optional[str]
    sub = ""
    if prog.startswith("xenstore-") and prog[len("xenstore-"):] in COMMANDS:
        command = prog[len("xenstore-"):]
        args = list(argv)
    else:
        if argv and argv[0] == "--version":
            write(("%s %s\n" % (prog, _version())).encode())
            return EXIT_OK
        if not argv or argv[0] in ("-h", "--help"):
            if argv:
                write(_help(prog, None, "").encode())
                return EXIT_OK
            warn(_usage_line(prog, None))
            return EXIT_USAGE
        if argv[0] not in COMMANDS:
            warn("%s: unknown command %r" % (prog, argv[0]))
            warn(_usage_line(prog, None))
            return EXIT_USAGE
        command, sub, args = argv[0], argv[0], list(argv[1:])
    shown = prog + (" " + sub if sub else "")
    try:
        opts, operands = parse_args(command, args)
        if "V" in opts:
            write(("%s %s\n" % (prog, _version())).encode())
            return EXIT_OK
        if "h" in opts:
            write(_help(prog, command, sub).encode())
            return EXIT_OK
        _check_operands(command, opts, operands)
    except UsageError as err:
        warn("%s: %s" % (shown, err))
        warn("usage: %s %s" % (shown, COMMANDS[command][0]))
        return EXIT_USAGE
    return _run(command, opts, operands, shown, write, warn)


def _version() -> str:
    from xe_oneshot import __version__
    return __version__


def _check_operands(command: str, opts: "Dict[str, str]", operands: "List[str]") -> None:
    if command == "ls":
        if len(operands) > 1:
            raise UsageError("ls takes at most one path")
    elif not operands:
        raise UsageError("missing PATH")
    elif command == "write" and len(operands) % 2:
        raise UsageError("write takes PATH VALUE pairs")
    elif command == "watch":
        _watch_limit(opts)
    elif command == "chmod":
        if len(operands) < 2:
            raise UsageError("chmod takes a PATH and at least one MODE")
        for mode in operands[1:]:
            parse_mode(mode)


def _run(command: str, opts: "Dict[str, str]", operands: "List[str]", shown: str,
         write: "Callable[[bytes], None]", warn: "Callable[[str], None]") -> int:
    from xe_oneshot.xenstore import Client, NoXenStore, XenStoreError
    try:
        xs = Client.open()
    except NoXenStore as err:
        warn("%s: %s" % (shown, err.strerror))
        return EXIT_NO_XENSTORE
    except XenStoreError as err:
        warn(str(err))
        return EXIT_FAILED
    with xs:
        try:
            if command == "ls":
                failure = cmd_ls(xs, opts, operands, write, warn)
                lines = []  # type: List[bytes]
            elif command == "watch":
                cmd_watch(xs, opts, operands, write)
                return EXIT_OK
            else:
                runner = {"read": cmd_read, "write": cmd_write, "rm": cmd_rm,
                          "exists": cmd_exists, "list": cmd_list, "chmod": cmd_chmod}[command]
                lines, failure = runner(xs, opts, operands)
        except XenStoreError as err:
            lines, failure = [], err
        except UsageError as err:
            warn("%s: %s" % (shown, err))
            return EXIT_USAGE
    if failure is not None:
        if isinstance(failure, XenStoreError) and failure.op != "open":
            failure.op = command  # "xenstore list /x: ENOENT", not the wire op's name
        quiet = command == "exists" and getattr(failure, "errno", None) == errno.ENOENT
        if not quiet:
            warn(str(failure))
    for line in lines:
        write(line)
    return EXIT_OK if failure is None else EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
