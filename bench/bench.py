#!/usr/bin/env python3
"""Benchmarks for xe-oneshot against the real oxenstored: cold start, XenStore traffic,
scale, imports. Writes markdown tables into BENCHMARKS.md with the machine they ran on.

    make bench                              # or: python3 bench/bench.py
    python3 bench/bench.py --quick --output - --json out.json    # the CI smoke run

Needs root: the run re-executes itself in a private mount namespace and a fresh network
namespace (``unshare -m -n``), where it makes veth links with addresses (the VIFs), mounts
two small tmpfs (the volumes whose free space it controls) and starts the real daemon
(tests/support/xenstored.py). All of it vanishes with the process.

How things are measured:

* **Cold start**: whole-process wall time (``perf_counter`` around ``posix_spawn`` +
  ``wait4``) and CPU time (user + system from ``wait4``'s rusage) of the installed entry
  point, paired run by run with the bare ``python3 -c pass`` of the same interpreter
  (A B A B ...; medians; the ratio of medians). The entry point is a launcher script
  (``#!python3 -I``) over a copy of the package byte-compiled like an installed one
  (this environment sets PYTHONDONTWRITEBYTECODE; a guest's package manager compiles).
  Runs are unchanged reruns (the timer's usual case). Debian's C ``xenstore-write`` of
  the same two memory keys is paired against the same bare interpreter.
* **Traffic**: requests per run counted by a proxy between collector and daemon
  (tests/support/fault_proxy.py, forwarding only), writes and removes cross-checked in the
  daemon's access log.
* **Idle hour**: 60 timer ticks (``--section ephemeral,network``: what the 60 s timer
  runs) on a guest whose MemAvailable wanders by a few MB, with time scaled down 60x:
  ticks every 1 s with ``--max-age`` = meminfo_free's cap (``publisher.MAX_AGE``, 110 s)
  / 60 are the 60 s timer with the default policy for free memory (the policy compares
  ages on the boot clock, so scaling both keeps every decision the same; the volumes'
  free space does not move here, so their 300 s max age plays no part). Each change in
  the access log is also checked against xenopsd's watches (tests/support/
  xapi_oracle.py, with ``data/updated`` as on every host in the field).
* **Scale**: synthetic guests (partitions mounted on the host's /tmp; VIFs are veth
  links in the namespace with 8 IPv4 + 8 IPv6 addresses each); the largest request or
  reply payload is recorded by the proxy (limit 4096 bytes).
* **Imports**: ``-X importtime`` per section, modules beyond the bare interpreter's.
"""

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT))

from tests.support.blockdev import FakeBlock, backend_seed  # noqa: E402
from tests.support.fakeguest import FakeGuest  # noqa: E402
from tests.support.fault_proxy import FaultProxy  # noqa: E402
from tests.support.netns import mirror_sysfs  # noqa: E402
from tests.support.xapi_oracle import wakes_xenopsd  # noqa: E402
from tests.support.xenstored import Unavailable, XenStored, xen_root  # noqa: E402
from xe_oneshot.publisher import MAX_AGE  # noqa: E402

INNER = "XE_ONESHOT_BENCH_INNER"
HOME = "/local/domain/0"
PAYLOAD_LIMIT = 4096
#: oxenstored: operations a non-dom0 connection may make in one transaction.
QUOTA_MAXREQUESTS = 1024
CLASSIC_WRITES_PER_HOUR = 90
#: meminfo_free's cap on the max age (the policy the idle hour models).
MEMINFO_MAX_AGE = MAX_AGE["data/meminfo_free"]
MIB = 1024 * 1024
MEM_TOTAL_KB = 2048000
MEM_AVAILABLE_KB = 1500000
TARGETS = {"memory": 1.5, "ephemeral": 2.0, "all": 4.0}

LAUNCHER = """#!{python}{flags}
import sys
sys.path[:0] = {paths!r}
sys.path.extend({site!r})
from xe_oneshot.cli import main
sys.exit(main())
"""

