"""The installed NetworkManager, networkd-dispatcher, ifupdown, dhclient and system-sleep
hooks, run the way their dispatchers run them (arguments, environment; the dhclient hook
sourced as dhclient-script sources it), with a stub `systemctl` on PATH recording what
they start; hostile interface names must run nothing else. The units they name must be
ones the installed template accepts (systemd-analyze verify)."""

import os
import shlex
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from tests.support.hooks import (HOSTILE, assert_nothing_else_ran, networkd_env, nm_env,
                                 nm_script, run_hook, started_unit)
from tests.support.integration_support import (CHECKOUT, NETWORKD_STATES, SECTIONS, UNIT_NAME,
                                               Stubs, in_namespace, need, overlay_usr)

# -- NetworkManager --------------------------------------------------------------------

@pytest.mark.parametrize("action", ["up", "down", "dhcp4-change", "dhcp6-change", "reapply"])
def test_nm_address_actions_queue_a_network_run(staged, stubs, tmp_path, action):
    res = run_hook(nm_script(staged), ["eth0", action], nm_env("eth0", action), stubs, tmp_path)
    assert res.returncode == 0, res.stderr
    m = UNIT_NAME.match(started_unit(stubs) or "")
    assert m and m.group("section") == "network" and m.group("tag").startswith("nm")


@pytest.mark.parametrize("action", ["pre-up", "pre-down", "vpn-up", "vpn-down", "hostname",
                                    "connectivity-change", "vpn-pre-up"])
def test_nm_other_actions_queue_nothing(staged, stubs, tmp_path, action):
    res = run_hook(nm_script(staged), ["eth0", action], nm_env("eth0", action), stubs, tmp_path)
    assert res.returncode == 0 and started_unit(stubs) is None


def test_nm_hostname_action_without_interface(staged, stubs, tmp_path):
    """NetworkManager passes "none" as the interface for hostname changes."""
    res = run_hook(nm_script(staged), ["none", "hostname"], {"NM_DISPATCHER_ACTION": "hostname"},
                   stubs, tmp_path)
    assert res.returncode == 0 and started_unit(stubs) is None


def test_nm_loopback_queues_nothing(staged, stubs, tmp_path):
    res = run_hook(nm_script(staged), ["lo", "up"], nm_env("lo", "up"), stubs, tmp_path)
    assert res.returncode == 0 and started_unit(stubs) is None


@pytest.mark.parametrize("iface", HOSTILE)
def test_nm_hostile_interface_name_runs_nothing_else(staged, stubs, tmp_path, iface):
    res = run_hook(nm_script(staged), [iface, "up"], nm_env(iface, "up"), stubs, tmp_path)
    assert res.returncode == 0, res.stderr
    assert UNIT_NAME.match(started_unit(stubs) or "")
    assert_nothing_else_ran(stubs, tmp_path)


def test_each_event_gets_its_own_unit(staged, stubs, tmp_path):
    """Two events must not merge into one (possibly already running) collection."""
    for action in ("up", "dhcp6-change"):
        run_hook(nm_script(staged), ["eth0", action], nm_env("eth0", action), stubs, tmp_path)
    units = [call[2] for call in stubs.calls("systemctl")]
    assert len(units) == 2 and units[0] != units[1]


# -- networkd-dispatcher ----------------------------------------------------------------

@pytest.mark.parametrize("state", NETWORKD_STATES)
def test_networkd_state_scripts_queue_a_network_run(staged, stubs, tmp_path, state):
    script = staged / ("etc/networkd-dispatcher/%s.d/xe-oneshot" % state)
    res = run_hook(script, [], networkd_env("ens3", state), stubs, tmp_path)
    assert res.returncode == 0, res.stderr
    m = UNIT_NAME.match(started_unit(stubs) or "")
    assert m and m.group("section") == "network" and m.group("tag").startswith("nd")


def test_networkd_loopback_queues_nothing(staged, stubs, tmp_path):
    script = staged / "etc/networkd-dispatcher/routable.d/xe-oneshot"
    res = run_hook(script, [], networkd_env("lo", "routable"), stubs, tmp_path)
    assert res.returncode == 0 and started_unit(stubs) is None


@pytest.mark.parametrize("iface", HOSTILE)
def test_networkd_hostile_interface_name_runs_nothing_else(staged, stubs, tmp_path, iface):
    script = staged / "etc/networkd-dispatcher/routable.d/xe-oneshot"
    res = run_hook(script, [], networkd_env(iface, "routable"), stubs, tmp_path)
    assert res.returncode == 0, res.stderr
    assert UNIT_NAME.match(started_unit(stubs) or "")
    assert_nothing_else_ran(stubs, tmp_path)


