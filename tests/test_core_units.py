"""The collector core's pure parts: option parsing, memory/misc sections, the diff,
the run state's storage and coordination."""

import os
import stat
import subprocess
import sys

import pytest

from tests.fakeguest import FakeGuest
from xe_oneshot import cli, sections
from xe_oneshot.guest import Root
from xe_oneshot.publisher import Policy, clean_value, diff
from xe_oneshot.runstate import RunState, StateError
from xe_oneshot.sections import Context, SectionError, memory, misc


# -- command line -------------------------------------------------------------------

def test_sections_expand_groups_and_lists_in_publishing_order():
    assert sections.expand(["volumes,memory", "static"]) == ["os", "misc", "memory", "volumes"]
    assert sections.expand(["all"]) == ["os", "misc", "memory", "network", "volumes"]
    assert sections.expand(["ephemeral"]) == ["memory", "network", "volumes"]
    with pytest.raises(ValueError, match="unknown section 'disks'"):
        sections.expand(["memory,disks"])


def test_parse_args_forms():
    opts = cli.parse_args(["-s", "memory", "--section=network", "--root", "/r",
                           "--state-dir=/s", "--no-balloon", "-vv", "--threshold", "2.5",
                           "--max-age=60"])
    assert opts.sections == ["memory", "network"]
    assert (opts.root, opts.state_dir, opts.no_balloon, opts.verbose) == ("/r", "/s", True, 2)
    assert (opts.threshold, opts.max_age) == (2.5, 60.0)
    assert cli.parse_args(["--format", "json"]).print_keys is True


@pytest.mark.parametrize("argv, message", [
    (["--section"], "--section needs a value"),
    (["--bogus"], "unknown option --bogus"),
    (["extra"], "unexpected argument 'extra'"),
    (["--format", "xml"], "--format takes text or json"),
    (["--threshold", "-1"], "--threshold takes a number >= 0"),
    (["--max-age", "nan"], "--max-age takes a number >= 0"),
    (["--print=yes"], "--print takes no value"),
    (["--dry-run", "--print"], "exclude each other"),
])
def test_parse_args_errors(argv, message):
    with pytest.raises(cli.UsageError, match=message):
        cli.parse_args(argv)


