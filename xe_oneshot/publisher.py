"""The one writer: diff the wanted keys against XenStore, apply the changes through one sink.

A run hands the publisher one input, the merged wanted state of its sections
(:class:`Wanted`, made by :func:`merge`: the paths they own, the keys and their clean
values, the tolerances of wandering values), and gets an :class:`Outcome` back:

1. read what is there under the owned paths (``OWNS``): the nodes leading to the wanted
   keys and the values of those keys (outside any transaction: an unchanged guest costs
   reads only, no transaction, no write);
2. plan (:class:`Plan`): the keys whose value differs, the nodes no section reports any
   more (only inside the owned paths: never anything else), and ``data/updated`` when
   one of them is a key xapi keeps, or on the first run (see ``UPDATED``);
3. apply the plan through the publisher's sink, the one place that says what is changed:
   :class:`TransactionSink` makes the changes in one transaction (on EAGAIN, another
   writer committed first, it runs it again, with a bounded backoff) and logs each
   change made at debug level (``+key=value``, ``-key``: what ``-vv`` shows);
   :class:`PrintSink` (``--dry-run``) prints the plan and writes nothing. Only a change
   larger than one guest transaction may hold (``MAX_TRANSACTION_OPS``: hundreds of
   volumes published at once) is cut into several, between volumes or interfaces; when
   one after the first fails, :class:`PartlyPublished` says that the first ones stay.
4. the outcome says what was changed and when each wandering value now counts as
   published (``Outcome.published``), for the caller to remember: neither the caller's
   dicts nor the policy are changed.

Change policy for wandering values (``Collected.tolerance``: free memory, free space): a
new value within ``threshold`` × tolerance of the published one is not written until the
published one is ``max_age`` seconds old (free memory: at most ``MAX_AGE``), so that
noise costs no write. Neither wakes xenopsd or xapi: they come without ``data/updated``.

A key the guest may not write (EACCES: the toolstack can make ``control/feature-balloon``
read-only) is reported and skipped; the rest is published. A value over the daemon's
size limit is cut (at a character boundary) with a warning, never sent oversize; control
characters become spaces.
"""

import time
from errno import E2BIG, EACCES, EIO, ENOENT

from . import log
from .output import show
from .records import field, record
from .text import replace_controls
from .xenstore.errors import XenStoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

LOG = log.getLogger(__name__)

#: oxenstored refuses values over 2048 bytes (E2BIG); C xenstored's default quota is the
#: same. The toolstack has no use for longer ones.
MAX_VALUE = 2048

#: oxenstored answers a guest EQUOTA past 1024 requests in one transaction
#: (``quota-maxrequests``); dom0's socket is exempt, so tests never see it.
MAX_TRANSACTION_OPS = 1000

#: ``data/updated`` (local time). xapi has not read its value since 2019. Its *existence*
#: is squeezed's "a guest agent is here" (``squeeze_xen.ml``, ``get_guest_agent``: memory
#: offset calibration), and xenopsd watched it until xen-api v25.23.0 (June 2025; every
#: XenServer 8 and XCP-ng 8.x host in the field still does): each write makes xenopsd
#: re-read the guest's copied keys and xapi recompute its metrics. So it is written on
#: the first run (while it does not exist) and with a change of a key xapi keeps
#: (``NOTIFY``), never for free memory or volumes alone.
UPDATED = "data/updated"

#: Keys xapi keeps (``xapi_guest_agent.ml``): ``data/os_*`` (os_version), ``attr/…``
#: (PV_drivers_version, networks), ``control/…`` (other), ``xenserver/attr/…`` (SR-IOV
#: networks). Not ``data/meminfo_*`` (xenopsd copies them, xapi ignores them) nor
#: ``data/volumes`` (xenopsd copies ``data`` at depth 0 only: never seen).
NOTIFY = ("data/os_", "attr/", "control/", "xenserver/attr/")