def test_networkd_without_iface_still_queues(staged, stubs, tmp_path):
    script = staged / "etc/networkd-dispatcher/off.d/xe-oneshot"
    res = run_hook(script, [], {"STATE": "off"}, stubs, tmp_path)
    assert res.returncode == 0, res.stderr
    assert UNIT_NAME.match(started_unit(stubs) or "")


@pytest.mark.parametrize("script", ["etc/NetworkManager/dispatcher.d/90-xe-oneshot",
                                    "etc/networkd-dispatcher/routable.d/xe-oneshot"])
def test_conffile_hooks_of_a_removed_package_do_nothing(staged, stubs, tmp_path, script):
    """dpkg -r keeps conffiles: without xe-oneshot on PATH they must not start a unit."""
    (stubs.dir / "xe-oneshot").unlink()
    args = ["eth0", "up"] if "NetworkManager" in script else []
    env = nm_env("eth0", "up") if args else networkd_env("eth0", "routable")
    res = run_hook(staged / script, args, env, stubs, tmp_path)
    assert res.returncode == 0 and started_unit(stubs) is None


# -- ifupdown ---------------------------------------------------------------------------

IFUPDOWN_DIRS = ("etc/network/if-up.d", "etc/network/if-post-down.d")


def ifupdown_env(iface: str, mode: str = "start", phase: str = "post-up",
                 addrfam: str = "inet") -> Dict[str, str]:
    """What ifupdown exports to its hook scripts (interfaces(5), "IFACE OPTIONS")."""
    return {"IFACE": iface, "LOGICAL": iface, "ADDRFAM": addrfam, "METHOD": "dhcp",
            "MODE": mode, "PHASE": phase, "VERBOSITY": "0",
            "IF_ADDRESS": "192.0.2.10/24"}


@pytest.mark.parametrize("directory,mode,phase", [
    ("etc/network/if-up.d", "start", "post-up"),
    ("etc/network/if-post-down.d", "stop", "post-down")])
@pytest.mark.parametrize("addrfam", ["inet", "inet6"])
def test_ifupdown_queues_a_network_run(staged, stubs, tmp_path, directory, mode, phase,
                                       addrfam):
    script = staged / directory / "xe-oneshot"
    res = run_hook(script, [], ifupdown_env("eth0", mode, phase, addrfam), stubs, tmp_path)
    assert res.returncode == 0 and res.stdout == res.stderr == "", res.stderr
    m = UNIT_NAME.match(started_unit(stubs) or "")
    assert m and m.group("section") == "network" and m.group("tag").startswith("if")


@pytest.mark.parametrize("env", [
    ifupdown_env("lo"),
    ifupdown_env("--all", addrfam="meta"),          # `ifup -a`'s extra call
    ifupdown_env("can0", addrfam="can"),
    ifupdown_env("eth0", phase="pre-up"),
    ifupdown_env("eth0", mode="stop", phase="pre-down"),
], ids=["lo", "all", "can", "pre-up", "pre-down"])
def test_ifupdown_other_calls_queue_nothing(staged, stubs, tmp_path, env):
    script = staged / "etc/network/if-up.d/xe-oneshot"
    res = run_hook(script, [], env, stubs, tmp_path)
    assert res.returncode == 0 and started_unit(stubs) is None


@pytest.mark.parametrize("iface", HOSTILE)
def test_ifupdown_hostile_interface_name_runs_nothing_else(staged, stubs, tmp_path, iface):
    script = staged / "etc/network/if-up.d/xe-oneshot"
    res = run_hook(script, [], ifupdown_env(iface), stubs, tmp_path)
    assert res.returncode == 0, res.stderr
    assert UNIT_NAME.match(started_unit(stubs) or "")
    assert_nothing_else_ran(stubs, tmp_path)


def _systemctl_unknown_unit(stubs: Stubs) -> None:
    """systemctl as it answers for a unit whose template is gone (exit 5)."""
    path = stubs.dir / "systemctl"
    path.write_text('#!/bin/sh\necho "Failed to start $3: Unit $3 not found." >&2\nexit 5\n')
    path.chmod(0o755)


