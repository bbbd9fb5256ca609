"""``xe-oneshot``: collect the guest's facts and publish what changed into XenStore.

The option parser is written by hand: argparse costs a few milliseconds to import, and
this process starts on every udev and network event.
"""

import errno
import sys

from . import __version__, log
from .output import OutputError, failed
from .records import field, record
from .sections import GROUPS, SECTIONS, Collected, Context, expand, load

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional

LOG = log.getLogger(__name__)

EXIT_OK = 0                 # everything asked for is published
EXIT_SECTION_FAILED = 1     # a section could not collect; the others are published
EXIT_USAGE = 2              # bad command line
EXIT_NO_XENSTORE = 3        # no XenStore here: not running as a Xen guest
EXIT_FAILED = 4             # XenStore refused the run or the state dir is unusable:
                            # nothing of this run is published
EXIT_OUTPUT = 5             # the output of --print / --dry-run could not be written
# 141 (output.EXIT_PIPE): the reader of that output left; nothing is said

#: Errors that mean "no room for the state": the run goes on without it.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)

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
            _out(HELP.format(sections=", ".join(SECTIONS),
                             groups=", ".join("%s (%s)" % (g, " ".join(s))
                                              for g, s in GROUPS.items())))
        elif opts.action == "version":
            status = EXIT_OK
            _out("xe-oneshot %s\n" % __version__)
        else:
            log.configure(opts.verbose)
            status = _print_mode(opts, sections) if opts.print_keys else _run(opts, sections)
        try:
            sys.stdout.flush()
        except OSError as err:
            raise OutputError(err) from None
        return status
    except KeyboardInterrupt:
        return 130
    except OutputError as failure:
        return failed(failure, _say, EXIT_OUTPUT)


# -- output -----------------------------------------------------------------------------

def _out(text: str) -> None:
    """Write the command's output (--print, --dry-run) to stdout. Raises OutputError."""
    try:
        sys.stdout.write(text)
    except OSError as err:
        raise OutputError(err) from None


