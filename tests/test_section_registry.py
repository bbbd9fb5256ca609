"""The section registry follows the checklist in xe_oneshot/sections/__init__.py.

Every registered section has ``OWNS`` and ``collect``; its name (and every group's) is
one the systemd unit template turns back into the same ``--section`` argument; ``OWNS``
are disjoint across sections; importing a section in a fresh interpreter loads only the
modules pinned for it below. And the checklist is enough: a throwaway section added to a
copy of the package (its module and one registry line, nothing else) runs end to end
against the real daemon.
"""

import ast
import difflib
import filecmp
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.collector import HOME
from tests.support.fakeguest import FakeGuest
from tests.support.integration_support import UNIT_NAME
from tests.support.paths import CHECKOUT
from xe_oneshot.sections import GROUPS, SECTIONS, load
from xe_oneshot.text import XS_NAME

#: Never imported by a section module (each costs milliseconds on every event).
FORBIDDEN = {"psutil", "sh", "logging", "typing", "argparse", "dataclasses"}

#: Section -> (the package modules its import loads, exactly; the other modules it may
#: load beyond the bare interpreter, which an older Python may have loaded already).
#: A section that needs more grows its row here, on purpose.
_BASE = {"xe_oneshot", "xe_oneshot.sections", "xe_oneshot.guest", "xe_oneshot.records",
         "xe_oneshot.text"}
BUDGET = {
    "os": (_BASE | {"xe_oneshot.sections.osinfo", "xe_oneshot.distribution",
                    "xe_oneshot.log"}, {"errno"}),
    "misc": (_BASE | {"xe_oneshot.sections.misc"}, {"errno"}),
    "memory": (_BASE | {"xe_oneshot.sections.memory"}, {"errno"}),
    "network": (_BASE | {"xe_oneshot.sections.network", "xe_oneshot.log"},
                {"errno", "_socket"}),
    "volumes": (_BASE | {"xe_oneshot.sections.volumes", "xe_oneshot.log",
                         "xe_oneshot.mountinfo", "xe_oneshot.udevdb"}, {"errno"}),
}

UNIT_TEMPLATE = CHECKOUT / "hooks/xe-oneshot@.service"


# -- the registry --------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SECTIONS))
def test_section_has_owns_and_collect(name):
    module = load(name)
    assert callable(getattr(module, "collect", None))
    owns = getattr(module, "OWNS", None)
    assert isinstance(owns, tuple) and owns
    for path in owns:
        assert isinstance(path, str) and not path.startswith("/") and not path.endswith("/")
        assert all(part and set(part) <= XS_NAME for part in path.split("/")), path


def test_owns_are_disjoint_across_sections():
    """No path of one section equal to, under or above a path of another."""
    owned = [(name, path) for name in SECTIONS for path in load(name).OWNS]
    clashes = [(a, p, b, q) for a, p in owned for b, q in owned
               if a != b and (p == q or q.startswith(p + "/"))]
    assert clashes == []


def _instance_section(instance):
    """The ``--section`` argument the template unit's ExecStart gives the collector for
    instance ``instance``: the unit file's own shell line, with systemd's specifiers
    expanded (``%i``, ``%%``, ``$$``) and the collector replaced by ``printf``."""
    line = next(l for l in UNIT_TEMPLATE.read_text().splitlines()
                if l.startswith("ExecStart="))
    argv = shlex.split(line[len("ExecStart="):])
    argv = [a.replace("$$", "$").replace("%%", "%").replace("%i", instance) for a in argv]
    assert argv[:2] == ["/bin/sh", "-c"]
    script = argv[2].replace("exec @BINDIR@/xe-oneshot --section", "printf %s")
    assert script != argv[2], "ExecStart no longer runs xe-oneshot --section"
    return subprocess.check_output(["/bin/sh", "-c", script] + argv[3:],
                                   universal_newlines=True)


@pytest.mark.parametrize("name", list(SECTIONS) + list(GROUPS))
def test_name_is_one_the_unit_template_accepts(name):
    for instance, tag in ((name, None), (name + "_u4711", "u4711")):
        match = UNIT_NAME.match("xe-oneshot@%s.service" % instance)
        assert match and match.group("section") == name and match.group("tag") == tag
        assert _instance_section(instance) == name