#: What ``pip`` / setuptools generate for a console_scripts entry point.
PIP_LAUNCHER = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
sys.path[:0] = {paths!r}
from xe_oneshot.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
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

    def __init__(self, label: str, path: str, workdir: Path, package: Path):
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
        template = CHECKOUT / "packaging" / "launcher.in"
        if template.exists():
            installed = self.dir / "bin" / "xe-oneshot"
            installed.write_text(template.read_text().replace("@PYTHON@", path)
                                 .replace("@NAME@", "xe-oneshot").replace("@MODULE@", "xe_oneshot.cli")
                                 .replace("@FUNC@", "main"))
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
                                          site=site))
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


def net_snapshot() -> Dict[str, dict]:
    """/sys/class/net of this namespace (sysfs was remounted for it)."""
    out = {}
    base = "/sys/class/net"
    for name in sorted(os.listdir(base)):
        d = os.path.join(base, name)
        links = {e: os.path.basename(os.readlink(os.path.join(d, e)))
                 for e in sorted(os.listdir(d))
                 if e == "master" or e.startswith(("upper_", "lower_"))}
        with open(os.path.join(d, "address")) as f:
            out[name] = {"address": f.read().strip(), "links": links}
    return out


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
    mirror_sysfs(net_snapshot(), root, {"vif0": "0"})
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


# -- 1. cold start ----------------------------------------------------------------------

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


def cold_start(world: World, interps: List[Interpreter], vols: Sequence[Path],
               pairs: int, quick: bool) -> Dict:
    out: Dict[str, Dict] = {"sections": {}, "launchers": {}, "xenstore_write": {}}
    sections = ["memory", "ephemeral"] if quick else \
        ["memory", "ephemeral", "network", "volumes", "all"]
    with Store(world) as store:
        guest = small_guest(world, vols)
        state = world.fresh("state")
        env = world.env(str(store.daemon.socket))
        for interp in interps:
            world.spawner.run(collector(interp, guest, state), env)      # first run
            for section in sections:
                argv = collector(interp, guest, state, "--section", section)
                out["sections"].setdefault(section, {})[interp.label] = paired(
                    world, interp.bare(), argv, env, pairs)
            for name, launcher in interp.launchers.items():
                if quick and launcher != interp.entry():
                    continue
                argv = launcher if "pass" in launcher else launcher + [
                    "--root", str(guest), "--state-dir", str(state), "--section", "memory"]
                lenv = dict(env, PYTHONPATH=str(interp.lib)) if "-m" in launcher else env
                out["launchers"].setdefault(name, {})[interp.label] = paired(
                    world, interp.bare(), argv, lenv, pairs)
            tool = str(store.daemon.tool("xenstore-write"))
            cenv = dict(env, LD_LIBRARY_PATH=str(store.daemon.lib))
            out["xenstore_write"][interp.label] = paired(
                world, interp.bare(), [tool, "data/meminfo_total", str(MEM_TOTAL_KB),
                                       "data/meminfo_free", str(MEM_AVAILABLE_KB)], cenv, pairs)
    return out


def processes(world: World, interp: Interpreter, vols: Sequence[Path]) -> Dict:
    """execve calls (strace -f) of an ``all`` run, without and with an LVM PV."""
    if not shutil.which("strace"):
        return {"error": "strace is not installed"}
    out = {}
    for lvm in (False, True):
        with Store(world) as store:
            guest = small_guest(world, vols, lvm=lvm)
            state = world.fresh("state")
            trace = world.workdir / "strace.out"
            if world.pvs_calls.exists():
                world.pvs_calls.unlink()
            argv = [shutil.which("strace"), "-f", "-qq", "-e", "trace=execve",
                    "-e", "signal=none", "-o", str(trace)] + collector(interp, guest, state)
            world.spawner.run(argv, world.env(str(store.daemon.socket), extra_path=True))
            execs = [line for line in trace.read_text().splitlines()
                     if "execve(" in line and line.rstrip().endswith("= 0")]
            pvs = world.pvs_calls.read_text().count("\n") if world.pvs_calls.exists() else 0
            out["lvm" if lvm else "no_lvm"] = {
                "execs": len(execs), "spawned": len(execs) - 1, "pvs_runs": pvs,
                "programs": [re.sub(r'^\d+\s+execve\("([^"]*)".*', r"\1", e) for e in execs]}
    return out