#: Per-key caps on ``max_age`` (seconds). A ``meminfo_free`` write wakes only
#: rrdp-squeezed (the VM's memory graph, its own watch), which the classic agent feeds
#: every 120 s: 110 s republishes a wandering value on every second 60 s timer tick
#: (timer jitter included), so the graph is never staler than with the classic agent.
MAX_AGE = {"data/meminfo_free": 110.0}



class PartlyPublished(XenStoreError):
    """A change cut into several transactions failed after the first ones committed:
    what they published stays, and the next run completes it. It carries the failure's
    errno, path, op and name; ``__cause__`` is the failure itself."""

    @classmethod
    def of(cls, err: OSError) -> "PartlyPublished":
        if isinstance(err, XenStoreError):
            return cls(err.errno or EIO, err.path, err.op, err.name, err.strerror or "")
        return cls(err.errno or EIO, None, "", "", err.strerror or str(err))


@record
class Policy:
    """The change policy for wandering values (see module docstring)."""

    threshold: float = 1.0          # in units of the section's tolerance (1% by default)
    max_age: float = 300.0          # seconds
    now: float = 0.0                # boot-clock time of this run
    published: "Dict[str, float]" = field(default_factory=dict)   # key -> time written


@record
class Wanted:
    """What a run's sections want published (see :func:`merge`)."""

    owned: "List[str]" = field(default_factory=list)          # the paths they own
    values: "Dict[str, str]" = field(default_factory=dict)    # key -> value, in order
    tolerance: "Dict[str, int]" = field(default_factory=dict)  # wandering key -> tolerance


@record
class Plan:
    """What a run is to change: ``writes`` (key -> value, in order; ``data/updated``
    last when it goes with them) and ``removes``, all under ``owned``."""

    writes: "Dict[str, str]" = field(default_factory=dict)
    removes: "List[str]" = field(default_factory=list)
    deferred: "List[str]" = field(default_factory=list)   # small changes held back
    first: bool = False                 # data/updated does not exist yet
    owned: "List[str]" = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.writes or self.removes)

    def notifies(self, denied: "Iterable[str]" = ()) -> bool:
        """Whether ``data/updated`` goes with this plan (once the ``denied`` keys are
        left out): the first run, or a change of a key xapi keeps (``NOTIFY``)."""
        left = set(self.writes).union(self.removes).difference(denied)
        return self.first or any(key != UPDATED and key.startswith(NOTIFY) for key in left)


@record
class Outcome:
    """What applying a plan did: the changes made (refused keys left out), the keys
    refused (EACCES; E2BIG for a write), and when each wandering value now counts as
    published (key -> boot-clock time: the policy's ``published`` after this run)."""

    plan: Plan
    writes: "Dict[str, str]" = field(default_factory=dict)
    removes: "List[str]" = field(default_factory=list)
    denied: "List[str]" = field(default_factory=list)
    published: "Dict[str, float]" = field(default_factory=dict)


def clean_value(key: str, value: str) -> str:
    """The value as it may go on the wire: no control characters, at most MAX_VALUE bytes."""
    value = replace_controls(value)      # C1 too: U+009B is a terminal's CSI
    data = value.encode("utf-8", "replace")
    if len(data) > MAX_VALUE:
        LOG.warning("%s: value of %d bytes cut to %d", key, len(data), MAX_VALUE)
        value = data[:MAX_VALUE].decode("utf-8", "ignore")
    return value


def owner(key: str, owned: "Iterable[str]") -> "Optional[str]":
    """The owned path ``key`` falls under, or None."""
    for path in owned:
        if key == path or key.startswith(path + "/"):
            return path
    return None


