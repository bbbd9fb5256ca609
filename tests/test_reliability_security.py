"""Reliability: hostile surroundings. The collector runs as root on every guest.

* The state dir, its files and the distribution cache replaced by symlinks (or hard
  links, or owned by someone else): nothing is written through them, nothing is
  published from outside the guest, the run says so in one line.
* Hostile interface names and dispatcher arguments: the hooks start only the unit, and
  the unit runs only ``xe-oneshot --section network``; real interfaces with such names
  are published like any other (the collector starts no process for them).
* What reaches XenStore is only the collected text: no control characters.
"""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support.fakeguest import FakeGuest
from tests.support.reliability import (changes_since, expected_full, home_tree, log_mark, raw_tree,
                               unclean_values)
from tests.support.collector import HOME, run

SECTIONS = "static,memory,volumes"


def refused(daemon, guest, state, before, *words):
    """A run with this state dir: exit 4, one line naming the problem, nothing published."""
    mark = log_mark(daemon)
    res = run(daemon, guest.root, state, "--section", SECTIONS, check=False)
    assert res.returncode == 4, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xe-oneshot: state "), res.stderr
    for word in words:
        assert word in lines[0], res.stderr
    assert changes_since(daemon, mark) == []
    assert home_tree(daemon) == before


def victim_file(tmp_path, text="precious\n"):
    victim = tmp_path / "victim"
    victim.write_text(text)
    victim.chmod(0o644)
    return victim


def untouched(victim, text="precious\n"):
    assert victim.read_text() == text
    assert os.listxattr(str(victim)) == []
    assert victim.stat().st_mode & 0o777 == 0o644


# -- the state directory ---------------------------------------------------------------

@pytest.mark.parametrize("after_a_run", [False, True])
def test_state_dir_replaced_by_a_symlink(daemon, full_guest, tmp_path, after_a_run):
    state = tmp_path / "state"
    if after_a_run:
        run(daemon, full_guest.root, state, "--section", SECTIONS)
        os.rename(state, tmp_path / "old-state")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    state.symlink_to(elsewhere)
    before = home_tree(daemon)
    refused(daemon, full_guest, state, before, "symlink")
    assert os.listdir(elsewhere) == []              # no lock, no state written there


@pytest.mark.parametrize("name", ["lock", "state"])
@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_state_files_replaced_by_links(daemon, full_guest, tmp_path, name, how):
    state = tmp_path / "state"
    run(daemon, full_guest.root, state, "--section", SECTIONS)
    before = home_tree(daemon)
    victim = victim_file(tmp_path)
    (state / name).unlink()
    if how == "symlink":
        (state / name).symlink_to(victim)
    else:
        os.link(victim, state / name)
    refused(daemon, full_guest, state, before, name)
    untouched(victim)


@pytest.mark.parametrize("change", ["world-writable", "group-writable", "other-owner"])
def test_state_dir_not_ours_alone_is_refused(daemon, full_guest, tmp_path, change):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    if change == "world-writable":
        state.chmod(0o777)
    elif change == "group-writable":
        state.chmod(0o770)
    else:
        os.chown(state, 65534, 65534)
    refused(daemon, full_guest, state, home_tree(daemon), "not ours")
    assert os.listdir(state) == []


# -- the distribution cache ------------------------------------------------------------

def _detectable(guest):
    """The guest's own release file, for when the cache is not trusted."""
    guest.file("/etc/os-release", 'ID=debian\nVERSION_ID="12"\n'
                                  'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')


LEAKED = ('os_distro="leaked"\nos_majorver="6"\nos_minorver="6"\nos_uname="6.6.6"\n'
          'os_name="read from outside the guest"\n')


def test_cache_file_symlink_out_of_the_guest_is_not_followed(daemon, full_guest, tmp_path):
    """With --root, an absolute symlink resolves inside the guest (as it would there)."""
    victim = victim_file(tmp_path, LEAKED)
    cache = full_guest.root / "var/cache/xe-linux-distribution"
    cache.unlink()
    cache.symlink_to(victim)                        # absolute: /tmp/.../victim
    _detectable(full_guest)
    run(daemon, full_guest.root, tmp_path / "state", "--section", "os")
    tree = home_tree(daemon)
    assert tree["data/os_distro"] == "debian" and tree["data/os_majorver"] == "12"
    assert not any("leaked" in v or "outside" in v for v in tree.values())
    untouched(victim, LEAKED)


def test_cache_file_symlink_to_a_secret_publishes_nothing_of_it(daemon, full_guest, tmp_path):
    full_guest.file("/etc/shadow", "root:$6$salt$hash:19000:0:99999:7:::\n")
    cache = full_guest.root / "var/cache/xe-linux-distribution"
    cache.unlink()
    cache.symlink_to("../../etc/shadow")
    _detectable(full_guest)
    res = run(daemon, full_guest.root, tmp_path / "state", "--section", "os")
    assert "$6$" not in res.stderr
    tree = home_tree(daemon)
    assert tree["data/os_distro"] == "debian"
    assert not any("$6$" in v or "root:" in v for v in tree.values())
    assert (full_guest.root / "etc/shadow").read_text().startswith("root:$6$")


# -- only the collected text reaches XenStore ------------------------------------------

