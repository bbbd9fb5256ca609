"""Distribution detection: the parsers on strings, the corpus of real release-file trees,
symlinks inside a root, bad input, and the facts file's escaping."""

import errno
import logging
import os
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.distros import CASES, CORPUS, expected
from xe_oneshot import distribution as d
from xe_oneshot.distribution import Distribution
from xe_oneshot.distribution_cli import main
from xe_oneshot.guest import Root

def tree(base, files):
    """Write ``{guest path: text | bytes | ("link", target) | ("dir",)}`` under base."""
    for path, content in files.items():
        host = base / path.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple) and content[0] == "link":
            os.symlink(content[1], host)
        elif isinstance(content, tuple) and content[0] == "dir":
            host.mkdir()
        elif isinstance(content, bytes):
            host.write_bytes(content)
        else:
            host.write_text(content)
    return Root(str(base))


# --- the corpus ------------------------------------------------------------------------


def test_corpus_is_big_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", CASES)
def test_corpus(name, capsys):
    want = expected(name)
    assert sorted(want) == sorted(d.KEYS), "expected file of %s" % name
    # Written literally below: the expected values need no escaping.
    assert not any(c in v for v in want.values() for c in '"\\$`')
    rc = main(["--root", str(CORPUS / name)], uname=want["os_uname"])
    out = capsys.readouterr()
    assert (rc, out.err) == (0, "")
    assert out.out == "".join('%s="%s"\n' % (key, want[key]) for key in d.KEYS)


# --- parsers on strings ----------------------------------------------------------------


@pytest.mark.parametrize("line, want", [
    ("CentOS Linux release 7.9.2009 (Core)", ("centos", "7", "9")),
    ("CentOS release 6.10 (Final)", ("centos", "6", "10")),
    ("CentOS Stream release 9", ("centos", "9", "0")),
    ("Fedora release 40 (Forty)", ("fedora", "40", "0")),
    ("Fedora Core release 6 (Zod)", ("fedora", "6", "0")),
    ("Oracle Linux Server release 9.3", ("oracle", "9", "3")),
    ("Enterprise Linux Enterprise Linux Server release 5.5 (Carthage)", ("oracle", "5", "5")),
    ("Enterprise Linux Enterprise Linux AS release 4 (October Update 8)", ("oracle", "4", "8")),
    ("Scientific Linux release 7.6 (Nitrogen)", ("scientific", "7", "6")),
    ("Scientific Linux SL release 5.5 (Boron)", ("scientific", "5", "5")),
    ("Rocky Linux release 9.3 (Blue Onyx)", ("rocky", "9", "3")),
    ("AlmaLinux release 8.10 (Cerulean Leopard)", ("almalinux", "8", "10")),
    ("Red Hat Enterprise Linux AS release 4 (Nahant Update 4)", ("rhel", "4", "4")),
    ("Red Hat Enterprise Linux AS release 4 (Nahant)", ("rhel", "4", "0")),
    ("Red Hat Enterprise Linux Server release 5.1 Beta (Tikanga)", ("rhel", "5", "1beta")),
    ("Red Hat Enterprise Linux Server release 6.0 Beta (Santiago)", ("rhel", "6", "0beta")),
    ("Red Hat Enterprise Linux Server release 4.92 (Tikanga)", ("rhel", "5", "0beta")),
    ("Red Hat Enterprise Linux Server release 5.91 Beta (Santiago)", ("rhel", "6", "0beta")),
    ("Red Hat Enterprise Linux release 9.4 (Plow)", ("rhel", "9", "4")),
    ("XenServer DDK release 0.5.6-2991c (xenenterprise)", ("xe-ddk", "0.5.6", "2991c")),
    ("Citrix XenServer SDK release 6.2.0-70446c (xenenterprise)",
     ("xe-sdk", "6.2.0", "70446c")),
    ("XenServer DDK release 7.1.0 (xenenterprise)", ("xe-ddk", "7.1.0", "0")),
])
def test_redhat_release(line, want):
    found = d.parse_redhat_release(line + "\nsecond line is ignored\n")
    assert found == Distribution(*want, line)