# -- 2. traffic ---------------------------------------------------------------------------

def traffic(world: World, interp: Interpreter, vols: Sequence[Path], ticks: int,
            period: float, max_age: float) -> Dict:
    out: Dict[str, Dict] = {}
    with Store(world) as store:
        guest = small_guest(world, vols)
        state = world.fresh("state")
        run = lambda *a: store.counted(world, collector(interp, guest, state, *a))  # noqa: E731
        out["first run (all)"] = run()
        out["unchanged rerun (all)"] = run()
        ip_batch(["addr del 192.0.2.10/24 dev vif0", "addr add 192.0.2.11/24 dev vif0"])
        out["one address changed (network)"] = run("--section", "network")
        with open(vols[1] / "fill", "wb") as f:    # /data: 4 MiB of 64 MiB used up
            f.write(b"\0" * 4 * MIB)
        out["one volume's free space changed (ephemeral)"] = run("--section", "ephemeral")
        out["unchanged rerun (ephemeral)"] = run("--section", "ephemeral")
        # the idle hour: MemAvailable wanders by a few MB (< 1% of MemTotal)
        wander = random.Random(8)
        total: Dict[str, int] = {"ticks": ticks, "writes": 0, "removes": 0, "commits": 0,
                                 "requests": 0, "log_writes": 0, "meminfo_free writes": 0,
                                 "wakes_xenopsd": 0}
        started = time.monotonic()
        for tick in range(ticks):
            meminfo(guest, MEM_AVAILABLE_KB + wander.randint(-4096, 4096))
            delay = started + tick * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            counts = run("--section", "ephemeral,network", "--max-age", repr(max_age))
            total["writes"] += counts.get("write", 0)
            total["removes"] += counts.get("rm", 0)
            total["commits"] += counts.get("commit", 0)
            total["requests"] += counts["requests"]
            total["log_writes"] += counts["log_writes"]
            total["meminfo_free writes"] += counts["written"].count("data/meminfo_free")
            total["wakes_xenopsd"] += counts["wakes_xenopsd"]
        total["period_s"] = period
        total["max_age_s"] = max_age
        total["elapsed_s"] = round(time.monotonic() - started, 2)
        total["writes_per_hour"] = total["writes"] * 60.0 / ticks
        total["wakes_per_hour"] = total["wakes_xenopsd"] * 60.0 / ticks
        out["idle"] = total
    os.unlink(vols[1] / "fill")
    return out


# -- 3. scale -----------------------------------------------------------------------------

def scale_guest(world: World, partitions: int, vifs: Dict[str, str], vol: Path) -> Path:
    """``partitions`` partitions, 16 per Xen disk, each mounted on its own directory
    (a symlink to the idle tmpfs ``vol``, so that free space stays put)."""
    root = world.fresh("scale")
    FakeGuest(root).minimal()
    g = FakeBlock(root)
    disks = (partitions + 15) // 16
    for d in range(disks):
        name = "xvd" + chr(ord("a") + d) if d < 26 else "xvda" + chr(ord("a") + d - 26)
        g.disk(name, (202, d * 16) if d < 16 else (259, d * 16), 17 * 2048 * 16,
               nodename="device/vbd/%d" % (51712 + d * 16))
        for p in range(1, min(16, partitions - d * 16) + 1):
            devno = (202, d * 16 + p) if d < 16 else (259, d * 16 + p)
            g.partition(name, p, devno, 2048 * 16,
                        udev={"ID_FS_TYPE": "ext4", "ID_PART_ENTRY_UUID": "%08x-%02d" % (d, p)})
            point = "/mnt/%s%d" % (name, p)
            g.mount(devno, point, "ext4", "/dev/%s%d" % (name, p), make_dir=False)
            (root / "mnt").mkdir(exist_ok=True)
            (root / point.lstrip("/")).symlink_to(vol)
    mirror_sysfs(net_snapshot(), root, vifs)
    return root


