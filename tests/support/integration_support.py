"""Helpers for the system-integration tests (tests/test_integration_*.py): a staged
``make install``, private mount namespaces, and a stub ``systemctl`` that records calls.

Everything that touches mounts runs under ``unshare -m --propagation private``, so the
host's /usr, /etc/udev and /sys stay as they are. Fixtures (a plugin of tests/conftest.py):
``staged`` (one ``make install`` per module) and ``stubs``; :func:`run_lifecycle` runs a
package's install / remove script.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from tests.support.paths import CHECKOUT

# What `make install` promises (hand-written: the test compares the tree against it).
SECTIONS = ("os", "misc", "memory", "network", "volumes", "static", "ephemeral", "all")
XENSTORE_ALIASES = ("read", "write", "rm", "exists", "list", "ls", "chmod", "watch")
NETWORKD_STATES = ("routable", "degraded", "carrier", "no-carrier", "off", "configured")
UNITS = ("xe-oneshot.service", "xe-oneshot@.service", "xe-oneshot-ephemeral.timer")
SHELL_SCRIPTS = ("hooks/90-xe-oneshot", "hooks/xe-oneshot.sleep",
                 "networkd-dispatcher/xe-oneshot", "packaging/debian/postinst",
                 "packaging/debian/prerm", "packaging/debian/postrm",
                 "packaging/debian/rtupdate")

# A unit the hooks may start: xe-oneshot@<section>[_<tag>].service
UNIT_NAME = re.compile(r"^xe-oneshot@(?P<section>[a-z]+)(?:_(?P<tag>[A-Za-z0-9]*))?\.service$")


def source_version() -> str:
    """The package's ``__version__`` as the checkout has it (what ``make deb`` / ``make
    rpm`` name their files after)."""
    text = (CHECKOUT / "xe_oneshot/__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def need(*programs: str) -> None:
    """Skip (a failure in CI) when not root or a program is missing."""
    if os.geteuid() != 0:
        pytest.skip("needs root (private mount namespaces)")
    for prog in programs:
        if not shutil.which(prog):
            pytest.skip("%s is not installed (see .ci/apt-packages)" % prog)


def make(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run make in the checkout; output kept for the assertion message."""
    res = subprocess.run(["make", "--no-print-directory", "-C", str(CHECKOUT)] + list(args),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                         timeout=300)
    if check and res.returncode != 0:
        raise AssertionError("make %s failed:\n%s" % (" ".join(args), res.stdout))
    return res


def stage(dest: Path, *extra: str) -> Path:
    """``make install DESTDIR=dest PREFIX=/usr``; returns dest."""
    make("install", "DESTDIR=%s" % dest, "PREFIX=/usr", *extra)
    return dest


def in_namespace(script: str, env: Optional[Dict[str, str]] = None,
                 timeout: int = 120) -> subprocess.CompletedProcess:
    """Run a sh script in a private mount namespace; stdout+stderr merged."""
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-euc", script],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout)


def overlay_usr(staged: Path) -> str:
    """Shell lines that show the staged /usr over the real one (read-only overlay)."""
    return "mount -t overlay overlay -o lowerdir=%s:/usr /usr\n" % (staged / "usr")


class Stubs:
    """A directory of stub commands for PATH: each records its argv (one call per line,
    arguments separated by NUL) in ``<name>.log`` and exits 0."""

    def __init__(self, directory: Path, names: List[str]):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            path = self.dir / name
            path.write_text('#!/bin/sh\nlog="%s/%s.log"\nfor a in "$@"; do printf \'%%s\\0\' "$a"'
                            ' >> "$log"; done\necho >> "$log"\nexit 0\n' % (self.dir, name))
            path.chmod(0o755)

    def calls(self, name: str) -> List[List[str]]:
        log = self.dir / (name + ".log")
        if not log.exists():
            return []
        return [line.split("\0")[:-1] if line else []
                for line in log.read_text().split("\n")[:-1]]

    def clear(self) -> None:
        for log in self.dir.glob("*.log"):
            log.unlink()


# -- fixtures shared by the integration and security tests (a plugin: tests/conftest.py) --

@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A `make install` into a temp root, once per module."""
    need("make")
    return stage(tmp_path_factory.mktemp("stage"))


@pytest.fixture
def stubs(tmp_path):
    """Recording stand-ins on PATH. `reboot` and `id` record any call: a hostile interface
    name must never run them; xe-oneshot is installed (the hooks check for it) but a hook
    must not run it inline."""
    return Stubs(tmp_path / "stubs", ["systemctl", "reboot", "id", "touch", "xe-oneshot"])


def run_lifecycle(script: str, work: Path) -> "Dict[str, str]":
    """Run a package's install/remove ``script`` in a private mount namespace; it leaves
    one file per step in ``work``/out. Returns them by name (and prints them, for a
    failing test's log)."""
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-euc", script],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=600)
    assert res.returncode == 0, res.stdout
    out = work / "out"
    print("\n".join("== %s\n%s" % (p.name, p.read_text()) for p in sorted(out.iterdir())))
    return {p.name: p.read_text() for p in out.iterdir() if p.is_file()}


def lines(text: str) -> "List[str]":
    return text.splitlines()