@pytest.mark.parametrize("text", [
    "", "\n", "release", "release 5", "Red Hat Linux release 9 (Shrike)",
    "Amazon Linux release 2 (Karoo)", "CloudLinux release 8.9 (Valery Rozhdestvensky)",
    "Fedora release", "Fedora release rawhide", "CentOS release .5", "DDK release -1",
    "\nCentOS Linux release 7.9.2009 (Core)",  # only the first line counts
])
def test_redhat_release_unrecognised(text):
    assert d.parse_redhat_release(text) is None


def test_suse_release():
    sles11 = "SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\nPATCHLEVEL = 4\n"
    assert d.parse_suse_release(sles11) == Distribution(
        "sles", "11", "4", "SUSE Linux Enterprise Server 11 (x86_64)")
    sled = "SUSE Linux Enterprise Desktop 12 (x86_64)\nVERSION = 12\n"
    assert d.parse_suse_release(sled) == Distribution(
        "sles", "12", "0", "SUSE Linux Enterprise Desktop 12 (x86_64)")
    sles9 = "SUSE LINUX Enterprise Server 9 (i586)\nPATCHLEVEL = 3\n"  # no VERSION line
    assert d.parse_suse_release(sles9) == Distribution(
        "sles", "9", "3", "SUSE LINUX Enterprise Server 9 (i586)")
    assert d.parse_suse_release("openSUSE 13.2 (x86_64)\nVERSION = 13.2\n") is None
    assert d.parse_suse_release("SUSE Linux Enterprise Server\n") is None
    assert d.parse_suse_release("") is None


@pytest.mark.parametrize("pretty, version_id, want", [
    ("SUSE Linux Enterprise Server 15 SP5", "15.5", ("15", "5")),
    ("SUSE Linux Enterprise Server 15", "15", ("15", "0")),
    ("SUSE Linux Enterprise Desktop 15 SP4", "15.4", ("15", "4")),
    ("SUSE Linux Enterprise Server for SAP Applications 15 SP5", "15.5", ("15", "5")),
    ("SUSE Linux Enterprise Server 12 SP5", "12.4", None),   # VERSION_ID disagrees
    ("SUSE Linux Enterprise Server 15 SP5", "", None),
    ("SUSE Linux Enterprise Server 15", "12", None),
    ("SUSE Linux Enterprise Micro 5.5", "5.5", None),       # no integer major
    ("SUSE Linux Enterprise 15", "15", None),               # no product word
    ("openSUSE Leap 15.5", "15.5", None),
])
def test_sles_os_release(pretty, version_id, want):
    text = 'NAME="SLES"\nVERSION_ID="%s"\nPRETTY_NAME="%s"\nID="sles"\n' % (
        version_id, pretty)
    found = d.parse_sles_os_release(text)
    assert found == (Distribution("sles", *want, pretty) if want else None)


def test_lsb_release():
    ubuntu = ('DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_CODENAME=jammy\n'
              'DISTRIB_DESCRIPTION="Ubuntu 22.04.4 LTS"\n')
    assert d.parse_lsb_release(ubuntu) == Distribution(
        "ubuntu", "22", "04", "Ubuntu 22.04.4 LTS")
    gooroom = ("DISTRIB_ID=gooroom\nDISTRIB_RELEASE=2.0\n"
               "DISTRIB_DESCRIPTION='Gooroom Platform 2.0'\n")
    assert d.parse_lsb_release(gooroom) == Distribution(
        "Gooroom", "2", "0", "Gooroom Platform 2.0")
    arch = 'DISTRIB_ID="Arch"\nDISTRIB_RELEASE="rolling"\nDISTRIB_DESCRIPTION="Arch Linux"\n'
    assert d.parse_lsb_release(arch) == Distribution("arch", "rolling", "", "Arch Linux")
    # All three fields are needed; RHEL's redhat-lsb writes only LSB_VERSION.
    assert d.parse_lsb_release("LSB_VERSION=base-4.0-amd64:core-4.0-noarch\n") is None
    assert d.parse_lsb_release("DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\n") is None
    assert d.parse_lsb_release(
        'DISTRIB_ID=X\nDISTRIB_RELEASE=.5\nDISTRIB_DESCRIPTION="X"\n') is None