def scale(world: World, interp: Interpreter, vol: Path, runs: int, quick: bool) -> Dict:
    part_counts = [1, 16] if quick else [1, 16, 64, 256]
    vif_counts = [1, 8] if quick else [1, 8, 64]
    configs = [(p, 1) for p in part_counts] + [(1, v) for v in vif_counts[1:]]
    configs.append((part_counts[-1], vif_counts[-1]))
    rows = []
    for partitions, nvifs in configs:
        vifs = make_vifs(nvifs, 8)
        guest = scale_guest(world, partitions, vifs, vol)
        with Store(world, disks=()) as store:
            state = world.fresh("state")
            first = store.counted(world, collector(interp, guest, state))
            rerun = store.counted(world, collector(interp, guest, state))
            env = world.env(str(store.daemon.socket))
            timed = [world.spawner.run(collector(interp, guest, state), env)
                     for _ in range(runs)]
            peak = world.spawner.peak_rss(collector(interp, guest, state), env)
            keys = len(store.daemon.tree(HOME + "/data/volumes")) + \
                len(store.daemon.tree(HOME + "/attr/vif"))
        rows.append({"partitions": partitions, "vifs": nvifs, "addresses": nvifs * 16,
                     "nodes": keys,
                     "first_ms": first["wall_ms"], "first_requests": first["requests"],
                     "first_writes": first.get("write", 0),
                     "wall_ms": median([r.wall for r in timed]) * 1000,
                     "cpu_ms": median([r.cpu for r in timed]) * 1000,
                     "maxrss_kb": peak,
                     "requests": rerun["requests"], "writes": rerun.get("write", 0),
                     "max_payload": max(first["max_payload"], rerun["max_payload"]),
                     "max_ops_in_tx": max(first["max_ops_in_tx"], rerun["max_ops_in_tx"])})
    make_vifs(0, 0)
    fits = {}
    for axis, select in (("partitions", lambda r: r["vifs"] == 1),
                         ("vifs", lambda r: r["partitions"] == 1)):
        sel = [r for r in rows if select(r)]
        xs = [r[axis] for r in sel]
        fits[axis] = {
            "wall_ms": linear_fit(xs, [r["wall_ms"] for r in sel]),
            "cpu_ms": linear_fit(xs, [r["cpu_ms"] for r in sel]),
            "requests": linear_fit(xs, [r["requests"] for r in sel]),
            "first_requests": linear_fit(xs, [r["first_requests"] for r in sel]),
            "maxrss_kb": linear_fit(xs, [r["maxrss_kb"] for r in sel]),
        }
    return {"rows": rows, "fits": fits, "runs": runs}


# -- 4. imports ---------------------------------------------------------------------------

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)$")


def parse_importtime(text: str) -> List[Tuple[str, int, int, int]]:
    """``-X importtime`` lines as (module, self µs, cumulative µs, depth).

    Sample line: ``import time:       270 |       1124 |     xe_oneshot.xenstore.packet``.
    """
    out = []
    for line in text.splitlines():
        m = _IMPORT_LINE.match(line)
        if m:
            out.append((m.group(4), int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2))
    return out


