"""The bench's report: the results (plain data from bench/scenarios.py) as the markdown
of BENCHMARKS.md; the raw results go to ``--json`` as they are.
"""

import os
from typing import Dict, List, Sequence

from harness import (CLASSIC_WRITES_PER_HOUR, MEM_TOTAL_KB, PAYLOAD_LIMIT, QUOTA_MAXREQUESTS,
                     TARGETS, Interpreter)
from tests.support.paths import CHECKOUT


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "%.1f" % v if abs(v) >= 10 or v == 0 else "%.2f" % v
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _head(results: Dict, interps: List[Interpreter]) -> List[str]:
    """The title, the machine and the interpreters."""
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
    return parts


def _cold_start(results: Dict) -> List[str]:
    """1. Cold start: the sections, the C tool and the entry points."""
    parts: List[str] = []
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
    return parts


def _processes(results: Dict) -> List[str]:
    """The processes an ``all`` run starts."""
    parts: List[str] = []
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
    return parts


def _traffic(results: Dict) -> List[str]:
    """2. XenStore traffic: runs and the idle hour."""
    parts: List[str] = []
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
    return parts


def _scale(results: Dict) -> List[str]:
    """3. Scale: the synthetic guests and the linear fits."""
    parts: List[str] = []
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
    return parts


def _imports(results: Dict) -> List[str]:
    """4. Imports per section."""
    parts: List[str] = []
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
    return parts


def report(results: Dict, interps: List[Interpreter]) -> str:
    """BENCHMARKS.md: every scenario that ran, bench/FIXES.md (not in quick mode), notes."""
    parts = _head(results, interps)
    for section in (_cold_start, _processes, _traffic, _scale, _imports):
        parts += section(results)
    fixes = CHECKOUT / "bench" / "FIXES.md"
    if fixes.exists() and not results["quick"]:
        parts += [fixes.read_text().rstrip(), ""]
    if results.get("notes"):
        parts += ["## Notes", ""] + results["notes"] + [""]
    return "\n".join(parts)


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


# -- before and after ----------------------------------------------------------------------

#: The BENCHMARKS.md section `--compare` writes (and a full run keeps).
BEFORE_AFTER = "## Before and after the house redesign"


def before_after_report(results: Dict) -> str:
    """The before/after section: per scenario both medians, the startup ratios, after /
    before with the noise it was measured with, and a verdict."""
    m, ba = results["machine"], results["before_after"]
    rows = []
    for section, r in ba["rows"].items():
        wall, cpu = r["wall"], r["cpu"]
        verdict = "**worse beyond the noise**" if r["worse"] else "within the noise" \
            if wall["ratio"] > 1 else "not worse"
        rows.append([section, r["bare_wall_ms"], r["before_wall_ms"], r["after_wall_ms"],
                     r["before_startup_ratio"], r["after_startup_ratio"],
                     "%.3f" % wall["ratio"], "±%.3f" % wall["noise"], "%.3f" % cpu["ratio"],
                     "±%.3f" % cpu["noise"], verdict])
    worse = [s for s, r in ba["rows"].items() if r["worse"]]
    return "\n".join([
        BEFORE_AFTER, "",
        "Written by `bench/bench.py --compare %s`%s; %s. Before: %s; after: %s. Both "
        "installed as `make install` lays them out (each version's own launcher.in, "
        "byte-compiled) for `%s` (%s), the same small guest, each against an oxenstored "
        "and a state dir of its own; %d rounds of bare `python3 -c pass`, before, after "
        "(before and after swap places every round), unchanged reruns. Startup ratio = "
        "wall median / bare wall median; after / before = ratio of the medians. Noise: the "
        "larger of (after / before over the first half of the rounds minus over the "
        "second half) and twice the robust standard error of the per-round ratios "
        "(1.4826 MAD / √n); worse beyond the noise = after / before − 1 > noise." % (
            ba["baseline_rev"] + (" --quick" if results["quick"] else ""),
            " (small samples: not for conclusions)" if results["quick"] else "",
            "load %s at start, %s" % (m["load"], m["date"]), ba["before"], ba["after"],
            ba["python"], ba["version"], ba["rounds"]), "",
        table(["run", "bare wall ms", "before wall ms", "after wall ms",
               "startup ratio before", "startup ratio after", "after / before (wall)",
               "noise", "after / before (CPU)", "CPU noise", "verdict"], rows), "",
        "Worse beyond the noise: %s." % (", ".join(worse) if worse else "none"), ""])


def replace_section(text: str, title: str, section: str) -> str:
    """``text`` (markdown) with its ``title`` section (up to the next ``## `` heading)
    replaced by ``section``, or ``section`` appended where there is none."""
    lines = text.split("\n")
    try:
        start = lines.index(title)
    except ValueError:
        return text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    kept = "\n".join(lines[:start]).rstrip("\n")
    rest = "\n".join(lines[end:])
    return (kept + "\n\n" if kept else "") + section.rstrip("\n") + "\n" + \
        ("\n" + rest if rest else "")


def kept_section(old_text: str, title: str) -> str:
    """The ``title`` section of ``old_text`` ("" when it has none): a full run keeps the
    last before/after comparison."""
    if title not in old_text.split("\n"):
        return ""
    after = old_text.split("\n" + title + "\n", 1)[1] if ("\n" + title + "\n") in old_text \
        else old_text.split(title + "\n", 1)[1]
    body = after.split("\n## ", 1)[0]
    return title + "\n" + body.rstrip("\n") + "\n"
