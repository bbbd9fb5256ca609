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
