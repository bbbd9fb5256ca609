"""`make install`, `make dist` and the installed units: every file where the tool that
reads it looks, with its mode; systemd-analyze verify; the units' own shell lines run."""

import configparser
import json
import os
import re
import shlex
import stat
import subprocess
import tarfile
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from tests.support.integration_support import (CHECKOUT, NETWORKD_STATES, SHELL_SCRIPTS, UNITS,
                                       XENSTORE_ALIASES, Stubs, in_namespace, make, need,
                                       overlay_usr, stage)

DEBIAN_PYTHON = "/usr/bin/python3"
MAN_PAGES = ("man1/xenstore.1", "man8/xe-oneshot.8", "man8/xe-linux-distribution.8")


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
        exp["usr/share/man/man1/xenstore-%s.1" % alias] = ("link", None, "xenstore.1")
    for page in MAN_PAGES:
        exp["usr/share/man/" + page] = ("file", 0o644, None)
    for state in NETWORKD_STATES:
        exp["etc/networkd-dispatcher/%s.d/xe-oneshot" % state] = ("file", 0o755, None)
    exp["etc/network/if-up.d/xe-oneshot"] = ("file", 0o755, None)
    exp["etc/network/if-post-down.d/xe-oneshot"] = ("file", 0o755, None)
    exp["etc/dhcp/dhclient-exit-hooks.d/xe-oneshot"] = ("file", 0o644, None)
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
                         stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout.strip()
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
        assert text.startswith("#!%s -IS\n" % DEBIAN_PYTHON)      # -S: site dirs inside
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
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True,
                         timeout=60)
    assert "HIJACKED" not in res.stdout + res.stderr
    assert res.returncode == 0, res.stderr
    assert "--section" in res.stdout


