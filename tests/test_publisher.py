"""The publisher's pure parts: the diff, the change policy, value cleaning, splitting."""

import pytest

from xe_oneshot.publisher import Policy, Wanted, clean_value, diff


def test_diff_writes_changes_and_removes_topmost_stale_nodes():
    owned = ["data/volumes", "data/meminfo_free"]
    nodes = {"data/volumes", "data/volumes/0", "data/volumes/0/name",
             "data/volumes/0/mount_points", "data/volumes/0/mount_points/0",
             "data/volumes/0/mount_points/1", "data/volumes/1", "data/volumes/1/name"}
    existing = {"data/volumes/0/name": "/dev/xvda1"}
    wanted = {"data/volumes/0/name": "/dev/xvda1", "data/volumes/0/mount_points/0": "/",
              "data/meminfo_free": "5"}
    plan = diff(existing, nodes, Wanted(owned, wanted), Policy())
    assert plan.writes == {"data/volumes/0/mount_points/0": "/", "data/meminfo_free": "5"}
    assert plan.removes == ["data/volumes/0/mount_points/1", "data/volumes/1"]


def test_diff_removes_an_owned_subtree_that_is_no_longer_wanted():
    plan = diff({}, {"attr/vif", "attr/vif/0", "attr/vif/0/ipv4"}, Wanted(["attr/vif"]),
                Policy())
    assert plan.removes == ["attr/vif"] and not plan.writes


@pytest.mark.parametrize("old, new, age, written", [
    ("1000", "1005", 10, False),     # small move, young value: held back
    ("1000", "1010", 10, True),      # a full tolerance unit: written
    ("1000", "995", 400, True),      # small move but old value: written
    ("1000", "abc", 10, True),       # not a number: written
])
def test_diff_change_policy(old, new, age, written):
    policy = Policy(threshold=1.0, max_age=300, now=1000.0,
                    published={"data/meminfo_free": 1000.0 - age})
    plan = diff({"data/meminfo_free": old}, {"data/meminfo_free"},
                Wanted(["data/meminfo_free"], {"data/meminfo_free": new},
                       {"data/meminfo_free": 10}), policy)
    assert ("data/meminfo_free" in plan.writes) is written
    assert ("data/meminfo_free" in plan.deferred) is (not written)


def test_diff_change_policy_writes_when_age_unknown():
    plan = diff({"k": "1000"}, {"k"}, Wanted(["k"], {"k": "1001"}, {"k": 10}), Policy(now=5.0))
    assert plan.writes == {"k": "1001"}


@pytest.mark.parametrize("old, new, tolerance, written", [
    ("33", "0", 10 ** 1000, False),             # MemTotal of 1000 digits: held back
    ("0", "9" * 1000, 10, True),                # a move of 1000 digits: written
    ("0", "9" * 1000, 10 ** 990, True),
], ids=["huge-tolerance", "huge-move", "both-huge"])
def test_diff_change_policy_hostile_meminfo_huge_numbers_do_not_overflow(old, new, tolerance,
                                                                         written):
    policy = Policy(threshold=1.0, max_age=300, now=1000.0, published={"k": 990.0})
    plan = diff({"k": old}, {"k"}, Wanted(["k"], {"k": new}, {"k": tolerance}), policy)
    assert ("k" in plan.writes) is written


def test_clean_value_strips_control_characters_and_cuts_at_limit():
    assert clean_value("k", "a\nb\x00c\x7f") == "a b c "
    long = "é" * 2000                      # 4000 bytes
    cut = clean_value("k", long)
    assert len(cut.encode()) <= 2048 and cut == "é" * 1024


def test_split_keeps_small_plans_whole_and_cuts_large_ones_between_units():
    from xe_oneshot.publisher import Plan, split
    owned = ["data/volumes", "data/meminfo_free"]
    small = Plan(writes={"data/meminfo_free": "1", "data/volumes/0/name": "x"},
                 removes=["data/volumes/3"], owned=owned)
    assert split(small, 10) == [[("data/meminfo_free", "1"),
                                 ("data/volumes/0/name", "x"),
                                 ("data/volumes/3", None)]]
    writes = {"data/volumes/%d/%s" % (n, k): "v" for n in range(10) for k in "abc"}
    batches = split(Plan(writes=writes, owned=owned), 7)
    assert [len(b) for b in batches] == [6, 6, 6, 6, 6]          # 2 volumes of 3 each
    assert [k for b in batches for k, _ in b] == list(writes)
    for batch in batches:                                       # no volume cut in two
        assert len({k.split("/")[2] for k, _ in batch}) * 3 == len(batch)
    huge = {"attr/vif/0/ipv4/%d" % n: "v" for n in range(5)}
    assert [len(b) for b in split(Plan(writes=huge, owned=["attr/vif"]), 2)] == [2, 2, 1]


def test_merge_keeps_each_sections_keys_under_its_own_paths_and_cleans_values(capsys):
    from xe_oneshot.publisher import merge
    from xe_oneshot.sections import Collected
    memory = Collected(values={"data/meminfo_free": "1\n2", "data/volumes/0/name": "x"},
                       tolerance={"data/meminfo_free": 10})
    volumes = Collected(values={"data/volumes/0/name": "/dev/xvda"})
    before = (dict(memory.values), dict(memory.tolerance))
    wanted = merge([(("data/meminfo_free",), memory), (("data/volumes",), volumes)])
    assert wanted == Wanted(["data/meminfo_free", "data/volumes"],
                            {"data/meminfo_free": "1 2", "data/volumes/0/name": "/dev/xvda"},
                            {"data/meminfo_free": 10})
    assert (memory.values, memory.tolerance) == before          # the answers are left alone
    assert capsys.readouterr().err == ("xe-oneshot: data/volumes/0/name: not under the "
                                       "sections' own keys, not published\n")


def test_remembered_times_are_returned_and_the_policy_is_left_alone():
    from xe_oneshot.publisher import remembered
    policy = Policy(now=100.0, published={"a/free": 1.0, "a/gone": 2.0, "b/free": 3.0,
                                          "other": 4.0})
    wanted = Wanted(["a", "b", "c"], {"a/free": "1", "b/free": "2", "c/free": "3"},
                    {"a/free": 1, "b/free": 1, "c/free": 1})
    assert remembered(policy, wanted, ["a/free"]) == {
        "a/free": 100.0,        # written now
        "b/free": 3.0,          # held back: its age goes on
        "c/free": 100.0,        # seen for the first time: its age starts
        "other": 4.0}           # not ours to forget; a/gone is no longer reported
    assert policy.published == {"a/free": 1.0, "a/gone": 2.0, "b/free": 3.0, "other": 4.0}
