"""One run of the collector (DESIGN.md, "One run"), from the parsed command line to what
is remembered for the next one. The CLI parses and maps this module's exceptions to
exit codes; everything in between is here, in order:

1. coordinate (:func:`coordinate`): runs serialize on the state dir's lock; an
   invocation skips the sections that a run started after its request covered.
2. widen (:func:`widen`): a ``unique-domain-id`` other than the remembered one means a
   migration or a resume: the run widens to all sections.
3. collect (:func:`collect`): each section's answer, with its own options from the
   command line (:func:`section_options`). A section that fails keeps its keys as they
   are; the others go on. A failure it declares (``DECLARED``: the guest's data gives no
   trustworthy answer) is one line; anything else is a bug, logged with its traceback.
4. merge, plan, apply (:mod:`.publisher`): one wanted state, one plan, one sink: the
   transaction, or the printout of ``--dry-run``.
5. remember (:func:`remember`): when wandering values were published, the domain id,
   the sections covered; saved last, so that a run that died before covered nothing.

``--print`` (:func:`print_keys`) collects and merges the same way, then shows the keys.
"""

import errno

from . import log
from .records import field, record
from .sections import SECTIONS, Collected, Context, SectionError, load

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Tuple
    from .cli import Options as CommandLine
    from .publisher import Outcome, Wanted
    from .runstate import RunState
    from .sections import XenStoreReader

LOG = log.getLogger(__name__)

#: What a section raises when the guest gives no trustworthy answer (a missing file,
#: garbage in it): one line in the journal. Anything else is a bug in the section, and
#: its traceback goes to the journal with that line.
DECLARED = (OSError, ValueError, SectionError)

#: Errors that mean "no room for the state": the run goes on without it.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)

#: What -v says of a section that found nothing to publish.
_NOTHING_FOUND = {"network": "no Xen VIF or SR-IOV VF found",
                  "volumes": "no block device found"}


@record
class Result:
    """What a run did: the sections that failed (name -> one-line reason), and whether
    it was skipped (runs started since covered all it was for)."""

    failed: "Dict[str, str]" = field(default_factory=dict)
    skipped: bool = False


# -- the two modes ----------------------------------------------------------------------

def print_keys(cmdline: "CommandLine", sections: "List[str]",
               out: "Callable[[str], None]") -> Result:
    """``--print``: the keys a run would publish, shown through ``out`` (text escaped as
    ``xenstore-ls`` does, or JSON). XenStore is used if there is one, never required."""
    from .xenstore import XenStoreError
    try:
        client = open_client(required=False)
    except XenStoreError:
        client = None
    try:
        ctx = context(cmdline, None if client is None else _reader(client), sections)
        results, failed = collect(ctx, sections)
    finally:
        if client is not None:
            client.close()
    values = wanted_state(results).values
    if cmdline.output == "json":
        import json
        out(json.dumps(values, indent=2, sort_keys=False) + "\n")   # ASCII: escaped
    else:
        from .output import show
        out("".join(show(key, value) + "\n" for key, value in values.items()))
    return Result(failed)


def publish(cmdline: "CommandLine", sections: "List[str]",
            out: "Callable[[str], None]") -> Result:
    """A run, or with ``--dry-run`` its plan printed through ``out``. Raises NoXenStore
    (touching nothing), StateError, XenStoreError (PartlyPublished when a change cut
    into several transactions failed half way), OSError."""
    from .runstate import now
    requested = now()
    # XenStore first: where there is none (not a Xen guest) the run touches nothing,
    # not even the state dir.
    client = open_client(required=True)
    state = None
    try:
        reader = _reader(client)
        ctx = context(cmdline, reader, [])
        state = peek_state(cmdline, ctx) if cmdline.dry_run else open_state(cmdline, ctx)
        todo = coordinate(state, sections, requested, cmdline.dry_run)
        if not todo:
            return Result(skipped=True)
        todo, domid = widen(reader, state, todo)
        started = now()
        ctx.options = section_options(cmdline, todo)
        results, failed = collect(ctx, todo)
        previous = published_times(state)
        outcome = apply(cmdline, client, wanted_state(results), previous, started, out)
        if cmdline.dry_run or state is None:    # a real run has one (maybe detached)
            return Result(failed)
        LOG.info("%s: %d written, %d removed, %d small %s held back",
                 ",".join(results) or "nothing", len(outcome.writes), len(outcome.removes),
                 len(outcome.plan.deferred),
                 "change" if len(outcome.plan.deferred) == 1 else "changes")
        remember(state, previous, outcome, domid,
                 [name for name in todo if name not in failed], started)
        return Result(failed)
    finally:
        client.close()
        if state is not None:
            state.close()


# -- the steps --------------------------------------------------------------------------

def coordinate(state: "Optional[RunState]", sections: "List[str]", requested: float,
               dry_run: bool) -> "List[str]":
    """The sections this run is for: those no run has started since ``requested``
    (call under the lock); all of them in a dry run or without a state. Empty: skip."""
    if state is None or dry_run:
        return list(sections)
    todo = state.pending(sections, requested)
    if not todo:
        LOG.info("a run started since this one was asked for covered %s: skipped",
                 ",".join(sections))
    return todo


def widen(reader: "XenStoreReader", state: "Optional[RunState]",
          todo: "List[str]") -> "Tuple[List[str], Optional[str]]":
    """``todo``, or all sections when ``unique-domain-id`` is not the one the last run
    remembered (migrated or resumed; no state yet counts as another); and that id."""
    domid = reader.read("unique-domain-id")
    known = state.get("domid") if state is not None else None
    if domid is not None and domid != known:
        LOG.info("unique-domain-id changed (migrated or resumed): all sections")
        return list(SECTIONS), domid
    return todo, domid


