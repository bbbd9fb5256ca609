"""Network namespaces for tests: real interfaces and addresses, a fake sysfs beside them.

The kernel here offers veth, bridge and macvlan links (no dummy, bond or VLAN). A test
builds its interfaces in a namespace of its own, then mirrors the namespace's
``/sys/class/net`` (``address``, ``master``, ``upper_*``, ``lower_*`` links) into a fake
guest root, adding ``device/nodename`` = ``device/vif/<id>`` to the interfaces that play
Xen VIFs, and ``proc/net/if_inet6`` a copy of the namespace's, taken by :meth:`Netns.mirror`. Code that reads addresses
(rtnetlink, ioctls, /proc/self/net) must run inside the namespace:
:meth:`Netns.run` wraps ``ip netns exec``, and ``python3 -m tests.support.netns collect ROOT``
runs the network section there and prints its keys as JSON. Fixture ``ns``: a namespace
of the test's own (a plugin of tests/conftest.py).
"""

import itertools
import json
import os
import shutil
import subprocess
import sys

import pytest
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional

from tests.support.paths import CHECKOUT
_COUNTER = itertools.count()

#: Runs inside the namespace: its /sys/class/net as JSON (see :func:`net_snapshot`).
_SNAPSHOT = r"""
import json
from tests.support.netns import net_snapshot
print(json.dumps(net_snapshot(), ensure_ascii=True))
"""


def net_snapshot(ifindex: bool = True) -> Dict[str, dict]:
    """This process's /sys/class/net (run it inside the namespace, where /sys is
    remounted for it): name -> {address, links (master, upper_*, lower_*), ifindex}.
    Without ``ifindex`` (the bench's) a mirrored sysfs has no ``ifindex`` files and the
    network section asks the kernel (``if_nametoindex``), as it has always done there."""
    base = "/sys/class/net"
    out = {}
    for name in sorted(os.listdir(base)):
        d = os.path.join(base, name)
        links = {e: os.path.basename(os.readlink(os.path.join(d, e)))
                 for e in sorted(os.listdir(d))
                 if e == "master" or e.startswith(("upper_", "lower_"))}
        with open(os.path.join(d, "address")) as f:
            out[name] = {"address": f.read().strip(), "links": links}
        if ifindex:
            with open(os.path.join(d, "ifindex")) as f:
                out[name]["ifindex"] = int(f.read())
    return out


class Unavailable(Exception):
    """Network namespaces cannot be made here (reason in the message)."""