@pytest.mark.parametrize("text, want", [
    ("12.7\n", ("debian", "12", "7", "Debian 12.7")),
    ("10.13", ("debian", "10", "13", "Debian 10.13")),
    ("8\n", ("debian", "8", "0", "Debian 8")),
    ("trixie/sid\n", ("debian", "", "", "Debian trixie/sid")),
    ("kali-rolling\n", None),
    ("", None),
    ("bookworm\n", None),
])
def test_debian_version(text, want):
    assert d.parse_debian_version(text) == (Distribution(*want) if want else None)


def test_os_release_quoting():
    text = "\n".join([
        "# a comment",
        "",
        "ID=nixos",
        "VERSION_ID='24.05'",
        'PRETTY_NAME="NixOS \\"24.05\\" \\$HOME \\`x\\` back\\\\slash \\q"  # comment',
        "not an assignment",
        "1BAD=x",
    ])
    assert d.parse_os_release(text) == Distribution(
        "nixos", "24", "05", 'NixOS "24.05" $HOME `x` back\\slash \\q')


@pytest.mark.parametrize("text, want", [
    ('ID=arch\nPRETTY_NAME="Arch Linux"\nBUILD_ID=rolling\n',
     ("arch", "unknown", "unknown", "Arch Linux")),
    ("ID=alpine\r\nVERSION_ID=3.19.1\r\nPRETTY_NAME=\"Alpine Linux v3.19\"\r\n",
     ("alpine", "3", "19", "Alpine Linux v3.19")),
    ("ID=x\nVERSION_ID=2023\nPRETTY_NAME=X\n", ("x", "2023", "unknown", "X")),
    ("ID=x\nVERSION_ID=rolling\nNAME=X\nVERSION=\"1 (y)\"\n",
     ("x", "unknown", "unknown", "X 1 (y)")),
    ('NAME="Some Linux"\n', ("linux", "unknown", "unknown", "Some Linux")),
    ("ID=x\nID=y\nPRETTY_NAME=Y\n", ("y", "unknown", "unknown", "Y")),
    ("export ID=z\nPRETTY_NAME=Plain words kept\n", ("z", "unknown", "unknown",
                                                     "Plain words kept")),
    ("", None),
    ("VERSION_ID=1.2\nHOME_URL=x\n", None),
])
def test_os_release(text, want):
    assert d.parse_os_release(text) == (Distribution(*want) if want else None)


@pytest.mark.parametrize("raw, want", [
    ('"a b"', "a b"), ("'a b'", "a b"), ("a\\ b", "a b"), ('"a"\'b\'c', "abc"),
    ('  "x"  ', "x"), ('"x" # c', "x"), ("x#y", "x#y"), ("#x", "#x"), (" # c", ""),
    ('"a\\"b"', 'a"b'), ("'a\\b'", "a\\b"), ('"unclosed', "unclosed"),
    ('" padded "', " padded "), ('"\\x41"', "\\x41"),
])
def test_shell_value(raw, want):
    assert d.shell_value(raw) == want


# --- symlinks inside a root --------------------------------------------------------------


def test_relative_symlink_resolves_inside_root(tmp_path):
    root = tree(tmp_path, {"/etc/os-release": ("link", "../usr/lib/os-release"),
                           "/usr/lib/os-release": 'ID=inside\nPRETTY_NAME="In"\n'})
    assert d.detect(root) == Distribution("inside", "unknown", "unknown", "In")


def test_absolute_symlink_resolves_inside_root(tmp_path):
    # The host has an /etc/os-release of its own: it must not be read.
    root = tree(tmp_path, {"/etc/os-release": ("link", "/usr/lib/os-release"),
                           "/usr/lib/os-release": 'ID=inside\nPRETTY_NAME="In"\n'})
    assert d.resolve(root, "/etc/os-release") == "/usr/lib/os-release"
    assert d.detect(root) == Distribution("inside", "unknown", "unknown", "In")


def test_dotdot_cannot_leave_the_root(tmp_path):
    root = tree(tmp_path / "guest", {
        "/etc/os-release": ("link", "../../../../../etc/os-release-real"),
        "/etc/os-release-real": "ID=inside\n"})
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release-real").write_text("ID=outside\n")
    assert d.resolve(root, "/etc/os-release") == "/etc/os-release-real"
    assert d.detect(root).distro == "inside"