@pytest.mark.parametrize("directory", IFUPDOWN_DIRS)
def test_ifupdown_never_fails_ifup_unknown_unit_or_no_systemctl(staged, stubs, tmp_path,
                                                               directory):
    """A failing if-up.d script makes ifup report the interface as failed: the hook
    exits 0 quietly when the unit is unknown, systemctl is missing, or xe-oneshot is."""
    script = staged / directory / "xe-oneshot"
    _systemctl_unknown_unit(stubs)
    res = run_hook(script, [], ifupdown_env("eth0"), stubs, tmp_path)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    (stubs.dir / "systemctl").unlink()
    res = subprocess.run([str(script)], env=dict(ifupdown_env("eth0"), PATH=str(stubs.dir)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=10)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    stubs = Stubs(tmp_path / "stubs2", ["systemctl"])                 # no xe-oneshot
    res = run_hook(script, [], ifupdown_env("eth0"), stubs, tmp_path)
    assert res.returncode == 0 and started_unit(stubs) is None


# -- dhclient exit hook (sourced) --------------------------------------------------------

DHCLIENT_HOOK = "etc/dhcp/dhclient-exit-hooks.d/xe-oneshot"

#: Debian's dhclient-script around its exit hooks (run_hook, run_hookdir and
#: exit_with_hooks, isc-dhcp-client 4.4), with markers: the hook is sourced inside a
#: function; whatever follows must still run, with the same variables and status.
DHCLIENT_DRIVER = r"""
run_hook() {
    local script="$1"
    local exit_status=0
    shift
    if [ -f $script ]; then
        . $script "$@"
    fi
    return $exit_status
}
run_hookdir() {
    local dir="$1"
    local exit_status=0
    shift
    if [ -d "$dir" ]; then
        for script in $(run-parts --list $dir); do
            run_hook $script "$@" || true
            exit_status=$?
        done
    fi
    return $exit_status
}
exit_with_hooks() {
    exit_status=$1
    set > "$W/before"
    if ! run_hookdir "$HOOKDIR" "$@"; then
        exit_status=$?
    fi
    set > "$W/after"
    echo "after-hooks $exit_status"
    exit $exit_status
}
exit_with_hooks 0
"""


def run_dhclient(staged: Path, stubs: Stubs, tmp_path: Path, reason: str,
                 interface: str = "eth0") -> subprocess.CompletedProcess:
    env = {"reason": reason, "interface": interface, "new_ip_address": "192.0.2.10",
           "old_ip_address": "192.0.2.9", "W": str(tmp_path),
           "HOOKDIR": str(staged / "etc/dhcp/dhclient-exit-hooks.d"),
           "PATH": "%s:/usr/sbin:/usr/bin:/sbin:/bin" % stubs.dir}
    return subprocess.run(["/bin/sh", "-c", DHCLIENT_DRIVER], env=env, cwd=str(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=10)


def _variables(path: Path) -> List[str]:
    return [line for line in path.read_text().splitlines()
            if not line.startswith(("_=", "script=", "LINENO=", "OPTIND="))]


@pytest.mark.parametrize("reason", ["BOUND", "RENEW", "REBIND", "REBOOT", "EXPIRE", "FAIL",
                                    "RELEASE", "STOP", "TIMEOUT", "BOUND6", "RENEW6",
                                    "REBIND6", "EXPIRE6", "RELEASE6", "STOP6", "DEPREF6"])
def test_dhclient_lease_changes_queue_a_network_run(staged, stubs, tmp_path, reason):
    res = run_dhclient(staged, stubs, tmp_path, reason)
    assert res.returncode == 0 and res.stdout == "after-hooks 0\n", res.stderr
    assert res.stderr == ""
    m = UNIT_NAME.match(started_unit(stubs) or "")
    assert m and m.group("section") == "network" and m.group("tag").startswith("dh")
    # sourced: it defined no variable and left dhclient-script's alone
    assert _variables(tmp_path / "after") == _variables(tmp_path / "before")


@pytest.mark.parametrize("reason", ["PREINIT", "PREINIT6", "MEDIUM", "ARPCHECK", "ARPSEND",
                                    ""])
def test_dhclient_other_reasons_queue_nothing(staged, stubs, tmp_path, reason):
    res = run_dhclient(staged, stubs, tmp_path, reason)
    assert res.stdout == "after-hooks 0\n" and started_unit(stubs) is None


def test_dhclient_loopback_and_hostile_interface(staged, stubs, tmp_path):
    res = run_dhclient(staged, stubs, tmp_path, "BOUND", interface="lo")
    assert res.stdout == "after-hooks 0\n" and started_unit(stubs) is None
    for iface in HOSTILE:
        stubs.clear()
        res = run_dhclient(staged, stubs, tmp_path, "BOUND", interface=iface)
        assert res.stdout == "after-hooks 0\n", res.stderr
        assert UNIT_NAME.match(started_unit(stubs) or "")
        assert_nothing_else_ran(stubs, tmp_path)


def test_dhclient_unknown_unit_or_no_systemctl_changes_nothing(staged, stubs, tmp_path):
    """dhclient-script goes on, with its exit status, and nothing is printed."""
    _systemctl_unknown_unit(stubs)
    res = run_dhclient(staged, stubs, tmp_path, "BOUND")
    assert (res.stdout, res.stderr) == ("after-hooks 0\n", "")
    (stubs.dir / "systemctl").unlink()
    res = run_dhclient(staged, stubs, tmp_path, "RENEW")
    assert (res.stdout, res.stderr) == ("after-hooks 0\n", "")


def test_new_hooks_pass_shellcheck():
    need("shellcheck")
    script, fragment = CHECKOUT / "ifupdown/xe-oneshot", CHECKOUT / "ifupdown/dhclient-exit-hook"
    assert script.read_text().startswith("#!/bin/sh\n") and os.access(script, os.X_OK)
    assert fragment.read_text().startswith("# shellcheck shell=sh\n")
    for path in (script, fragment):
        res = subprocess.run(["shellcheck", "--shell=sh", "--severity=style", str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        assert res.returncode == 0, res.stdout
    # sourced by dhclient-script: an exit or return would cut it short
    code = [line.split("#")[0] for line in fragment.read_text().splitlines()]
    assert not any(word in line.split() for line in code for word in ("exit", "return"))


# -- system-sleep ---------------------------------------------------------------------

SLEEP_KINDS = ["suspend", "hibernate", "hybrid-sleep", "suspend-then-hibernate"]


@pytest.mark.parametrize("kind", SLEEP_KINDS)
def test_resume_queues_all_sections(staged, stubs, tmp_path, kind):
    script = staged / "usr/lib/systemd/system-sleep/xe-oneshot"
    env = {"SYSTEMD_SLEEP_ACTION": kind}
    res = run_hook(script, ["post", kind], env, stubs, tmp_path)
    assert res.returncode == 0, res.stderr
    m = UNIT_NAME.match(started_unit(stubs) or "")
    assert m and m.group("section") == "all"


@pytest.mark.parametrize("kind", SLEEP_KINDS)
def test_going_to_sleep_queues_nothing(staged, stubs, tmp_path, kind):
    script = staged / "usr/lib/systemd/system-sleep/xe-oneshot"
    res = run_hook(script, ["pre", kind], {"SYSTEMD_SLEEP_ACTION": kind}, stubs, tmp_path)
    assert res.returncode == 0 and started_unit(stubs) is None


# -- the hooks return at once -------------------------------------------------------

def test_hooks_do_not_wait_for_the_collection(staged, tmp_path):
    """`--no-block` is what makes systemctl return at once; a stub that would block for
    10 s without it shows the hooks pass it."""
    stubs = Stubs(tmp_path / "stubs", ["xe-oneshot"])
    (stubs.dir / "systemctl").write_text(
        '#!/bin/sh\n[ "$1" = --no-block ] && exit 0\nsleep 10\n')
    (stubs.dir / "systemctl").chmod(0o755)
    hooks = [(nm_script(staged), ["eth0", "up"], nm_env("eth0", "up")),
             (staged / "etc/networkd-dispatcher/routable.d/xe-oneshot", [],
              networkd_env("eth0", "routable")),
             (staged / "etc/network/if-up.d/xe-oneshot", [], ifupdown_env("eth0")),
             (staged / "usr/lib/systemd/system-sleep/xe-oneshot", ["post", "suspend"], {})]
    for script, args, env in hooks:
        res = run_hook(script, args, env, stubs, tmp_path)
        assert res.returncode == 0 and res.elapsed < 2, script


# -- the names they start are units the template accepts ----------------------------

def test_every_unit_a_hook_starts_loads_from_the_installed_template(staged, stubs, tmp_path):
    need("systemd-analyze", "unshare")
    run_hook(nm_script(staged), ["eth0", "up"], nm_env("eth0", "up"), stubs, tmp_path)
    run_hook(staged / "etc/networkd-dispatcher/degraded.d/xe-oneshot", [],
             networkd_env("eth0", "degraded"), stubs, tmp_path)
    run_hook(staged / "usr/lib/systemd/system-sleep/xe-oneshot", ["post", "suspend"], {},
             stubs, tmp_path)
    run_hook(staged / "etc/network/if-post-down.d/xe-oneshot", [],
             ifupdown_env("eth0", "stop", "post-down"), stubs, tmp_path)
    run_dhclient(staged, stubs, tmp_path, "BOUND")
    units = [call[2] for call in stubs.calls("systemctl")]
    assert len(units) == 5
    for unit in units:
        m = UNIT_NAME.match(unit)
        assert m and m.group("section") in SECTIONS
    res = in_namespace(overlay_usr(staged) + "cd /usr/lib/systemd/system && "
                       "systemd-analyze verify --man=no %s" % " ".join(map(shlex.quote, units)))
    assert res.returncode == 0 and "xe-oneshot" not in res.stdout, res.stdout
