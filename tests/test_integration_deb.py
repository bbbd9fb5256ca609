"""`make deb`: lintian, then a real `dpkg --root` install, removal and purge in a
throwaway root: an overlay of this (Debian) system in a private mount namespace, so
dpkg resolves Depends against Debian's own python3, python3-sh and
python3-xattr, runs the maintainer scripts chrooted there (deb-systemd-helper for real,
systemctl and udevadm as recording stubs), and the installed `xe-oneshot` publishes
into the real test daemon with Debian's interpreter and modules (the Debian pins)."""

import configparser
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import List

import pytest

from tests.support.integration_support import (CHECKOUT, lines, make, need, run_lifecycle,
                                                source_version)

UNITS = ("xe-oneshot.service", "xe-oneshot-ephemeral.timer")
PINS = {"sh": "python3-sh", "xattr": "python3-xattr"}


@pytest.fixture(scope="module")
def deb():
    need("make", "dpkg-deb")
    out = make("deb").stdout
    path = CHECKOUT / ("dist/xe-oneshot_%s_all.deb" % source_version())
    assert path.exists(), out
    return path


def test_control_fields(deb):
    fields = subprocess.run(["dpkg-deb", "-f", str(deb)], stdout=subprocess.PIPE,
                            universal_newlines=True,
                            check=True).stdout
    assert "Package: xe-oneshot\n" in fields
    assert "Version: %s\n" % source_version() in fields
    assert "Architecture: all\n" in fields
    # setup.cfg's python_requires, as a Debian relation
    cfg = configparser.ConfigParser()
    cfg.read(CHECKOUT / "setup.cfg")
    floor = re.fullmatch(r">=\s*(\d+\.\d+)", cfg.get("options", "python_requires")).group(1)
    assert "Depends: python3 (>= %s), python3-sh, python3-xattr\n" % floor \
        in fields
    # coexists with Debian's xenstore-utils (xen-utils-common depends on it)
    relations = [line for line in fields.splitlines()
                 if line.startswith(("Conflicts:", "Breaks:", "Replaces:"))]
    assert not [r for r in relations if "xenstore-utils" in r], relations
    assert "Conflicts: xe-guest-utilities, xen-guest-agent\n" in fields
    # whoever builds it (make deb MAINTAINER=...), never a made-up address
    assert "Maintainer: %s\n" % builder() in fields
    assert "example.org" not in fields


def builder() -> str:
    """DEBFULLNAME <DEBEMAIL>, else git's user.name <user.email>."""
    def git(key):
        return subprocess.run(["git", "-C", str(CHECKOUT), "config", key],
                              stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    return "%s <%s>" % (os.environ.get("DEBFULLNAME") or git("user.name"),
                        os.environ.get("DEBEMAIL") or git("user.email"))


def test_maintainer_comes_from_the_builder(tmp_path):
    need("make", "dpkg-deb")
    out = make("deb", "MAINTAINER=Jane Admin <jane@admin.invalid>").stdout
    assert "Maintainer: Jane Admin <jane@admin.invalid>\n" in subprocess.run(
        ["dpkg-deb", "-f", str(CHECKOUT / ("dist/xe-oneshot_%s_all.deb" % source_version()))],
        stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout, out
    res = make("deb", "MAINTAINER=", check=False)
    assert res.returncode != 0 and "set MAINTAINER" in res.stdout
    make("deb")     # the module's package again, for the tests that follow


def test_lintian_finds_no_error_and_no_warning(deb):
    need("lintian")
    res = subprocess.run(["lintian", "--allow-root", "--tag-display-limit", "0", str(deb)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                         timeout=300)
    tags = [line for line in res.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert tags == [], res.stdout


def test_every_command_has_its_manual_page(deb, tmp_path):
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    assert sorted(p.name for p in (tmp_path / "usr/bin").iterdir()) == \
        ["xe-linux-distribution", "xe-oneshot", "xenstore.xe-oneshot"]
    man = tmp_path / "usr/share/man"
    assert sorted(str(p.relative_to(man)) for p in man.rglob("*.gz")) == \
        ["man1/xenstore.xe-oneshot.1.gz", "man8/xe-linux-distribution.8.gz",
         "man8/xe-oneshot.8.gz"]


def test_conffiles_are_the_files_in_etc(deb, tmp_path):
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp_path / "c")], check=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path / "x")], check=True)
    conffiles = (tmp_path / "c/conffiles").read_text().split()
    in_etc = sorted("/" + str(p.relative_to(tmp_path / "x"))
                    for p in (tmp_path / "x/etc").rglob("*") if p.is_file())
    # NetworkManager 1, networkd-dispatcher 6, ifupdown 2, dhclient 1
    assert conffiles == in_etc and len(in_etc) == 10
    assert not list((tmp_path / "x").rglob("__pycache__"))     # compiled in postinst
    # ... and again when the default python3 changes
    rtupdate = tmp_path / "x/usr/share/python3/runtime.d/xe-oneshot.rtupdate"
    assert os.access(rtupdate, os.X_OK)


