"""`make rpm`: the package's contents against a staged `make install`, its
dependencies, rpmlint, then a real `rpm --root` install, run, erase and reinstall in a
throwaway root (an overlay of this Debian system in a private mount namespace, as the
.deb tests do): --nodeps, since the root's RPM database holds nothing, but the
scriptlets run (chrooted, systemctl and udevadm as recording stubs) and the installed
collector publishes into the real test daemon through the interpreter %post chose."""

import re
import shlex
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from tests.support.integration_support import (CHECKOUT, XENSTORE_ALIASES, lines, make, need,
                                       run_lifecycle, source_version, stage)

DBPATH = "/var/lib/rpm"


@pytest.fixture(scope="module")
def rpm():
    need("make", "rpmbuild", "rpm")
    out = make("rpm").stdout
    path = CHECKOUT / ("dist/xe-oneshot-%s-1.noarch.rpm" % source_version())
    assert path.exists(), out
    return path


def query(rpm: Path, *args: str) -> List[str]:
    return subprocess.run(["rpm", "-qp"] + list(args) + [str(rpm)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout.splitlines()


def test_contents_are_the_systemd_install_plus_packaging(rpm, tmp_path):
    """Every file `make install` stages (INIT=systemd), manual pages compressed, the doc
    files under the RPM's own names, the preset, and two ghosts."""
    root = stage(tmp_path, "NOCOMPILE=1")
    want = set()
    for path in root.rglob("*"):
        rel = "/" + str(path.relative_to(root))
        if path.is_dir() and not path.is_symlink():
            continue
        if rel.startswith("/usr/share/man/"):
            rel += ".gz"
        if rel.startswith(("/etc/network/", "/etc/dhcp/")):
            continue                # Debian's ifupdown and dhclient hooks: not on RPM systems
        want.add(rel)
    want |= {"/usr/share/doc/xe-oneshot/CHANGELOG.md", "/usr/share/licenses/xe-oneshot/LICENSE",
             "/usr/lib/systemd/system-preset/80-xe-oneshot.preset",
             "/usr/lib/xe-oneshot/python3", "/var/cache/xe-linux-distribution"}
    files = query(rpm, "-l")
    dirs = {line[2:] for line in query(rpm, "--qf", "[%{FILEMODES:perms} %{FILENAMES}\\n]")
            if line.startswith("d")}
    got = set(files) - {d.split(" ", 1)[1] for d in dirs}
    assert got == want
    for command in ["xe-oneshot", "xe-linux-distribution", "xenstore"] + \
            ["xenstore-" + a for a in XENSTORE_ALIASES]:
        assert [f for f in files if re.search(r"/man[18]/%s\.[18]\.gz$" % re.escape(command), f)]


def test_conffiles_ghosts_and_units(rpm):
    conf = query(rpm, "-c")
    in_etc = [line.split(" ", 1)[1] for line in
              query(rpm, "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]")
              if line.split(" ", 1)[1].startswith("/etc/") and not line.startswith("d")]
    assert sorted(conf) == sorted(in_etc) and len(conf) == 7
    flags = dict(line.split(" ", 1)[::-1] for line in
                 query(rpm, "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]"))
    assert "n" in flags["/etc/NetworkManager/dispatcher.d/90-xe-oneshot"]   # noreplace
    assert "g" in flags["/usr/lib/xe-oneshot/python3"]                        # ghost
    assert "g" in flags["/var/cache/xe-linux-distribution"]
    # launchers on the link %post points at the distribution's interpreter
    res = subprocess.run("rpm2cpio %s | cpio -i --quiet --to-stdout ./usr/bin/xe-oneshot"
                         % shlex.quote(str(rpm)), shell=True, stdout=subprocess.PIPE,
                         universal_newlines=True, check=True)
    assert res.stdout.startswith("#!/usr/lib/xe-oneshot/python3 -IS\n")


def test_dependencies(rpm):
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(CHECKOUT / "setup.cfg")
    floor = re.fullmatch(r">=\s*(\d+\.\d+)", cfg.get("options", "python_requires")).group(1)
    requires = query(rpm, "--requires")
    assert "(/usr/libexec/platform-python or /usr/bin/python3)" in requires
    assert "python(abi) >= %s" % floor in requires
    assert not [r for r in requires if "psutil" in r]   # addresses need no psutil
    assert "systemd" in requires
    # sh only for `pvs` (EPEL on RHEL), xattr never (os.setxattr): not hard requirements
    assert not [r for r in requires if r.startswith(("python3-sh", "python3-xattr"))]
    assert query(rpm, "--recommends") == ["python3-sh", "udev"]
    assert {"xe-guest-utilities", "xe-guest-utilities-latest", "xen-guest-agent"} <= \
        set(query(rpm, "--conflicts"))
    # nothing generated from the launchers' #! (the link is the package's own)
    assert not [r for r in requires if "xe-oneshot" in r and not r.startswith("config(")]


# Each rpmlint message left, and why (anything else fails the test).
RPMLINT_EXPLAINED = {
    # the dispatcher hooks are executables that live in /etc, where NetworkManager and
    # networkd-dispatcher read them; conffiles so that an admin's edit (or an emptied
    # hook) survives an upgrade, as in the .deb
    "executable-marked-as-config-file",
    # the same networkd-dispatcher hook in each state directory
    "files-duplicate",
    # signing is the publisher's step (rpmsign), not the build's
    "no-signature",
    # the %ghost placeholder: %post points it at platform-python or python3
    "dangling-relative-symlink",
    # rpmlint 2.4.0 bug: FilesCheck records the section ("8"), not the page's name,
    # as the manual pages it saw; test_contents_... checks every command has its page
    "no-manual-page-for-binary",
    # the project publishes no web site or download URL; make rpm makes Source0
    "no-url-tag", "invalid-url",
    # a noarch package's private Python package sits in /usr/lib, where noarch files
    # belong (not %{_libdir}); /usr/lib is also where udev and systemd read
    "only-non-binary-in-usr-lib", "hardcoded-library-path",
    # the distribution cache is written at boot by the service, not at installation
    "postin-without-ghost-file-creation",
    # BuildRoot has been obsolete since rpm 4.6
    "no-buildroot-tag",
    # Packager is whoever builds the package (MAINTAINER), on purpose
    "hardcoded-packager-tag",
}


def test_rpmlint_reports_nothing_unexplained(rpm):
    need("rpmlint")
    srpm = CHECKOUT / ("dist/xe-oneshot-%s-1.src.rpm" % source_version())
    spec = CHECKOUT / "build/rpm/SPECS/xe-oneshot.spec"
    res = subprocess.run(["rpmlint", "-c", str(CHECKOUT / "packaging/rpm/rpmlint.toml"),
                          str(rpm), str(srpm), str(spec)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    tags = set(re.findall(r"^\S+: [EW]: (\S+)", res.stdout, re.M))
    assert tags, res.stdout          # the check ran (the signature is always missing)
    assert tags - RPMLINT_EXPLAINED == set(), res.stdout


# -- rpm --root in a throwaway copy of this system -------------------------------------

STUB = r"""#!/bin/sh
echo "$(basename "$0") $*" >> /xe-test/calls
case "$*" in *is-enabled*) echo enabled ;; esac
exit 0
"""


@pytest.fixture(scope="module")
def rpm_lifecycle(rpm, xenstored, tmp_path_factory) -> Dict[str, str]:
    need("unshare", "chroot")
    work = tmp_path_factory.mktemp("rpm")
    (work / "stub").write_text(STUB)
    sock = xenstored.socket
    script = """
W={work}; R=$W/ov/root; RPM={rpm}; SOCK={sock}
mkdir -p "$W/ov" "$W/out"
mount -t tmpfs tmpfs "$W/ov"
mkdir "$W/ov/up" "$W/ov/work" "$R"
mount -t overlay overlay -o lowerdir=/,upperdir="$W/ov/up",workdir="$W/ov/work" "$R"
mount --rbind /dev "$R/dev"; mount -t proc proc "$R/proc"; mount --rbind /sys "$R/sys"
mount -t tmpfs tmpfs "$R/run"; mkdir -p "$R/run/systemd/system" "$R/run/udev"
mount -t tmpfs tmpfs "$R/tmp"
mkdir -p "$R/xe-test"; mount --bind "$W/out" "$R/xe-test"
mkdir -p "$R$(dirname "$SOCK")"; mount --bind "$(dirname "$SOCK")" "$R$(dirname "$SOCK")"
for s in usr/bin/systemctl usr/bin/udevadm; do
    mv "$R/$s" "$R/$s.real"; cp "$W/stub" "$R/$s"; chmod 755 "$R/$s"
done
set +e
rpmr() {{ rpm --root "$R" --dbpath {db} "$@"; }}
in_root() {{ chroot "$R" "$@"; }}
upper() {{  # every file and link the steps left in the root, but the RPM database
    (cd "$W/ov/up" && find . \\( -path ./{dbrel} -o -path ./xe-test \\) -prune -o \\
        \\( -type f -o -type l \\) -print | LC_ALL=C sort) > "$W/out/$1.upper"
}}
snap() {{
    {{ rpmr -q xe-oneshot
      for f in /usr/bin/xe-oneshot /usr/bin/xenstore-read /usr/lib/xe-oneshot \\
               /usr/lib/systemd/system/xe-oneshot.service \\
               /usr/lib/systemd/system-preset/80-xe-oneshot.preset \\
               /usr/lib/udev/rules.d/80-xe-oneshot.rules \\
               /usr/share/man/man8/xe-oneshot.8.gz \\
               /etc/NetworkManager/dispatcher.d/90-xe-oneshot \\
               /etc/networkd-dispatcher/routable.d/xe-oneshot \\
               /var/cache/xe-linux-distribution; do
          if [ -e "$R$f" ] || [ -L "$R$f" ]; then echo "present $f"; fi; done
      [ -L "$R/usr/lib/xe-oneshot/python3" ] && \\
          echo "python $(readlink "$R/usr/lib/xe-oneshot/python3")"
      ls "$R/usr/lib/xe-oneshot/xe_oneshot/__pycache__" 2>/dev/null | sed 's/^/pyc /'
    }} > "$W/out/$1.state" 2>&1
    # every absolute path the units and rules name (commands, Documentation=)
    for f in $(cat "$R"/usr/lib/systemd/system/xe-oneshot* \
                   "$R"/usr/lib/udev/rules.d/80-xe-oneshot.rules 2>/dev/null \
               | grep -v '^#' | grep -o '\\(/usr\\)\\?/s\\?bin/[a-z-]*\\|file:/[^ ]*' \
               | sed 's/^file://' | sort -u); do
        if [ -e "$R$f" ]; then echo "found $f"; else echo "MISSING $f"; fi
    done > "$W/out/$1.named"
    mv "$W/out/calls" "$W/out/$1.calls" 2>/dev/null || : > "$W/out/$1.calls"
}}
rpmr --initdb
upper before
rpmr -i --nodeps "$RPM" > "$W/out/install.log" 2>&1; echo $? > "$W/out/install.rc"
snap install
rpmr -V --nodeps xe-oneshot > "$W/out/verify.log" 2>&1; echo $? > "$W/out/verify.rc"
in_root env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin XENSTORED_PATH="$SOCK" \\
    /usr/bin/xe-oneshot --section all > "$W/out/run.log" 2>&1; echo $? > "$W/out/run.rc"
in_root env -i XENSTORED_PATH="$SOCK" /usr/bin/xenstore-read attr/PVAddons/Installed \\
    > "$W/out/read.log" 2>&1
in_root /usr/bin/xe-linux-distribution /var/cache/xe-linux-distribution
: > "$W/out/calls"
rpmr -e xe-oneshot > "$W/out/erase.log" 2>&1; echo $? > "$W/out/erase.rc"
snap erase; upper erase
rpmr -i --nodeps "$RPM" > "$W/out/reinstall.log" 2>&1; echo $? > "$W/out/reinstall.rc"
snap reinstall
rpmr -e xe-oneshot > "$W/out/erase2.log" 2>&1; echo $? > "$W/out/erase2.rc"
snap erase2; upper erase2
""".format(work=shlex.quote(str(work)), rpm=shlex.quote(str(rpm)),
           sock=shlex.quote(str(sock)), db=DBPATH, dbrel=DBPATH.lstrip("/"))
    return run_lifecycle(script, work)


def test_rpm_installs_where_the_units_expect_the_files(rpm_lifecycle):
    assert rpm_lifecycle["install.rc"].strip() == "0", rpm_lifecycle["install.log"]
    state = lines(rpm_lifecycle["install.state"])
    assert "xe-oneshot-%s-1.noarch" % source_version() in state
    for f in ("/usr/bin/xe-oneshot", "/usr/bin/xenstore-read",
              "/usr/lib/systemd/system/xe-oneshot.service",
              "/usr/lib/systemd/system-preset/80-xe-oneshot.preset",
              "/usr/lib/udev/rules.d/80-xe-oneshot.rules", "/usr/share/man/man8/xe-oneshot.8.gz",
              "/etc/NetworkManager/dispatcher.d/90-xe-oneshot",
              "/etc/networkd-dispatcher/routable.d/xe-oneshot"):
        assert "present " + f in state, state
    # no platform-python on Debian: %post chose python3, and compiled for it
    assert "python /usr/bin/python3" in state
    tag = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.implementation"
                          ".cache_tag)"], stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip()
    assert "pyc cli.%s.pyc" % tag in state
    assert rpm_lifecycle["verify.rc"].strip() == "0", rpm_lifecycle["verify.log"]


def test_files_are_where_the_units_and_rules_look(rpm_lifecycle):
    named = lines(rpm_lifecycle["install.named"])
    for f in ("/usr/bin/xe-oneshot", "/usr/bin/xe-linux-distribution",
              "/usr/share/doc/xe-oneshot/README.md", "/bin/systemctl", "/bin/sh"):
        assert "found " + f in named, named
    assert not [n for n in named if n.startswith("MISSING")], named


def test_scriptlets_enable_by_preset_start_and_reload_udev(rpm_lifecycle):
    calls = lines(rpm_lifecycle["install.calls"])
    assert "systemctl --no-reload preset xe-oneshot.service xe-oneshot-ephemeral.timer" \
        in calls, calls
    assert "systemctl daemon-reload" in calls
    assert "systemctl --no-block start xe-oneshot.service xe-oneshot-ephemeral.timer" \
        in calls
    assert "udevadm control --reload" in calls
    preset = Path(CHECKOUT / "packaging/rpm/xe-oneshot.preset").read_text().splitlines()
    assert "enable xe-oneshot.service" in preset and \
        "enable xe-oneshot-ephemeral.timer" in preset


def test_installed_collector_publishes_into_the_real_daemon(rpm_lifecycle, xenstored):
    assert rpm_lifecycle["run.rc"].strip() == "0", rpm_lifecycle["run.log"]
    assert xenstored.read("attr/PVAddons/Installed") == "1"
    assert xenstored.read("data/os_uname") == subprocess.run(
        ["uname", "-r"], stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    assert rpm_lifecycle["read.log"] == "1\n"


@pytest.mark.parametrize("step", ["erase", "erase2"])
def test_erase_disables_and_leaves_no_file_behind(rpm_lifecycle, step):
    assert rpm_lifecycle[step + ".rc"].strip() == "0", rpm_lifecycle[step + ".log"]
    assert lines(rpm_lifecycle[step + ".state"]) == ["package xe-oneshot is not installed"]
    left = set(lines(rpm_lifecycle[step + ".upper"])) - set(lines(rpm_lifecycle["before.upper"]))
    assert left == set()         # the ghosts (cache, interpreter link) and .pyc too
    if step == "erase":
        calls = lines(rpm_lifecycle["erase.calls"])
        assert "systemctl --no-reload disable --now xe-oneshot.service " \
               "xe-oneshot-ephemeral.timer" in calls, calls
        assert "systemctl daemon-reload" in calls and "udevadm control --reload" in calls


def test_reinstall_works(rpm_lifecycle):
    assert rpm_lifecycle["reinstall.rc"].strip() == "0", rpm_lifecycle["reinstall.log"]
    assert lines(rpm_lifecycle["reinstall.state"]) == lines(rpm_lifecycle["install.state"])


def test_without_python3_sh_lvm_usage_is_skipped_not_the_volumes_section(monkeypatch,
                                                                        capsys):
    """python3-sh is only Recommended (EPEL on RHEL): on a guest with an LVM PV and no
    sh module, `pvs` is skipped with a warning, as when lvm2 is missing, instead of the
    whole volumes section failing on the import (RHEL installs on LVM by default)."""
    from xe_oneshot import log
    from xe_oneshot.sections import volumes
    monkeypatch.setitem(__import__("sys").modules, "sh", None)   # import sh: ImportError
    log.configure(0)
    assert volumes.run_pvs() is None
    assert "python3-sh" in capsys.readouterr().err
