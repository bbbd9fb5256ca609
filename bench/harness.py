"""The bench's harness: processes spawned and timed (posix_spawn + wait4), interpreters
with the package installed as ``make install`` lays it out, the guest (fake files from
tests/support, the bench namespace's real links), the real daemon with a counting proxy
in front of it, and runs paired A B A B with the bare interpreter.

Imported by bench/scenarios.py and bench/bench.py (which runs it inside private mount
and network namespaces).
"""

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tests.support.blockdev import FakeBlock, backend_seed
from tests.support.fakeguest import FakeGuest
from tests.support.fault_proxy import FaultProxy
from tests.support.netns import mirror_sysfs, net_snapshot
from tests.support.paths import CHECKOUT
from tests.support.xapi_oracle import wakes_xenopsd
from tests.support.xenstored import XenStored

PAYLOAD_LIMIT = 4096
#: oxenstored: operations a non-dom0 connection may make in one transaction.
QUOTA_MAXREQUESTS = 1024
CLASSIC_WRITES_PER_HOUR = 90
MIB = 1024 * 1024
MEM_TOTAL_KB = 2048000
MEM_AVAILABLE_KB = 1500000
TARGETS = {"memory": 1.5, "ephemeral": 2.0, "all": 4.0}

LAUNCHER = """#!{python}{flags}
import sys
sys.path[:0] = {paths!r}
sys.path.extend({site!r})
from {module} import {func}
sys.exit({func}())
"""

