"""The collector end to end: `xe-oneshot` processes against the real oxenstored.

Each test has a daemon of its own (an empty store) and a fake guest under a temp root.
A socket connection is dom0, so the guest's home is /local/domain/0.
"""

import os
import re
import subprocess
import sys
import time

import pytest

from tests.support.fakeguest import FakeGuest
from tests.support.collector import (CHECKOUT, HOME, expected_static_memory, run,
                                     tree_without_updated, view, waking, written)

SECTIONS = "static,memory"


@pytest.fixture
def minimal_guest(tmp_path):
    return FakeGuest(tmp_path / "guest").minimal()


def test_first_run_publishes_the_exact_tree(fresh_xenstored, minimal_guest, state):
    run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS)
    tree, updated = tree_without_updated(fresh_xenstored)
    assert tree == expected_static_memory()
    assert re.fullmatch(r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}", updated)
    got = view(fresh_xenstored)
    assert got["has_guest_agent"] and got["can_balloon"]
    assert got["PV_drivers"] == ("Linux", 1, 0, 0, 0)


def test_toolstack_view_of_the_tree(fresh_xenstored, minimal_guest, state):
    """What xapi, squeezed and rrdp-squeezed derive (the consumer oracle)."""
    run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS)
    got = view(fresh_xenstored)
    assert got["os_version"] == {"name": "Debian GNU/Linux 12 (bookworm)",
                                 "uname": "6.1.0-25-amd64", "distro": "debian",
                                 "major": "12", "minor": "7"}
    from xe_oneshot import __version__
    assert __version__ == "1.0.0"
    assert got["PV_drivers_version"] == {"major": "1", "minor": "0", "micro": "0",
                                         "build": "0"}
    assert got["PV_drivers"] == ("Linux", 1, 0, 0, 0)      # not "Unknown": PV drivers
    assert got["networks"] == {}
    assert got["other"] == {"feature-balloon": "1"}
    assert got["can_balloon"] is True and got["has_guest_agent"] is True
    assert got["memory_internal_free"] == 1500000


def test_no_balloon_makes_squeezed_see_cannot_balloon(fresh_xenstored, minimal_guest, state):
    d = fresh_xenstored
    run(d, minimal_guest.root, state, "--section", SECTIONS)
    assert view(d)["can_balloon"] is True
    mark = d.log_mark()
    run(d, minimal_guest.root, state, "--section", SECTIONS, "--no-balloon")
    assert written(d, mark) == [("rm", "control/feature-balloon"), ("write", "data/updated")]
    got = view(d)
    assert got["can_balloon"] is False and got["other"] == {}
    assert got["has_guest_agent"] is True
    run(d, minimal_guest.root, state, "--section", SECTIONS)
    assert view(d)["can_balloon"] is True


def test_no_balloon_driver_no_feature_balloon(fresh_xenstored, minimal_guest, state):
    (minimal_guest.root / "sys/devices/system/xen_memory/xen_memory0").rmdir()
    run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS)
    assert view(fresh_xenstored)["can_balloon"] is False
    assert fresh_xenstored.read(HOME + "/control/feature-balloon") is None


def test_first_run_of_memory_alone_says_a_guest_agent_is_here(fresh_xenstored, minimal_guest,
                                                              state):
    run(fresh_xenstored, minimal_guest.root, state, "--section", "memory")
    got = view(fresh_xenstored)
    assert got["has_guest_agent"] is True and got["memory_internal_free"] == 1500000


def test_unchanged_rerun_writes_nothing(fresh_xenstored, minimal_guest, state):
    run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS)
    before = fresh_xenstored.tree(HOME)
    mark = fresh_xenstored.log_mark()
    run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS)
    run(fresh_xenstored, minimal_guest.root, state)          # all sections
    assert written(fresh_xenstored, mark) == []
    assert [e.op for e in fresh_xenstored.log_since(mark) if e.op == "commit"] == []
    assert fresh_xenstored.tree(HOME) == before