def imports(world: World, interp: Interpreter, vols: Sequence[Path], runs: int,
            sections: Sequence[str]) -> Dict:
    out: Dict[str, Dict] = {}
    with Store(world) as store:
        guest = small_guest(world, vols)
        state = world.fresh("state")
        env = world.env(str(store.daemon.socket))
        base = world.spawner.run([interp.path, "-I", "-X", "importtime", "-c", "pass"], env)
        baseline = {m for m, _, _, _ in parse_importtime(base.stderr)}
        world.spawner.run(collector(interp, guest, state), env)
        for section in sections:
            selfs: Dict[str, List[int]] = {}
            cums: Dict[str, List[int]] = {}
            depth: Dict[str, int] = {}
            for _ in range(runs):
                argv = [interp.path, "-I", "-X", "importtime"] + interp.entry() + [
                    "--root", str(guest), "--state-dir", str(state), "--section", section]
                run = world.spawner.run(argv, env)
                for mod, s, c, d in parse_importtime(run.stderr):
                    if mod in baseline:
                        continue
                    selfs.setdefault(mod, []).append(s)
                    cums.setdefault(mod, []).append(c)
                    depth[mod] = d
            med_self = {m: median(v) for m, v in selfs.items()}
            med_cum = {m: median(v) for m, v in cums.items()}
            top = sorted(med_cum.items(), key=lambda kv: -kv[1])[:10]
            outside = sorted({m.split(".")[0] for m in selfs
                              if not m.startswith(("xe_oneshot", "_"))})
            out[section] = {"modules": len(selfs), "total_ms": sum(med_self.values()) / 1000,
                            "own_ms": sum(v for m, v in med_self.items()
                                          if m.startswith("xe_oneshot")) / 1000,
                            "top": [(m, c / 1000, med_self[m] / 1000) for m, c in top],
                            "pulls_in": outside}
    return out