def test_launcher_adds_the_site_directories_but_runs_no_pth_file_or_sitecustomize(
        staged, tmp_path):
    """The dependencies (python3-sh, python3-xattr) are found in the system's site
    directories; what site.main() would also run (.pth files: setuptools'
    _distutils_hack; sitecustomize: a crash reporter's hook) costs every run ~0.5 ms
    and is left out."""
    launcher = (staged / "usr/bin/xe-oneshot").read_text()
    (tmp_path / "bin").mkdir()
    (tmp_path / "lib/xe-oneshot").mkdir(parents=True)     # where the launcher looks
    probe = tmp_path / "lib/xe-oneshot/site_probe.py"
    probe.write_text("import site, sys\n"
                     "def main():\n"
                     "    import sh, xattr  # noqa: F401 - found in the site directories\n"
                     "    print(all(p in sys.path for p in site.getsitepackages()"
                     " if __import__('os').path.isdir(p)))\n"
                     "    print(sorted(m for m in ('sitecustomize', '_distutils_hack')"
                     " if m in sys.modules))\n"
                     "    return 0\n")
    script = tmp_path / "bin/site-probe"
    script.write_text(launcher.replace("from xe_oneshot.entry import xe_oneshot",
                                       "from site_probe import main")
                      .replace("sys.exit(xe_oneshot())", "sys.exit(main())"))
    script.chmod(0o755)
    res = subprocess.run([str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["True", "[]"]


def test_launcher_through_a_symlink_finds_the_package(staged, tmp_path):
    link = tmp_path / "elsewhere"
    link.symlink_to(staged / "usr/bin/xe-linux-distribution")
    out = tmp_path / "distro"
    res = subprocess.run([str(link), str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert out.read_text().startswith('os_distro="')


def test_xenstore_aliases_dispatch_on_their_name(staged, xenstored):
    env = xenstored.env()
    bin_ = staged / "usr/bin"
    run = lambda *cmd: subprocess.run([str(bin_ / cmd[0])] + list(cmd[1:]), env=env,  # noqa
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      universal_newlines=True, timeout=30)
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
                         universal_newlines=True, timeout=30)
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
                         universal_newlines=True, timeout=60)
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
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert res.returncode == 0, res.stdout


def test_shellcheck_would_catch_an_unquoted_variable(tmp_path):
    """The control for the test above: the check is not a no-op."""
    need("shellcheck")
    bad = tmp_path / "bad"
    bad.write_text('#!/bin/sh\nsystemctl start xe-oneshot@$1.service\n')
    res = subprocess.run(["shellcheck", "--shell=sh", str(bad)], stdout=subprocess.PIPE,
                         universal_newlines=True)
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


# -- manual pages ---------------------------------------------------------------------

@pytest.mark.parametrize("page", MAN_PAGES)
def test_manual_pages_are_clean_roff(page):
    """mandoc's linter and groff's warnings: nothing at warning level or above."""
    need("mandoc", "groff")
    path = str(CHECKOUT / "man" / page.split("/")[1])
    res = subprocess.run(["mandoc", "-Tlint", "-W", "warning", path], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True)
    assert (res.returncode, res.stdout) == (0, ""), res.stdout
    res = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True)
    assert (res.returncode, res.stdout) == (0, ""), res.stdout


def test_mandoc_lint_would_catch_a_broken_page(tmp_path):
    """The control for the test above."""
    need("mandoc")
    bad = tmp_path / "bad.8"
    bad.write_text(".TH BAD 8\n.SH NAME\nbad \\- page\n.TP\n.B\n.SH SEE ALSO\n.BR nothing (8\n")
    res = subprocess.run(["mandoc", "-Tlint", "-W", "warning", str(bad)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert res.returncode != 0 and "WARNING" in res.stdout


def test_manual_pages_document_every_option_and_exit_status():
    """What --help lists, the page lists too (options and exit codes)."""
    cases = (("xe-oneshot.8", ["-m", "xe_oneshot", "--help"]),
             ("xe-linux-distribution.8",
              ["-c", "from xe_oneshot.distribution_cli import main; main(['--help'])"]))
    for page, argv in cases:
        text = (CHECKOUT / "man" / page).read_text().replace("\\-", "-")
        res = subprocess.run([DEBIAN_PYTHON] + argv, cwd=str(CHECKOUT), stdout=subprocess.PIPE,
                             universal_newlines=True)
        options = set(re.findall(r"^\s+(?:-\w, )?(--[a-z-]+)", res.stdout, re.M))
        assert options and not [o for o in options if o not in text], (page, options)
        codes = re.findall(r"^\s+(\d)\s+\S", res.stdout.split("exit status:")[1], re.M)
        assert codes and not [c for c in codes if ".B %s\n" % c not in text], (page, codes)
    xs = (CHECKOUT / "man/xenstore.1").read_text()
    for command in XENSTORE_ALIASES:
        assert ".B %s\n" % command in xs and "xenstore\\-%s" % command in xs


# -- guests without systemd ----------------------------------------------------------

def init_tree(root: Path):
    return {p: e for p, e in tree(root).items() if "__pycache__" not in p}


@pytest.mark.parametrize("init,extra", [
    ("openrc", {"etc/init.d/xe-oneshot": ("file", 0o755, None)}),
    ("sysv", {"etc/init.d/xe-oneshot": ("file", 0o755, None),
              "etc/cron.d/xe-oneshot": ("file", 0o644, None)})])
def test_install_for_a_guest_without_systemd(tmp_path, init, extra):
    need("make")
    root = stage(tmp_path, "INIT=" + init, "NOCOMPILE=1")
    want = dict(expected_tree(), **extra)
    want["usr/lib/xe-oneshot/xe-oneshot-run"] = ("file", 0o755, None)
    assert init_tree(root) == want
    rules = (root / "usr/lib/udev/rules.d/80-xe-oneshot.rules").read_text()
    assert "systemctl" not in rules
    assert rules.count('RUN+="/usr/lib/xe-oneshot/xe-oneshot-run event ') == 3
    script = (root / "etc/init.d/xe-oneshot").read_text()
    assert "/usr/lib/xe-oneshot/xe-oneshot-run" in script and "@" not in script.replace(
        "@ephemeral", "")
    if init == "sysv":
        cron = (root / "etc/cron.d/xe-oneshot").read_text()
        assert re.search(r"^\* \* \* \* \* root .*/usr/lib/xe-oneshot/xe-oneshot-run once "
                         r"ephemeral$", cron, re.M), cron
    else:
        assert script.startswith("#!/sbin/openrc-run\n")
        assert "tick ephemeral" in script


def test_a_staged_install_is_systemd_whatever_the_build_machine_runs(tmp_path):
    """DESTDIR set: INIT defaults to systemd, so packages and tarballs never depend on
    the machine that built them (a direct install asks the running system)."""
    need("make")
    root = stage(tmp_path, "NOCOMPILE=1")
    assert not (root / "etc/init.d").exists()
    assert "systemctl --no-block start" in \
        (root / "usr/lib/udev/rules.d/80-xe-oneshot.rules").read_text()


@pytest.mark.parametrize("init", ["openrc", "sysv"])
def test_init_scripts_pass_shellcheck(tmp_path, init):
    need("make", "shellcheck")
    root = stage(tmp_path, "INIT=" + init, "NOCOMPILE=1")
    for path in (root / "etc/init.d/xe-oneshot", root / "usr/lib/xe-oneshot/xe-oneshot-run"):
        res = subprocess.run(["shellcheck", "--shell=sh", "--severity=style", str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True)
        assert res.returncode == 0, res.stdout


def run_helper(staged_root: Path, tmp_path: Path, args, xen: bool, collector: str = "",
               script: str = "") -> Tuple[Stubs, subprocess.CompletedProcess]:
    """xe-oneshot-run as installed, its commands (@BINDIR@) replaced by recording stubs
    (``collector``: extra shell lines for the xe-oneshot stub), logger by a stub on
    PATH; in a namespace with its own /run, whose /dev holds xen/xenbus when ``xen``.
    ``script``: shell lines run there instead (``$RUN`` is the helper)."""
    need("unshare")
    if not xen and (os.path.isdir("/proc/xen") or os.path.exists("/dev/xen/xenbus")):
        pytest.fail("this machine is a Xen guest: the not-Xen case cannot be tested")
    stubs = Stubs(tmp_path / "bin", ["xe-oneshot", "xe-linux-distribution", "logger"])
    if collector:
        path = stubs.dir / "xe-oneshot"
        path.write_text(path.read_text().replace("exit 0\n", collector + "\nexit 0\n"))
    run = tmp_path / "xe-oneshot-run"
    run.write_text((staged_root / "usr/lib/xe-oneshot/xe-oneshot-run").read_text()
                   .replace("/usr/bin/", str(stubs.dir) + "/"))
    run.chmod(0o755)
    setup = "mount -t tmpfs xe-test-run /run\n"
    if xen:
        dev = tmp_path / "dev"
        (dev / "up/xen").mkdir(parents=True, exist_ok=True)
        (dev / "work").mkdir(exist_ok=True)
        (dev / "up/xen/xenbus").write_text("")
        setup += ("mount -t overlay overlay -o lowerdir=/dev,upperdir={d}/up,workdir={d}/work"
                  " /dev\n".format(d=dev))
    body = script or 'exec "$RUN" %s\n' % " ".join(shlex.quote(a) for a in args)
    res = in_namespace(setup + "export PATH=%s:/usr/bin:/bin\nRUN=%s\n%s" % (
        stubs.dir, run, body), timeout=60)
    return stubs, res


@pytest.fixture(scope="module")
def staged_sysv(tmp_path_factory):
    need("make")
    return stage(tmp_path_factory.mktemp("sysv"), "INIT=sysv", "NOCOMPILE=1")


def test_helper_once_runs_the_section_with_messages_to_syslog(staged_sysv, tmp_path):
    stubs, res = run_helper(staged_sysv, tmp_path, ["once", "ephemeral"], xen=True)
    assert res.returncode == 0, res.stdout
    assert stubs.calls("xe-oneshot") == [["--section", "ephemeral"]]
    assert stubs.calls("logger") == [["-t", "xe-oneshot"]]


def test_helper_boot_refreshes_the_cache_then_publishes_all(staged_sysv, tmp_path):
    stubs, res = run_helper(staged_sysv, tmp_path, ["boot"], xen=True)
    assert res.returncode == 0, res.stdout
    assert stubs.calls("xe-linux-distribution") == [["/var/cache/xe-linux-distribution"]]
    assert stubs.calls("xe-oneshot") == [["--section", "all"]]


@pytest.mark.parametrize("args", [["boot"], ["once", "ephemeral"], ["event", "network"],
                                  ["tick", "ephemeral"]])
def test_helper_does_nothing_on_a_machine_that_is_not_a_xen_guest(staged_sysv, tmp_path,
                                                                  args):
    """ConditionVirtualization=xen of the units (tick would loop forever otherwise)."""
    stubs, res = run_helper(staged_sysv, tmp_path, args, xen=False)
    assert res.returncode == 0, res.stdout
    assert stubs.calls("xe-oneshot") == [] and stubs.calls("xe-linux-distribution") == []


def test_helper_event_returns_at_once_detached_from_udev(staged_sysv, tmp_path):
    """udev waits for the RUN program and for EOF on its stdout and stderr: the event
    mode returns while the collector still runs, in a session of its own, and holds
    none of the pipes (in_namespace reads them to EOF)."""
    marker = tmp_path / "ran"
    collector = ('echo "$(cut -d" " -f6 /proc/$$/stat) $(cut -d" " -f6 /proc/$PPID/stat)" '
                 '> %s.sid\nsleep 3\necho done > %s' % (marker, marker))
    start = time.monotonic()
    stubs, res = run_helper(staged_sysv, tmp_path, ["event", "network"], xen=True,
                            collector=collector)
    took = time.monotonic() - start
    assert res.returncode == 0 and res.stdout == "", res.stdout
    assert took < 2.5, took                       # not the collector's 3 s
    assert not marker.exists()                    # still running
    for _ in range(100):
        if marker.exists():
            break
        time.sleep(0.1)
    assert marker.read_text() == "done\n"
    assert stubs.calls("xe-oneshot") == [["--section", "network"]]
    sid = (tmp_path / "ran.sid").read_text().split()
    assert sid[0] != str(os.getsid(0))           # not the caller's (udev's) session


#: the xe-oneshot stub as the collector takes turns: on the state dir's lock
LOCKING_COLLECTOR = "exec 7>>/run/xe-oneshot/lock; flock 7; sleep %s"


def settled_calls(stubs: Stubs, want: int, timeout: float = 20) -> List[List[str]]:
    """The collector's calls once ``want`` were made and no more came for 1.5 s (the
    runs an event detached end after the helper returned)."""
    deadline = time.monotonic() + timeout
    while len(stubs.calls("xe-oneshot")) < want and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    return stubs.calls("xe-oneshot")


def test_helper_event_storm_queues_one_run_per_section(staged_sysv, tmp_path):
    """Without systemd every udev event starts the helper: while a run holds the lock, 80
    events for two sections leave one waiting run per section, not 80 collectors held in
    memory (each waiting run covers every event before it)."""
    stubs, res = run_helper(staged_sysv, tmp_path, [], xen=True,
                            collector=LOCKING_COLLECTOR % 0.2, script="""
mkdir -m 700 /run/xe-oneshot
flock /run/xe-oneshot/lock sleep 3 &
while flock -n /run/xe-oneshot/lock true; do sleep 0.05; done    # until it holds the lock
for i in $(seq 40); do "$RUN" event network; "$RUN" event volumes; done
""")
    assert res.returncode == 0, res.stdout
    calls = settled_calls(stubs, 2)
    assert sorted(calls) == [["--section", "network"], ["--section", "volumes"]]


def test_helper_event_after_the_waiting_run_started_queues_another(staged_sysv, tmp_path):
    """The waiting run leaves the queue when it may start: an event while it runs gets a
    run of its own (nothing lost), and one more event then is covered by that one."""
    stubs, res = run_helper(staged_sysv, tmp_path, [], xen=True,
                            collector=LOCKING_COLLECTOR % 2, script="""
mkdir -m 700 /run/xe-oneshot
flock /run/xe-oneshot/lock sleep 1 &
while flock -n /run/xe-oneshot/lock true; do sleep 0.05; done    # until it holds the lock
"$RUN" event network
sleep 2.5
"$RUN" event network
"$RUN" event network
""")
    assert res.returncode == 0, res.stdout
    assert settled_calls(stubs, 2) == [["--section", "network"]] * 2


def test_helper_rejects_an_unknown_mode(staged_sysv, tmp_path):
    stubs, res = run_helper(staged_sysv, tmp_path, ["frobnicate"], xen=True)
    assert res.returncode == 2 and "usage" in res.stdout
    assert stubs.calls("xe-oneshot") == []


# -- make uninstall ------------------------------------------------------------------------

@pytest.mark.parametrize("init", ["systemd", "openrc", "sysv"])
def test_uninstall_removes_every_file_and_reinstall_works(tmp_path, init):
    need("make")
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/someone-elses").write_text("kept\n")    # a file that is not ours
    make("install", "DESTDIR=%s" % root, "INIT=" + init)        # byte-compiled too
    assert list(root.rglob("__pycache__"))
    make("uninstall", "DESTDIR=%s" % root, "INIT=" + init)
    left = {k: v for k, v in tree(root).items() if v[0] != "dir"}
    assert left == {"usr/bin/someone-elses": ("file", 0o644, None)}
    for own in ("usr/lib/xe-oneshot", "usr/share/doc/xe-oneshot"):
        assert not (root / own).exists()
    make("install", "DESTDIR=%s" % root, "INIT=" + init, "NOCOMPILE=1")
    want = stage(tmp_path / "fresh", "INIT=" + init, "NOCOMPILE=1")
    got = tree(root)
    del got["usr/bin/someone-elses"]
    assert got == tree(want)


def test_uninstall_with_other_variables_removes_what_those_installed(tmp_path):
    """Same variables, same files: PREFIX=/usr/local installs and removes its own."""
    need("make")
    root = tmp_path / "root"
    make("install", "DESTDIR=%s" % root, "PREFIX=/usr/local", "NOCOMPILE=1")
    assert (root / "usr/local/bin/xe-oneshot").exists()
    make("uninstall", "DESTDIR=%s" % root, "PREFIX=/usr/local")
    assert [k for k, v in tree(root).items() if v[0] != "dir"] == []


# -- README's "Try it" -------------------------------------------------------------------

def try_it_commands():
    text = (CHECKOUT / "README.md").read_text()
    section = text.split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    return [line[4:] for line in section.splitlines() if line.startswith("    ")]


def test_readme_try_it_runs_verbatim_with_debians_python_and_a_bare_path(tmp_path):
    """Stock Debian: /usr/bin/python3, PATH=/usr/bin:/bin, and none of psutil, sh or
    xattr importable (their directories hidden in a private mount namespace)."""
    need("unshare")
    commands = try_it_commands()
    assert len(commands) == 2 and all(c.startswith("python3 -m xe_oneshot") for c in commands)
    empty = tmp_path / "empty"
    empty.mkdir()
    hide = "".join("[ ! -d {d} ] || mount --bind {e} {d}\n".format(d=d, e=empty)
                   for d in ["/usr/lib/python3/dist-packages"] +
                   [str(p) for p in Path("/usr/local/lib").glob("python3*/dist-packages")])
    script = hide + """
cd {checkout}
export PATH=/usr/bin:/bin
[ "$(command -v python3)" = /usr/bin/python3 ]
if python3 -c 'import psutil' 2>/dev/null || python3 -c 'import sh' 2>/dev/null \\
   || python3 -c 'import xattr' 2>/dev/null; then echo "MODULES NOT HIDDEN"; exit 1; fi
""".format(checkout=shlex.quote(str(CHECKOUT)))
    for i, command in enumerate(commands):
        script += "sh -c %s > %s/out%d 2>&1\n" % (shlex.quote(command), tmp_path, i)
    res = in_namespace(script, env={"HOME": "/nonexistent", "LANG": "C.UTF-8"})
    assert res.returncode == 0, res.stdout + "".join(
        p.read_text() for p in sorted(tmp_path.glob("out*")))
    text = (tmp_path / "out0").read_text()
    assert re.search(r'^data/os_uname = "%s"$' % re.escape(os.uname().release), text, re.M), \
        text
    assert 'attr/PVAddons/Installed = "1"' in text
    values = json.loads((tmp_path / "out1").read_text())
    assert values["data/os_uname"] == os.uname().release


def test_openrc_service_runs_the_boot_then_starts_and_stops_the_tick(tmp_path):
    """The installed OpenRC script sourced as openrc-run does (its ebegin/eend and
    start-stop-daemon recorded): start does the boot run, then starts the tick in the
    background under a pidfile; stop stops it through that pidfile."""
    need("make")
    root = stage(tmp_path / "root", "INIT=openrc", "NOCOMPILE=1")
    stubs = Stubs(tmp_path / "bin", ["start-stop-daemon", "xe-oneshot-run"])
    script = (root / "etc/init.d/xe-oneshot").read_text().replace(
        "/usr/lib/xe-oneshot/xe-oneshot-run", str(stubs.dir / "xe-oneshot-run"))
    (tmp_path / "svc").write_text(script)
    res = subprocess.run(
        ["sh", "-euc", 'ebegin() { :; }; eend() { return "$1"; }; . "$1"; depend() { :; }; '
         'start; stop', "sh", str(tmp_path / "svc")],
        env={"PATH": "%s:/usr/bin:/bin" % stubs.dir}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, universal_newlines=True, timeout=30)
    assert res.returncode == 0, res.stdout
    assert stubs.calls("xe-oneshot-run") == [["boot"]]
    pidfile = "/run/xe-oneshot-tick.pid"
    assert stubs.calls("start-stop-daemon") == [
        ["--start", "--background", "--make-pidfile", "--pidfile", pidfile,
         "--exec", str(stubs.dir / "xe-oneshot-run"), "--", "tick", "ephemeral"],
        ["--stop", "--quiet", "--pidfile", pidfile]]


@pytest.mark.parametrize("action,rc,runs", [("start", 0, [["boot"]]), ("restart", 0, [["boot"]]),
                                            ("stop", 0, []), ("frobnicate", 2, [])])
def test_sysv_script_runs_the_boot_on_start(staged_sysv, tmp_path, action, rc, runs):
    stubs = Stubs(tmp_path / "bin", ["xe-oneshot-run"])
    script = tmp_path / "svc"
    script.write_text((staged_sysv / "etc/init.d/xe-oneshot").read_text().replace(
        "/usr/lib/xe-oneshot/xe-oneshot-run", str(stubs.dir / "xe-oneshot-run")))
    res = subprocess.run(["sh", str(script), action], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=30)
    assert res.returncode == rc, res.stdout
    assert stubs.calls("xe-oneshot-run") == runs