def _say(text: str) -> None:
    """One message on stderr. If stderr itself is gone (a closed pipe, a full disk), the
    message is lost and the run goes on: the exit status still tells."""
    try:
        sys.stderr.write("xe-oneshot: %s\n" % text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _show(key: str, value: str) -> str:
    """``key = "value"`` escaped as ``xenstore-ls`` prints it: no control character,
    no newline, nothing but printable ASCII reaches the terminal."""
    from .text import sanitise
    return '%s = "%s"' % (sanitise(key.encode("utf-8", "replace")).decode("ascii"),
                          sanitise(value.encode("utf-8", "replace")).decode("ascii"))


# -- collecting -------------------------------------------------------------------------

#: What -v says of a section that found nothing to publish.
_NOTHING_FOUND = {"network": "no Xen VIF or SR-IOV VF found",
                  "volumes": "no block device found"}


def _collect(ctx: Context, sections: "List[str]"):
    """Each section's answer, and the one-line errors of those that failed."""
    results: Dict[str, Collected] = {}
    failed: Dict[str, str] = {}
    for name in sections:
        try:
            results[name] = load(name).collect(ctx)
        except Exception as err:  # noqa: BLE001 - any failure stays in its section
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            failed[name] = message
            LOG.error("section %s failed: %s", name, message)
            if LOG.isEnabledFor(log.DEBUG):
                import traceback
                try:
                    traceback.print_exc()
                except (OSError, ValueError):
                    pass
            continue
        if not results[name].values:
            LOG.info("%s: %s", name, _NOTHING_FOUND.get(name, "nothing found"))
    return results, failed


def _context(opts: Options, client) -> Context:
    from .guest import Root
    reader = None
    if client is not None:
        from .xsreader import ClientReader
        reader = ClientReader(client)
    return Context(root=Root(opts.root), xenstore=reader, no_balloon=opts.no_balloon)


def _open_client(required: bool):
    """A XenStore client, or None when there is none and none is required."""
    from .xenstore import Client, NoXenStore
    try:
        return Client.open()
    except NoXenStore as err:
        if required:
            raise
        LOG.info("%s: collecting without it", err.strerror)
        return None


def _print_mode(opts: Options, sections: "List[str]") -> int:
    from .xenstore import XenStoreError
    try:
        client = _open_client(required=False)
    except XenStoreError:
        client = None
    try:
        results, failed = _collect(_context(opts, client), sections)
    finally:
        if client is not None:
            client.close()
    from .publisher import clean_value
    values: Dict[str, str] = {}
    for result in results.values():     # as a run would publish them
        values.update((k, clean_value(k, v)) for k, v in result.values.items())
    if opts.output == "json":
        import json
        _out(json.dumps(values, indent=2, sort_keys=False) + "\n")   # ASCII: escaped
    else:
        _out("".join(_show(key, value) + "\n" for key, value in values.items()))
    return EXIT_SECTION_FAILED if failed else EXIT_OK


# -- publishing -------------------------------------------------------------------------

def _run(opts: Options, sections: "List[str]") -> int:
    from .runstate import RunState, StateError, now
    from .xenstore import NoXenStore, XenStoreError

    requested = now()
    state = None
    client = None
    try:
        # XenStore first: where there is none (not a Xen guest) the run touches nothing,
        # not even the state dir.
        client = _open_client(required=True)
        ctx = _context(opts, client)
        if opts.dry_run:
            state = _peek_state(opts, ctx, RunState)
        else:
            state = _open_state(opts, ctx, RunState, StateError)
        return _publish(opts, sections, state, ctx, client, requested)
    except StateError as err:
        _say(str(err))
        return EXIT_FAILED
    except NoXenStore as err:
        _say(err.strerror)   # names what it tried
        return EXIT_NO_XENSTORE
    except XenStoreError as err:
        _say("XenStore: %s; %s" % (
            err, "published in part, the next run completes it"
            if getattr(err, "partly_published", False) else "nothing published"))
        return EXIT_FAILED
    except OSError as err:
        _say("%s; nothing published" % err)
        return EXIT_FAILED
    finally:
        if client is not None:
            client.close()
        if state is not None:
            state.close()


def _boot_id(ctx: Context) -> "Optional[str]":
    """This boot's ``boot_id``: the run state of another boot is not ours."""
    try:
        return ctx.root.read_line("/proc/sys/kernel/random/boot_id") or None
    except OSError:
        return None


def _open_state(opts: Options, ctx: Context, RunState, StateError):  # noqa: N803
    """The run state (``RunState``, ``StateError``: imported lazily), opened and locked,
    tied to this boot's ``boot_id``. Where there is no room for it (the state dir's
    filesystem is full or read-only), a run goes on without it: no coalescing, and
    every change is published."""
    state = RunState(opts.state_dir, _boot_id(ctx))
    try:
        state.open()
    except StateError as err:
        if err.errno not in _NO_ROOM:
            raise
        LOG.warning("%s: running without state (no coalescing, every change published)",
                    err)
        return state.detached()
    state.lock()
    return state


def _peek_state(opts: Options, ctx: Context, RunState):  # noqa: N803
    """The run state, unlocked and never saved, so that a dry run plans with what a real
    run would know (when values were published, the last domid); None where a real run
    has left none yet (nothing is created)."""
    import os
    if not all(os.path.isfile(os.path.join(opts.state_dir, name))
               for name in ("lock", "state")):
        return None
    return RunState(opts.state_dir, _boot_id(ctx)).open(create=False)


def _publish(opts: Options, sections: "List[str]", state, ctx: Context, client,
             requested: float) -> int:
    from .publisher import Policy, Publisher
    from .runstate import now

    if state is not None and not opts.dry_run:
        todo = state.pending(sections, requested)
        if not todo:
            LOG.info("a run started since this one was asked for covered %s: skipped",
                     ",".join(sections))
            return EXIT_OK
    else:
        todo = list(sections)

    domid = ctx.xenstore.read("unique-domain-id")
    known = state.get("domid") if state is not None else None   # no state yet: widen
    if domid is not None and domid != known:
        LOG.info("unique-domain-id changed (migrated or resumed): all sections")
        todo = list(SECTIONS)
    started = now()

    results, failed = _collect(ctx, todo)
    owned: List[str] = []
    wanted: Dict[str, str] = {}
    tolerance: Dict[str, int] = {}
    for name, result in results.items():
        owned.extend(load(name).OWNS)
        wanted.update(result.values)
        tolerance.update(result.tolerance)

    published = {}
    if state is not None:
        for key, when in state.items("published.").items():
            try:
                published[key] = float(when)
            except ValueError:
                pass
    policy = Policy(threshold=opts.threshold, max_age=opts.max_age, now=started,
                    published=dict(published))
    plan = Publisher(client, policy).publish(owned, wanted, tolerance, dry_run=opts.dry_run)

    if opts.dry_run:
        _out("".join(["+" + _show(key, value) + "\n" for key, value in plan.writes.items()]
                     + ["-%s\n" % node for node in plan.removes]))
    else:
        for key, value in plan.writes.items():
            LOG.debug("+%s=%s", key, value)
        for node in plan.removes:
            LOG.debug("-%s", node)
        LOG.info("%s: %d written, %d removed, %d small %s held back",
                 ",".join(results) or "nothing", len(plan.writes), len(plan.removes),
                 len(plan.deferred), "change" if len(plan.deferred) == 1 else "changes")
        for key in set(published) | set(policy.published):
            state.set("published." + key, repr(policy.published[key])
                      if key in policy.published else None)
        if domid is not None:
            state.set("domid", domid)
        # Only now: an invocation waiting for the lock skips the sections a run started
        # after its request covered; a run that died before here covered none, and a
        # section that failed is not covered either.
        state.mark_started([name for name in todo if name not in failed], started)
        try:
            state.save()
        except OSError as err:     # published all the same: say what is true
            LOG.warning("published; state not saved in %s (%s): later runs publish "
                        "again what differs", opts.state_dir, err.strerror or err)
    return EXIT_SECTION_FAILED if failed else EXIT_OK