def test_memory_only_change_writes_meminfo_free_and_not_updated(fresh_xenstored, minimal_guest,
                                                                state):
    run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS)
    minimal_guest.meminfo(available=1000000)                  # moved by 24% of MemTotal
    mark = fresh_xenstored.log_mark()
    run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS)
    assert written(fresh_xenstored, mark) == [("write", "data/meminfo_free")]
    assert waking(fresh_xenstored, mark) == []
    assert view(fresh_xenstored)["memory_internal_free"] == 1000000


def test_os_change_writes_updated_with_it(fresh_xenstored, minimal_guest, state):
    run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS)
    minimal_guest.distribution('os_distro="debian"\nos_majorver="13"\nos_minorver="1"\n'
                       'os_uname="6.12.0"\nos_name="Debian GNU/Linux 13 (trixie)"\n')
    mark = fresh_xenstored.log_mark()
    run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS)
    assert ("write", "data/updated") in written(fresh_xenstored, mark)
    assert view(fresh_xenstored)["os_version"]["name"] == "Debian GNU/Linux 13 (trixie)"


def test_30_noisy_idle_ticks_write_nothing_xenopsd_watches(fresh_xenstored, minimal_guest, state):
    """The 60 s timer's runs on an idle guest: free memory wanders within 1% of MemTotal,
    active swap's use within 1% of its size; with a short max age they are republished
    now and then (for the memory graph), and never with anything xenopsd watches."""
    from tests.support.blockdev import FakeBlock, backend_seed
    d = fresh_xenstored
    for path, value in backend_seed(["xvda"]):
        d.write(path, value)
    block = FakeBlock(minimal_guest.root)
    block.xen_disk("xvda", 0, 4194304)
    block.partition("xvda", 1, (202, 1), 2097152, udev={"ID_FS_TYPE": "swap"})
    block.swaps(("/dev/xvda1", "partition", 1048572, 0))
    run(d, minimal_guest.root, state)
    assert view(d)["has_guest_agent"] is True
    mark = d.log_mark()
    noise = __import__("random").Random(13)
    for tick in range(30):
        free = 1500000 + noise.randint(-10000, 10000)            # < 1% of 2048000 kB
        minimal_guest.meminfo(available=free)
        block.swaps(("/dev/xvda1", "partition", 1048572, noise.randint(0, 10000)))
        run(d, minimal_guest.root, state, "--section", "ephemeral", "--max-age", "0.5")
        time.sleep(0.05)
    changes = written(d, mark)
    assert ("write", "data/meminfo_free") in changes            # the graph stays fresh
    assert {path for _, path in changes} <= {"data/meminfo_free", "data/volumes/0/free"}
    assert waking(d, mark) == []
    assert view(d)["memory_internal_free"] == int(d.read(HOME + "/data/meminfo_free"))


def test_meminfo_free_is_never_older_than_the_classic_agents(fresh_xenstored, minimal_guest, state):
    """Noise is held back, but never past publisher.MAX_AGE (110 s) whatever --max-age
    says: the published value is backdated in the run state to make it old."""
    from xe_oneshot import publisher
    from xe_oneshot.runstate import RunState, now
    assert publisher.MAX_AGE["data/meminfo_free"] <= 120      # the classic agent: 120 s
    run(fresh_xenstored, minimal_guest.root, state, "--section", "memory")
    minimal_guest.meminfo(available=1500000 - 5000)                     # noise
    run(fresh_xenstored, minimal_guest.root, state, "--section", "memory", "--max-age", "3600")
    assert fresh_xenstored.read("data/meminfo_free") == "1500000"
    with RunState(str(state)) as rs:
        rs.lock()
        rs.set("published.data/meminfo_free", repr(now() - 111))
        rs.save()
    mark = fresh_xenstored.log_mark()
    run(fresh_xenstored, minimal_guest.root, state, "--section", "memory", "--max-age", "3600")
    assert written(fresh_xenstored, mark) == [("write", "data/meminfo_free")]
    assert view(fresh_xenstored)["memory_internal_free"] == 1495000


