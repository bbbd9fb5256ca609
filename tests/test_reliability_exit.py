"""Exit status, run state and output faults (issue 12), against the real daemon.

* The state dir's filesystem full (a real tmpfs, filled): a run that has published says
  so and exits 0; later runs keep publishing; a state dir that cannot even be created
  does not stop publishing.
* A state dir that survived a reboot (stamps from another boot's clock) does not
  silence the agent: state is tied to the kernel's boot_id.
* Not a Xen guest: nothing is created.
* Output faults: stdout full (/dev/full) or closed (a reader that left) gets its own exit
  status and at most one line, in all three commands; a closed log pipe does not stop
  publishing.
* `--print` escapes what it shows as xenstore-ls does: a hostile mount point name can
  neither reach the terminal raw nor forge lines.
* Small output faults: usage errors, messages said once, plurals, hints, --version.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.support.fakeguest import MEMINFO, set_meminfo
from tests.support.reliability import changes_since, expected_full, home_tree, log_mark, raw_read
from tests.support.collector import CHECKOUT, HOME, run

SECTIONS = "static,memory,volumes"
STATE_PREFIX = "user.xe-oneshot."
BOOT_A = "6f1c2a52-7d4e-4b8e-9a0f-1c2d3e4f5a6b"
BOOT_B = "0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b"


def free_published(daemon):
    return daemon.read(HOME + "/data/meminfo_free")


# -- item 5: the state's filesystem is full ---------------------------------------------

_FULL_DRIVER = r"""
import json, os, subprocess, sys
mnt, guest, home = sys.argv[1:4]
subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=24,mode=0700",
                       "none", mnt])
import pyxs

def read_free():
    with pyxs.Client(unix_socket_path=os.environ["XENSTORED_PATH"]) as peer:
        return peer.read((home + "/data/meminfo_free").encode()).decode()

def meminfo(available):
    path = os.path.join(guest, "proc/meminfo")
    with open(path + ".new", "w") as f:
        f.write(os.environ["MEMINFO"].replace("@", str(available)))
    os.replace(path + ".new", path)