# -- dpkg --root in a throwaway copy of this system -----------------------------------

STUB = r"""#!/bin/sh
# recording stub: one line per call, arguments separated by spaces. Offline calls
# (--root=, as deb-systemd-helper makes to enable units) go to the real systemctl.
echo "$(basename "$0") $*" >> /xe-test/calls
case "$1" in
    --root=*) exec "$0.real" "$@" ;;
esac
case "$*" in
    *--version*) echo "systemd 252 (252)" ;;
    *is-enabled*) echo enabled ;;
esac
exit 0
"""


def throwaway_root_script(deb: Path, work: Path, socket: Path, steps: str) -> str:
    """A namespace script: overlay of / at $R (upper layer on a tmpfs), /dev /proc /sys,
    a fresh /run that says systemd and udev run, stubs for systemctl and udevadm, the
    test daemon's socket directory, and /xe-test (the host's ``work``) for results."""
    return """
W={work}; R=$W/ov/root; DEB={deb}
mkdir -p "$W/ov" "$W/out"
mount -t tmpfs tmpfs "$W/ov"
mkdir "$W/ov/up" "$W/ov/work" "$R"
mount -t overlay overlay -o lowerdir=/,upperdir="$W/ov/up",workdir="$W/ov/work" "$R"
mount --rbind /dev "$R/dev"; mount -t proc proc "$R/proc"; mount --rbind /sys "$R/sys"
mount -t tmpfs tmpfs "$R/run"; mkdir -p "$R/run/systemd/system" "$R/run/udev" "$R/run/lock"
mount -t tmpfs tmpfs "$R/tmp"
mkdir -p "$R/xe-test"; mount --bind "$W/out" "$R/xe-test"
mkdir -p "$R{sockdir}"; mount --bind {sockdir} "$R{sockdir}"
rm -f "$R/usr/sbin/policy-rc.d"           # a container's "start nothing" policy
for s in usr/bin/systemctl bin/systemctl usr/bin/udevadm bin/udevadm; do
    [ -L "$R/$s" ] || [ ! -e "$R/$s" ] || [ -e "$R/$s.real" ] || {{
        mv "$R/$s" "$R/$s.real"; cp "$W/stub" "$R/$s"; chmod 755 "$R/$s"; }}
done
in_root() {{ chroot "$R" "$@"; }}
# Every file and link the steps left in the root (the overlay's upper layer), but
# dpkg's own database and logs, and man-db's cache (its trigger). Not whiteouts: purge
# removes /usr/lib/systemd/system-sleep when it is empty, a directory dpkg believes
# only this package ships (systemd ships it as /lib/...: merged-/usr aliasing). $1: name.
upper() {{
    (cd "$W/ov/up" && find . \\( -path ./var/lib/dpkg -o -path ./var/log \\
        -o -path ./var/cache/man -o -path ./xe-test \\) \
        -prune -o \\( -type f -o -type l \\) -print | LC_ALL=C sort) > "$W/out/$1.upper"
}}
{steps}
""".format(work=shlex.quote(str(work)), deb=shlex.quote(str(deb)),
           sockdir=shlex.quote(str(socket.parent)), steps=steps)