def test_small_memory_moves_wait_for_max_age(fresh_xenstored, minimal_guest, state):
    run(fresh_xenstored, minimal_guest.root, state, "--section", "memory")
    minimal_guest.meminfo(available=1500000 - 5000)           # 0.24% of MemTotal: noise
    mark = fresh_xenstored.log_mark()
    run(fresh_xenstored, minimal_guest.root, state, "--section", "memory")
    assert written(fresh_xenstored, mark) == []
    assert fresh_xenstored.read("data/meminfo_free") == "1500000"
    # A smaller threshold makes the same move count ...
    run(fresh_xenstored, minimal_guest.root, state, "--section", "memory", "--threshold", "0.1")
    assert fresh_xenstored.read("data/meminfo_free") == "1495000"
    # ... and so does the published value's age.
    minimal_guest.meminfo(available=1500000 - 7000)
    run(fresh_xenstored, minimal_guest.root, state, "--section", "memory")
    assert fresh_xenstored.read("data/meminfo_free") == "1495000"
    time.sleep(1.1)
    run(fresh_xenstored, minimal_guest.root, state, "--section", "memory", "--max-age", "1")
    assert fresh_xenstored.read("data/meminfo_free") == "1493000"


def test_failed_section_keeps_its_keys_and_others_publish(fresh_xenstored, minimal_guest, state):
    run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS)
    minimal_guest.file("/proc/meminfo", "garbage\n")
    minimal_guest.distribution('os_distro="fedora"\nos_majorver="40"\nos_minorver="0"\n'
                       'os_uname="6.8.5"\nos_name="Fedora release 40 (Forty)"\n')
    res = run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS, check=False)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "xe-oneshot: section memory failed: /proc/meminfo has no MemTotal or "
        "MemAvailable/MemFree"]
    tree, _ = tree_without_updated(fresh_xenstored)
    expected = expected_static_memory()
    expected.update({"data/os_distro": "fedora", "data/os_majorver": "40",
                     "data/os_minorver": "0", "data/os_uname": "6.8.5",
                     "data/os_name": "Fedora release 40 (Forty)"})
    assert tree == expected
    got = view(fresh_xenstored)
    assert got["os_version"] == {"name": "Fedora release 40 (Forty)", "uname": "6.8.5",
                                 "distro": "fedora", "major": "40", "minor": "0"}
    assert got["memory_internal_free"] == 1500000              # kept as it was


def test_stale_keys_inside_owned_subtrees_go_and_others_stay(fresh_xenstored, minimal_guest, state):
    d = fresh_xenstored
    d.write(HOME + "/attr/PVAddons/Stale", "x")        # ours: the section owns the subtree
    d.write(HOME + "/attr/other", "keep")                # not ours
    d.write(HOME + "/data/meminfo_other", "keep")        # not ours either
    run(d, minimal_guest.root, state, "--section", SECTIONS)
    tree, _ = tree_without_updated(d)
    assert "attr/PVAddons/Stale" not in tree
    assert tree["attr/other"] == "keep" and tree["data/meminfo_other"] == "keep"


def test_migration_widens_the_run_to_all_sections(fresh_xenstored, minimal_guest, state):
    d = fresh_xenstored
    d.write(HOME + "/unique-domain-id", "1111")
    run(d, minimal_guest.root, state, "--section", SECTIONS)
    d.run_tool("xenstore-rm", HOME + "/attr/PVAddons")   # lost in the move, say
    run(d, minimal_guest.root, state, "--section", "memory")
    assert d.read(HOME + "/attr/PVAddons/Installed") is None   # same domain: memory only
    d.write(HOME + "/unique-domain-id", "2222")          # migrated / resumed
    run(d, minimal_guest.root, state, "--section", "memory")
    tree, _ = tree_without_updated(d)
    expected = expected_static_memory()
    expected["unique-domain-id"] = "2222"
    assert tree == expected
    assert view(d)["PV_drivers"] == ("Linux", 1, 0, 0, 0)     # PV drivers seen again


