"""`make install`, `make dist` and the installed units: every file where the tool that
reads it looks, with its mode; systemd-analyze verify; the units' own shell lines run."""

import configparser
import os
import re
import shlex
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.integration_support import (CHECKOUT, NETWORKD_STATES, SHELL_SCRIPTS, UNITS,
                                       XENSTORE_ALIASES, Stubs, in_namespace, make, need,
                                       overlay_usr, stage)

DEBIAN_PYTHON = "/usr/bin/python3"


def tree(root: Path):
    """{relative path: (kind, mode, symlink target)} of every file and symlink."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", None, os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", stat.S_IMODE(st.st_mode), None)
    return out


def expected_tree():
    """The layout README promises, written out (package modules from the source tree)."""
    exp = {
        "usr/bin/xe-oneshot": ("file", 0o755, None),
        "usr/bin/xenstore": ("file", 0o755, None),
        "usr/bin/xe-linux-distribution": ("file", 0o755, None),
        "usr/lib/udev/rules.d/80-xe-oneshot.rules": ("file", 0o644, None),
        "usr/lib/systemd/system/xe-oneshot.service": ("file", 0o644, None),
        "usr/lib/systemd/system/xe-oneshot@.service": ("file", 0o644, None),
        "usr/lib/systemd/system/xe-oneshot-ephemeral.timer": ("file", 0o644, None),
        "usr/lib/systemd/system-sleep/xe-oneshot": ("file", 0o755, None),
        "usr/share/doc/xe-oneshot/README.md": ("file", 0o644, None),
        "etc/NetworkManager/dispatcher.d/90-xe-oneshot": ("file", 0o755, None),
    }
    for alias in XENSTORE_ALIASES:
        exp["usr/bin/xenstore-" + alias] = ("link", None, "xenstore")
    for state in NETWORKD_STATES:
        exp["etc/networkd-dispatcher/%s.d/xe-oneshot" % state] = ("file", 0o755, None)
    for src in (CHECKOUT / "xe_oneshot").rglob("*.py"):
        exp["usr/lib/xe-oneshot/" + str(src.relative_to(CHECKOUT))] = ("file", 0o644, None)
    return exp


def test_install_puts_every_file_where_it_belongs_with_its_mode(staged):
    got = {path: entry for path, entry in tree(staged).items() if "__pycache__" not in path}
    assert got == expected_tree()


def test_install_byte_compiles_for_the_system_python(staged):
    """Units run read-only (ProtectSystem=strict): a missing .pyc would be compiled
    again on every event."""
    tag = subprocess.run([DEBIAN_PYTHON, "-c", "import sys; print(sys.implementation.cache_tag)"],
                         stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    lib = staged / "usr/lib/xe-oneshot"
    missing = [str(py.relative_to(lib)) for py in lib.rglob("*.py")
               if not (py.parent / "__pycache__" / ("%s.%s.pyc" % (py.stem, tag))).exists()]
    assert missing == []


def test_make_install_without_compiling_leaves_no_pycache(tmp_path):
    need("make")
    root = stage(tmp_path, "NOCOMPILE=1")
    assert list(root.rglob("__pycache__")) == []


def test_launchers_are_the_entry_points_of_setup_cfg(staged):
    cfg = configparser.ConfigParser()
    cfg.read(CHECKOUT / "setup.cfg")
    entries = [line.split("=", 1) for line in
               cfg.get("options.entry_points", "console_scripts").splitlines() if line.strip()]
    for name, target in entries:
        text = (staged / "usr/bin" / name.strip()).read_text()
        module, func = target.strip().split(":")
        assert text.startswith("#!%s -IS\n" % DEBIAN_PYTHON)      # -S: site.main() inside
        assert "from %s import %s" % (module, func) in text
        assert "sys.exit(%s())" % func in text


def test_launcher_runs_from_the_staged_tree_and_ignores_the_callers_python_setup(
        staged, tmp_path):
    """-I: PYTHONPATH, the current directory and the user site cannot replace the
    package a root hook runs."""
    evil = tmp_path / "evil"
    (evil / "xe_oneshot").mkdir(parents=True)
    (evil / "xe_oneshot" / "__init__.py").write_text("raise SystemExit('HIJACKED')\n")
    (evil / "xe_oneshot" / "cli.py").write_text("raise SystemExit('HIJACKED')\n")
    env = dict(os.environ, PYTHONPATH=str(evil), PYTHONHOME="/nonexistent")
    res = subprocess.run([str(staged / "usr/bin/xe-oneshot"), "--help"], cwd=str(evil),
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=60)
    assert "HIJACKED" not in res.stdout + res.stderr
    assert res.returncode == 0, res.stderr
    assert "--section" in res.stdout


def test_launcher_through_a_symlink_finds_the_package(staged, tmp_path):
    link = tmp_path / "elsewhere"
    link.symlink_to(staged / "usr/bin/xe-linux-distribution")
    out = tmp_path / "distro"
    res = subprocess.run([str(link), str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert out.read_text().startswith('os_distro="')


def test_xenstore_aliases_dispatch_on_their_name(staged, xenstored):
    env = xenstored.env()
    bin_ = staged / "usr/bin"
    run = lambda *cmd: subprocess.run([str(bin_ / cmd[0])] + list(cmd[1:]), env=env,  # noqa
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, timeout=30)
    res = run("xenstore-write", "data/integration", "written by the alias")
    assert res.returncode == 0, res.stderr
    assert xenstored.read("data/integration") == "written by the alias"
    res = run("xenstore-read", "data/integration")
    assert (res.returncode, res.stdout) == (0, "written by the alias\n")
    assert run("xenstore-exists", "data/integration").returncode == 0
    assert run("xenstore-rm", "data/integration").returncode == 0
    assert xenstored.read("data/integration") is None
    assert run("xenstore-exists", "data/integration").returncode != 0


# -- units ---------------------------------------------------------------------------

def unit_lines(path: Path):
    return [line for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def sandbox(path: Path):
    """The settings after the '--- sandbox' marker, up to the next section."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "--- sandbox" in line)
    block = []
    for line in lines[start + 1:]:
        if line.startswith("["):
            break
        if line.strip() and not line.startswith("#"):
            block.append(line)
    return block