@pytest.fixture(scope="module")
def deb_lifecycle(deb, xenstored, tmp_path_factory):
    """Install, run, remove, reinstall and purge; returns what each step left behind."""
    need("dpkg", "unshare", "chroot")
    work = tmp_path_factory.mktemp("deb")
    (work / "stub").write_text(STUB)
    sock = xenstored.socket
    steps = """
set +e
snap() {{  # $1: name; what the root holds of the package after a step
    {{ for f in /usr/bin/xe-oneshot /usr/bin/xenstore-read /usr/lib/xe-oneshot \\
               /usr/lib/systemd/system/xe-oneshot.service \\
               /usr/lib/udev/rules.d/80-xe-oneshot.rules \\
               /etc/NetworkManager/dispatcher.d/90-xe-oneshot \\
               /etc/networkd-dispatcher/routable.d/xe-oneshot \\
               /var/cache/xe-linux-distribution; do
          if [ -e "$R$f" ] || [ -L "$R$f" ]; then echo "present $f"; fi; done
      for l in /etc/systemd/system/multi-user.target.wants/xe-oneshot.service \\
               /etc/systemd/system/timers.target.wants/xe-oneshot-ephemeral.timer \\
               /etc/systemd/system/xe-oneshot.service \\
               /etc/systemd/system/xe-oneshot-ephemeral.timer; do
          [ -L "$R$l" ] && echo "link $l -> $(readlink "$R$l")"; done
      ls "$R/usr/lib/xe-oneshot/xe_oneshot/__pycache__" 2>/dev/null | sed 's/^/pyc /'
      in_root dpkg-query -W -f '${{Status}}\\n' xe-oneshot 2>/dev/null | sed 's/^/status /'
    }} > "$W/out/$1.state"
    ls -l "$R/usr/bin" "$R/etc/alternatives" | grep -o 'xenstore.*' > "$W/out/$1.alternatives"
    mv "$W/out/calls" "$W/out/$1.calls" 2>/dev/null || : > "$W/out/$1.calls"
}}
upper before
dpkg --root="$R" -i "$DEB" > "$W/out/install.log" 2>&1; echo $? > "$W/out/install.rc"
snap install
rm -rf "$R/usr/lib/xe-oneshot/xe_oneshot/__pycache__"
in_root /usr/share/python3/runtime.d/xe-oneshot.rtupdate rtupdate > "$W/out/rtupdate.log" 2>&1
echo $? > "$W/out/rtupdate.rc"
ls "$R/usr/lib/xe-oneshot/xe_oneshot/__pycache__" > "$W/out/rtupdate.pyc" 2>&1
in_root /usr/bin/python3 -I -c '
import importlib.metadata as m, sh, xattr
for mod in (sh, xattr):
    print(mod.__name__, m.version(mod.__name__), mod.__file__)' > "$W/out/pins" 2>&1
in_root env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin XENSTORED_PATH={sock} \\
    /usr/bin/xe-oneshot --section all > "$W/out/run.log" 2>&1; echo $? > "$W/out/run.rc"
in_root env -i XENSTORED_PATH={sock} /usr/bin/xenstore-read attr/PVAddons/Installed \\
    > "$W/out/read.log" 2>&1
in_root /usr/bin/xe-linux-distribution /var/cache/xe-linux-distribution
: > "$W/out/calls"
dpkg --root="$R" -r xe-oneshot > "$W/out/remove.log" 2>&1; echo $? > "$W/out/remove.rc"
snap remove
dpkg --root="$R" -i "$DEB" > "$W/out/reinstall.log" 2>&1; echo $? > "$W/out/reinstall.rc"
snap reinstall
dpkg --root="$R" -P xe-oneshot > "$W/out/purge.log" 2>&1; echo $? > "$W/out/purge.rc"
snap purge
upper purge
""".format(sock=shlex.quote(str(sock)))
    return run_lifecycle(throwaway_root_script(deb, work, sock, steps), work)


