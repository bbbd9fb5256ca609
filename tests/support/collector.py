"""Running the collector as a process against a daemon, and what a run should publish."""

import subprocess
import sys

from tests.support import xapi_oracle
from tests.support.paths import CHECKOUT, HOME


def run(daemon, root, state, *args, env=None, check=True):
    """One `xe-oneshot` process; returns the CompletedProcess."""
    env = dict(daemon.env() if env is None else env, PYTHONPATH=str(CHECKOUT))
    cmd = [sys.executable, "-m", "xe_oneshot", "--root", str(root),
           "--state-dir", str(state)] + list(args)
    res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    if check:
        assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return res


def expected_static_memory(meminfo_free="1500000"):
    return {
        "attr": "", "attr/PVAddons": "", "attr/PVAddons/Installed": "1",
        "attr/PVAddons/MajorVersion": "1", "attr/PVAddons/MinorVersion": "0",
        "attr/PVAddons/MicroVersion": "0", "attr/PVAddons/BuildVersion": "0",
        "control": "", "control/feature-balloon": "1",
        "data": "", "data/os_distro": "debian", "data/os_majorver": "12",
        "data/os_minorver": "7", "data/os_uname": "6.1.0-25-amd64",
        "data/os_name": "Debian GNU/Linux 12 (bookworm)",
        "data/meminfo_total": "2048000", "data/meminfo_free": meminfo_free,
    }


def tree_without_updated(daemon):
    tree = daemon.tree(HOME)
    updated = tree.pop("data/updated", None)
    return tree, updated


def written(daemon, mark):
    return sorted((e.op, e.path) for e in daemon.writes_since(mark))


def view(daemon):
    """What the toolstack derives from the guest's home (tests/support/xapi_oracle.py)."""
    return xapi_oracle.toolstack_view(daemon.tree(HOME))


def waking(daemon, mark):
    """The changes since ``mark`` that fire a watch of xenopsd (one of a host in the
    field: data/updated included)."""
    return [(e.op, e.path) for e in daemon.writes_since(mark)
            if xapi_oracle.wakes_xenopsd(e.op, e.path, legacy=True)]
