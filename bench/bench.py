#!/usr/bin/env python3
"""Benchmarks for xe-oneshot against the real oxenstored: cold start, XenStore traffic,
scale, imports. Writes markdown tables into BENCHMARKS.md with the machine they ran on.

    make bench                              # or: python3 bench/bench.py
    python3 bench/bench.py --quick --output - --json out.json    # the CI smoke run
    python3 bench/bench.py --compare 49d576b     # before/after section of BENCHMARKS.md

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
* **Before and after** (``--compare REV`` or ``--baseline DIR``): the cold start of the
  package at REV (``git archive`` of its ``xe_oneshot/`` and ``packaging/``) and of the
  checkout's, both installed for one interpreter, run interleaved with the bare
  interpreter (bare A B, bare B A, ...); per scenario both medians, after / before and
  the noise of that ratio; written as BENCHMARKS.md's "Before and after" section (a
  full run keeps that section).

The code: bench/harness.py (spawning, timing, pairing, interpreters, the guest, the
daemon and its counting proxy), bench/scenarios.py (what is measured), bench/report.py
(the markdown); they build on tests/support (daemon, proxy, fake guests, netns, oracle).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT))              # tests.support, xe_oneshot

import report  # noqa: E402
import scenarios  # noqa: E402
from harness import (BenchError, Interpreter, World, find_interpreters, ip_batch,  # noqa: E402
                     machine, say, sh)
from tests.support.xenstored import Unavailable, xen_root  # noqa: E402
from xe_oneshot.publisher import MAX_AGE  # noqa: E402

INNER = "XE_ONESHOT_BENCH_INNER"
#: meminfo_free's cap on the max age (the policy the idle hour models).
MEMINFO_MAX_AGE = MAX_AGE["data/meminfo_free"]
SCENARIOS = ("cold", "processes", "traffic", "scale", "imports")


def measure(args, world: World, vols: Sequence[Path]) -> Tuple[Dict, str]:
    """The scenarios ``--only`` names (all by default): results and their markdown."""
    interps = [Interpreter(label, path, world.workdir, world.package)
               for label, path in find_interpreters(args)]
    main_interp = interps[0]
    results: Dict = {"machine": machine(), "quick": args.quick, "main": main_interp.label}
    results["interpreters"] = {i.label: {"path": i.path, "version": i.version}
                               for i in interps}
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    pairs = args.pairs or (3 if args.quick else 30)
    if "cold" in only:
        say("cold start (%d pairs)" % pairs)
        results["cold"] = scenarios.cold_start(world, interps, vols, pairs, args.quick)
    if "processes" in only:
        say("processes")
        results["processes"] = scenarios.processes(world, main_interp, vols)
    if "traffic" in only:
        ticks, period = (12, 0.25) if args.quick else (60, 1.0)
        say("traffic (%d ticks every %g s)" % (ticks, period))
        results["traffic"] = scenarios.traffic(world, main_interp, vols, ticks, period,
                                               MEMINFO_MAX_AGE * period / 60)
    if "scale" in only:
        say("scale")
        results["scale"] = scenarios.scale(world, main_interp, vols[2],
                                           3 if args.quick else 10, args.quick)
    if "imports" in only:
        results["import_runs"] = 1 if args.quick else 7
        say("imports")
        results["imports"] = scenarios.imports(
            world, main_interp, vols, results["import_runs"],
            ["memory", "ephemeral"] if args.quick else
            ["memory", "misc", "os", "ephemeral", "volumes", "network", "all"])
    results["notes"] = report.notes(interps)
    return results, report.report(results, interps)


def git(*args: str) -> str:
    return sh("git", "-C", str(CHECKOUT), *args).strip()


def baseline_tree(args, workdir: Path) -> Tuple[Path, str]:
    """The package to compare against: ``--baseline DIR`` as it is, or ``--compare REV``
    unpacked (``git archive``: xe_oneshot/ and packaging/) under ``workdir``; and how
    the report names it."""
    if args.baseline:
        return Path(args.baseline), "`%s`" % args.baseline
    tree = workdir / "baseline"
    tree.mkdir()
    archive = workdir / "baseline.tar"
    git("archive", "--format=tar", "-o", str(archive), args.compare, "xe_oneshot", "packaging")
    sh("tar", "-x", "-f", str(archive), "-C", str(tree))
    return tree, "`%s` of %s" % (git("rev-parse", "--short", args.compare + "^{commit}"),
                                 git("log", "-1", "--format=%cs", args.compare))


def after_label(package: Path) -> str:
    if package.resolve() != (CHECKOUT / "xe_oneshot").resolve():
        return "`%s`" % package
    dirty = git("status", "--porcelain", "--", "xe_oneshot", "packaging")
    return "the checkout, HEAD `%s`%s" % (git("rev-parse", "--short", "HEAD"),
                                          " with uncommitted changes" if dirty else "")


def compare(args, world: World, vols: Sequence[Path]) -> Tuple[Dict, str]:
    """Before/after: the baseline's package and the checkout's, interleaved."""
    python = args.python[0] if args.python else (
        "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable)
    tree, before_label = baseline_tree(args, world.workdir)
    before = Interpreter("before", python, world.workdir, tree / "xe_oneshot",
                         tree / "packaging" / "launcher.in")
    after = Interpreter("after", python, world.workdir, world.package)
    rounds = args.pairs or (5 if args.quick else 30)
    sections = ["memory", "ephemeral"] if args.quick else \
        ["memory", "ephemeral", "network", "volumes", "all"]
    say("before/after (%d rounds of %s)" % (rounds, ", ".join(sections)))
    rows = scenarios.before_after(world, before, after, vols, rounds, sections)
    results = {"machine": machine(), "quick": args.quick, "before_after": {
        "rows": rows, "rounds": rounds, "python": python, "version": after.version,
        "baseline_rev": args.compare or args.baseline, "before": before_label,
        "after": after_label(world.package)}}
    return results, report.before_after_report(results)


def write(args, results: Dict, text: str) -> None:
    """``--json`` and the markdown: stdout for ``-``; into a file, a before/after
    comparison replaces that section only, and a full run keeps the file's last one."""
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    if args.output == "-":
        sys.stdout.write(text)
        return
    out = Path(args.output)
    old = out.read_text() if out.exists() else ""
    if "before_after" in results:
        text = report.replace_section(old, report.BEFORE_AFTER, text) if old else text
    else:
        kept = report.kept_section(old, report.BEFORE_AFTER)
        text = report.replace_section(text, report.BEFORE_AFTER, kept) if kept else text
    out.write_text(text)
    say("wrote %s" % args.output)