def test_dpkg_installs_against_debians_own_packages(deb_lifecycle):
    assert deb_lifecycle["install.rc"].strip() == "0", deb_lifecycle["install.log"]
    state = lines(deb_lifecycle["install.state"])
    assert "status install ok installed" in state
    for f in ("/usr/bin/xe-oneshot", "/usr/bin/xenstore-read", "/usr/lib/xe-oneshot",
              "/usr/lib/systemd/system/xe-oneshot.service",
              "/usr/lib/udev/rules.d/80-xe-oneshot.rules",
              "/etc/NetworkManager/dispatcher.d/90-xe-oneshot",
              "/etc/networkd-dispatcher/routable.d/xe-oneshot"):
        assert "present " + f in state


def test_postinst_enables_and_starts_the_units_and_reloads_udev(deb_lifecycle):
    state = lines(deb_lifecycle["install.state"])
    assert "link /etc/systemd/system/multi-user.target.wants/xe-oneshot.service -> " \
           "/lib/systemd/system/xe-oneshot.service" in state or \
           "link /etc/systemd/system/multi-user.target.wants/xe-oneshot.service -> " \
           "/usr/lib/systemd/system/xe-oneshot.service" in state, state
    assert any(s.startswith("link /etc/systemd/system/timers.target.wants/"
                            "xe-oneshot-ephemeral.timer -> ") for s in state), state
    calls = lines(deb_lifecycle["install.calls"])
    assert "systemctl --system daemon-reload" in calls
    assert "systemctl --quiet --system start xe-oneshot.service xe-oneshot-ephemeral.timer" \
        in calls, calls
    assert "udevadm control --reload" in calls


def test_postinst_byte_compiles_for_debians_python(deb_lifecycle):
    pyc = [s for s in lines(deb_lifecycle["install.state"]) if s.startswith("pyc ")]
    assert "pyc cli.cpython-%s.pyc" % debian_python_tag() in pyc, pyc


def test_rtupdate_hook_recompiles(deb_lifecycle):
    assert deb_lifecycle["rtupdate.rc"].strip() == "0", deb_lifecycle["rtupdate.log"]
    assert "cli.cpython-%s.pyc" % debian_python_tag() in lines(deb_lifecycle["rtupdate.pyc"])


