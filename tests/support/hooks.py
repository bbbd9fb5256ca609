"""Running the installed dispatcher hooks the way their dispatchers do (arguments,
environment), with a stub ``systemctl`` recording what they start."""

import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

from tests.support.integration_support import Stubs

HOSTILE = ["eth0; reboot", "$(id)", "`id`", "eth0 && id", "-n", "--now", "e$(touch PWNED)",
           "'\"", "*", "\\", ""]


def run_hook(script: Path, args: List[str], env: Dict[str, str], stubs: Stubs,
             cwd: Path) -> subprocess.CompletedProcess:
    """Run a hook with exactly the given environment (as its dispatcher builds it)
    plus a PATH of the stubs and the system directories (no xe-oneshot there)."""
    full = dict(env, PATH="%s:/usr/sbin:/usr/bin:/sbin:/bin" % stubs.dir)
    start = time.monotonic()
    res = subprocess.run([str(script)] + args, env=full, cwd=str(cwd),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                         timeout=10)
    res.elapsed = time.monotonic() - start
    return res


def started_unit(stubs: Stubs) -> Optional[str]:
    """The one unit queued with `systemctl --no-block start`, or None if none was."""
    calls = stubs.calls("systemctl")
    if not calls:
        return None
    assert len(calls) == 1, calls
    args = calls[0]
    assert args[:2] == ["--no-block", "start"] and len(args) == 3, args
    return args[2]


def assert_nothing_else_ran(stubs: Stubs, cwd: Path) -> None:
    assert stubs.calls("reboot") == [] and stubs.calls("id") == []
    assert stubs.calls("xe-oneshot") == []
    assert stubs.calls("touch") == []
    assert not (cwd / "PWNED").exists()


def nm_env(iface: str, action: str) -> Dict[str, str]:
    """What NetworkManager-dispatcher puts in a script's environment (nm-dispatcher(8))."""
    return {
        "NM_DISPATCHER_ACTION": action,
        "CONNECTION_UUID": "5fb06bd0-0bb0-7ffb-45f1-d6edd65f3e03",
        "CONNECTION_ID": "Wired connection 1",
        "CONNECTION_FILENAME": "/run/NetworkManager/system-connections/Wired.nmconnection",
        "DEVICE_IFACE": iface,
        "DEVICE_IP_IFACE": iface,
        "IP4_NUM_ADDRESSES": "1",
        "IP4_ADDRESS_0": "192.0.2.10/24 192.0.2.1",
        "IP4_GATEWAY": "192.0.2.1",
        "IP6_NUM_ADDRESSES": "1",
        "IP6_ADDRESS_0": "2001:db8::10/64 ::",
    }


def nm_script(staged: Path) -> Path:
    return staged / "etc/NetworkManager/dispatcher.d/90-xe-oneshot"


def networkd_env(iface: str, state: str) -> Dict[str, str]:
    """What networkd-dispatcher exports to its scripts (networkd-dispatcher(8))."""
    return {
        "IFACE": iface,
        "STATE": state,
        "AdministrativeState": "configured",
        "OperationalState": state,
        "ESSID": "",
        "IP_ADDRS": "192.0.2.10",
        "IP6_ADDRS": "2001:db8::10 fe80::1",
        "json": '{"Type": "ether", "OperationalState": "%s"}' % state,
    }
