"""The run state: its storage (xattrs or a file), its safety checks, and boot ties."""

import os
import stat
import subprocess
import sys

import pytest

from xe_oneshot.runstate import RunState, StateError


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