def test_both_services_share_one_sandbox(staged):
    units = staged / "usr/lib/systemd/system"
    boot, template = sandbox(units / "xe-oneshot.service"), sandbox(units / "xe-oneshot@.service")
    assert boot == template
    settings = dict(line.split("=", 1) for line in boot)
    assert settings["RuntimeDirectory"] == "xe-oneshot"
    assert settings["RuntimeDirectoryPreserve"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert settings["NoNewPrivileges"] == "yes"
    # each of these would add mounts the volumes section reports (see the unit's comment)
    for absent in ("PrivateTmp", "ProtectHome", "PrivateDevices", "DeviceAllow",
                   "ProtectClock"):
        assert absent not in settings


def test_every_unit_runs_only_on_xen(staged):
    for unit in UNITS:
        assert "ConditionVirtualization=xen" in unit_lines(staged / "usr/lib/systemd/system" / unit)


def test_units_call_the_installed_commands(staged):
    units = staged / "usr/lib/systemd/system"
    boot = unit_lines(units / "xe-oneshot.service")
    assert "ExecStart=/usr/bin/xe-oneshot --section all" in boot
    assert "ExecStartPre=-+/usr/bin/xe-linux-distribution /var/cache/xe-linux-distribution" in boot
    assert "After=network-online.target" in boot and "Wants=network-online.target" in boot
    timer = unit_lines(units / "xe-oneshot-ephemeral.timer")
    assert "Unit=xe-oneshot@ephemeral.service" in timer
    assert "OnUnitActiveSec=60s" in timer
    for unit in UNITS:
        assert "@BINDIR@" not in (units / unit).read_text()
        assert "@DOCDIR@" not in (units / unit).read_text()


def test_systemd_analyze_verify_passes_on_the_installed_units(staged):
    """verify checks that ExecStart exists: the staged /usr is overlaid on the real one
    in a private mount namespace. Without the overlay the same check must fail."""
    need("systemd-analyze", "unshare")
    units = "xe-oneshot.service xe-oneshot@network_u42.service xe-oneshot@ephemeral.service " \
            "xe-oneshot-ephemeral.timer"
    verify = "cd /usr/lib/systemd/system && systemd-analyze verify --man=no %s\n" % units
    res = in_namespace(overlay_usr(staged) + verify)
    assert res.returncode == 0, res.stdout
    assert "xe-oneshot" not in res.stdout, res.stdout      # not even a warning
    # the control: the units alone, the commands missing
    res = in_namespace("cd %s/usr/lib/systemd/system && systemd-analyze verify --man=no %s"
                       % (staged, units))
    assert res.returncode != 0 and "/usr/bin/xe-oneshot" in res.stdout, res.stdout


def expand(command: str, instance: str) -> str:
    """What systemd makes of an Exec line: specifiers at load, $$ at exec."""
    return command.replace("%i", instance).replace("%%", "%").replace("$$", "$")


def exec_line(unit: Path, key: str, contains: str) -> str:
    line = next(line for line in unit_lines(unit) if line.startswith(key + "=")
                and contains in line)
    return line.split("=", 1)[1].lstrip("-+")


@pytest.mark.parametrize("instance,section", [
    ("network", "network"), ("network_u4711", "network"), ("network_nm123", "network"),
    ("all_r99", "all"), ("ephemeral", "ephemeral"), ("volumes", "volumes")])
def test_template_passes_the_instance_section_to_the_collector(staged, tmp_path, instance,
                                                               section):
    stubs = Stubs(tmp_path / "bin", ["xe-oneshot"])
    line = exec_line(staged / "usr/lib/systemd/system/xe-oneshot@.service", "ExecStart", "")
    line = expand(line, instance).replace("/usr/bin/xe-oneshot", str(stubs.dir / "xe-oneshot"))
    # systemd splits Exec lines with shell-like quoting
    res = subprocess.run(shlex.split(line), timeout=30)
    assert res.returncode == 0
    assert stubs.calls("xe-oneshot") == [["--section", section]]


@pytest.mark.parametrize("before,after", [("20000", "300000"), ("600000", "600000")])
def test_boot_service_raises_the_freeze_timeout_never_lowers_it(staged, tmp_path, before,
                                                                after):
    need("unshare")
    line = exec_line(staged / "usr/lib/systemd/system/xe-oneshot.service", "ExecStartPre",
                     "pm_freeze_timeout")
    argv = shlex.split(expand(line, ""))
    power = tmp_path / "power"
    power.mkdir()
    (power / "pm_freeze_timeout").write_text(before + "\n")
    script = "mount --bind %s /sys/power\nexec \"$@\"\n" % power
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-euc", script,
                          "sh"] + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stdout
    assert (power / "pm_freeze_timeout").read_text().strip() == after