def merge(answers: "Iterable[Tuple[Iterable[str], Any]]") -> Wanted:
    """The wanted state of a run: its sections' answers as ``(OWNS, Collected)`` pairs,
    in publishing order. A key outside its section's ``OWNS`` is left out with a warning
    (nothing is ever written outside them); values are cleaned (:func:`clean_value`)."""
    wanted = Wanted()
    for owns, answer in answers:
        owns = list(owns)
        wanted.owned.extend(owns)
        for key, value in answer.values.items():
            if owner(key, owns) is None:
                LOG.warning("%s: not under the sections' own keys, not published", key)
                continue
            wanted.values[key] = clean_value(key, value)
            if key in answer.tolerance:
                wanted.tolerance[key] = answer.tolerance[key]
    return wanted


def diff(existing: "Dict[str, Optional[str]]", nodes: "Set[str]", wanted: Wanted,
         policy: Policy) -> Plan:
    """The plan that turns what is there into what is wanted.

    ``nodes``: every node now under the owned paths (the owned paths included);
    ``existing``: the values read of the wanted keys (None: absent).
    """
    plan = Plan(owned=list(wanted.owned))
    tolerance = wanted.tolerance
    for key, value in wanted.values.items():
        old = existing.get(key)
        if old == value:
            continue
        if old is not None and key in tolerance and _within(old, value, tolerance[key],
                                                            policy, key):
            plan.deferred.append(key)
            continue
        plan.writes[key] = value
    # Remove the topmost nodes that neither are wanted nor lead to a wanted key.
    keep: Set[str] = set()
    for key in wanted.values:
        parts = key.split("/")
        for i in range(1, len(parts) + 1):
            keep.add("/".join(parts[:i]))
    for node in sorted(nodes):
        if node in keep:
            continue
        parent = node.rpartition("/")[0]
        if parent in keep or owner(node, wanted.owned) == node:
            plan.removes.append(node)
    return plan


def split(plan: Plan, budget: int) -> "List[List[Tuple[str, Optional[str]]]]":
    """The plan's changes as ``(key, value or None to remove)`` batches of at most
    ``budget``, one per transaction. Nearly always a single batch; a very large first
    publication (hundreds of volumes) is cut between units (``data/volumes/<n>``,
    ``attr/vif/<id>``), never inside one unless the unit alone exceeds the budget.
    """
    units: Dict[str, List[Tuple[str, Optional[str]]]] = {}
    changes = [(k, v) for k, v in plan.writes.items() if k != UPDATED] + \
        [(node, None) for node in plan.removes]
    for key, value in changes:
        root = owner(key, plan.owned) or key
        rest = key[len(root) + 1:].split("/", 1)[0]
        units.setdefault(root + "/" + rest if rest else root, []).append((key, value))
    batches: List[List[Tuple[str, Optional[str]]]] = [[]]
    for unit in units.values():
        if batches[-1] and len(batches[-1]) + len(unit) > budget:
            batches.append([])
        for change in unit:
            if len(batches[-1]) >= budget:
                batches.append([])
            batches[-1].append(change)
    return batches



def remembered(policy: Policy, wanted: Wanted, written: "Iterable[str]") -> "Dict[str, float]":
    """When each wandering value counts as published after a run that wrote ``written``:
    now for those written and those seen for the first time (their age starts then), as
    before for the others; the keys the sections no longer report are forgotten."""
    published = dict(policy.published)
    written = set(written)
    for key in wanted.tolerance:
        if key in written or key not in published:
            published[key] = policy.now
    for key in list(published):
        if key not in wanted.values and owner(key, wanted.owned) is not None:
            del published[key]
    return published


def _within(old: str, new: str, tolerance: int, policy: Policy, key: str) -> bool:
    try:
        moved = abs(int(new) - int(old))
    except ValueError:
        return False
    published = policy.published.get(key)
    max_age = min(policy.max_age, MAX_AGE.get(key, policy.max_age))
    young = published is not None and policy.now - published < max_age
    try:  # int / int, not tolerance * threshold: a 1000-digit MemTotal overflows a float
        return young and moved / tolerance < policy.threshold
    except (OverflowError, ZeroDivisionError):
        return False