class Netns:
    """A uniquely named network namespace, deleted on exit."""

    def __init__(self, prefix: str = "xeo"):
        self.name = "%s-%d-%d" % (prefix, os.getpid(), next(_COUNTER))

    def __enter__(self) -> "Netns":
        if os.geteuid() != 0:
            raise Unavailable("network namespaces need root")
        if not shutil.which("ip"):
            raise Unavailable("iproute2's ip is missing")
        res = subprocess.run(["ip", "netns", "add", self.name], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True)
        if res.returncode != 0:
            raise Unavailable("ip netns add: " + res.stdout.strip())
        self.ip("link", "set", "lo", "up")
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["ip", "netns", "del", self.name], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def ip(self, *args: str) -> None:
        """``ip -n NS ARGS`` (raises with ip's message on failure)."""
        res = subprocess.run(["ip", "-n", self.name] + list(args), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True)
        if res.returncode != 0:
            raise RuntimeError("ip %s: %s" % (" ".join(args), res.stdout.strip()))

    def run(self, argv: List[str], env: Optional[Mapping[str, str]] = None,
            check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command inside the namespace; stdout/stderr as text."""
        res = subprocess.run(["ip", "netns", "exec", self.name] + list(argv),
                             env=dict(env) if env is not None else None, cwd=str(CHECKOUT),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                             timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (argv, res.returncode, res.stderr))
        return res

    # -- building blocks ---------------------------------------------------------------

    def veth(self, name: str, peer: str) -> None:
        """A veth pair, both ends here and up."""
        self.ip("link", "add", name, "type", "veth", "peer", "name", peer)
        self.up(name)
        self.up(peer)

    def up(self, name: str) -> None:
        """Bring a link up without a kernel-made link-local address (whose DAD timing
        would make the tests flaky): tests add the link-local addresses they want."""
        self.ip("link", "set", name, "addrgenmode", "none")
        self.ip("link", "set", name, "up")

    def bridge(self, name: str, *ports: str) -> None:
        self.ip("link", "add", name, "type", "bridge")
        for port in ports:
            self.ip("link", "set", port, "master", name)
        self.up(name)

    def macvlan(self, name: str, lower: str) -> None:
        self.ip("link", "add", name, "link", lower, "type", "macvlan", "mode", "bridge")
        self.up(name)

    def addr(self, dev: str, cidr: str, *extra: str) -> None:
        """Add an address; IPv6 ones with ``nodad`` so they are usable at once."""
        args = ["addr", "add", cidr, "dev", dev] + list(extra)
        if ":" in cidr and "nodad" not in extra:
            args.append("nodad")
        self.ip(*args)

    def snapshot(self) -> Dict[str, dict]:
        """What the namespace's /sys/class/net shows: name -> {address, links}."""
        res = self.run([sys.executable, "-c", _SNAPSHOT])
        return json.loads(res.stdout)

    def mirror(self, root: Path, vifs: Mapping[str, str] = (),
               devices: Iterable[str] = ()) -> Dict[str, dict]:
        """Rebuild ``root``'s /sys/class/net from this namespace (see :func:`mirror_sysfs`)."""
        snap = self.snapshot()
        mirror_sysfs(snap, root, vifs, devices)
        net = Path(root) / "proc/self/net"
        net.mkdir(parents=True, exist_ok=True)
        inet6 = subprocess.run(["ip", "netns", "exec", self.name, "cat",
                                "/proc/self/net/if_inet6"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60)
        if inet6.returncode == 0:                   # names need not be UTF-8: bytes
            (net / "if_inet6").write_bytes(inet6.stdout)
        return snap

    def collect(self, root: Path, env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """The network section's keys, collected inside the namespace over ``root``.
        ``env`` (e.g. ``xenstored.env()``) gives it XenStore; without it, none."""
        env = dict(env if env is not None else _without_xenstore(os.environ))
        env["PYTHONPATH"] = str(CHECKOUT)
        res = self.run([sys.executable, "-m", "tests.support.netns", "collect", str(root)], env=env)
        return json.loads(res.stdout)

    def time_collect(self, root: Path, env: Optional[Mapping[str, str]] = None) -> dict:
        """``{"seconds": ..., "keys": ...}`` of one collect() inside the namespace."""
        env = dict(env if env is not None else _without_xenstore(os.environ))
        env["PYTHONPATH"] = str(CHECKOUT)
        res = self.run([sys.executable, "-m", "tests.support.netns", "time", str(root)], env=env)
        return json.loads(res.stdout)

    def batch(self, commands: Iterable[str]) -> None:
        """Many ``ip`` commands in one process (``ip -batch``)."""
        res = subprocess.run(["ip", "-n", self.name, "-batch", "-"], input="\n".join(commands),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        if res.returncode != 0:
            raise RuntimeError("ip -batch: " + res.stdout.strip())


def _without_xenstore(env: Mapping[str, str]) -> Dict[str, str]:
    return {k: v for k, v in env.items() if k != "XENSTORED_PATH"}


def mirror_sysfs(snapshot: Mapping[str, dict], root: Path, vifs: Mapping[str, str] = (),
                 devices: Iterable[str] = ()) -> None:
    """Write ``root``/sys/class/net from a :meth:`Netns.snapshot`, and ``root``/proc/net
    as a link to ``root``/proc/self/net (which :meth:`Netns.mirror` fills with a copy of
    the namespace's ``if_inet6``: the collector resolves links inside the root, so one
    out to the reader's own ``/proc`` would not be followed).

    ``vifs`` maps interface -> VIF id (gets ``device/nodename``); ``devices`` names
    interfaces that get a plain ``device`` directory (a PCI device: an SR-IOV VF).
    """
    vifs = dict(vifs)
    devices = set(devices)
    net = Path(root) / "sys/class/net"
    if net.exists():
        shutil.rmtree(net)
    net.mkdir(parents=True)
    proc = Path(root) / "proc"
    proc.mkdir(exist_ok=True)
    if not os.path.lexists(str(proc / "net")):
        os.symlink("self/net", str(proc / "net"))     # inside the root: see Netns.mirror
    for name, facts in snapshot.items():
        d = net / name
        d.mkdir()
        (d / "address").write_text(facts["address"] + "\n")
        if "ifindex" in facts:        # the bench's snapshots have none
            (d / "ifindex").write_text("%d\n" % facts["ifindex"])
        for link, target in facts["links"].items():
            os.symlink("../" + target, str(d / link))
        if name in vifs:
            (d / "device").mkdir()
            (d / "device/nodename").write_text("device/vif/%s\n" % vifs[name])
        elif name in devices:
            (d / "device").mkdir()
            (d / "device/vendor").write_text("0x8086\n")


def xapi_networks(tree: Mapping[str, str]) -> Dict[str, str]:
    """What xapi shows as the VM's ``networks`` for one ``attr/vif`` (or
    ``xenserver/attr/net-sriov-vf``) subtree as ``XenStored.tree`` returns it (keys
    relative to it): the consumer oracle (tests/support/xapi_oracle.py) run on a home
    holding just that subtree (both subtrees give the same map keys)."""
    from tests.support.xapi_oracle import toolstack_view
    return toolstack_view({"attr/vif/" + k: v for k, v in tree.items()})["networks"]


# -- the collector inside a namespace ------------------------------------------------------

def _collect_main(root: str, timed: bool = False) -> int:
    """Collect the network section over ``root``; XenStore (the package's own client
    and reader) when ``XENSTORED_PATH`` is set. Prints the keys as JSON (with
    ``timed``: ``{"seconds": collect()'s wall time, "keys": how many}``)."""
    import time
    from xe_oneshot.guest import Root
    from xe_oneshot.sections import Context, network

    def run(ctx) -> None:
        started = time.perf_counter()
        values = network.collect(ctx).values
        seconds = time.perf_counter() - started
        print(json.dumps({"seconds": seconds, "keys": len(values)} if timed else values,
                         sort_keys=True))

    ctx = Context(root=Root(root))
    if not os.environ.get("XENSTORED_PATH"):
        run(ctx)
        return 0
    from xe_oneshot.xenstore import Client
    from xe_oneshot.xsreader import ClientReader
    with Client.open(timeout=10) as client:
        ctx.xenstore = ClientReader(client)
        run(ctx)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("collect", "time"):
        sys.exit(_collect_main(sys.argv[2], timed=sys.argv[1] == "time"))
    sys.exit("usage: python3 -m tests.support.netns collect|time ROOT")


@pytest.fixture
def ns():
    """A network namespace of the test's own (deleted afterwards)."""
    try:
        with Netns() as netns:
            yield netns
    except Unavailable as err:
        pytest.skip(str(err))
