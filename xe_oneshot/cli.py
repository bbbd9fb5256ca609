"""``xe-oneshot``: collect the guest's facts and publish what changed into XenStore.

The option parser is written by hand: argparse costs a few milliseconds to import, and
this process starts on every udev and network event.
"""

from __future__ import annotations

import sys

from . import __version__, log
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

USAGE = "usage: xe-oneshot [--section NAME]... [--root DIR] [--state-dir DIR] " \
        "[--dry-run | --print] [--format text|json] [--no-balloon] [-v]"

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
  --print              print the collected keys; XenStore is not needed
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
  0  published (or nothing to change)
  1  a section failed; the other sections were published
  2  usage error
  3  no XenStore: not running as a Xen guest
  4  XenStore refused the run, or the state dir is unusable: nothing published
     (unless a change too large for one transaction was cut, as the message says)
"""


class UsageError(Exception):
    """A bad command line (message is one line)."""


@record
class Options:
    sections: List[str] = field(default_factory=list)
    root: str = "/"
    state_dir: str = "/run/xe-oneshot"
    dry_run: bool = False
    print_keys: bool = False
    output: str = "text"
    no_balloon: bool = False
    threshold: float = 1.0
    max_age: float = 300.0
    verbose: int = 0
    action: Optional[str] = None        # "help" or "version"


_WITH_VALUE = {"-s": "section", "--section": "section", "--root": "root",
               "--state-dir": "state_dir", "--format": "output",
               "--threshold": "threshold", "--max-age": "max_age"}
_FLAGS = {"--dry-run": "dry_run", "--print": "print_keys", "--no-balloon": "no_balloon"}


def parse_args(argv: List[str]) -> Options:
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


def main(argv: Optional[List[str]] = None) -> int:
    """Run once; returns the exit status (see HELP)."""
    log.utf8_stdout()
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
        sections = expand(opts.sections or ["all"])
    except (UsageError, ValueError) as err:
        sys.stderr.write("xe-oneshot: %s\n%s\n" % (err, USAGE))
        return EXIT_USAGE
    if opts.action == "help":
        sys.stdout.write(HELP.format(sections=", ".join(SECTIONS),
                                     groups=", ".join("%s (%s)" % (g, " ".join(s))
                                                      for g, s in GROUPS.items())))
        return EXIT_OK
    if opts.action == "version":
        print("xe-oneshot " + __version__)
        return EXIT_OK
    log.configure(opts.verbose)
    try:
        if opts.print_keys:
            return _print_mode(opts, sections)
        return _run(opts, sections)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_FAILED


# -- collecting -------------------------------------------------------------------------

def _collect(ctx: Context, sections: List[str]):
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
                traceback.print_exc()
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
        LOG.info("no XenStore (%s): collecting without it", err)
        return None


def _print_mode(opts: Options, sections: List[str]) -> int:
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
    values: Dict[str, str] = {}
    for result in results.values():
        values.update(result.values)
    if opts.output == "json":
        import json
        print(json.dumps(values, indent=2, sort_keys=False))
    else:
        for key, value in values.items():
            print("%s = %s" % (key, _quote(value)))
    return EXIT_SECTION_FAILED if failed else EXIT_OK


def _quote(value: str) -> str:
    """A value for display, quoted like ``xenstore-ls`` does."""
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


# -- publishing -------------------------------------------------------------------------

def _run(opts: Options, sections: List[str]) -> int:
    from .runstate import RunState, StateError, now
    from .xenstore import NoXenStore, XenStoreError

    requested = now()
    state = RunState(opts.state_dir)
    client = None
    try:
        if opts.dry_run:
            state = _peek_state(opts.state_dir)
        else:
            state.open()
            state.lock()
        client = _open_client(required=True)
        return _publish(opts, sections, state, client, requested)
    except StateError as err:
        sys.stderr.write("xe-oneshot: %s\n" % err)
        return EXIT_FAILED
    except NoXenStore as err:
        sys.stderr.write("xe-oneshot: %s\n" % err.strerror)   # names what it tried
        return EXIT_NO_XENSTORE
    except XenStoreError as err:
        sys.stderr.write("xe-oneshot: XenStore: %s; %s\n" % (
            err, "published in part, the next run completes it"
            if getattr(err, "partly_published", False) else "nothing published"))
        return EXIT_FAILED
    except OSError as err:
        sys.stderr.write("xe-oneshot: %s; nothing published\n" % err)
        return EXIT_FAILED
    finally:
        if client is not None:
            client.close()
        if state is not None:
            state.close()


def _peek_state(directory: str):
    """The run state, unlocked and never saved, so that a dry run plans with what a real
    run would know (when values were published, the last domid); None if there is none
    yet."""
    import os
    from .runstate import RunState
    if not os.path.isdir(directory):
        return None
    return RunState(directory).open(create=False)


def _publish(opts: Options, sections: List[str], state, client, requested: float) -> int:
    from .publisher import Policy, Publisher
    from .runstate import now

    ctx = _context(opts, client)
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
        for key, value in plan.writes.items():
            print("+%s = %s" % (key, _quote(value)))
        for node in plan.removes:
            print("-%s" % node)
    else:
        for key, value in plan.writes.items():
            LOG.debug("+%s=%s", key, value)
        for node in plan.removes:
            LOG.debug("-%s", node)
        LOG.info("%s: %d written, %d removed, %d small changes held back",
                 ",".join(results) or "nothing", len(plan.writes), len(plan.removes),
                 len(plan.deferred))
        for key in set(published) | set(policy.published):
            state.set("published." + key, repr(policy.published[key])
                      if key in policy.published else None)
        if domid is not None:
            state.set("domid", domid)
        # Only now: an invocation waiting for the lock skips the sections a run started
        # after its request covered; a run that died or failed before here covered none.
        state.mark_started(todo, started)
        state.save()
    return EXIT_SECTION_FAILED if failed else EXIT_OK