# -- the report ---------------------------------------------------------------------------

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


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "%.1f" % v if abs(v) >= 10 or v == 0 else "%.2f" % v
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report(results: Dict, interps: List[Interpreter]) -> str:
    m = results["machine"]
    parts = ["# xe-oneshot benchmarks", "",
             "Written by `bench/bench.py` (`make bench`); do not edit by hand.%s" % (
                 " **Quick mode: small samples, not for comparison.**"
                 if results["quick"] else ""), "",
             "## Machine", "",
             table(["CPU", "cores", "kernel", "load at start", "date"],
                   [[m["cpu"], m["cores"], m["kernel"] + " " + m["machine"], m["load"],
                     m["date"]]]), ""]
    parts.append(table(["interpreter", "path", "version", "psutil, sh"],
                       [[i.label, i.path, i.version, i.deps] for i in interps]))
    parts.append("")
    cold = results.get("cold")
    if cold:
        parts += ["## 1. Cold start", "",
                  "Whole-process wall and CPU time (medians) of the installed entry point "
                  "(`make install`'s launcher, `#!python3 -I`, over the byte-compiled package) on the small guest "
                  "(1 VIF with 2 addresses, 2 Xen disks mounted), unchanged reruns, paired run "
                  "by run with `python3 -c pass` of the same interpreter; ratio = ratio of "
                  "the wall medians.", ""]
        rows = []
        for section, per in cold["sections"].items():
            for label, r in per.items():
                target = TARGETS.get(section)
                rows.append([section, label, r["bare_wall_ms"], r["wall_ms"], r["ratio"],
                             r["bare_cpu_ms"], r["cpu_ms"], r["cpu_ratio"],
                             r["maxrss_kb"] / 1024.0,
                             ("≤ %.1f× %s" % (target, "met" if r["ratio"] <= target
                                              else "**missed**")) if target else "-"])
        for label, r in cold["xenstore_write"].items():
            rows.append(["C `xenstore-write` (2 keys)", label, r["bare_wall_ms"], r["wall_ms"],
                         r["ratio"], r["bare_cpu_ms"], r["cpu_ms"], r["cpu_ratio"],
                         r["maxrss_kb"] / 1024.0, "-"])
        parts.append(table(["run", "python", "bare wall ms", "wall ms", "ratio",
                            "bare CPU ms", "CPU ms", "CPU ratio", "peak RSS MiB", "target"],
                           rows))
        parts += ["", "### Entry points (`--section memory`)", ""]
        rows = []
        for name, per in cold["launchers"].items():
            for label, r in per.items():
                rows.append([name, label, r["bare_wall_ms"], r["wall_ms"], r["ratio"],
                             r["cpu_ms"]])
        parts.append(table(["launcher", "python", "bare wall ms", "wall ms", "ratio",
                            "CPU ms"], rows))
        parts.append("")
    procs = results.get("processes")
    if procs:
        parts += ["### Processes started by an `all` run (strace -f, execve)", ""]
        if "error" in procs:
            parts.append("Not measured: " + procs["error"])
        else:
            parts.append(table(["guest", "processes spawned", "pvs runs", "programs"],
                               [[k.replace("_", " "), v["spawned"], v["pvs_runs"],
                                 ", ".join(os.path.basename(p) for p in v["programs"][1:]) or
                                 "-"] for k, v in procs.items()]))
        parts.append("")
    traf = results.get("traffic")
    if traf:
        parts += ["## 2. XenStore traffic", "",
                  "Requests per run counted by a forwarding proxy; writes and removes "
                  "cross-checked in oxenstored's access log.", ""]
        rows = []
        for name, c in traf.items():
            if name == "idle":
                continue
            rows.append([name, c.get("write", 0), c.get("rm", 0), c.get("commit", 0),
                         c.get("abort", 0), c.get("read", 0), c.get("directory", 0),
                         c["requests"], "%d / %d" % (c["log_writes"], c["log_removes"])])
        parts.append(table(["run", "writes", "removes", "commits", "aborts", "reads",
                            "directories", "requests", "access log writes / rms"], rows))
        idle = traf["idle"]
        parts += ["", "### Idle hour", "",
                  "%d timer ticks (`--section ephemeral,network`, what the timer runs) with "
                  "MemAvailable wandering by up to ±4 MiB (MemTotal %d kB: 1%% is %d kB); "
                  "time scaled down %gx: a tick every %g s with `--max-age %.3g` (= 60 s "
                  "ticks, meminfo_free's %g s cap). \"Wake xenopsd\": changes that fire "
                  "one of its watches on a host in the field (`data/updated` included), "
                  "checked entry by entry in the access log. A `meminfo_free` write wakes "
                  "only rrdp-squeezed's own watch (the memory graph)." % (
                      idle["ticks"], MEM_TOTAL_KB, MEM_TOTAL_KB // 100, 60 / idle["period_s"],
                      idle["period_s"], idle["max_age_s"],
                      idle["max_age_s"] * 60 / idle["period_s"]), "",
                  table(["agent", "writes per hour", "writes that wake xenopsd per hour",
                         "removes", "commits", "requests", "meminfo_free writes",
                         "target"],
                        [["xe-oneshot", idle["writes_per_hour"], idle["wakes_per_hour"],
                          idle["removes"], idle["commits"], idle["requests"],
                          idle["meminfo_free writes"],
                          "0 wakes: %s" % ("met" if idle["wakes_per_hour"] == 0
                                           else "**missed**")],
                         ["classic agent (measured, issue 8)", CLASSIC_WRITES_PER_HOUR,
                          "-", "-", "-", "-", 30, "-"]]), ""]
    sc = results.get("scale")
    if sc:
        parts += ["## 3. Scale", "",
                  "Synthetic guests: partitions (16 per Xen disk, each mounted), VIFs (veth "
                  "links with 8 IPv4 + 8 IPv6 addresses each). Time, CPU and peak RSS: "
                  "median / max of %d unchanged reruns (`--section all`); requests of the "
                  "first run and of an unchanged rerun; largest payload either way "
                  "(limit %d)." % (sc["runs"], PAYLOAD_LIMIT), ""]
        parts.append(table(
            ["partitions", "VIFs", "addresses", "nodes", "first run ms", "first requests",
             "rerun wall ms", "rerun CPU ms", "peak RSS MiB", "rerun requests",
             "rerun writes", "max payload B", "ops in one tx", "< 1 s"],
            [[r["partitions"], r["vifs"], r["addresses"], r["nodes"], r["first_ms"],
              r["first_requests"], r["wall_ms"], r["cpu_ms"], r["maxrss_kb"] / 1024.0,
              r["requests"], r["writes"], r["max_payload"],
              ("**%d**" % r["max_ops_in_tx"]) if r["max_ops_in_tx"] > QUOTA_MAXREQUESTS
              else r["max_ops_in_tx"],
              "yes" if r["wall_ms"] < 1000 and r["first_ms"] < 1000 else "**no**"]
             for r in sc["rows"]]))
        parts += ["", "Quotas a guest meets and this bench's dom0 connection does not: "
                  "oxenstored refuses a transaction of a non-dom0 connection with EQUOTA past "
                  "`quota-maxrequests` = %d operations (reads and listings count; bold above), "
                  "and a domain may own `quota-maxentity` nodes (1000 by default, 8192 in "
                  "XenServer's oxenstored.conf)." % QUOTA_MAXREQUESTS]
        parts += ["", "Linear fits (least squares) over the rows with 1 VIF (per partition) "
                  "and with 1 partition (per VIF of 16 addresses):", ""]
        rows = []
        for axis, fit in sc["fits"].items():
            for what, (slope, icpt, r2) in fit.items():
                rows.append([axis, what, slope, icpt, "%.3f" % r2])
        parts.append(table(["per", "quantity", "slope", "intercept", "r²"], rows))
        parts.append("")
    imp = results.get("imports")
    if imp:
        parts += ["## 4. Imports per section", "",
                  "`-X importtime` of the installed entry point with the `%s` interpreter "
                  "(median of %d runs), modules beyond those the bare `python3 -I -c pass` "
                  "imports; C modules (`_name`) left out of the list." % (
                      results["main"], results["import_runs"]),
                  ""]
        parts.append(table(["section", "modules", "import ms", "of which xe_oneshot ms",
                            "pulls in (outside the package)"],
                           [[s, v["modules"], v["total_ms"], v["own_ms"],
                             ", ".join(v["pulls_in"])] for s, v in imp.items()]))
        for s, v in imp.items():
            parts += ["", "Top modules by cumulative time, `--section %s`:" % s, "",
                      table(["module", "cumulative ms", "self ms"],
                            [[m, c, sf] for m, c, sf in v["top"]])]
        parts.append("")
    fixes = CHECKOUT / "bench" / "FIXES.md"
    if fixes.exists() and not results["quick"]:
        parts += [fixes.read_text().rstrip(), ""]
    if results.get("notes"):
        parts += ["## Notes", ""] + results["notes"] + [""]
    return "\n".join(parts)