def test_names_and_groups_do_not_collide():
    assert not set(SECTIONS) & set(GROUPS)
    for members in GROUPS.values():
        assert set(members) <= set(SECTIONS)
    assert GROUPS["all"] == tuple(SECTIONS)


# -- every guest path through Root ----------------------------------------------------

#: Calls that open or resolve a path of the host; in the sections and their helpers
#: only guest.Root makes them, except where the running system itself is meant.
HOST_PATH_CALLS = {"open", "os.open", "os.stat", "os.lstat", "os.listdir", "os.scandir",
                   "os.readlink", "os.walk", "os.path.realpath", "os.path.exists",
                   "os.path.lexists", "os.path.isdir", "os.path.isfile", "os.statvfs"}
#: (module, function, call) made on purpose: our own /proc/self files, the real /dev
#: path pvs names, a mount point already mapped by Root.fs_path (see the docstrings).
HOST_PATH_ALLOWED = {
    ("sections/volumes.py", "_devno_of", "os.stat"),
    ("sections/volumes.py", "_mnt_id", "open"),
    ("sections/volumes.py", "_open_mount", "os.open"),
    ("sections/volumes.py", "statvfs_free", "os.statvfs"),
    ("sections/volumes.py", "btrfs_fsid", "os.open"),
}
SECTION_HELPERS = ("mountinfo.py", "udevdb.py", "netlink.py", "ifconf.py")


def _dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return inner and inner + "." + node.attr
    return None


def test_no_host_path_call_outside_root():
    package = CHECKOUT / "xe_oneshot"
    files = sorted((package / "sections").glob("*.py")) + [package / n
                                                            for n in SECTION_HELPERS]
    found = set()

    def visit(node, module, function):
        if isinstance(node, ast.FunctionDef):
            function = node.name
        if isinstance(node, ast.Call) and _dotted(node.func) in HOST_PATH_CALLS:
            found.add((module, function, _dotted(node.func)))
        for child in ast.iter_child_nodes(node):
            visit(child, module, function)

    for path in files:
        visit(ast.parse(path.read_text()), str(path.relative_to(package)), "<module>")
    assert found - HOST_PATH_ALLOWED == set()
    assert HOST_PATH_ALLOWED <= found          # the list stays true


# -- the import budget -----------------------------------------------------------------

_PROBE = ("import sys\n"
          "sys.path.insert(0, sys.argv[1])\n"
          "before = set(sys.modules)\n"
          "__import__('xe_oneshot.sections.' + sys.argv[2])\n"
          "sys.stdout.write('\\n'.join(sorted(set(sys.modules) - before)))\n")


def _imported(module):
    """Modules that importing ``xe_oneshot.sections.<module>`` loads in a fresh,
    isolated interpreter (``-I``: no PYTHON* variables, no user site)."""
    out = subprocess.check_output([sys.executable, "-I", "-c", _PROBE,
                                   str(CHECKOUT), module], universal_newlines=True)
    return set(out.split())


def test_budget_covers_every_section():
    assert set(BUDGET) == set(SECTIONS)


@pytest.mark.parametrize("name", list(SECTIONS))
def test_import_budget(name):
    package, others = BUDGET[name]
    loaded = _imported(SECTIONS[name])
    assert not loaded & FORBIDDEN
    assert {m for m in loaded if m.split(".")[0] == "xe_oneshot"} == package
    assert {m for m in loaded if m.split(".")[0] != "xe_oneshot"} <= others


def test_the_budget_probe_sees_a_forbidden_import(tmp_path):
    """The probe can fail: a section that imports logging is caught."""
    copy = _copy_package(tmp_path)
    (copy / "xe_oneshot/sections/leaky.py").write_text("import logging\nOWNS = ()\n")
    out = subprocess.check_output([sys.executable, "-I", "-c", _PROBE, str(copy),
                                   "leaky"], universal_newlines=True)
    assert "logging" in out.split()


# -- a throwaway section, added the way the checklist says ------------------------------

PROBE_SECTION = '''"""The ``probe`` section (a test's throwaway): ``data/probe/<name>`` = ``<value>``
for each ``<name>=<value>`` line of the guest's ``/etc/xe-probe``."""

from . import Collected

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict

    from . import Context
    from ..guest import Root

OWNS = ("data/probe",)


def find_probes(root: "Root") -> "Dict[str, str]":
    text = root.read_text("/etc/xe-probe", default="") or ""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def probe_keys(probes: "Dict[str, str]") -> "Dict[str, str]":
    return {"data/probe/" + name: value for name, value in probes.items()}


def collect(ctx: "Context") -> Collected:
    return Collected(probe_keys(find_probes(ctx.root)))
'''