def debian_python_tag() -> str:
    return subprocess.run(["/usr/bin/python3", "-c",
                           "import sys; print('%d%d' % sys.version_info[:2])"],
                          stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout.strip()


def dpkg_upstream_version(package: str) -> str:
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                             stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    return re.sub(r"^\d+:", "", version).rsplit("-", 1)[0]


def test_installed_python_uses_debians_modules(deb_lifecycle):
    """The Debian pins: the interpreter the launchers name imports Debian's packages."""
    got = {}
    for line in lines(deb_lifecycle["pins"]):
        name, version, path = line.split()
        got[name] = (version, path)
    for module, package in PINS.items():
        version, path = got[module]
        assert path.startswith("/usr/lib/python3/dist-packages/"), path
        assert version == dpkg_upstream_version(package)


def test_installed_collector_publishes_into_the_real_daemon(deb_lifecycle, xenstored):
    assert deb_lifecycle["run.rc"].strip() == "0", deb_lifecycle["run.log"]
    major, minor, micro = (source_version().split(".") + ["0", "0"])[:3]
    pv = xenstored.tree("attr/PVAddons")
    assert (pv["Installed"], pv["MajorVersion"], pv["MinorVersion"], pv["MicroVersion"]) == \
        ("1", major, minor, micro)
    assert xenstored.read("data/os_uname") == subprocess.run(
        ["uname", "-r"], stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    total = next(line.split()[1] for line in open("/proc/meminfo")
                 if line.startswith("MemTotal:"))
    assert xenstored.read("data/meminfo_total") == total
    assert deb_lifecycle["read.log"] == "1\n"


def test_remove_stops_and_masks_keeps_conffiles(deb_lifecycle):
    assert deb_lifecycle["remove.rc"].strip() == "0", deb_lifecycle["remove.log"]
    state = lines(deb_lifecycle["remove.state"])
    calls = lines(deb_lifecycle["remove.calls"])
    assert "systemctl stop xe-oneshot-ephemeral.timer xe-oneshot.service" in calls, calls
    assert "systemctl --system daemon-reload" in calls
    assert "udevadm control --reload" in calls
    for gone in ("/usr/bin/xe-oneshot", "/usr/lib/xe-oneshot",
                 "/usr/lib/udev/rules.d/80-xe-oneshot.rules",
                 "/usr/lib/systemd/system/xe-oneshot.service"):
        assert "present " + gone not in state
    # dpkg keeps conffiles on remove; the hooks then do nothing (tested in the hooks' tests)
    assert "present /etc/NetworkManager/dispatcher.d/90-xe-oneshot" in state
    for unit in UNITS:
        assert "link /etc/systemd/system/%s -> /dev/null" % unit in state
    assert "status deinstall ok config-files" in state
    assert not [s for s in state if s.startswith("pyc ")]


def test_reinstall_unmasks_and_enables_again(deb_lifecycle):
    assert deb_lifecycle["reinstall.rc"].strip() == "0", deb_lifecycle["reinstall.log"]
    state = lines(deb_lifecycle["reinstall.state"])
    assert not [s for s in state if "-> /dev/null" in s], state
    assert any("multi-user.target.wants/xe-oneshot.service" in s for s in state)


def test_purge_leaves_nothing_behind(deb_lifecycle):
    assert deb_lifecycle["purge.rc"].strip() == "0", deb_lifecycle["purge.log"]
    state = lines(deb_lifecycle["purge.state"])
    assert state == [], state
    # not a file anywhere in the root that was not there before the installation
    assert set(lines(deb_lifecycle["purge.upper"])) - set(lines(deb_lifecycle["before.upper"])) \
        == set()


def test_xenstore_commands_are_alternatives(deb_lifecycle):
    assert "xenstore-read -> /etc/alternatives/xenstore-read" in \
        deb_lifecycle["install.alternatives"], deb_lifecycle["install.alternatives"]
    assert deb_lifecycle["read.log"] == "1\n"          # through /usr/bin/xenstore-read
    assert deb_lifecycle["remove.alternatives"] == ""
    assert deb_lifecycle["purge.alternatives"] == ""


# -- beside Debian's xenstore-utils ------------------------------------------------------

def xen_debs() -> List[Path]:
    """Debian's xenstore-utils and the libraries it needs (fetched for the test daemon)."""
    from tests.support.xenstored import cache_dir, xen_root
    xen_root()
    debs = cache_dir() / "xen-4.17" / "debs"
    return [next(debs.glob(name + "_*.deb"))
            for name in ("libxentoolcore1", "libxenstore4", "xenstore-utils")]


@pytest.fixture(scope="module")
def coexistence(deb, xenstored, tmp_path_factory):
    """Both packages in either order, each removed while the other stays; what
    /usr/bin/xenstore-read is and does after each step."""
    need("dpkg", "unshare", "chroot")
    work = tmp_path_factory.mktemp("coexist")
    (work / "stub").write_text(STUB)
    xs = " ".join(shlex.quote(str(p)) for p in xen_debs())
    steps = """
set +e
look() {{  # $1: step; the package states, what xenstore-read is, and a read through it
    {{ in_root dpkg-query -W -f '${{Package}} ${{Status}}\\n' xe-oneshot xenstore-utils \
          2>/dev/null | sed 's/^/status /'
      if [ -L "$R/usr/bin/xenstore-read" ]; then
          echo "read link $(chroot "$R" readlink -f /usr/bin/xenstore-read)"
      elif [ -f "$R/usr/bin/xenstore-read" ]; then echo "read file"; fi
      for c in xenstore xenstore-read xenstore-ls xenstore.xe-oneshot; do
          if [ -e "$R/usr/bin/$c" ] || [ -L "$R/usr/bin/$c" ]; then echo "present $c"; fi
      done
      m="$R/usr/share/man/man1/xenstore.1.gz"
      if [ -e "$m" ] || [ -L "$m" ]; then echo "present xenstore.1.gz"; fi
      in_root env -i XENSTORED_PATH={sock} /usr/bin/xenstore-read data/coexist 2>&1 \
          | sed 's/^/says /'
      in_root dpkg --verify xenstore-utils 2>&1 | sed 's/^/verify /'
    }} > "$W/out/$1"
}}
XS="{xs}"
dpkg --root="$R" -i "$DEB" > "$W/out/log" 2>&1;                      look ours
dpkg --root="$R" -i $XS >> "$W/out/log" 2>&1;                        look ours+theirs
dpkg --root="$R" -r xenstore-utils >> "$W/out/log" 2>&1;             look theirs-removed
dpkg --root="$R" -i $XS >> "$W/out/log" 2>&1;                        look theirs-again
dpkg --root="$R" -r xe-oneshot >> "$W/out/log" 2>&1;                 look ours-removed
dpkg --root="$R" -i "$DEB" >> "$W/out/log" 2>&1;                     look ours-after-theirs
dpkg --root="$R" -P xe-oneshot >> "$W/out/log" 2>&1;                 look ours-purged
dpkg --root="$R" -P xenstore-utils libxenstore4 libxentoolcore1 >> "$W/out/log" 2>&1
look nothing
""".format(sock=shlex.quote(str(xenstored.socket)), xs=xs)
    xenstored.write("data/coexist", "both")
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-euc",
                          throwaway_root_script(deb, work, xenstored.socket, steps)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout
    out = work / "out"
    print("\n".join("== %s\n%s" % (p.name, p.read_text()) for p in sorted(out.iterdir())))
    return {p.name: lines(p.read_text()) for p in out.iterdir() if p.is_file()}


OURS = "read link /usr/bin/xenstore.xe-oneshot"
BOTH = ["status xe-oneshot install ok installed", "status xenstore-utils install ok installed"]


def test_alone_the_xenstore_commands_are_ours(coexistence):
    step = coexistence["ours"]
    assert OURS in step and "says both" in step, step


def test_xenstore_utils_installs_beside_and_its_tools_win(coexistence):
    for name in ("ours+theirs", "ours-after-theirs"):
        step = coexistence[name]
        assert all(s in step for s in BOTH), (name, step, coexistence["log"])
        assert "read file" in step and "says both" in step, (name, step)
        assert "present xenstore.xe-oneshot" in step
        assert not [s for s in step if s.startswith("verify ")], (name, step)


def test_removing_xenstore_utils_brings_our_commands_back(coexistence):
    step = coexistence["theirs-removed"]
    assert OURS in step and "says both" in step and "present xenstore.1.gz" in step, step


def test_removing_xe_oneshot_leaves_xenstore_utils_working(coexistence):
    for name in ("ours-removed", "ours-purged"):
        step = coexistence[name]
        assert "read file" in step and "says both" in step, (name, step)
        assert "present xenstore-ls" in step and "present xenstore.1.gz" in step
        assert not [s for s in step if s.startswith("verify ")], (name, step)


def test_nothing_left_once_both_are_purged(coexistence):
    left = [s for s in coexistence["nothing"] if s.startswith(("status", "read", "present"))]
    assert left == [], coexistence["nothing"]
