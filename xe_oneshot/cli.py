"""``xe-oneshot``: collect the guest's facts and publish what changed into XenStore.

This module parses the command line and maps the run's failures to exit codes; the run
itself is :mod:`xe_oneshot.run` (imported when there is one to make). The option parser
is written by hand: argparse costs a few milliseconds to import, and this process starts
on every udev and network event.
"""

import sys

from . import __version__, log
from .output import OutputError, failed, flush, sayer, write
from .records import field, record
from .sections import GROUPS, SECTIONS, expand

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional

EXIT_OK = 0                 # everything asked for is published
EXIT_SECTION_FAILED = 1     # a section could not collect; the others are published
EXIT_USAGE = 2              # bad command line
EXIT_NO_XENSTORE = 3        # no XenStore here: not running as a Xen guest
EXIT_FAILED = 4             # XenStore refused the run or the state dir is unusable:
                            # nothing of this run is published
EXIT_OUTPUT = 5             # the output of --print / --dry-run could not be written
# 141 (output.EXIT_PIPE): the reader of that output left; nothing is said

USAGE = "usage: xe-oneshot [--section NAME]... [--root DIR] [--state-dir DIR]\n" \
        "                  [--dry-run | --print] [--format text|json] [--no-balloon]\n" \
        "                  [--threshold PCT] [--max-age SECONDS] [-v] [--version]"

HELP = USAGE + """

Publish facts about this Xen guest (OS, tools version, memory, addresses per virtual
NIC, volumes) into XenStore for the toolstack, in one transaction, writing only what
changed.

options:
  -s, --section NAME   what to collect (repeatable, or comma-separated); default all
                       sections: {sections}
                       groups: {groups}
  --root DIR           read the guest's files (/proc, /sys, /dev, /etc, /run/udev,
                       /var/cache) under DIR instead of /
  --state-dir DIR      lock and run state (default /run/xe-oneshot)
  --dry-run            collect and print the changes it would make; write nothing
  --print              print the keys a run would publish (escaped as xenstore-ls
                       does); neither XenStore nor the state dir is needed
  --format text|json   output of --print (json implies --print)
  --no-balloon         do not offer ballooning (control/feature-balloon removed)
  --threshold PCT      publish free memory / free space when it moved by at least PCT
                       percent of the total (default 1) ...
  --max-age SECONDS    ... or when the published value is this old (default 300;
                       free memory: at most 110)
  -v, --verbose        say what is done (-vv: every key written or removed)
  --version            print the version
  -h, --help           this help

exit status:
  0  published (or nothing to change; a warning says if the state could not be saved)
  1  a section failed; the other sections were published
  2  usage error
  3  no XenStore: not running as a Xen guest (nothing is touched)
  4  XenStore refused the run, or the state dir is unusable: nothing published
     (unless a change too large for one transaction was cut, as the message says)
  5  the output of --print / --dry-run could not be written (141: its reader left)
"""


class UsageError(Exception):
    """A bad command line (message is one line)."""



@record
class Options:
    sections: "List[str]" = field(default_factory=list)
    root: str = "/"
    state_dir: str = "/run/xe-oneshot"
    dry_run: bool = False
    print_keys: bool = False
    output: str = "text"
    no_balloon: bool = False
    threshold: float = 1.0
    max_age: float = 300.0
    verbose: int = 0
    action: "Optional[str]" = None        # "help" or "version"


_WITH_VALUE = {"-s": "section", "--section": "section", "--root": "root",
               "--state-dir": "state_dir", "--format": "output",
               "--threshold": "threshold", "--max-age": "max_age"}
_FLAGS = {"--dry-run": "dry_run", "--print": "print_keys", "--no-balloon": "no_balloon"}