def run(state, sections):
    p = subprocess.run([sys.executable, "-m", "xe_oneshot", "--root", guest,
                        "--state-dir", state, "--section", sections],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    return {"rc": p.returncode, "stderr": p.stderr, "free": read_free()}

def fill():
    # blocks, then inodes, then xattr space (tmpfs keeps that apart): nothing is left
    fd = os.open(os.path.join(mnt, "blocks"), os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as err:
        assert err.errno == 28, err
    os.close(fd)
    n = 0
    while True:
        try:
            os.close(os.open(os.path.join(mnt, "inode%d" % n), os.O_WRONLY | os.O_CREAT))
        except OSError as err:
            assert err.errno == 28, err
            break
        n += 1
    # and the room tmpfs keeps for xattrs, to the last byte
    filler = os.path.join(mnt, "inode0")
    for size in (1024, 64, 1):
        while True:
            try:
                os.setxattr(filler, "user.fill%d" % n, b"x" * size)
            except OSError as err:
                assert err.errno == 28, err
                break
            n += 1

state = os.path.join(mnt, "state")
out = {"first": run(state, "memory")}
fill()
# each run has something new to remember (another section's start): it needs room
meminfo(900000)
out["full"] = run(state, "memory,misc")
meminfo(500000)
out["again"] = run(state, "memory,os")
meminfo(400000)
out["no-dir"] = run(os.path.join(mnt, "new-state"), "memory")
out["no-dir-created"] = os.path.exists(os.path.join(mnt, "new-state"))
out["listing"] = sorted(os.listdir(state))
print(json.dumps(out))
"""


def test_state_dir_filesystem_full_still_publishes_and_says_so(daemon, full_guest, tmp_path):
    """ENOSPC on the state (xattrs and the fallback file both): the run published, so it
    says so in one warning and exits 0; the next runs keep publishing; a state dir that
    cannot even be created costs the coalescing, not the publishing."""
    mnt = tmp_path / "statefs"
    mnt.mkdir()
    env = dict(daemon.env(), PYTHONPATH=str(CHECKOUT),
               MEMINFO=MEMINFO.format(total=2048000, free=300000,
                                      available="MemAvailable:    @ kB\n"))
    res = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c",
                          _FULL_DRIVER, str(mnt), str(full_guest.root), HOME],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["first"] == {"rc": 0, "stderr": "", "free": "1500000"}
    for step, free in (("full", "900000"), ("again", "500000")):
        got = out[step]
        assert (got["rc"], got["free"]) == (0, free), got
        lines = got["stderr"].splitlines()
        assert len(lines) == 1, got
        assert "published; state not saved" in lines[0], got
        assert "No space left on device" in lines[0], got
        assert "nothing published" not in lines[0] and "Traceback" not in got["stderr"]
    got = out["no-dir"]
    assert (got["rc"], got["free"]) == (0, "400000"), got
    assert len(got["stderr"].splitlines()) == 1 and "running without state" in got["stderr"]
    assert out["no-dir-created"] is False
    assert out["listing"] == ["lock", "state"]            # no temp file left behind


# -- item 7: state from another boot ----------------------------------------------------

def _plant(state, values):
    """Values in the state as a run leaves them (xattrs on the state file)."""
    path = str(state / "state")
    assert os.path.getsize(path) == 0, "the state is in the fallback file here"
    for name, value in values.items():
        if value is None:
            try:
                os.removexattr(path, STATE_PREFIX + name)
            except OSError:
                pass
        else:
            os.setxattr(path, STATE_PREFIX + name, value.encode())


@pytest.mark.parametrize("case", ["another-boot", "no-boot-recorded", "same-boot"])
def test_state_dir_surviving_a_reboot_does_not_silence_the_agent(daemon, full_guest, state,
                                                                 case):
    """Stamps on the boot clock of a long previous boot (a week of uptime) are in the
    future of this boot's clock: runs would skip (started.*) and hold changes back
    (published.*). Such state is ignored when the boot_id differs; within one boot it is
    honoured (the control case, which shows the planted stamps do bite)."""
    full_guest.file("/proc/sys/kernel/random/boot_id", BOOT_A + "\n")
    run(daemon, full_guest.root, state, "--section", "memory")
    assert free_published(daemon) == "1500000"
    week = repr(7 * 86400.0 + 1234.5)
    _plant(state, {"started.memory": week, "published.data/meminfo_free": week,
                   "boot": None if case == "no-boot-recorded" else BOOT_A})
    if case != "same-boot":
        full_guest.file("/proc/sys/kernel/random/boot_id", BOOT_B + "\n")      # rebooted
    set_meminfo(full_guest, 1495000)        # a small change: within the 1% tolerance
    res = run(daemon, full_guest.root, state, "--section", "memory", "-v")
    if case == "same-boot":
        assert "skipped" in res.stderr, res.stderr
        assert free_published(daemon) == "1500000"
        return
    assert "skipped" not in res.stderr, res.stderr
    assert free_published(daemon) == "1495000"
    # the new boot's state replaced the old one: a run at once now holds a small change
    set_meminfo(full_guest, 1490000)
    res = run(daemon, full_guest.root, state, "--section", "memory", "-v")
    assert "1 small change held back" in res.stderr, res.stderr
    assert free_published(daemon) == "1495000"
    assert os.getxattr(str(state / "state"), STATE_PREFIX + "boot").decode() == BOOT_B


# -- item 8: not a Xen guest ------------------------------------------------------------

@pytest.mark.parametrize("mode", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_not_a_xen_guest_touches_nothing(full_guest, state, tmp_path, mode):
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "no-socket"))
    res = run(None, full_guest.root, state, *mode, env=env, check=False)
    assert res.returncode == 3, res.stderr
    assert len(res.stderr.splitlines()) == 1 and "no XenStore" in res.stderr
    assert not state.exists()


def test_print_needs_no_state_nor_xenstore(full_guest, state, tmp_path):
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "no-socket"))
    res = run(None, full_guest.root, state, "--print", "--section", "memory", env=env)
    assert res.stdout == 'data/meminfo_total = "2048000"\ndata/meminfo_free = "1500000"\n'
    assert not state.exists()


# -- item 16: empty section names -------------------------------------------------------

@pytest.mark.parametrize("value", ["", ",", " , ", ",,"])
def test_empty_section_name_is_a_usage_error(daemon, full_guest, state, value):
    mark = log_mark(daemon)
    res = run(daemon, full_guest.root, state, "--section", value, check=False)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines()[0] == \
        "xe-oneshot: --section needs a section name, not %r" % value
    assert not state.exists()
    assert changes_since(daemon, mark) == []


# -- item 13: --print shows what would be published, escaped ------------------------------

#: A mount point that would clear the screen and forge a line if printed raw.
HOSTILE_POINT = "/mnt/\x1b[2J\x1b]0;owned\x07\nattr/PVAddons/Installed = \"0\"\u00e9\x9b1m"
#: ... as a run publishes it (control characters as spaces), escaped as xenstore-ls does
#: (non-ASCII bytes as \xNN): written out by hand.
HOSTILE_SHOWN = '/mnt/ [2J ]0;owned  attr/PVAddons/Installed = "0"\\xc3\\xa9 1m'


def test_print_escapes_a_hostile_mount_point_like_xenstore_ls(daemon, full_guest, state):
    full_guest.block.mount((202, 1), HOSTILE_POINT, "ext4", "/dev/xvda1")
    env = dict(os.environ, XENSTORED_PATH="/nonexistent")
    res = run(None, full_guest.root, state, "--print", "--section", "volumes", env=env)
    lines = res.stdout.split("\n")
    assert lines[-1] == ""
    assert all(re.fullmatch(r"[ -~]*", line) for line in lines), res.stdout
    assert 'data/volumes/0/mount_points/0 = "%s"' % HOSTILE_SHOWN in lines
    assert [line for line in lines if line.startswith("attr/")] == []
    # what a run publishes is what --print showed
    run(daemon, full_guest.root, state, "--section", "volumes")
    assert raw_read(daemon, HOME + "/data/volumes/0/mount_points/0") == \
        '/mnt/ [2J ]0;owned  attr/PVAddons/Installed = "0"\u00e9 1m'.encode()
    # JSON escapes it by itself (ASCII only)
    out = run(None, full_guest.root, state, "--format", "json", "--section", "volumes",
              env=env).stdout
    assert re.fullmatch(r"[ -~\n]*", out)
    assert json.loads(out)["data/volumes/0/mount_points/0"] == \
        '/mnt/ [2J ]0;owned  attr/PVAddons/Installed = "0"\u00e9 1m'


def test_dry_run_escapes_a_hostile_mount_point_like_xenstore_ls(daemon, full_guest, state):
    full_guest.block.mount((202, 1), HOSTILE_POINT, "ext4", "/dev/xvda1")
    res = run(daemon, full_guest.root, state, "--dry-run", "--section", "volumes")
    lines = res.stdout.split("\n")
    assert all(re.fullmatch(r"[ -~]*", line) for line in lines), res.stdout
    assert '+data/volumes/0/mount_points/0 = "%s"' % HOSTILE_SHOWN in lines


# -- item 17: output faults ----------------------------------------------------------------

def _closed_pipe():
    """A pipe whose reader has already left: a write gets EPIPE."""
    r, w = os.pipe()
    os.close(r)
    return w


COMMANDS = {
    "xe-oneshot": ["-m", "xe_oneshot", "--print"],
    "xenstore": ["-m", "xe_oneshot.xenstore_cli", "ls", "/"],
    "xe-linux-distribution": ["-m", "xe_oneshot.distribution_cli"],
}
#: The documented status of: stdout full, stdout's reader gone.
OUTPUT_STATUS = {"xe-oneshot": (5, 141), "xenstore": (4, 141),
                 "xe-linux-distribution": (3, 141)}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("fault", ["dev-full", "closed-pipe"])
def test_output_faults_get_their_own_status_and_one_line(daemon, full_guest, command, fault):
    env = dict(daemon.env(), PYTHONPATH=str(CHECKOUT))
    args = [sys.executable] + COMMANDS[command]
    if command == "xe-oneshot":
        args += ["--root", str(full_guest.root)]
    elif command == "xe-linux-distribution":
        full_guest.file("/etc/debian_version", "12.7\n")
        args += ["--root", str(full_guest.root)]
    if fault == "dev-full":
        with open("/dev/full", "w") as out:
            res = subprocess.run(args, env=env, stdout=out, stderr=subprocess.PIPE,
                                 universal_newlines=True, timeout=60)
    else:
        w = _closed_pipe()
        try:
            res = subprocess.run(args, env=env, stdout=w, stderr=subprocess.PIPE,
                                 universal_newlines=True, timeout=60)
        finally:
            os.close(w)
    full, pipe = OUTPUT_STATUS[command]
    assert "Traceback" not in res.stderr and "Exception" not in res.stderr, res.stderr
    if fault == "dev-full":
        assert res.returncode == full, res.stderr
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0], res.stderr
    else:
        assert (res.returncode, res.stderr) == (pipe, "")


def test_a_closed_log_pipe_does_not_stop_publishing(daemon, full_guest, state):
    """`xe-oneshot -vv 2>&1 | head -1`: the reader leaves, the run publishes all it can,
    even when it has a failed section's traceback to log (-vv)."""
    full_guest.file("/proc/meminfo", "garbage\n")
    w = _closed_pipe()
    try:
        res = subprocess.run([sys.executable, "-m", "xe_oneshot", "--root", str(full_guest.root),
                              "--state-dir", str(state), "--section", SECTIONS, "-vv"],
                             env=dict(daemon.env(), PYTHONPATH=str(CHECKOUT)),
                             stdout=w, stderr=w, timeout=60)
    finally:
        os.close(w)
    assert res.returncode == 1                  # the memory section failed, not the rest
    assert home_tree(daemon) == {k: v for k, v in expected_full().items()
                                 if not k.startswith("data/meminfo_")}


def test_dry_run_into_a_closed_pipe_is_quiet(daemon, full_guest, state):
    w = _closed_pipe()
    try:
        res = subprocess.run([sys.executable, "-m", "xe_oneshot", "--root", str(full_guest.root),
                              "--state-dir", str(state), "--dry-run"],
                             env=dict(daemon.env(), PYTHONPATH=str(CHECKOUT)),
                             stdout=w, stderr=subprocess.PIPE, universal_newlines=True,
                             timeout=60)
    finally:
        os.close(w)
    assert (res.returncode, res.stderr) == (141, "")


# -- item 18: small output faults -----------------------------------------------------------

def test_no_xenstore_is_said_once(full_guest, state, tmp_path):
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "no-socket"))
    res = run(None, full_guest.root, state, "--print", "-v", "--section", "memory", env=env)
    for line in res.stderr.splitlines():
        assert line.count("no XenStore") <= 1, line
    assert "no XenStore" in res.stderr