#: What ``pip`` / setuptools generate for a console_scripts entry point.
PIP_LAUNCHER = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
sys.path[:0] = {paths!r}
from {module} import {func}
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit({func}())
"""


class BenchError(Exception):
    """The bench cannot run here (message is one line)."""


# -- processes -----------------------------------------------------------------------

class Run:
    """One finished process: wall and CPU seconds, peak RSS (kB), exit code, stderr."""

    def __init__(self, wall: float, cpu: float, maxrss: int, rc: int, stderr: str):
        self.wall, self.cpu, self.maxrss, self.rc, self.stderr = wall, cpu, maxrss, rc, stderr


class Spawner:
    """Starts processes with posix_spawn (no fork of this big process) and reaps them
    with wait4 for their rusage."""

    def __init__(self, workdir: Path):
        self.errfile = str(workdir / "child.stderr")

    def run(self, argv: Sequence[str], env: Dict[str, str], check: bool = True) -> Run:
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 2, self.errfile,
                    os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
        started = time.perf_counter()
        pid = os.posix_spawn(argv[0], list(argv), env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - started
        rc = os.waitstatus_to_exitcode(status)
        with open(self.errfile, errors="replace") as f:
            stderr = f.read()
        if check and (rc != 0 or "Traceback" in stderr):
            raise BenchError("%s exited %d: %s" % (" ".join(argv[:3]), rc,
                                                   stderr.strip()[-400:]))
        return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, rc, stderr)

    def peak_rss(self, argv: Sequence[str], env: Dict[str, str]) -> int:
        """Peak RSS (kB) of one run, through GNU time: its fork starts from a small
        process. (wait4's ru_maxrss of a posix_spawn child counts this big process's
        pages, which the vfork'd child shared until its exec.)"""
        if not os.path.exists("/usr/bin/time"):
            return 0
        out = self.errfile + ".rss"
        self.run(["/usr/bin/time", "-f", "%M", "-o", out] + list(argv), env)
        with open(out) as f:
            return int(f.read().split()[-1])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def sh(*argv: str, **kw) -> str:
    res = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, **kw)
    if res.returncode != 0:
        raise BenchError("%s: %s" % (" ".join(argv[:4]), res.stdout.strip()[-300:]))
    return res.stdout


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> Tuple[float, float, float]:
    """Least squares: (slope, intercept, r²)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx if sxx else 0.0
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    return slope, intercept, (1 - ss_res / ss_tot) if ss_tot else 1.0


# -- interpreters and launchers ------------------------------------------------------

class Interpreter:
    """A python3, the package installed for it as ``make install`` lays it out
    (``<dir>/bin/xe-oneshot`` from packaging/launcher.in over ``<dir>/lib/xe-oneshot``,
    byte-compiled), and launcher variants over the same package for comparison."""

    def __init__(self, label: str, path: str, workdir: Path, package: Path,
                 template: Optional[Path] = None):
        self.label = label
        self.path = path
        self.version = sh(path, "-c", "import sys; print(sys.version.split()[0])").strip()
        probe = sh(path, "-c", "import site, psutil, sh; print(repr(site.getsitepackages()));"
                   "print(psutil.__version__, sh.__version__)").splitlines()
        self.site = [p for p in eval(probe[0]) if os.path.isdir(p)]  # noqa: S307 (our output)
        self.deps = probe[1]
        self.dir = workdir / ("inst-" + label)
        lib = self.lib = self.dir / "lib" / "xe-oneshot"
        shutil.copytree(package, lib / "xe_oneshot", ignore=shutil.ignore_patterns("__pycache__"))
        sh(path, "-m", "compileall", "-q", str(lib))
        (self.dir / "bin").mkdir()
        self.launchers: Dict[str, List[str]] = {}
        template = template or CHECKOUT / "packaging" / "launcher.in"
        # setup.cfg's entry point, as `make install` and pip write it (entry.py since 1.0)
        module, func = ("xe_oneshot.entry", "xe_oneshot") \
            if (package / "entry.py").exists() else ("xe_oneshot.cli", "main")
        if template.exists():
            installed = self.dir / "bin" / "xe-oneshot"
            installed.write_text(template.read_text().replace("@PYTHON@", path)
                                 .replace("@NAME@", "xe-oneshot").replace("@MODULE@", module)
                                 .replace("@FUNC@", func))
            installed.chmod(0o755)
            self.launchers["installed (packaging/launcher.in: -I)"] = [str(installed)]
        for name, flags, text, site in (
                ("plain", "", LAUNCHER, []),
                ("-I", " -I", LAUNCHER, []),
                ("-I -S (site dirs appended to sys.path)", " -IS", LAUNCHER, self.site),
                ("pip console script", "", PIP_LAUNCHER, [])):
            script = self.dir / "bin" / ("xe-oneshot-" + (
                "pip" if name.startswith("pip") else flags.strip() or "plain"))
            script.write_text(text.format(python=path, flags=flags, paths=[str(lib)],
                                          site=site, module=module, func=func))
            script.chmod(0o755)
            self.launchers[name] = [str(script)]
        self.launchers["python3 -m xe_oneshot"] = [path, "-m", "xe_oneshot"]
        self.launchers["(floor: bare python3 -I -S -c pass)"] = [path, "-I", "-S", "-c", "pass"]

    def entry(self) -> List[str]:
        """The entry point measured everywhere: the installed launcher (-I)."""
        return next(iter(self.launchers.values()))

    def bare(self) -> List[str]:
        return [self.path, "-c", "pass"]


def find_interpreters(args) -> List[Tuple[str, str]]:
    if args.python:
        return [("python%d" % i if len(args.python) > 1 else "python", p)
                for i, p in enumerate(args.python)]
    found = []
    debian = "/usr/bin/python3"
    if not args.quick and os.path.exists(debian) and \
            os.path.realpath(debian) != os.path.realpath(sys.executable):
        found.append(("debian", debian))
    found.append(("current", sys.executable))
    return found


# -- the guest -----------------------------------------------------------------------

class World:
    """Temp dirs, the package copy, the tmpfs volumes, the namespace's links."""

    def __init__(self, workdir: Path, package: Path):
        self.workdir = workdir
        self.package = package
        self.spawner = Spawner(workdir)
        self.bindir = workdir / "bin"
        self.bindir.mkdir()
        self.pvs_calls = self.bindir / "pvs.calls"
        pvs = self.bindir / "pvs"
        pvs.write_text("#!/bin/sh\necho \"$*\" >> %s\n"
                       "printf '  /dev/xvdc  1069547520B lvm2\\n'\n" % self.pvs_calls)
        pvs.chmod(0o755)
        self._counter = 0

    def fresh(self, name: str) -> Path:
        self._counter += 1
        path = self.workdir / ("%s-%d" % (name, self._counter))
        path.mkdir()
        return path

    def env(self, socket: str, extra_path: bool = False) -> Dict[str, str]:
        """A udev-like environment: PATH and XenStore, nothing else."""
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env = {"PATH": (str(self.bindir) + ":" + path) if extra_path else path,
               "XENSTORED_PATH": socket}
        return env