def test_symlinked_directories_resolve_inside_root(tmp_path):
    root = tree(tmp_path, {"/etc": ("link", "/data/etc"),
                           "/data/etc/redhat-release": ("link", "../../real/rr"),
                           "/real/rr": "Rocky Linux release 9.3 (Blue Onyx)\n"})
    assert d.resolve(root, "/etc/redhat-release") == "/real/rr"
    assert d.detect(root).distro == "rocky"


def test_os_release_falls_back_to_usr_lib(tmp_path):
    root = tree(tmp_path, {"/usr/lib/os-release": "ID=usrlib\nVERSION_ID=1.2\n"})
    assert d.detect(root) == Distribution("usrlib", "1", "2", "Linux")
    # /etc/os-release present: /usr/lib's is not looked at, even if better.
    tree(tmp_path, {"/etc/os-release": "ID=etc\n"})
    assert d.detect(root).distro == "etc"


def test_dangling_symlink_is_absent(tmp_path):
    root = tree(tmp_path, {"/etc/os-release": ("link", "../usr/lib/os-release")})
    problems = []
    assert d.detect(root, problems) is None
    assert problems == []


# --- bad input ---------------------------------------------------------------------------


def test_empty_release_files(tmp_path):
    root = tree(tmp_path, {path: "" for path in d.REDHAT_RELEASE_FILES + (
        d.SUSE_RELEASE, d.LSB_RELEASE, d.DEBIAN_VERSION) + d.OS_RELEASE_FILES})
    problems = []
    assert d.detect(root, problems) is None
    assert problems == []


BINARY = bytes(range(256)) * 16


def test_binary_release_files(tmp_path):
    root = tree(tmp_path, {path: BINARY for path in d.REDHAT_RELEASE_FILES + (
        d.SUSE_RELEASE, d.LSB_RELEASE, d.DEBIAN_VERSION) + d.OS_RELEASE_FILES})
    assert d.detect(root) is None


def test_binary_after_a_good_first_line(tmp_path):
    root = tree(tmp_path, {"/etc/redhat-release":
                           b"CentOS Linux release 7.9.2009 (Core)\n" + BINARY})
    assert d.detect(root) == Distribution(
        "centos", "7", "9", "CentOS Linux release 7.9.2009 (Core)")


def test_control_characters_are_not_published(tmp_path):
    root = tree(tmp_path, {"/etc/os-release":
                           b'ID=x\x01y\nPRETTY_NAME="tab\there\x1b[31m red\x7f"\n'})
    assert d.detect(root) == Distribution("x y", "unknown", "unknown",
                                          "tab here [31m red")


def test_non_utf8_bytes(tmp_path):
    root = tree(tmp_path, {"/etc/os-release": b'ID=x\nPRETTY_NAME="Caf\xe9 Linux"\n'})
    assert d.detect(root).name == "Caf\ufffd Linux"


def test_ten_megabytes_are_not_read(tmp_path):
    big = b"CentOS Linux release 7.9.2009 (Core) " + b"x" * (10 << 20)
    root = tree(tmp_path, {"/etc/redhat-release": big,
                           "/etc/os-release": b"ID=big\n" + b"JUNK=" + b"y" * (10 << 20)})
    start = time.monotonic()
    found = d.detect(root)
    assert time.monotonic() - start < 1.0
    assert (found.distro, found.major, found.minor) == ("centos", "7", "9")
    assert len(found.name) == d.MAX_VALUE
    # Past the read limit the os-release is not parsed, but its start is.
    os.unlink(tmp_path / "etc/redhat-release")
    assert d.detect(root).distro == "big"


@pytest.mark.parametrize("links", [
    {"/etc/os-release": ("link", "os-release")},
    {"/etc/os-release": ("link", "/etc/a"), "/etc/a": ("link", "b"),
     "/etc/b": ("link", "../etc/os-release")},
])
def test_symlink_loop(tmp_path, links):
    root = tree(tmp_path, links)
    problems = []
    assert d.detect(root, problems) is None
    assert problems == ["/etc/os-release: %s" % os.strerror(errno.ELOOP)]


def test_a_directory_in_place_of_a_file(tmp_path):
    root = tree(tmp_path, {"/etc/os-release": ("dir",),
                           "/etc/redhat-release": ("dir",),
                           "/usr/lib/os-release": "ID=fallback\n"})
    problems = []
    assert d.detect(root, problems).distro == "fallback"
    assert problems == ["/etc/redhat-release: not a regular file",
                        "/etc/os-release: not a regular file"]


