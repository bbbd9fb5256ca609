"""Smoke test of bench/bench.py in its quick mode: it runs, its output parses, and the
XenStore traffic it measures is what the change policy promises. Traffic counts are
deterministic and asserted; timings are not (they are benchmark figures)."""

import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.paths import CHECKOUT


def _unavailable():
    if os.geteuid() != 0:
        return "the bench needs root (namespaces, mounts, the real oxenstored)"
    for tool in ("unshare", "ip", "mount", "strace"):
        if not shutil.which(tool):
            return "%s is not installed" % tool
    if not os.path.exists("/usr/bin/time"):
        return "GNU time is not installed"
    return None


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("bench")
    res = subprocess.run([sys.executable, str(CHECKOUT / "bench" / "bench.py"), "--quick",
                          "--json", str(out / "results.json"), "--output", str(out / "B.md")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    return results, (out / "B.md").read_text()


def tables(markdown):
    """Each markdown table as (header cells, [row cells])."""
    found, current = [], None
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if current is None:
                current = (cells, [])
                found.append(current)
            elif not all(re.fullmatch(r"-+", c) for c in cells):
                current[1].append(cells)
        else:
            current = None
    return found


def test_report_is_well_formed_markdown(bench):
    _, text = bench
    found = tables(text)
    headers = [t[0][0] for t in found]
    for first in ("CPU", "run", "guest", "agent", "partitions", "section"):
        assert first in headers, "no table starting with %r" % first
    for header, rows in found:
        assert rows, header
        for row in rows:
            assert len(row) == len(header), (header, row)
    assert "## 1. Cold start" in text and "## 3. Scale" in text


def test_cold_start_figures_are_numbers(bench):
    results, _ = bench
    for section in ("memory", "ephemeral"):
        for fig in results["cold"]["sections"][section].values():
            assert fig["wall_ms"] > 0 and fig["bare_wall_ms"] > 0 and fig["cpu_ms"] > 0
            assert math.isclose(fig["ratio"], fig["wall_ms"] / fig["bare_wall_ms"])
            assert fig["maxrss_kb"] > 1000      # a Python process, measured through GNU time


def test_traffic_first_run_writes_and_unchanged_rerun_writes_nothing(bench):
    traffic = bench[0]["traffic"]
    first = traffic["first run (all)"]
    assert first["commit"] == 1
    assert first["write"] == first["log_writes"] > 20
    assert "data/updated" in first["written"] and "attr/vif/0/ipv4/0" in first["written"]
    rerun = traffic["unchanged rerun (all)"]
    assert rerun.get("write", 0) == rerun.get("rm", 0) == rerun.get("commit", 0) == 0
    assert rerun["log_writes"] == rerun["log_removes"] == 0
    assert rerun.get("abort", 0) == rerun.get("transaction_start", 0) == 0   # reads only
    again = traffic["unchanged rerun (ephemeral)"]
    assert again.get("write", 0) == again.get("rm", 0) == again["log_writes"] == 0


def test_traffic_one_change_writes_that_key_and_updated_only_if_xapi_keeps_it(bench):
    traffic = bench[0]["traffic"]
    assert traffic["one address changed (network)"]["written"] == [
        "attr/vif/0/ipv4/0", "data/updated"]
    volume = traffic["one volume's free space changed (ephemeral)"]
    assert volume["written"] == ["data/volumes/1/free"]     # xapi never reads data/volumes
    assert volume["wakes_xenopsd"] == 0


def test_idle_guest_republishes_memory_only_when_the_max_age_is_reached(bench):
    idle = bench[0]["traffic"]["idle"]
    # MemAvailable wanders by less than 1% of MemTotal: a republish only once the
    # published value is max-age old, i.e. at most once per max_age of elapsed time.
    allowed = math.floor(idle["elapsed_s"] / idle["max_age_s"]) + 1
    assert 1 <= idle["meminfo_free writes"] <= allowed
    # each republish writes meminfo_free alone: no data/updated, nothing xenopsd watches
    assert idle["writes"] == idle["log_writes"] == idle["meminfo_free writes"]
    assert idle["removes"] == 0
    assert idle["commits"] == idle["meminfo_free writes"]
    assert idle["wakes_xenopsd"] == idle["wakes_per_hour"] == 0
    # as fresh as the classic agent (every 120 s): the max age models 110 s on 60 s ticks
    assert idle["max_age_s"] * 60 / idle["period_s"] <= 120
    assert idle["writes_per_hour"] <= 30


def test_no_process_without_lvm_and_one_pvs_with_it(bench):
    procs = bench[0]["processes"]
    assert procs["no_lvm"]["spawned"] == 0, procs["no_lvm"]["programs"]
    assert procs["lvm"]["pvs_runs"] == 1
    assert procs["lvm"]["spawned"] == 1, procs["lvm"]["programs"]


def test_scale_guests_are_what_they_claim_and_stay_in_the_payload_limit(bench):
    rows = bench[0]["scale"]["rows"]
    assert len(rows) >= 4
    for row in rows:
        # 9 nodes per mounted volume, 19 per VIF with 8 + 8 addresses
        assert row["nodes"] == 9 * row["partitions"] + 19 * row["vifs"], row
        assert row["writes"] == 0, row
        assert 0 < row["max_payload"] <= 4096, row
        # oxenstored answers EQUOTA past 1024 operations in one transaction of a guest
        assert 0 < row["max_ops_in_tx"] <= 1024, row
    by_size = sorted(rows, key=lambda r: (r["partitions"], r["vifs"]))
    assert by_size[-1]["requests"] > by_size[0]["requests"]


def test_memory_and_ephemeral_runs_import_neither_psutil_nor_sh(bench):
    imports = bench[0]["imports"]
    for section in ("memory", "ephemeral"):
        assert imports[section]["modules"] > 0
        pulled = set(imports[section]["pulls_in"])
        assert not pulled & {"psutil", "sh"}, pulled


# -- before and after (--compare / --baseline) ---------------------------------------------

def bench_module(name):
    """bench/<name>.py, imported as the entry point imports it (bench/ on sys.path)."""
    import importlib
    path = str(CHECKOUT / "bench")
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module(name)


def test_after_over_before_is_worse_only_beyond_its_noise():
    harness = bench_module("harness")
    jitter = [1.0, 1.02, 0.99, 1.01, 0.98, 1.03, 1.0, 0.97, 1.01, 1.02]
    before = [0.020 * j for j in jitter]
    same = harness.ratio_with_noise(before, list(before))
    assert (same["ratio"], same["halves"], same["se"], same["noise"]) == (1.0, 0.0, 0.0, 0.0)
    slower = harness.ratio_with_noise(before, [t * 1.2 for t in before])
    assert math.isclose(slower["ratio"], 1.2) and slower["noise"] < 0.01
    # after drifts from 1.0x to 1.3x of before over the rounds: the halves disagree by
    # 0.3, which is the noise, and a ratio of ~1.15 is within it
    drift = [t * (1.0 if i < 5 else 1.3) for i, t in enumerate(before)]
    moving = harness.ratio_with_noise(before, drift)
    assert math.isclose(moving["halves"], -0.3, abs_tol=1e-9)
    assert moving["noise"] >= 0.3 and moving["ratio"] - 1 < moving["noise"]
    row = harness.before_after_row({"bare": {"wall": before, "cpu": before},
                                    "before": {"wall": before, "cpu": before},
                                    "after": {"wall": [t * 1.2 for t in before],
                                              "cpu": before}})
    assert row["worse"] and math.isclose(row["after_startup_ratio"], 1.2)
    assert row["cpu"]["ratio"] == 1.0


def test_a_comparison_replaces_its_own_section_and_a_full_run_keeps_it():
    report = bench_module("report")
    old = "# B\n\n## 1. Cold start\n\nx\n\n%s\n\nold\n\n## Notes\n\n- n\n" % report.BEFORE_AFTER
    new = report.replace_section(old, report.BEFORE_AFTER, report.BEFORE_AFTER + "\n\nnew\n")
    assert new == old.replace("\nold\n", "\nnew\n")
    assert report.replace_section("# B\n", report.BEFORE_AFTER, report.BEFORE_AFTER + "\n") \
        == "# B\n\n%s\n" % report.BEFORE_AFTER
    assert report.kept_section(new, report.BEFORE_AFTER) == report.BEFORE_AFTER + "\n\nnew\n"
    assert report.kept_section("# B\n\n## Notes\n", report.BEFORE_AFTER) == ""
    alone, fresh = report.BEFORE_AFTER + "\n\nold\n", report.BEFORE_AFTER + "\n\nnew\n"
    assert report.replace_section(alone, report.BEFORE_AFTER, fresh) == fresh


def test_compare_quick_writes_the_before_and_after_section(tmp_path):
    """``--baseline`` the checkout itself (an A/A comparison: no git needed): the section
    replaces only its own in the output file, one row per quick scenario, numbers."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "B.md"
    out.write_text("# kept\n\n## Notes\n\n- kept too\n")
    res = subprocess.run([sys.executable, str(CHECKOUT / "bench" / "bench.py"), "--quick",
                          "--pairs", "2", "--baseline", str(CHECKOUT), "--output", str(out),
                          "--json", str(tmp_path / "r.json")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=600)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# kept\n\n## Notes\n\n- kept too\n\n## Before and after")
    (header, rows), = tables(text)
    assert header[0] == "run" and [r[0] for r in rows] == ["memory", "ephemeral"]
    for name, row in json.loads((tmp_path / "r.json").read_text())["before_after"][
            "rows"].items():
        assert row["rounds"] == 2 and row["before_wall_ms"] > 0 and row["after_wall_ms"] > 0
        assert math.isclose(row["after_startup_ratio"],
                            row["after_wall_ms"] / row["bare_wall_ms"])