def test_boot_service_refreshes_the_distribution_cache(staged, tmp_path):
    """The ExecStartPre line as written in the unit, run with the installed command."""
    need("unshare")
    argv = shlex.split(expand(exec_line(staged / "usr/lib/systemd/system/xe-oneshot.service",
                                        "ExecStartPre", "xe-linux-distribution"), ""))
    cache = tmp_path / "cache"
    cache.mkdir()
    script = overlay_usr(staged) + "mount --bind %s /var/cache\nexec \"$@\"\n" % cache
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-euc", script,
                          "sh"] + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout
    lines = (cache / "xe-linux-distribution").read_text().splitlines()
    assert [line.split("=", 1)[0] for line in lines] == \
        ["os_distro", "os_majorver", "os_minorver", "os_uname", "os_name"]
    assert lines[3] == 'os_uname="%s"' % os.uname().release


# -- shell scripts ---------------------------------------------------------------------

@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_scripts_are_posix_sh_and_pass_shellcheck(script):
    need("shellcheck")
    path = CHECKOUT / script
    assert path.read_text().startswith("#!/bin/sh\n")
    assert os.access(path, os.X_OK)
    res = subprocess.run(["shellcheck", "--shell=sh", "--severity=style", str(path)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert res.returncode == 0, res.stdout


def test_shellcheck_would_catch_an_unquoted_variable(tmp_path):
    """The control for the test above: the check is not a no-op."""
    need("shellcheck")
    bad = tmp_path / "bad"
    bad.write_text('#!/bin/sh\nsystemctl start xe-oneshot@$1.service\n')
    res = subprocess.run(["shellcheck", "--shell=sh", str(bad)], stdout=subprocess.PIPE,
                         text=True)
    assert res.returncode != 0 and "SC2086" in res.stdout


# -- make dist ---------------------------------------------------------------------------

def test_dist_tarball_is_the_staged_tree_with_modes_and_symlinks(staged):
    out = make("dist").stdout
    tarball = CHECKOUT / re.findall(r"dist/xe-oneshot-[^\s]+\.tar\.gz", out)[-1]
    got = {}
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            name = os.path.normpath(member.name)
            assert name.split("/")[0] in ("etc", "usr"), name
            assert (member.uid, member.gid) == (0, 0), name
            if member.issym():
                got[name] = ("link", None, member.linkname)
            elif member.isfile():
                got[name] = ("file", member.mode, None)
    want = tree(staged)
    assert got == want
    assert not [n for n in got if n.startswith(("build", "dist", "/"))]