def test_no_xenstore_is_one_line_and_exit_3(minimal_guest, state, tmp_path):
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "no-such-socket"))
    env["PYTHONPATH"] = str(CHECKOUT)
    res = subprocess.run([sys.executable, "-m", "xe_oneshot", "--root", str(minimal_guest.root),
                          "--state-dir", str(state)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=60)
    assert res.returncode == 3
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-socket" in lines[0], res.stderr


def test_print_mode_needs_no_xenstore(minimal_guest, state, tmp_path):
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "no-such-socket"))
    env["PYTHONPATH"] = str(CHECKOUT)
    res = subprocess.run([sys.executable, "-m", "xe_oneshot", "--root", str(minimal_guest.root),
                          "--format", "json", "--section", SECTIONS], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert res.returncode == 0, res.stderr
    import json
    got = json.loads(res.stdout)
    leaves = {k: v for k, v in expected_static_memory().items() if v}
    assert got == leaves


def _dry_run_keys(stdout):
    return sorted(line[1:].split(" = ", 1)[0] if line.startswith("+") else line
                  for line in stdout.splitlines())


def test_dry_run_shows_exactly_what_a_real_run_writes(fresh_xenstored, minimal_guest, state):
    """A held-back meminfo_free move is not listed; data/updated is listed when, and
    only when, the real run writes it; then the real run writes exactly that."""
    d = fresh_xenstored
    run(d, minimal_guest.root, state, "--section", SECTIONS)
    minimal_guest.meminfo(available=1500000 - 5000)                    # noise: held back
    for extra, updated in ((None, False), ("--no-balloon", True)):
        args = ["--section", SECTIONS] + ([extra] if extra else [])
        d.write(HOME + "/data/meminfo_total", "1")             # a change made by dom0
        mark = d.log_mark()
        dry = run(d, minimal_guest.root, state, "--dry-run", *args)
        assert written(d, mark) == []
        planned = _dry_run_keys(dry.stdout)
        assert ("data/updated" in planned) is updated
        run(d, minimal_guest.root, state, *args)
        changes = d.writes_since(mark)
        assert planned == sorted(e.path if e.op == "write" else "-" + e.path
                                 for e in changes), dry.stdout
        assert "data/meminfo_free" not in planned


def test_dry_run_without_state_widens_like_a_first_run(fresh_xenstored, minimal_guest, state):
    """No state yet and a unique-domain-id: a real run widens to all sections, so the
    dry run lists them all too."""
    d = fresh_xenstored
    d.write(HOME + "/unique-domain-id", "1111")
    dry = run(d, minimal_guest.root, state, "--section", "memory", "--dry-run")
    assert not state.exists()
    mark = d.log_mark()
    run(d, minimal_guest.root, state, "--section", "memory")
    assert _dry_run_keys(dry.stdout) == sorted(e.path for e in d.writes_since(mark))
    assert "data/os_name" in _dry_run_keys(dry.stdout)


def test_dry_run_prints_changes_and_writes_nothing(fresh_xenstored, minimal_guest, state):
    run(fresh_xenstored, minimal_guest.root, state, "--section", "memory")
    minimal_guest.meminfo(available=900000)
    fresh_xenstored.write(HOME + "/data/meminfo_total", "1")
    mark = fresh_xenstored.log_mark()
    res = run(fresh_xenstored, minimal_guest.root, state, "--section", "misc,memory", "--dry-run")
    assert written(fresh_xenstored, mark) == []
    lines = res.stdout.splitlines()
    assert '+data/meminfo_total = "2048000"' in lines
    assert '+data/meminfo_free = "900000"' in lines
    assert '+control/feature-balloon = "1"' in lines
    assert any(line.startswith("+data/updated = ") for line in lines)
    assert fresh_xenstored.read("data/meminfo_free") == "1500000"


def test_storm_of_50_invocations_coalesces(fresh_xenstored, minimal_guest, state):
    d = fresh_xenstored
    run(d, minimal_guest.root, state, "--section", SECTIONS)
    minimal_guest.meminfo(available=500000)
    env = dict(d.env(), PYTHONPATH=str(CHECKOUT))
    cmd = [sys.executable, "-m", "xe_oneshot", "--root", str(minimal_guest.root), "--state-dir",
           str(state), "-v", "--section"]
    procs = [subprocess.Popen(cmd + [SECTIONS if i % 2 else "memory"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
             for i in range(50)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 50, [o[1] for o in outs]
    ran = sum(1 for _, err in outs if " written, " in err)
    skipped = sum(1 for _, err in outs if "skipped" in err)
    assert ran + skipped == 50
    assert ran < 50
    tree, _ = tree_without_updated(d)
    assert tree == expected_static_memory(meminfo_free="500000")
    assert view(d)["memory_internal_free"] == 500000
    assert sorted(os.listdir(state)) == ["lock", "state"]


def test_memory_run_imports_neither_psutil_nor_sh(minimal_guest, state, tmp_path):
    code = ("import sys; before = set(sys.modules); from xe_oneshot.cli import main; "
            "rc = main(['--print', '--root', %r, '--section', 'memory']); "
            "print(rc, sorted(m for m in ('psutil', 'sh', 'argparse', 'logging', 'json') "
            "if m in sys.modules and m not in before))" % str(minimal_guest.root))
    env = dict(os.environ, PYTHONPATH=str(CHECKOUT),
               XENSTORED_PATH=str(tmp_path / "none"))
    res = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=60, cwd=str(CHECKOUT))
    assert res.stdout.splitlines()[-1] == "0 []", res.stderr


# -- faults dom0 can cause (through the fault-injecting proxy) -------------------------

@pytest.fixture
def fresh_proxy(fresh_xenstored, tmp_path):
    from tests.support.fault_proxy import FaultProxy
    with FaultProxy(fresh_xenstored.socket, tmp_path / "proxy.sock") as p:
        yield p


def test_feature_balloon_the_guest_may_not_remove_warns_once_and_publishes_the_rest(
        fresh_xenstored, fresh_proxy, minimal_guest, state):
    from tests.support.fault_proxy import Rule
    run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS)
    minimal_guest.meminfo(available=900000)
    fresh_proxy.rules.append(Rule(op="rm", path="control/feature-balloon", error="EACCES"))
    res = run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS, "--no-balloon",
              env=fresh_proxy.env(fresh_xenstored.env()))
    assert res.stderr.splitlines() == [
        "xe-oneshot: control/feature-balloon: may not remove it (EACCES), left as is"]
    tree, _ = tree_without_updated(fresh_xenstored)
    assert tree == expected_static_memory(meminfo_free="900000")
    assert view(fresh_xenstored)["can_balloon"] is True        # what the toolstack left


def test_read_only_feature_balloon_warns_once_and_publishes_the_rest(
        fresh_xenstored, fresh_proxy, minimal_guest, state):
    from tests.support.fault_proxy import Rule
    fresh_proxy.rules.append(Rule(op="write", path="control/feature-balloon", error="EACCES"))
    res = run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS,
              env=fresh_proxy.env(fresh_xenstored.env()))
    assert res.stderr.splitlines() == [
        "xe-oneshot: control/feature-balloon: not written (EACCES), the rest is published"]
    tree, updated = tree_without_updated(fresh_xenstored)
    expected = expected_static_memory()
    del expected["control"], expected["control/feature-balloon"]
    assert tree == expected and updated
    got = view(fresh_xenstored)
    assert not got["can_balloon"] and got["has_guest_agent"]


