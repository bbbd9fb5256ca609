"""The ``os`` section: it publishes what ``xe-linux-distribution`` prints, from the facts
file or detected in-process, and the collector puts it into the real XenStore."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.support.paths import CHECKOUT
from tests.support.distros import CASES, CORPUS, expected
from xe_oneshot import distribution as d
from xe_oneshot.distribution_cli import main
from xe_oneshot.guest import Root
from xe_oneshot.sections import Context, SectionError, load
from xe_oneshot.sections import osinfo
from xe_oneshot.xenstore import Client

FACTS = "var/cache/xe-linux-distribution"
KEYS = ["data/" + key for key in d.KEYS]


def command_output(root, capsys, uname=None):
    """What ``xe-linux-distribution --root ROOT`` prints, as {data/key: value}."""
    assert main(["--root", str(root)], uname=uname) == 0
    return {"data/" + k: v for k, v in d.parse_facts(capsys.readouterr().out).items()}


def collect(root):
    return osinfo.collect(Context(root=Root(str(root)))).values


def test_owns_exactly_its_keys():
    assert load("os") is osinfo
    assert list(osinfo.OWNS) == KEYS


@pytest.mark.parametrize("name", CASES)
def test_in_process_detection_publishes_what_the_command_prints(name, capsys):
    published = collect(CORPUS / name)
    assert published == command_output(CORPUS / name, capsys)
    assert published["data/os_uname"] == os.uname().release
    want = expected(name)
    assert published["data/os_distro"] == want["os_distro"]
    assert published["data/os_name"] == want["os_name"]


@pytest.mark.parametrize("name", ["centos-7.9", "ubuntu-24.04", "nixos-24.05", "sles-15-sp5"])
def test_the_facts_file_is_what_is_published(name, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(CORPUS / name, root, symlinks=True)
    (root / "var/cache").mkdir(parents=True)
    # A kernel the in-process path cannot know: the file must be what is read.
    assert main(["--root", str(root), str(root / FACTS)], uname="9.9.9-from-file") == 0
    published = collect(root)
    want = dict(expected(name), os_uname="9.9.9-from-file")
    assert published == {"data/" + key: want[key] for key in d.KEYS}
    assert published == command_output(root, capsys, uname="9.9.9-from-file")


def test_escaped_values_come_back_exactly(tmp_path):
    values = {"os_distro": "we$ird", "os_majorver": "1", "os_minorver": "",
              "os_uname": "6.1.0-`uname`", "os_name": 'a "b" \\c\nd\x00e \u00e9\u2028'}
    (tmp_path / "var/cache").mkdir(parents=True)
    (tmp_path / FACTS).write_text(d.render(values), encoding="utf-8")
    assert collect(tmp_path) == {"data/" + k: v for k, v in values.items()}


def test_the_classic_agents_file(tmp_path):
    (tmp_path / "var/cache").mkdir(parents=True)
    (tmp_path / FACTS).write_text(
        'os_distro="centos"\nos_majorver="7"\nos_minorver="9"\n'
        'os_uname="3.10.0-1160.el7.x86_64"\nos_name="CentOS Linux release 7.9.2009 (Core)"\n')
    assert collect(tmp_path) == {
        "data/os_distro": "centos", "data/os_majorver": "7", "data/os_minorver": "9",
        "data/os_uname": "3.10.0-1160.el7.x86_64",
        "data/os_name": "CentOS Linux release 7.9.2009 (Core)"}


def test_a_file_without_os_distro_falls_back_to_detection(tmp_path):
    (tmp_path / "var/cache").mkdir(parents=True)
    (tmp_path / FACTS).write_bytes(b"\x00\xffgarbage\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/debian_version").write_text("12.7\n")
    assert collect(tmp_path) == {
        "data/os_distro": "debian", "data/os_majorver": "12", "data/os_minorver": "7",
        "data/os_uname": os.uname().release, "data/os_name": "Debian 12.7"}


def test_a_long_value_in_the_file_is_clipped(tmp_path):
    (tmp_path / "var/cache").mkdir(parents=True)
    (tmp_path / FACTS).write_text('os_distro="x"\nos_name="%s"\n' % ("n" * 5000))
    assert collect(tmp_path) == {"data/os_distro": "x", "data/os_name": "n" * d.MAX_VALUE}


def test_nothing_recognised_is_a_section_error(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text("")
    with pytest.raises(SectionError, match="no Linux distribution recognised"):
        collect(tmp_path)


# --- end to end: the collector against the real daemon --------------------------------


def collector(daemon, root, state, *args):
    env = dict(daemon.env(), PYTHONPATH=str(CHECKOUT))
    res = subprocess.run([sys.executable, "-m", "xe_oneshot", "--section", "os",
                          "--root", str(root), "--state-dir", str(state)] + list(args),
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=60)
    assert "Traceback" not in res.stderr
    return res


def os_keys(daemon):
    return {k: v for k, v in daemon.tree("data").items() if k.startswith("os_")}


@pytest.mark.parametrize("name", ["rocky-9.3", "ubuntu-24.04", "nixos-24.05", "debian-testing"])
def test_collector_publishes_detected_values(fresh_xenstored, tmp_path, name):
    res = collector(fresh_xenstored, CORPUS / name, tmp_path / "state")
    assert res.returncode == 0, res.stderr
    want = dict(expected(name), os_uname=os.uname().release)
    assert os_keys(fresh_xenstored) == {key: want[key] for key in d.KEYS}


def test_collector_publishes_the_file_exactly(fresh_xenstored, tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "var/cache").mkdir(parents=True)
    (root / "etc/os-release").write_text(
        'ID=odd\nVERSION_ID=1.2\nPRETTY_NAME="Odd \\"quoted\\" \\$name \\`x\\` back\\\\slash"\n')
    assert main(["--root", str(root), str(root / FACTS)], uname="6.1.0-test") == 0
    res = collector(fresh_xenstored, root, tmp_path / "state")
    assert res.returncode == 0, res.stderr
    # Read back raw (xenstore-read would print the backslash escaped).
    with Client.open(env=fresh_xenstored.env()) as client:
        published = {key: client.read_text("data/" + key) for key in d.KEYS}
    assert published == {"os_distro": "odd", "os_majorver": "1", "os_minorver": "2",
                         "os_uname": "6.1.0-test",
                         "os_name": 'Odd "quoted" $name `x` back\\slash'}


def test_collector_leaves_keys_alone_when_nothing_is_recognised(fresh_xenstored, tmp_path):
    fresh_xenstored.write("data/os_distro", "previous")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    res = collector(fresh_xenstored, root, tmp_path / "state")
    assert res.returncode == 1
    assert "no Linux distribution recognised" in res.stderr
    assert fresh_xenstored.read("data/os_distro") == "previous"


# -- layout on facts, no guest files ---------------------------------------------------

def test_os_keys_only_the_known_keys_under_data_and_long_values_cut():
    facts = {"os_distro": "debian", "os_name": "x" * (d.MAX_VALUE + 5), "other": "no"}
    assert osinfo.os_keys(facts) == {"data/os_distro": "debian",
                                     "data/os_name": "x" * d.MAX_VALUE}
    assert osinfo.os_keys({}) == {}