class Publisher:
    """Publishes a run's wanted state: reads and plans, then applies the plan through
    ``sink`` (by default a :class:`TransactionSink` on ``client``)."""

    def __init__(self, client, policy: Policy, sink: "Optional[Sink]" = None):
        self.client = client
        self.policy = policy
        self.sink: Sink = TransactionSink(client) if sink is None else sink

    def publish(self, wanted: Wanted) -> Outcome:
        """Publish ``wanted``; returns what was changed and what is to be remembered."""
        outcome = self.sink.apply(self.plan(wanted))
        outcome.published = remembered(self.policy, wanted, outcome.writes)
        return outcome

    def plan(self, wanted: Wanted) -> Plan:
        """What publishing ``wanted`` changes (reads only).

        The plan comes from reads outside any transaction: an unchanged guest costs
        reads only, and the transaction holds nothing but the changes (oxenstored counts
        every request of a guest's transaction against its quota, and replays them all
        on a conflict)."""
        nodes, existing, updated = self._read(0, wanted.owned, wanted.values)
        plan = diff(existing, nodes, wanted, self.policy)
        plan.first = updated is None
        if plan.notifies():
            plan.writes[UPDATED] = time.asctime()
        return plan

    # -- reading ------------------------------------------------------------------

    def _read(self, tx: int, owned: "List[str]", wanted: "Dict[str, str]"):
        """The nodes under the owned paths that the diff needs, the values of the
        wanted ones, and ``data/updated``'s (None: absent; read with the first values).

        Only the owned roots and the nodes leading to wanted keys are listed (one
        DIRECTORY each, not one per node): a node no key leads to is removed whole (rm is
        recursive), so what is below it does not matter, and a wanted key with a value
        has no children of ours. A wanted key read back empty is listed too, in case it
        has children left from an older layout.
        """
        nodes: Set[str] = set()
        existing: Dict[str, Optional[str]] = {}
        interior: Set[str] = set()
        for key in wanted:
            parts = key.split("/")
            for i in range(1, len(parts)):
                interior.add("/".join(parts[:i]))
        singles = [path for path in owned if path in wanted]   # a key: its value tells all
        values = self._values(tx, singles + [UPDATED])
        updated = values.pop()
        for path, value in zip(singles, values):
            if value is not None:
                nodes.add(path)
                existing[path] = value
        self._list(tx, [path for path in owned if path not in wanted], nodes, interior)
        keys = [key for key in wanted if key in nodes and key not in existing]
        existing.update(zip(keys, self._values(tx, keys)))
        self._list(tx, [key for key in keys if existing[key] == "" and key not in interior],
                   nodes, interior)
        return nodes, existing, updated

    def _list(self, tx: int, level: "List[str]", nodes: "Set[str]", interior: "Set[str]") -> None:
        """Add ``level``'s nodes that exist and their children to ``nodes``, descending
        into the interior ones, a level at a time (each level's listings pipelined)."""
        while level:
            below = []
            for path, children in zip(level, self.client.directory_many(level, tx)):
                if children is None:
                    continue
                nodes.add(path)
                for child in children:
                    node = path + "/" + child
                    if node in interior:
                        below.append(node)
                    else:
                        nodes.add(node)
            level = below

    def _values(self, tx: int, paths: "List[str]") -> "List[Optional[str]]":
        return [None if raw is None else raw.decode("utf-8", "replace")
                for raw in self.client.read_many(paths, tx)]


class Sink:
    """Where a plan goes (the interface): :meth:`apply` makes, or shows, its changes."""

    def apply(self, plan: Plan) -> Outcome:
        raise NotImplementedError