def collect(ctx: Context, names: "List[str]") -> "Tuple[Dict[str, Collected], Dict[str, str]]":
    """Each section's answer, and the one-line reasons of those that failed."""
    results: Dict[str, Collected] = {}
    failed: Dict[str, str] = {}
    for name in names:
        try:
            results[name] = load(name).collect(ctx)
        except Exception as err:  # noqa: BLE001 - any failure stays in its section
            failed[name] = _failed(name, err)
            continue
        if not results[name].values:
            LOG.info("%s: %s", name, _NOTHING_FOUND.get(name, "nothing found"))
    return results, failed


def _failed(name: str, err: Exception) -> str:
    """Say that section ``name`` failed: one error line, and the traceback with it when
    the failure is not one the section declares (a bug), or at -vv. Returns the reason."""
    reason = str(err).splitlines()[0] if str(err) else ""
    if isinstance(err, DECLARED):
        reason = reason or type(err).__name__
    else:
        reason = type(err).__name__ + (": " + reason if reason else "")
    if isinstance(err, DECLARED) and not LOG.isEnabledFor(log.DEBUG):
        LOG.error("section %s failed: %s", name, reason)
    else:
        LOG.exception("section %s failed: %s", name, reason)
    return reason


def section_options(cmdline: "CommandLine", names: "List[str]") -> "Dict[str, object]":
    """The options records of the sections in ``names`` that have some, from the command
    line (``Context.options``): ``misc`` (``--no-balloon``)."""
    options: Dict[str, object] = {}
    if "misc" in names:
        options["misc"] = load("misc").Options(balloon=not cmdline.no_balloon)
    return options


def wanted_state(results: "Dict[str, Collected]") -> "Wanted":
    """The sections' answers merged (``publisher.merge``), in publishing order."""
    from .publisher import merge
    return merge((load(name).OWNS, answer) for name, answer in results.items())


def apply(cmdline: "CommandLine", client, wanted: "Wanted", previous: "Dict[str, float]",
          started: float, out: "Callable[[str], None]") -> "Outcome":
    """Plan ``wanted`` under the change policy and apply it: in one transaction, or
    printed through ``out`` in a dry run."""
    from .publisher import Policy, PrintSink, Publisher
    policy = Policy(threshold=cmdline.threshold, max_age=cmdline.max_age, now=started,
                    published=dict(previous))
    sink = PrintSink(out) if cmdline.dry_run else None
    return Publisher(client, policy, sink).publish(wanted)


def published_times(state: "Optional[RunState]") -> "Dict[str, float]":
    """When the wandering values were published, as the run state remembers it."""
    published: Dict[str, float] = {}
    if state is not None:
        for key, when in state.items("published.").items():
            try:
                published[key] = float(when)
            except ValueError:
                pass
    return published


def remember(state: "RunState", previous: "Dict[str, float]", outcome: "Outcome",
             domid: "Optional[str]", covered: "List[str]", started: float) -> None:
    """Note what this run leaves to the next ones and save it: when the wandering values
    were published, the domain id, the sections ``covered`` (started at ``started``).
    A state that cannot be saved is said: the run published all the same."""
    for key in set(previous) | set(outcome.published):
        state.set("published." + key, repr(outcome.published[key])
                  if key in outcome.published else None)
    if domid is not None:
        state.set("domid", domid)
    # Only now: an invocation waiting for the lock skips the sections a run started
    # after its request covered; a run that died before here covered none, and a
    # section that failed is not covered either.
    state.mark_started(covered, started)
    try:
        state.save()
    except OSError as err:     # published all the same: say what is true
        LOG.warning("published; state not saved in %s (%s): later runs publish "
                    "again what differs", state.directory, err.strerror or err)


# -- what a run uses ----------------------------------------------------------------------

def context(cmdline: "CommandLine", reader: "Optional[XenStoreReader]",
            names: "List[str]") -> Context:
    """What the sections of ``names`` may use: the guest's files, XenStore (if any),
    their options."""
    from .guest import Root
    return Context(root=Root(cmdline.root), xenstore=reader,
                   options=section_options(cmdline, names))


def _reader(client) -> "XenStoreReader":
    from .xsreader import ClientReader
    return ClientReader(client)


def open_client(required: bool):
    """A XenStore client, or None when there is none and none is required."""
    from .xenstore import Client, NoXenStore
    try:
        return Client.open()
    except NoXenStore as err:
        if required:
            raise
        LOG.info("%s: collecting without it", err.strerror)
        return None


def boot_id(ctx: Context) -> "Optional[str]":
    """This boot's ``boot_id``: the run state of another boot is not ours."""
    try:
        return ctx.root.read_line("/proc/sys/kernel/random/boot_id") or None
    except OSError:
        return None


def open_state(cmdline: "CommandLine", ctx: Context) -> "RunState":
    """The run state, opened and locked, tied to this boot's ``boot_id``. Where there is
    no room for it (the state dir's filesystem is full or read-only), a run goes on
    without it: no coalescing, and every change is published. Raises StateError."""
    from .runstate import RunState, StateError
    state = RunState(cmdline.state_dir, boot_id(ctx))
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


def peek_state(cmdline: "CommandLine", ctx: Context) -> "Optional[RunState]":
    """The run state, unlocked and never saved, so that a dry run plans with what a real
    run would know (when values were published, the last domid); None where a real run
    has left none yet (nothing is created)."""
    import os
    from .runstate import RunState
    if not all(os.path.isfile(os.path.join(cmdline.state_dir, name))
               for name in ("lock", "state")):
        return None
    return RunState(cmdline.state_dir, boot_id(ctx)).open(create=False)