#: The one registry line of the checklist's step 2.
REGISTRY_LINE = '    "probe": "probe",\n'


def _copy_package(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(str(CHECKOUT / "xe_oneshot"), str(copy / "xe_oneshot"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


def _add_probe_section(copy):
    (copy / "xe_oneshot/sections/probe.py").write_text(PROBE_SECTION)
    registry = copy / "xe_oneshot/sections/__init__.py"
    text = registry.read_text()
    last = '    "volumes": "volumes",\n}\n'
    assert text.count(last) == 1
    registry.write_text(text.replace(last, '    "volumes": "volumes",\n' + REGISTRY_LINE
                                     + "}\n"))


def _differences(left, right, rel=Path()):
    """Relative paths of the files that differ or exist on one side only."""
    cmp = filecmp.dircmp(str(left), str(right), ignore=["__pycache__"])
    found = [rel / name for name in cmp.left_only + cmp.right_only + cmp.funny_files]
    found += [rel / name for name in cmp.common_files
              if not filecmp.cmp(str(left / name), str(right / name), shallow=False)]
    for sub in cmp.common_dirs:
        found += _differences(left / sub, right / sub, rel / sub)
    return sorted(str(p) for p in found)


def _run(daemon, pythonpath, guest, state):
    env = dict(daemon.env(), PYTHONPATH=str(pythonpath))
    res = subprocess.run([sys.executable, "-m", "xe_oneshot", "--root", str(guest.root),
                          "--state-dir", str(state), "--section", "probe"],
                         env=env, cwd=str(pythonpath), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert "Traceback" not in res.stderr
    return res


def _home(daemon):
    return {k: v for k, v in daemon.tree(HOME).items() if k != "data/updated"}


def test_a_throwaway_section_added_by_the_checklist_runs_end_to_end(
        fresh_xenstored, tmp_path, state):
    daemon = fresh_xenstored
    copy = _copy_package(tmp_path)
    _add_probe_section(copy)

    # Only the registry file and the new module differ from the package...
    assert _differences(CHECKOUT / "xe_oneshot", copy / "xe_oneshot") == [
        "sections/__init__.py", "sections/probe.py"]
    # ... and the registry by the one line.
    diff = [line for line in difflib.unified_diff(
        (CHECKOUT / "xe_oneshot/sections/__init__.py").read_text().splitlines(True),
        (copy / "xe_oneshot/sections/__init__.py").read_text().splitlines(True), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert diff == ["+" + REGISTRY_LINE]

    guest = FakeGuest(tmp_path / "guest").minimal()
    guest.file("/etc/xe-probe", "alpha=1\nbeta=two words\n")
    unknown = _run(daemon, CHECKOUT, guest, state)        # the package itself: no probe
    assert unknown.returncode != 0 and "probe" in unknown.stderr

    res = _run(daemon, copy, guest, state)
    assert res.returncode == 0, res.stderr
    assert _home(daemon) == {"data": "", "data/probe": "", "data/probe/alpha": "1",
                             "data/probe/beta": "two words"}

    guest.file("/etc/xe-probe", "alpha=2\n")                # stops reporting beta
    res = _run(daemon, copy, guest, state)
    assert res.returncode == 0, res.stderr
    assert _home(daemon) == {"data": "", "data/probe": "", "data/probe/alpha": "2"}

    guest.file("/etc/xe-probe", "")
    res = _run(daemon, copy, guest, state)
    assert res.returncode == 0, res.stderr
    assert not {k for k in _home(daemon) if k.startswith("data/probe/")}

    # --print shows it beside another section, with no daemon at all
    guest.file("/etc/xe-probe", "gamma=3\n")
    env = {k: v for k, v in os.environ.items() if k != "XENSTORED_PATH"}
    env["PYTHONPATH"] = str(copy)
    out = subprocess.run([sys.executable, "-m", "xe_oneshot", "--root", str(guest.root),
                          "--section", "probe,memory", "--print", "--format", "json"],
                         env=env, cwd=str(copy), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"data/meminfo_total": "2048000",
                                      "data/meminfo_free": "1500000",
                                      "data/probe/gamma": "3"}