class PrintSink(Sink):
    """``--dry-run``: the plan printed through ``out`` (``+key = "value"`` escaped as
    ``xenstore-ls`` does, ``-node``); nothing is written."""

    def __init__(self, out: "Callable[[str], None]"):
        self.out = out

    def apply(self, plan: Plan) -> Outcome:
        self.out("".join(["+" + show(key, value) + "\n" for key, value in plan.writes.items()]
                         + ["-%s\n" % node for node in plan.removes]))
        return Outcome(plan, dict(plan.writes), list(plan.removes))


class TransactionSink(Sink):
    """Makes a plan's changes in XenStore: one transaction, retried on EAGAIN up to
    ``attempts`` times, cut into several only past ``max_ops`` requests; each change
    made is logged at debug level (``+key=value``, ``-key``)."""

    def __init__(self, client, attempts: int = 10, max_ops: int = MAX_TRANSACTION_OPS):
        self.client = client
        self.attempts = attempts
        self.max_ops = max_ops

    def apply(self, plan: Plan) -> Outcome:
        """Raises XenStoreError (nothing published) or :class:`PartlyPublished`."""
        denied: List[str] = []
        if plan.changed:
            batches = split(plan, self.max_ops - 1)   # room for data/updated
            if len(batches) > 1:
                LOG.warning("%d changes: more than one transaction may hold, published "
                            "in %d", sum(len(b) for b in batches), len(batches))
            for n, batch in enumerate(batches):
                last = n == len(batches) - 1
                try:
                    self.client.transaction(
                        lambda tx, batch=batch, last=last: self._apply(tx, batch, plan,
                                                                       denied, last),
                        attempts=self.attempts, backoff=0.005)
                except OSError as err:
                    if n == 0:
                        raise
                    raise PartlyPublished.of(err) from err    # earlier batches committed
        writes = {k: v for k, v in plan.writes.items() if k not in denied}
        if UPDATED in writes and not plan.notifies(denied):
            del writes[UPDATED]     # the keys xapi keeps were all refused
        outcome = Outcome(plan, writes, [k for k in plan.removes if k not in denied],
                          denied)
        for key, value in outcome.writes.items():
            LOG.debug("+%s=%s", key, value)
        for node in outcome.removes:
            LOG.debug("-%s", node)
        return outcome

    def _apply(self, tx: int, batch: "List[Tuple[str, Optional[str]]]", plan: Plan,
               denied: "List[str]", last: bool) -> None:
        """Make the changes of ``batch`` (``(key, value)``; value None: remove) in ``tx``,
        pipelined, but for the ``denied`` keys (refused before: a key refused now joins
        them); in the last batch, ``data/updated`` too if the plan still calls for it
        once the refused keys are left out. Safe to re-run on EAGAIN."""
        writes = [(k, v) for k, v in batch if v is not None and k not in denied]
        removes = [k for k, v in batch if v is None and k not in denied]
        failure = None
        for key, err in self.client.write_many(writes, tx).items():
            failure = failure or _refused(key, err, denied, removing=False)
        for key, err in self.client.rm_many(removes, tx).items():
            if err.errno != ENOENT:
                failure = failure or _refused(key, err, denied, removing=True)
        if failure is not None:
            raise failure
        if last and UPDATED in plan.writes and plan.notifies(denied):
            try:
                self.client.write(UPDATED, plan.writes[UPDATED], tx)
            except XenStoreError as err:
                failure = _refused(UPDATED, err, denied, removing=False)
                if failure is not None:
                    raise failure from None


def _refused(key: str, err: OSError, denied: "List[str]", removing: bool) -> "Optional[OSError]":
    """Note a key the daemon refused (EACCES; E2BIG for a write) in ``denied``, with a
    warning, and return None; any other error is returned, for the caller to raise."""
    if err.errno != EACCES and (removing or err.errno != E2BIG):
        return err
    if removing:
        LOG.warning("%s: may not remove it (EACCES), left as is", key)
    else:
        LOG.warning("%s: not written (%s), the rest is published", key,
                    "EACCES" if err.errno == EACCES else "E2BIG")
    if key not in denied:
        denied.append(key)
    return None