def test_control_characters_never_reach_xenstore(daemon, full_guest, tmp_path):
    # The cache file's own escape (\xHH inside double quotes) can carry any character.
    full_guest.distribution('os_distro="debian"\nos_majorver="12"\nos_minorver="7"\n'
                       'os_uname="6.1.0\\x1b[2J"\n'
                       'os_name="Deb\\x1b]0;owned\\x07ian\\x9b31m\\x0d\\x0aGNU\\x7f/Linux\\x0912"\n')
    run(daemon, full_guest.root, tmp_path / "state", "--section", SECTIONS)
    tree = raw_tree(daemon)
    assert unclean_values({k: v for k, v in tree.items()
                           if not k.startswith(("device", "backend"))}) == {}
    name = tree["data/os_name"].decode()
    assert re.fullmatch(r"Deb ?\]0;owned ?ian ?31m *GNU ?/Linux ?12", name), name
    assert tree["data/os_uname"].decode().startswith("6.1.0")
    expected = expected_full()
    for key in ("data/os_name", "data/os_uname"):
        del expected[key]
    got = home_tree(daemon)
    del got["data/os_name"], got["data/os_uname"]
    assert got == expected


# -- hostile interface names: the hooks, the unit, the collector ----------------------

HOSTILE = ["eth0; reboot", "$(id)", "`id`", "eth0\nreboot", "eth0 | reboot", "$(touch PWNED)",
           "-rf", "eth0\x1b[2J"]


def _exec_start(staged: Path, instance: str, stubs) -> subprocess.CompletedProcess:
    """Run the installed template's ExecStart for ``instance`` the way systemd would
    (``$$`` and ``%%`` unescaped, ``%i`` the instance, words split as systemd does),
    with the installed xe-oneshot path pointing at the stub."""
    unit = next(staged.glob("**/systemd/system/xe-oneshot@.service"))
    line = next(l for l in unit.read_text().splitlines() if l.startswith("ExecStart="))
    words = shlex.split(line[len("ExecStart="):])
    argv = []
    for word in words:
        word = word.replace("%i", instance).replace("$$", "$").replace("%%", "%")
        argv.append(re.sub(r"\S*/xe-oneshot\b", str(stubs.dir / "xe-oneshot"), word))
    return subprocess.run(argv, env={"PATH": "%s:/usr/bin:/bin" % stubs.dir},
                          cwd=str(stubs.dir), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=10)


@pytest.mark.parametrize("iface", HOSTILE)
@pytest.mark.parametrize("hook", ["nm", "networkd"])
def test_hostile_names_start_only_the_unit_and_the_unit_only_the_collector(
        staged, stubs, tmp_path, iface, hook):
    from tests.support.hooks import (assert_nothing_else_ran, networkd_env,
                                              nm_env, nm_script, run_hook, started_unit)
    if hook == "nm":
        res = run_hook(nm_script(staged), [iface, "up"], nm_env(iface, "up"), stubs, tmp_path)
    else:
        res = run_hook(staged / "etc/networkd-dispatcher/routable.d/xe-oneshot", [],
                       networkd_env(iface, "routable"), stubs, tmp_path)
    assert res.returncode == 0, res.stderr
    unit = started_unit(stubs)
    m = re.fullmatch(r"xe-oneshot@(network_(?:nm|nd)[0-9]+)\.service", unit or "")
    assert m, unit
    assert_nothing_else_ran(stubs, tmp_path)
    res = _exec_start(staged, m.group(1), stubs)
    assert res.returncode == 0, res.stderr
    assert stubs.calls("xe-oneshot") == [["--section", "network"]]
    assert stubs.calls("reboot") == [] and stubs.calls("id") == []
    assert not (tmp_path / "PWNED").exists() and not (stubs.dir / "PWNED").exists()


@pytest.mark.parametrize("action", ["up; reboot", "up\nreboot", "$(reboot)", "`reboot`"])
def test_hostile_dispatcher_actions_start_nothing(staged, stubs, tmp_path, action):
    from tests.support.hooks import (assert_nothing_else_ran, nm_env, nm_script,
                                              run_hook, started_unit)
    res = run_hook(nm_script(staged), ["eth0", action], nm_env("eth0", action), stubs,
                   tmp_path)
    assert res.returncode == 0, res.stderr
    assert started_unit(stubs) is None
    assert_nothing_else_ran(stubs, tmp_path)


def test_real_interfaces_with_hostile_names_are_published_like_any(daemon, tmp_path):
    from tests.support.netns import Netns, Unavailable as NetnsUnavailable
    from tests.support.reliability import collector, popen
    try:
        ns = Netns().__enter__()
    except NetnsUnavailable as err:
        pytest.skip(str(err))
    names = {"eth0;reboot": "0", "$(id)": "1", "`id`|x": "2"}
    guest = FakeGuest(tmp_path / "guest").minimal()
    try:
        for n, name in enumerate(names):
            ns.veth(name, "peer%d" % n)
            ns.addr(name, "192.0.2.%d/24" % (10 + n))
        ns.mirror(guest.root, names)
        proc = popen(daemon.env(), collector(guest.root, tmp_path / "state", "--section",
                                             "network", netns=ns.name))
        out, err = proc.communicate(timeout=60)
    finally:
        ns.__exit__(None, None, None)
    assert proc.returncode == 0 and err == "", err
    assert daemon.tree(HOME + "/attr/vif") == {
        "0": "", "0/ipv4": "", "0/ipv4/0": "192.0.2.10",
        "1": "", "1/ipv4": "", "1/ipv4/0": "192.0.2.11",
        "2": "", "2/ipv4": "", "2/ipv4/0": "192.0.2.12"}
