"""The bench's scenarios, each a function of the harness (bench/harness.py) returning
plain data for bench/report.py: cold start, processes spawned, XenStore traffic (runs and
the idle hour), scale, imports per section.
"""

import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from harness import (MEM_AVAILABLE_KB, MEM_TOTAL_KB, MIB, Interpreter, Store, World,
                     before_after_row, collector, interleaved, ip_batch, linear_fit, make_vifs,
                     median, meminfo, paired, small_guest)
from tests.support.blockdev import FakeBlock
from tests.support.fakeguest import FakeGuest
from tests.support.netns import mirror_sysfs, net_snapshot
from tests.support.paths import HOME


# -- 1. cold start ----------------------------------------------------------------------

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
    mirror_sysfs(net_snapshot(ifindex=False), root, vifs)
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



# -- before and after ----------------------------------------------------------------------

def before_after(world: World, before: Interpreter, after: Interpreter,
                 vols: Sequence[Path], rounds: int, sections: Sequence[str]) -> Dict:
    """Cold start of two installs of the package (``before``, ``after``: the same
    interpreter) on the same small guest, each against a daemon and a state dir of its
    own (what one publishes never makes the other's rerun a change), run by run
    interleaved with the bare interpreter (:func:`harness.interleaved`); unchanged
    reruns, as in the cold-start table."""
    out: Dict[str, Dict] = {}
    guest = small_guest(world, vols)
    with Store(world) as store_a, Store(world) as store_b:
        installs = {"before": (before, store_a, world.fresh("state")),
                    "after": (after, store_b, world.fresh("state"))}
        for interp, store, state in installs.values():              # the first run
            world.spawner.run(collector(interp, guest, state),
                              world.env(str(store.daemon.socket)))
        for section in sections:
            runs = {"bare": (before.bare(), world.env(str(store_a.daemon.socket)))}
            for label, (interp, store, state) in installs.items():
                runs[label] = (collector(interp, guest, state, "--section", section),
                               world.env(str(store.daemon.socket)))
            out[section] = before_after_row(interleaved(world, runs, rounds))
    return out