# -- main ---------------------------------------------------------------------------------

def inner(args) -> int:
    """Inside the private mount and network namespaces."""
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    sh("mount", "-t", "sysfs", "sysfs", "/sys")        # this namespace's /sys/class/net
    ip_batch(["link set lo up",
              "link add vif0 type veth peer name peer0",
              "link set vif0 addrgenmode none", "link set peer0 addrgenmode none",
              "link set vif0 up", "link set peer0 up",
              "addr add 192.0.2.10/24 dev vif0", "addr add 2001:db8::10/64 dev vif0 nodad"])
    workdir = Path(tempfile.mkdtemp(prefix="xe-bench-"))
    os.chmod(workdir, 0o755)
    vols = [workdir / "vol-srv", workdir / "vol-data", workdir / "vol-scale"]
    try:
        for v in vols:
            v.mkdir()
            sh("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(v))
        world = World(workdir, Path(args.package))
        interps = [Interpreter(label, path, workdir, world.package)
                   for label, path in find_interpreters(args)]
        main_interp = interps[0]
        results: Dict = {"machine": machine(), "quick": args.quick,
                         "main": main_interp.label}
        results["interpreters"] = {i.label: {"path": i.path, "version": i.version}
                                   for i in interps}
        only = set(args.only.split(",")) if args.only else \
            {"cold", "processes", "traffic", "scale", "imports"}
        pairs = args.pairs or (3 if args.quick else 30)
        if "cold" in only:
            say("cold start (%d pairs)" % pairs)
            results["cold"] = cold_start(world, interps, vols, pairs, args.quick)
        if "processes" in only:
            say("processes")
            results["processes"] = processes(world, main_interp, vols)
        if "traffic" in only:
            ticks, period = (12, 0.25) if args.quick else (60, 1.0)
            say("traffic (%d ticks every %g s)" % (ticks, period))
            results["traffic"] = traffic(world, main_interp, vols, ticks, period,
                                         MEMINFO_MAX_AGE * period / 60)
        if "scale" in only:
            say("scale")
            results["scale"] = scale(world, main_interp, vols[2], 3 if args.quick else 10, args.quick)
        if "imports" in only:
            results["import_runs"] = 1 if args.quick else 7
            say("imports")
            results["imports"] = imports(
                world, main_interp, vols, results["import_runs"],
                ["memory", "ephemeral"] if args.quick else
                ["memory", "misc", "os", "ephemeral", "volumes", "network", "all"])
        results["notes"] = notes(interps)
        text = report(results, interps)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1, default=str)
        if args.output == "-":
            sys.stdout.write(text)
        else:
            Path(args.output).write_text(text)
            say("wrote %s" % args.output)
        return 0
    finally:
        for v in vols:
            subprocess.run(["umount", str(v)], stderr=subprocess.DEVNULL)
        shutil.rmtree(workdir, ignore_errors=True)