def test_usage_errors_exit_2_with_one_line_and_usage(capsys):
    assert cli.main(["--section", "nope"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("xe-oneshot: unknown section 'nope'")
    assert err[1].startswith("usage: xe-oneshot")


def test_help_lists_sections_and_exit_codes(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("os, misc, memory, network, volumes", "ephemeral (memory network volumes)",
                 "3  no XenStore", "1  a section failed"):
        assert word in out


# -- memory ---------------------------------------------------------------------------

def test_memory_prefers_memavailable(tmp_path):
    FakeGuest(tmp_path).meminfo(total=4000000, available=1234567, free=99)
    got = memory.collect(Context(root=Root(str(tmp_path))))
    assert got.values == {"data/meminfo_total": "4000000", "data/meminfo_free": "1234567"}
    assert got.tolerance == {"data/meminfo_free": 40000}


def test_memory_falls_back_to_memfree_on_old_kernels(tmp_path):
    FakeGuest(tmp_path).meminfo(total=4000000, available=None, free=321)
    got = memory.collect(Context(root=Root(str(tmp_path))))
    assert got.values["data/meminfo_free"] == "321"


@pytest.mark.parametrize("text", ["", "garbage\x00\xff", "MemTotal: lots kB\n",
                                  "MemTotal:  100 kB\n", "MemTotal:\nMemFree:\n"])
def test_memory_garbage_is_a_section_error(tmp_path, text):
    FakeGuest(tmp_path).file("/proc/meminfo", text)
    with pytest.raises(SectionError):
        memory.collect(Context(root=Root(str(tmp_path))))


def test_memory_missing_file_is_a_section_error(tmp_path):
    with pytest.raises(SectionError, match="missing"):
        memory.collect(Context(root=Root(str(tmp_path))))


# -- misc -----------------------------------------------------------------------------

@pytest.mark.parametrize("version, numbers", [
    ("1.2.3", ["1", "2", "3", "0"]), ("1.2.3.45", ["1", "2", "3", "45"]),
    ("1.2.3+45", ["1", "2", "3", "45"]), ("2.0.dev1", ["2", "0", "0", "0"]),
    ("3.1rc1", ["3", "1", "0", "0"]), ("007", ["7", "0", "0", "0"]), ("x", ["0"] * 4),
])
def test_version_numbers_are_always_decimal(version, numbers):
    assert misc.version_numbers(version) == numbers


def test_misc_keys_and_balloon_option(tmp_path):
    """feature-balloon: "1" with a balloon driver, absent (removed) otherwise."""
    root = Root(str(tmp_path))
    got = misc.collect(Context(root=root)).values
    assert got["attr/PVAddons/Installed"] == "1"
    assert int(got["attr/PVAddons/MajorVersion"]) >= 1
    assert "control/feature-balloon" not in got                 # no driver
    (tmp_path / "sys/devices/system/xen_memory/xen_memory0").mkdir(parents=True)
    assert misc.collect(Context(root=root)).values["control/feature-balloon"] == "1"
    assert "control/feature-balloon" not in misc.collect(
        Context(root=root, no_balloon=True)).values


# -- diff -----------------------------------------------------------------------------

def test_diff_writes_changes_and_removes_topmost_stale_nodes():
    owned = ["data/volumes", "data/meminfo_free"]
    nodes = {"data/volumes", "data/volumes/0", "data/volumes/0/name",
             "data/volumes/0/mount_points", "data/volumes/0/mount_points/0",
             "data/volumes/0/mount_points/1", "data/volumes/1", "data/volumes/1/name"}
    existing = {"data/volumes/0/name": "/dev/xvda1"}
    wanted = {"data/volumes/0/name": "/dev/xvda1", "data/volumes/0/mount_points/0": "/",
              "data/meminfo_free": "5"}
    plan = diff(existing, nodes, owned, wanted, {}, Policy())
    assert plan.writes == {"data/volumes/0/mount_points/0": "/", "data/meminfo_free": "5"}
    assert plan.removes == ["data/volumes/0/mount_points/1", "data/volumes/1"]


def test_diff_removes_an_owned_subtree_that_is_no_longer_wanted():
    plan = diff({}, {"attr/vif", "attr/vif/0", "attr/vif/0/ipv4"}, ["attr/vif"], {}, {},
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
    plan = diff({"data/meminfo_free": old}, {"data/meminfo_free"}, ["data/meminfo_free"],
                {"data/meminfo_free": new}, {"data/meminfo_free": 10}, policy)
    assert ("data/meminfo_free" in plan.writes) is written
    assert ("data/meminfo_free" in plan.deferred) is (not written)


def test_diff_change_policy_writes_when_age_unknown():
    plan = diff({"k": "1000"}, {"k"}, ["k"], {"k": "1001"}, {"k": 10}, Policy(now=5.0))
    assert plan.writes == {"k": "1001"}


@pytest.mark.parametrize("old, new, tolerance, written", [
    ("33", "0", 10 ** 1000, False),             # MemTotal of 1000 digits: held back
    ("0", "9" * 1000, 10, True),                # a move of 1000 digits: written
    ("0", "9" * 1000, 10 ** 990, True),
], ids=["huge-tolerance", "huge-move", "both-huge"])
def test_diff_change_policy_hostile_meminfo_huge_numbers_do_not_overflow(old, new, tolerance,
                                                                         written):
    policy = Policy(threshold=1.0, max_age=300, now=1000.0, published={"k": 990.0})
    plan = diff({"k": old}, {"k"}, ["k"], {"k": new}, {"k": tolerance}, policy)
    assert ("k" in plan.writes) is written


def test_clean_value_strips_control_characters_and_cuts_at_limit():
    assert clean_value("k", "a\nb\x00c\x7f") == "a b c "
    long = "é" * 2000                      # 4000 bytes
    cut = clean_value("k", long)
    assert len(cut.encode()) <= 2048 and cut == "é" * 1024


# -- run state ------------------------------------------------------------------------

def test_state_dir_created_private_and_values_persist(tmp_path):
    d = tmp_path / "state"
    with RunState(str(d)) as state:
        state.set("domid", "abc")
        state.mark_started(["memory"], 100.0)
        state.save()
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d / "state").st_mode) == 0o600
    assert os.getxattr(d / "state", "user.xe-oneshot.domid") == b"abc"
    with RunState(str(d)) as state:
        assert state.get("domid") == "abc"
        assert state.pending(["memory", "network"], 99.0) == ["network"]
        assert state.pending(["memory"], 101.0) == ["memory"]


def test_state_of_another_boot_is_absent_and_replaced(tmp_path):
    d = tmp_path / "state"
    with RunState(str(d), boot="boot-1") as state:
        state.set("domid", "abc")
        state.mark_started(["memory"], 1e6)
        state.save()
    with RunState(str(d), boot="boot-1") as state:     # the same boot: kept
        assert state.get("domid") == "abc" and state.pending(["memory"], 10.0) == []
    with RunState(str(d), boot="boot-2") as state:     # rebooted: none of it
        assert state.get("domid") is None and state.pending(["memory"], 10.0) == ["memory"]
        state.mark_started(["network"], 5.0)
        state.save()
    names = sorted(os.listxattr(d / "state"))
    assert names == ["user.xe-oneshot.boot", "user.xe-oneshot.started.network"], names
    with RunState(str(d)) as state:                    # no boot_id known: not boot-2's
        assert state.items("") == {}


def test_state_save_failure_leaves_the_old_state_and_no_temp_file(tmp_path, monkeypatch):
    d = tmp_path / "state"
    with RunState(str(d)) as state:
        state.set("domid", "old")
        state.save()
    with RunState(str(d)) as state:
        state.get("domid")
        state._xattrs = None                  # as where xattrs are refused: the file
        state.set("domid", "new")

        def full(fd, data):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(os, "write", full)
        with pytest.raises(OSError):
            state.save()
        monkeypatch.undo()
    assert sorted(os.listdir(d)) == ["lock", "state"]
    with RunState(str(d)) as state:
        assert state.get("domid") == "old"


def test_state_dir_symlink_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(target)
    with pytest.raises(StateError, match="symlink"):
        RunState(str(tmp_path / "state")).open()
    assert list(target.iterdir()) == []


def test_state_file_symlink_is_not_written_through(tmp_path):
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (d / "state").symlink_to(victim)
    with pytest.raises(StateError):
        RunState(str(d)).open()
    assert victim.read_text() == "precious"


def test_state_dir_writable_by_others_is_refused(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    os.chmod(d, 0o777)
    with pytest.raises(StateError, match="not ours alone"):
        RunState(str(d)).open()


FALLBACK_SCRIPT = r"""
import os, sys
from xe_oneshot.runstate import RunState
d = sys.argv[1]
with RunState(d) as s:
    s.set("domid", "x1"); s.set("published.data/volumes/0/free", "12.5"); s.save()
with RunState(d) as s:
    print(s.get("domid"), s.get("published.data/volumes/0/free"))
print(open(os.path.join(d, "state")).read(), end="")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount ramfs")
def test_state_falls_back_to_a_file_where_xattrs_are_refused(tmp_path):
    # ramfs has no xattr support at all (EOPNOTSUPP), like tmpfs before Linux 6.6.
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = 'mount -t ramfs none "$1" && exec "$2" -c "$3" "$1/state"'
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                          "sh", str(mnt), sys.executable, FALLBACK_SCRIPT],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "x1 12.5"
    assert "domid\tx1" in lines[1:]
    assert "published.data/volumes/0/free\t12.5" in lines[1:]


# -- records ---------------------------------------------------------------------------

def test_record_behaves_like_the_dataclass_parts_we_use():
    from xe_oneshot.records import field, record

    @record
    class Vol:
        name: str
        size: int = 0
        points: list = field(default_factory=list)

    a, b = Vol("xvda", points=["/"]), Vol(name="xvda")
    assert (a.name, a.size, a.points, b.points) == ("xvda", 0, ["/"], [])
    assert Vol("x").points is not Vol("x").points
    assert a != b and Vol("xvda", 0, []) == b
    assert repr(b) == "Vol(name='xvda', size=0, points=[])"
    with pytest.raises(TypeError, match="missing argument 'name'"):
        Vol()
    with pytest.raises(TypeError, match="unexpected argument 'colour'"):
        Vol("x", colour=1)

    @record(frozen=True)
    class Key:
        path: str

    assert Key("a") == Key("a") and len({Key("a"), Key("a")}) == 1
    with pytest.raises(AttributeError):
        Key("a").path = "b"


# -- splitting a huge change ---------------------------------------------------------------

def test_split_keeps_small_plans_whole_and_cuts_large_ones_between_units():
    from xe_oneshot.publisher import Plan, split
    owned = ["data/volumes", "data/meminfo_free"]
    small = Plan(writes={"data/meminfo_free": "1", "data/volumes/0/name": "x"},
                 removes=["data/volumes/3"])
    assert split(small, owned, 10) == [[("data/meminfo_free", "1"),
                                        ("data/volumes/0/name", "x"),
                                        ("data/volumes/3", None)]]
    writes = {"data/volumes/%d/%s" % (n, k): "v" for n in range(10) for k in "abc"}
    batches = split(Plan(writes=writes), owned, 7)
    assert [len(b) for b in batches] == [6, 6, 6, 6, 6]          # 2 volumes of 3 each
    assert [k for b in batches for k, _ in b] == list(writes)
    for batch in batches:                                       # no volume cut in two
        assert len({k.split("/")[2] for k, _ in batch}) * 3 == len(batch)
    huge = {"attr/vif/0/ipv4/%d" % n: "v" for n in range(5)}
    assert [len(b) for b in split(Plan(writes=huge), ["attr/vif"], 2)] == [2, 2, 1]