def namespace() -> None:
    """This mount and network namespace: private mounts, its own /sys, lo and vif0."""
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    sh("mount", "-t", "sysfs", "sysfs", "/sys")        # this namespace's /sys/class/net
    ip_batch(["link set lo up",
              "link add vif0 type veth peer name peer0",
              "link set vif0 addrgenmode none", "link set peer0 addrgenmode none",
              "link set vif0 up", "link set peer0 up",
              "addr add 192.0.2.10/24 dev vif0", "addr add 2001:db8::10/64 dev vif0 nodad"])


def inner(args) -> int:
    """Inside the private mount and network namespaces."""
    namespace()
    workdir = Path(tempfile.mkdtemp(prefix="xe-bench-"))
    os.chmod(workdir, 0o755)
    vols = [workdir / "vol-srv", workdir / "vol-data", workdir / "vol-scale"]
    try:
        for v in vols:
            v.mkdir()
            sh("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(v))
        world = World(workdir, Path(args.package))
        run = compare if (args.compare or args.baseline) else measure
        results, text = run(args, world, vols)
        write(args, results, text)
        return 0
    finally:
        for v in vols:
            subprocess.run(["umount", str(v)], stderr=subprocess.DEVNULL)
        shutil.rmtree(workdir, ignore_errors=True)


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny samples (the CI smoke test); implies --output -")
    parser.add_argument("--output", help="markdown file (default BENCHMARKS.md in the "
                        "checkout; '-' for stdout)")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--pairs", type=int, help="cold-start pairs per row (default 30; "
                        "rounds of a comparison)")
    parser.add_argument("--python", action="append",
                        help="interpreter(s) to measure (default: Debian's /usr/bin/python3 "
                        "and this one)")
    parser.add_argument("--package", default=str(CHECKOUT / "xe_oneshot"),
                        help="the package directory to measure (default the checkout's)")
    parser.add_argument("--only", help="comma list of: " + ",".join(SCENARIOS))
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--compare", metavar="REV", help="before/after: the cold start of "
                       "the package at git revision REV against --package, interleaved")
    group.add_argument("--baseline", metavar="DIR", help="before/after against the "
                       "package in DIR (a tree holding xe_oneshot/)")
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = "-" if args.quick and not (args.compare or args.baseline) else \
            str(CHECKOUT / "BENCHMARKS.md")
    return args


def check_host(args) -> Optional[str]:
    """Why the bench cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespace, mounts, the real oxenstored)"
    for tool in ("unshare", "ip", "mount") + (("git", "tar") if args.compare else ()):
        if not shutil.which(tool):
            return "%s is not installed" % tool
    if args.compare:
        res = subprocess.run(["git", "-C", str(CHECKOUT), "rev-parse", "--verify", "-q",
                              args.compare + "^{commit}"], stdout=subprocess.DEVNULL)
        if res.returncode != 0:
            return "--compare: %s is not a commit of this checkout" % args.compare
    if args.baseline and not (Path(args.baseline) / "xe_oneshot").is_dir():
        return "--baseline: %s holds no xe_oneshot/" % args.baseline
    try:
        xen_root()      # fetch the daemon's packages here: the namespace has no network
    except Unavailable as err:
        return str(err)
    return None


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    if os.environ.get(INNER) == "1":
        try:
            return inner(args)
        except BenchError as err:
            sys.stderr.write("bench: %s\n" % err)
            return 1
    reason = check_host(args)
    if reason:
        sys.stderr.write("bench: %s\n" % reason)
        return 2
    env = dict(os.environ, **{INNER: "1"})
    argv = [sys.executable, os.path.abspath(__file__)] + (sys.argv[1:] if argv is None
                                                           else list(argv))
    if args.output != "-":
        argv += ["--output", os.path.abspath(args.output)]
    if args.json:
        argv += ["--json", os.path.abspath(args.json)]
    if args.baseline:
        argv += ["--baseline", os.path.abspath(args.baseline)]
    argv += ["--package", os.path.abspath(args.package)]
    return subprocess.call(["unshare", "-m", "-n", "--propagation", "private"] + argv,
                           env=env)


if __name__ == "__main__":
    sys.exit(main())