def test_commit_conflicts_are_retried(fresh_xenstored, fresh_proxy, minimal_guest, state):
    from tests.support.fault_proxy import Rule
    fresh_proxy.rules.append(Rule(op="commit", error="EAGAIN", times=2))
    run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS,
        env=fresh_proxy.env(fresh_xenstored.env()))
    assert fresh_proxy.counts["commit"] == 3
    assert tree_without_updated(fresh_xenstored)[0] == expected_static_memory()


def test_endless_conflicts_fail_cleanly_with_nothing_published(fresh_xenstored, fresh_proxy,
                                                               minimal_guest, state):
    from tests.support.fault_proxy import Rule
    fresh_proxy.rules.append(Rule(op="commit", error="EAGAIN"))
    res = run(fresh_xenstored, minimal_guest.root, state, "--section", SECTIONS,
              env=fresh_proxy.env(fresh_xenstored.env()), check=False)
    assert res.returncode == 4
    assert len(res.stderr.splitlines()) == 1 and "EAGAIN" in res.stderr
    assert fresh_xenstored.tree(HOME) == {}
    assert 2 < fresh_proxy.counts["commit"] <= 12


def test_transactions_hold_only_changes_and_stay_under_the_guest_quota(
        fresh_xenstored, fresh_proxy):
    """oxenstored refuses a guest's transaction past 1024 requests (dom0's socket is
    exempt, so count them at the proxy): reads happen outside, a huge change is cut
    between volumes, an unchanged rerun starts no transaction."""
    from collections import Counter

    from xe_oneshot.publisher import Policy, Publisher, TransactionSink, Wanted
    from xe_oneshot.xenstore import Client

    wanted = {"data/volumes/%d/%s" % (n, k): "v%d" % n for n in range(40) for k in "abcde"}
    with Client.open(env={"XENSTORED_PATH": str(fresh_proxy.path)}) as client:
        done = Publisher(client, Policy(), TransactionSink(client, max_ops=50)).publish(
            Wanted(["data/volumes"], dict(wanted)))
        per_tx = Counter(tx for _, _, tx in fresh_proxy.requests if tx)
        assert len(done.writes) == 200 + 1 and done.removes == []     # + data/updated
        assert done.plan.first and "data/updated" in done.writes      # the first run
        assert len(per_tx) == 5 and max(per_tx.values()) <= 50
        assert fresh_proxy.counts["transaction_start"] == 5 and fresh_proxy.counts["commit"] == 5
        assert not any(op in ("read", "directory") for op, _, tx in fresh_proxy.requests if tx)
        tree = fresh_xenstored.tree(HOME + "/data/volumes")
        assert {k: v for k, v in tree.items() if "/" in k} == {
            k[len("data/volumes/"):]: v for k, v in wanted.items()}
        fresh_proxy.reset()
        Publisher(client, Policy(), TransactionSink(client, max_ops=50)).publish(
            Wanted(["data/volumes"], dict(wanted)))
        assert fresh_proxy.counts["transaction_start"] == 0 and fresh_proxy.counts["write"] == 0


def test_reader_for_collectors_reads_many_and_a_refusal_is_none(fresh_xenstored, fresh_proxy):
    from tests.support.fault_proxy import Rule
    from xe_oneshot.xenstore import Client
    from xe_oneshot.xsreader import ClientReader

    for n in range(4):
        fresh_xenstored.write(HOME + "/r/%d" % n, "v%d" % n)
    fresh_proxy.rules.append(Rule(op="read", path=r"r/2$", error="EACCES"))
    with Client.open(env={"XENSTORED_PATH": str(fresh_proxy.path)}) as client:
        reader = ClientReader(client)
        assert reader.read_many(["r/0", "r/1", "r/2", "r/3", "r/9"]) == \
            ["v0", "v1", None, "v3", None]
        assert fresh_proxy.counts["read"] == 5 + 5          # pipelined, then one by one