def notes(interps: List[Interpreter]) -> List[str]:
    out = ["- The VIF of the small guest is a veth link in the bench's own network "
           "namespace (a real interface: its addresses come from the kernel through "
           "rtnetlink); the fake sysfs mirrors the namespace's `/sys/class/net` and marks it "
           "`device/vif/0`.",
           "- The volumes' mount points are symlinks to two 64 MiB tmpfs mounts of the "
           "bench, so free space only changes when the bench changes it.",
           "- Children get a udev-like environment (PATH and XENSTORED_PATH only)."]
    out.append("- Timings are medians of paired runs on a shared 2-core machine (other "
               "jobs were running: see the load at start); request and write counts do not "
               "depend on it.")
    labels = [i.label for i in interps]
    if "debian" in labels:
        out.append("- `debian` is Debian's `/usr/bin/python3`, what a guest runs: it is "
                   "the representative figure. `current` is the interpreter running the "
                   "bench (here a pyenv build whose site imports extra `.pth` hooks, which "
                   "makes its bare start several times slower and flatters the ratios).")
    return out


def say(msg: str) -> None:
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny samples (the CI smoke test); implies --output -")
    parser.add_argument("--output", help="markdown file (default BENCHMARKS.md in the "
                        "checkout; '-' for stdout)")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--pairs", type=int, help="cold-start pairs per row (default 30)")
    parser.add_argument("--python", action="append",
                        help="interpreter(s) to measure (default: Debian's /usr/bin/python3 "
                        "and this one)")
    parser.add_argument("--package", default=str(CHECKOUT / "xe_oneshot"),
                        help="the package directory to measure (e.g. an older version "
                        "for before/after figures; default the checkout's)")
    parser.add_argument("--only", help="comma list of: cold,processes,traffic,scale,imports")
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = "-" if args.quick else str(CHECKOUT / "BENCHMARKS.md")
    if os.environ.get(INNER) == "1":
        try:
            return inner(args)
        except BenchError as err:
            sys.stderr.write("bench: %s\n" % err)
            return 1
    if os.geteuid() != 0:
        sys.stderr.write("bench: needs root (network namespace, mounts, the real "
                         "oxenstored)\n")
        return 2
    for tool in ("unshare", "ip", "mount"):
        if not shutil.which(tool):
            sys.stderr.write("bench: %s is not installed\n" % tool)
            return 2
    try:
        xen_root()      # fetch the daemon's packages here: the namespace has no network
    except Unavailable as err:
        sys.stderr.write("bench: %s\n" % err)
        return 2
    env = dict(os.environ, **{INNER: "1"})
    argv = [sys.executable, os.path.abspath(__file__)] + (sys.argv[1:] if argv is None
                                                           else list(argv))
    if args.output != "-" and args.output is not None:
        argv += ["--output", os.path.abspath(args.output)]
    if args.json:
        argv += ["--json", os.path.abspath(args.json)]
    argv += ["--package", os.path.abspath(args.package)]
    return subprocess.call(["unshare", "-m", "-n", "--propagation", "private"] + argv,
                           env=env)


if __name__ == "__main__":
    sys.exit(main())