def test_debug_output_shows_no_python_repr(daemon, full_guest, state):
    res = run(daemon, full_guest.root, state, "-vv")
    assert not re.search(r"\b[A-Z][A-Za-z]+\([a-z_]+=", res.stderr), res.stderr
    assert "None" not in res.stderr, res.stderr


def test_one_small_change_is_singular(daemon, full_guest, state):
    run(daemon, full_guest.root, state, "--section", "memory")
    set_meminfo(full_guest, 1495000)
    res = run(daemon, full_guest.root, state, "--section", "memory", "-v")
    assert "1 small change held back" in res.stderr, res.stderr
    set_meminfo(full_guest, 1500000)        # as published: nothing held back
    res = run(daemon, full_guest.root, state, "--section", "memory", "-v")
    assert " 0 small changes held back" in res.stderr, res.stderr


def test_network_without_a_vif_says_so_with_v(full_guest, state, tmp_path):
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "no-socket"))
    quiet = run(None, full_guest.root, state, "--print", "--section", "network", env=env)
    assert (quiet.stdout, quiet.stderr) == ("", "")
    res = run(None, full_guest.root, state, "--print", "--section", "network", "-v", env=env)
    assert "xe-oneshot: network: no Xen VIF or SR-IOV VF found" in res.stderr.splitlines()


def test_usage_names_every_option():
    from xe_oneshot import cli
    for option in ("--section", "--root", "--state-dir", "--dry-run", "--print", "--format",
                   "--no-balloon", "--threshold", "--max-age", "-v", "--version"):
        assert re.search(r"[|[] ?%s[] ]" % re.escape(option), cli.USAGE), option
    res = subprocess.run([sys.executable, "-m", "xe_oneshot", "--bogus"],
                         env=dict(os.environ, PYTHONPATH=str(CHECKOUT)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=60)
    assert res.returncode == 2 and "[--threshold PCT] [--max-age SECONDS]" in res.stderr


@pytest.mark.parametrize("argv", [
    ["xe_oneshot", "--version"], ["xe_oneshot.xenstore_cli", "--version"],
    ["xe_oneshot.xenstore_cli", "read", "--version"],
    ["xe_oneshot.distribution_cli", "--version"]])
def test_every_command_has_version(argv):
    from xe_oneshot import __version__
    res = subprocess.run([sys.executable, "-m"] + argv,
                         env=dict(os.environ, PYTHONPATH=str(CHECKOUT)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=60)
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout.endswith(" %s\n" % __version__) and res.stdout.count("\n") == 1