def ip_batch(commands: Sequence[str]) -> None:
    if commands:
        res = subprocess.run(["ip", "-batch", "-"], input="\n".join(commands) + "\n",
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        if res.returncode != 0:
            raise BenchError("ip -batch: " + res.stdout.strip()[-300:])


def make_vifs(count: int, per_family: int) -> Dict[str, str]:
    """veth pairs ``vifN`` / ``peerN`` with ``per_family`` IPv4 and IPv6 addresses on
    ``vifN``; returns interface -> VIF id. Removes earlier ones first."""
    existing = [n for n in os.listdir("/sys/class/net") if n.startswith("vif")]
    ip_batch(["link del %s" % n for n in existing])
    cmds = []
    for i in range(count):
        cmds += ["link add vif%d type veth peer name peer%d" % (i, i),
                 "link set vif%d addrgenmode none" % i, "link set peer%d addrgenmode none" % i,
                 "link set vif%d up" % i, "link set peer%d up" % i]
        for k in range(per_family):
            cmds.append("addr add 10.%d.%d.%d/16 dev vif%d" % (i // 200, i % 200, k + 1, i))
            cmds.append("addr add 2001:db8:%x::%x/64 dev vif%d nodad" % (i, k + 1, i))
    ip_batch(cmds)
    return {"vif%d" % i: str(i) for i in range(count)}


def meminfo(guest: Path, available: int) -> None:
    FakeGuest(guest).meminfo(total=MEM_TOTAL_KB, available=available)


def small_guest(world: World, vol_dirs: Sequence[Path], lvm: bool = False) -> Path:
    """1 VIF (vif0: 192.0.2.10/24, 2001:db8::10/64), 2 Xen disks: xvda1 on /srv and
    xvdb (whole disk) on /data, each a 64 MiB tmpfs of ours; with ``lvm`` also xvdc, a PV."""
    root = world.fresh("guest")
    FakeGuest(root).minimal()
    meminfo(root, MEM_AVAILABLE_KB)
    g = FakeBlock(root)
    sectors = 64 * MIB // 512
    g.xen_disk("xvda", 0, sectors + 2048)
    g.partition("xvda", 1, (202, 1), sectors,
                udev={"ID_FS_TYPE": "ext4", "ID_PART_ENTRY_UUID": "5f2c1a3e-01"})
    g.xen_disk("xvdb", 16, sectors, udev={"ID_FS_TYPE": "ext4"})
    if lvm:
        g.xen_disk("xvdc", 32, 2 * sectors, udev={"ID_FS_TYPE": "LVM2_member"})
    for (devno, source), point, target in zip((((202, 1), "/dev/xvda1"),
                                               ((202, 16), "/dev/xvdb")),
                                              ("/srv", "/data"), vol_dirs):
        g.mount(devno, point, "ext4", source, make_dir=False)
        link = root / point.lstrip("/")
        link.symlink_to(target)          # statvfs follows it to our tmpfs
    mirror_sysfs(net_snapshot(ifindex=False), root, {"vif0": "0"})
    return root


# -- the daemon and the counting proxy --------------------------------------------------

class CountingProxy(FaultProxy):
    """The fault proxy, forwarding only, recording the largest payload each way."""

    def __init__(self, upstream, path):
        super().__init__(upstream, path)
        self.max_payload = 0

    def _read_message(self, sock):  # type: ignore[override]
        msg = FaultProxy._read_message(sock)
        if msg is not None and msg[0][3] > self.max_payload:
            self.max_payload = msg[0][3]
        return msg

    def snapshot(self) -> Dict[str, int]:
        counts = dict(self.counts)
        counts["requests"] = len(self.requests)
        counts["max_payload"] = self.max_payload
        return counts

    def clear(self) -> None:
        self.reset()
        self.max_payload = 0


class Store:
    """A fresh daemon (seeded with the disks' backends) and a proxy in front of it."""

    def __init__(self, world: World, disks: Sequence[str] = ("xvda", "xvdb", "xvdc")):
        d = world.fresh("xsd")
        self.daemon = XenStored(d, seed=backend_seed(disks)).start()
        self.proxy = CountingProxy(self.daemon.socket, d / "proxy.sock").start()

    def close(self) -> None:
        self.proxy.stop()
        self.daemon.stop()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def counted(self, world: World, argv: List[str], extra_path: bool = False) -> Dict:
        """Run once through the proxy: its request counts, and the access log's writes."""
        self.proxy.clear()
        mark = self.daemon.log_mark()
        run = world.spawner.run(argv, world.env(str(self.proxy.path), extra_path))
        counts = self.proxy.snapshot()
        per_tx: Dict[int, int] = {}
        for _op, _path, tx in list(self.proxy.requests):
            if tx:
                per_tx[tx] = per_tx.get(tx, 0) + 1
        counts["max_ops_in_tx"] = max(per_tx.values()) if per_tx else 0
        changes = self.daemon.writes_since(mark)
        counts["log_writes"] = sum(1 for e in changes if e.op == "write")
        counts["log_removes"] = sum(1 for e in changes if e.op == "rm")
        counts["written"] = sorted(e.path for e in changes if e.op == "write")
        counts["wakes_xenopsd"] = sum(1 for e in changes
                                      if wakes_xenopsd(e.op, e.path, legacy=True))
        counts["wall_ms"] = round(run.wall * 1000, 1)
        return counts


def collector(interp: Interpreter, root: Path, state: Path, *args: str) -> List[str]:
    return interp.entry() + ["--root", str(root), "--state-dir", str(state)] + list(args)


def paired(world: World, a: List[str], b: List[str], env: Dict[str, str], pairs: int) -> Dict:
    """A B A B ...: medians of wall and CPU of each, ratio of medians (one warm-up)."""
    world.spawner.run(a, env)
    world.spawner.run(b, env)
    wa, wb, ca, cb = [], [], [], []
    for _ in range(pairs):
        ra = world.spawner.run(a, env)
        rb = world.spawner.run(b, env)
        wa.append(ra.wall)
        wb.append(rb.wall)
        ca.append(ra.cpu)
        cb.append(rb.cpu)
    rss = [world.spawner.peak_rss(b, env)]
    return {"bare_wall_ms": median(wa) * 1000, "wall_ms": median(wb) * 1000,
            "bare_cpu_ms": median(ca) * 1000, "cpu_ms": median(cb) * 1000,
            "ratio": median(wb) / median(wa), "cpu_ratio": median(cb) / median(ca),
            "maxrss_kb": median(rss), "pairs": pairs}


def machine() -> Dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "machine": platform.machine(), "load": "%.2f %.2f %.2f" % os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def say(msg: str) -> None:
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


# -- before and after: two installs interleaved ------------------------------------------

def interleaved(world: World, runs: Dict[str, Tuple[List[str], Dict[str, str]]],
                rounds: int) -> Dict[str, Dict[str, List[float]]]:
    """``rounds`` rounds of every command in turn (label -> (argv, env)), one warm-up
    each first; the first command leads every round and the others swap order from one
    round to the next (bare A B, bare B A, ...), so neither is always the one after
    the bare run. Returns label -> {"wall": [...], "cpu": [...]} in round order."""
    labels = list(runs)
    for label in labels:
        world.spawner.run(*runs[label])
    out: Dict[str, Dict[str, List[float]]] = {k: {"wall": [], "cpu": []} for k in labels}
    for i in range(rounds):
        order = labels if i % 2 == 0 else labels[:1] + labels[:0:-1]
        for label in order:
            run = world.spawner.run(*runs[label])
            out[label]["wall"].append(run.wall)
            out[label]["cpu"].append(run.cpu)
    return out


def ratio_with_noise(before: Sequence[float], after: Sequence[float]) -> Dict[str, float]:
    """``after / before`` as the ratio of the medians, and how far that ratio moves by
    itself: ``halves`` = its value over the first half of the rounds minus its value over
    the second half; ``se`` = the robust standard error of the per-round ratios (1.4826
    MAD / sqrt(n)). ``noise`` = the larger of |halves| and 2 se."""
    n = len(before)
    ratio = median(after) / median(before)
    half = n // 2
    halves = 0.0
    if half:
        halves = (median(after[:half]) / median(before[:half])
                  - median(after[half:]) / median(before[half:]))
    per_round = [b / a for a, b in zip(before, after)]
    centre = median(per_round)
    mad = median([abs(r - centre) for r in per_round])
    se = 1.4826 * mad / (n ** 0.5) if n else float("nan")
    return {"ratio": ratio, "halves": halves, "se": se, "noise": max(abs(halves), 2 * se)}


def before_after_row(series: Dict[str, Dict[str, List[float]]]) -> Dict[str, object]:
    """One scenario's figures from :func:`interleaved` over ``bare``, ``before`` and
    ``after``: medians (ms), the startup ratios (wall / bare wall) of each, and after /
    before of wall and CPU with their noise; ``worse`` when the wall ratio exceeds 1 by
    more than its noise."""
    wall = ratio_with_noise(series["before"]["wall"], series["after"]["wall"])
    cpu = ratio_with_noise(series["before"]["cpu"], series["after"]["cpu"])
    bare = median(series["bare"]["wall"])
    row: Dict[str, object] = {"rounds": len(series["bare"]["wall"]),
                              "bare_wall_ms": bare * 1000}
    for label in ("before", "after"):
        row[label + "_wall_ms"] = median(series[label]["wall"]) * 1000
        row[label + "_cpu_ms"] = median(series[label]["cpu"]) * 1000
        row[label + "_startup_ratio"] = median(series[label]["wall"]) / bare
    row["wall"], row["cpu"] = wall, cpu
    row["worse"] = wall["ratio"] - 1 > wall["noise"]
    return row