def test_a_fifo_is_not_opened(tmp_path):
    # Opening a FIFO for reading would block the boot: it is refused before open().
    root = tree(tmp_path, {"/etc/debian_version": "12.7\n"})
    os.mkfifo(tmp_path / "etc/os-release")
    problems = []
    assert d.detect(root, problems).distro == "debian"
    assert problems == ["/etc/os-release: not a regular file"]


def test_read_error_eio():
    # A real EIO from the kernel: /proc/self/mem at offset 0 is a regular file that
    # cannot be read (nothing is mapped at address 0).
    problems = []
    assert d.read_release_file(Root("/proc/self"), "/mem", problems) is None
    assert problems == ["/mem: %s" % os.strerror(errno.EIO)]


def test_read_error_is_logged_without_a_problem_list(tmp_path):
    root = tree(tmp_path, {"/etc/os-release": ("dir",)})
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("xe_oneshot.distribution")
    logger.addHandler(handler)
    try:
        assert d.read_release_file(root, "/etc/os-release") is None
    finally:
        logger.removeHandler(handler)
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, "ignoring /etc/os-release: not a regular file")]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parsers_never_raise_and_publish_clean_values(text):
    for parse in (d.parse_redhat_release, d.parse_suse_release, d.parse_sles_os_release,
                  d.parse_lsb_release, d.parse_debian_version, d.parse_os_release):
        found = parse(text)
        if found is not None:
            for value in (found.distro, found.major, found.minor, found.name):
                assert value.isprintable() or not any(d._is_control(c) for c in value)
                assert len(value) <= d.MAX_VALUE


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["ID=", "PRETTY_NAME=", "DISTRIB_ID=", "VERSION = ",
                        "CentOS release ", "SUSE Linux Enterprise Server "]),
       st.binary(max_size=200))
def test_binary_after_a_plausible_start(prefix, data):
    text = (prefix.encode() + data).decode("utf-8", "replace")
    for parse in (d.parse_redhat_release, d.parse_suse_release, d.parse_sles_os_release,
                  d.parse_lsb_release, d.parse_debian_version, d.parse_os_release):
        parse(text)


# --- the facts file ---------------------------------------------------------------------


def test_escape():
    assert d.escape('a "b" $c `d` \\e') == 'a \\"b\\" \\$c \\`d\\` \\\\e'
    assert d.escape("new\nline\x00\x7f\x85") == "new\\x0aline\\x00\\x7f\\x85"
    assert d.escape("caf\u00e9 \u2028") == "caf\u00e9 \u2028"


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(), min_size=5, max_size=5))
def test_facts_file_round_trip(values):
    want = dict(zip(d.KEYS, values))
    text = d.render(want)
    assert text.count("\n") == 5
    assert d.parse_facts(text) == want


SHELL_SAFE = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)


@settings(max_examples=40, deadline=None)
@given(st.lists(SHELL_SAFE, min_size=5, max_size=5))
def test_facts_file_reads_the_same_in_sh(tmp_path_factory, values):
    """Without control characters, ``. FILE`` in sh gives back the same values."""
    path = tmp_path_factory.mktemp("sh") / "facts"
    want = dict(zip(d.KEYS, values))
    path.write_text(d.render(want), encoding="utf-8")
    script = '. "$1" && printf "%s\\0" "$os_distro" "$os_majorver" "$os_minorver" ' \
             '"$os_uname" "$os_name"'
    out = subprocess.run(["sh", "-c", script, "sh", str(path)], check=True,
                         stdout=subprocess.PIPE).stdout
    assert out.decode("utf-8").split("\0")[:5] == values


def test_parse_facts_reads_the_classic_agents_file():
    text = ('os_distro="centos"\nos_majorver="7"\nos_minorver="9"\n'
            'os_uname="3.10.0-1160.el7.x86_64"\n'
            'os_name="CentOS Linux release 7.9.2009 (Core)"\n')
    assert d.parse_facts(text) == {
        "os_distro": "centos", "os_majorver": "7", "os_minorver": "9",
        "os_uname": "3.10.0-1160.el7.x86_64",
        "os_name": "CentOS Linux release 7.9.2009 (Core)"}