def parse_args(argv: "List[str]") -> Options:
    """Options from the command line. Raises UsageError."""
    opts = Options()
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _WITH_VALUE:
            if not eq:
                if not args:
                    raise UsageError("%s needs a value" % name)
                value = args.pop(0)
            _set_value(opts, _WITH_VALUE[name], name, value)
        elif eq:
            raise UsageError("%s takes no value" % name if name in _FLAGS
                             else "unknown option %s" % name)
        elif arg in _FLAGS:
            setattr(opts, _FLAGS[arg], True)
        elif arg in ("-v", "--verbose"):
            opts.verbose += 1
        elif arg == "-vv":
            opts.verbose += 2
        elif arg in ("-h", "--help"):
            opts.action = "help"
        elif arg == "--version":
            opts.action = "version"
        else:
            raise UsageError("unknown option %s" % arg if arg.startswith("-")
                             else "unexpected argument %r" % arg)
    if opts.dry_run and opts.print_keys:
        raise UsageError("--dry-run and --print exclude each other")
    return opts


def _set_value(opts: Options, attr: str, name: str, value: str) -> None:
    if attr == "section":
        if not any(part.strip() for part in value.split(",")):
            raise UsageError("%s needs a section name, not %r" % (name, value))
        opts.sections.append(value)
    elif attr == "output":
        if value not in ("text", "json"):
            raise UsageError("--format takes text or json, not %r" % value)
        opts.output = value
        if value == "json":
            opts.print_keys = opts.print_keys or not opts.dry_run
    elif attr in ("threshold", "max_age"):
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not number >= 0 or number == float("inf"):
            raise UsageError("%s takes a number >= 0, not %r" % (name, value))
        setattr(opts, attr, number)
    else:
        if not value:
            raise UsageError("%s needs a non-empty value" % name)
        setattr(opts, attr, value)


def main(argv: "Optional[List[str]]" = None) -> int:
    """Run once; returns the exit status (see HELP)."""
    log.utf8_stdout()
    try:
        try:
            opts = parse_args(sys.argv[1:] if argv is None else argv)
            sections = expand(opts.sections or ["all"])
        except (UsageError, ValueError) as err:
            _say("%s\n%s" % (err, USAGE))
            return EXIT_USAGE
        if opts.action == "help":
            status = EXIT_OK
            write(HELP.format(sections=", ".join(SECTIONS),
                             groups=", ".join("%s (%s)" % (g, " ".join(s))
                                              for g, s in GROUPS.items())))
        elif opts.action == "version":
            status = EXIT_OK
            write("xe-oneshot %s\n" % __version__)
        else:
            log.configure(opts.verbose)
            status = _print_mode(opts, sections) if opts.print_keys else _run(opts, sections)
        flush()
        return status
    except KeyboardInterrupt:
        return 130
    except OutputError as failure:
        return failed(failure, _say, EXIT_OUTPUT)


# -- output -----------------------------------------------------------------------------

_say = sayer("xe-oneshot")      # one message on stderr (lost, quietly, if it is gone)


# -- the run (xe_oneshot.run), its failures mapped to exit codes ------------------------

def _print_mode(opts: Options, sections: "List[str]") -> int:
    from .run import print_keys
    return EXIT_SECTION_FAILED if print_keys(opts, sections, write).failed else EXIT_OK


def _run(opts: Options, sections: "List[str]") -> int:
    from .publisher import PartlyPublished
    from .run import publish
    from .runstate import StateError
    from .xenstore import NoXenStore, XenStoreError
    try:
        result = publish(opts, sections, write)
    except StateError as err:
        _say(str(err))
        return EXIT_FAILED
    except NoXenStore as err:
        _say(err.strerror or str(err))   # names what it tried
        return EXIT_NO_XENSTORE
    except PartlyPublished as err:
        _say("XenStore: %s; published in part, the next run completes it" % err)
        return EXIT_FAILED
    except XenStoreError as err:
        _say("XenStore: %s; nothing published" % err)
        return EXIT_FAILED
    except OSError as err:
        _say("%s; nothing published" % err)
        return EXIT_FAILED
    return EXIT_SECTION_FAILED if result.failed else EXIT_OK
