"""``xe-linux-distribution`` as a process: output, atomic FILE replacement, removal on
failure, exit codes, --root, and no traceback on bad input."""

import os
import shutil
import stat
import subprocess
import sys

import pytest

from tests.support.distros import CORPUS
from tests.support.paths import CHECKOUT
from xe_oneshot.distribution_cli import main

CENTOS7 = ('os_distro="centos"\nos_majorver="7"\nos_minorver="9"\nos_uname="%s"\n'
           'os_name="CentOS Linux release 7.9.2009 (Core)"\n')


def run(*args, umask=None, prefix=()):
    """The command as a subprocess: (exit status, stdout, stderr)."""
    res = subprocess.run(
        list(prefix) + [sys.executable, "-m", "xe_oneshot.distribution_cli"] + list(args),
        cwd=CHECKOUT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        timeout=30, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
    assert "Traceback" not in res.stderr
    return res.returncode, res.stdout, res.stderr


def one_line(text):
    return text.count("\n") == 1 and text.endswith("\n")


@pytest.fixture
def empty_root(tmp_path):
    root = tmp_path / "empty"
    (root / "etc").mkdir(parents=True)
    return root


def test_prints_the_running_kernel():
    rc, out, err = run("--root", str(CORPUS / "centos-7.9"))
    assert (rc, err) == (0, "")
    assert out == CENTOS7 % os.uname().release


def test_root_forms():
    rel = os.path.relpath(CORPUS / "centos-7.9", CHECKOUT)
    for args in (["--root=" + rel], ["--root", rel + "/"]):
        rc, out, _ = run(*args)
        assert (rc, out) == (0, CENTOS7 % os.uname().release)


def test_writes_file_mode_0644_whatever_the_umask(tmp_path):
    target = tmp_path / "xe-linux-distribution"
    rc, out, err = run("--root", str(CORPUS / "centos-7.9"), str(target), umask=0o077)
    assert (rc, out, err) == (0, "", "")
    assert target.read_text() == CENTOS7 % os.uname().release
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["xe-linux-distribution"]  # no temporary left


def test_replaces_the_file_in_one_rename(tmp_path):
    target = tmp_path / "facts"
    target.write_text("old content\n")
    old_inode = target.stat().st_ino
    with open(target) as reader:
        rc, _, _ = run("--root", str(CORPUS / "debian-12"), str(target))
        assert rc == 0
        # A reader of the old file still sees all of it: it was replaced, not rewritten.
        assert reader.read() == "old content\n"
    assert target.stat().st_ino != old_inode
    assert target.read_text().startswith('os_distro="debian"\n')
    assert os.listdir(tmp_path) == ["facts"]


def test_a_symlink_at_file_is_replaced_not_followed(tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    target = tmp_path / "facts"
    target.symlink_to(precious)
    rc, _, _ = run("--root", str(CORPUS / "debian-12"), str(target))
    assert rc == 0
    assert not target.is_symlink()
    assert target.read_text().startswith('os_distro="debian"\n')
    assert precious.read_text() == "keep me\n"


def test_unrecognised_removes_the_file(tmp_path, empty_root):
    target = tmp_path / "facts"
    target.write_text('os_distro="stale"\n')
    rc, out, err = run("--root", str(empty_root), str(target))
    assert (rc, out) == (1, "")
    assert one_line(err) and "no Linux distribution recognised" in err
    assert not os.path.lexists(target)


def test_unrecognised_removes_a_symlink_not_its_target(tmp_path, empty_root):
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    target = tmp_path / "facts"
    target.symlink_to(precious)
    rc, _, err = run("--root", str(empty_root), str(target))
    assert rc == 1 and one_line(err)
    assert not os.path.lexists(target)
    assert precious.read_text() == "keep me\n"


def test_unrecognised_without_file(empty_root):
    rc, out, err = run("--root", str(empty_root))
    assert (rc, out) == (1, "")
    assert err == "xe-linux-distribution: no Linux distribution recognised under %s\n" % (
        empty_root)


def test_unrecognised_and_file_cannot_be_removed(tmp_path, empty_root):
    target = tmp_path / "facts"
    (target / "sub").mkdir(parents=True)
    rc, _, err = run("--root", str(empty_root), str(target))
    assert rc == 1 and one_line(err)
    assert "cannot remove %s" % target in err


def test_file_in_a_missing_directory(tmp_path):
    rc, out, err = run("--root", str(CORPUS / "debian-12"), str(tmp_path / "no" / "facts"))
    assert (rc, out) == (3, "")
    assert one_line(err) and "cannot write" in err


def test_file_is_a_directory(tmp_path):
    (tmp_path / "facts").mkdir()
    rc, _, err = run("--root", str(CORPUS / "debian-12"), str(tmp_path / "facts"))
    assert rc == 3 and one_line(err)
    assert os.listdir(tmp_path) == ["facts"]  # the temporary file was cleaned up
    assert os.listdir(tmp_path / "facts") == []


@pytest.mark.parametrize("args", [
    ["--bogus"], ["a", "b"], ["--root"], ["--root", ""], ["--root", "/nonexistent/dir"],
    ["--root", __file__],
])
def test_usage_errors(args):
    rc, out, err = run(*args)
    assert (rc, out) == (2, "")
    assert one_line(err) and err.startswith("xe-linux-distribution: ")


def test_help():
    rc, out, err = run("--help")
    assert (rc, err) == (0, "")
    assert out.startswith("usage: xe-linux-distribution [--root DIR] [FILE]\n")
    assert "exit status" in out


def test_double_dash_file(tmp_path):
    target = tmp_path / "-facts"
    assert main(["--root", str(CORPUS / "debian-12"), "--", str(target)], uname="k") == 0
    assert 'os_uname="k"\n' in target.read_text()


def bad_tree(base, kind):
    etc = base / "etc"
    etc.mkdir(parents=True)
    if kind == "binary":
        for name in ("redhat-release", "os-release", "lsb-release", "debian_version"):
            (etc / name).write_bytes(bytes(range(256)) * 64)
    elif kind == "empty":
        for name in ("redhat-release", "os-release", "lsb-release", "debian_version"):
            (etc / name).write_bytes(b"")
    elif kind == "loop":
        (etc / "os-release").symlink_to("/etc/os-release")
    elif kind == "directory":
        (etc / "os-release").mkdir()
    elif kind == "huge":
        (etc / "redhat-release").write_bytes(b"\xff" * (10 << 20))
    elif kind == "non-utf8":
        (etc / "os-release").write_bytes(b'ID=x\nPRETTY_NAME="\xe9t\xe9 \xff"\n')


@pytest.mark.parametrize("kind, rc_want", [
    ("binary", 1), ("empty", 1), ("loop", 1), ("directory", 1), ("huge", 1),
    ("non-utf8", 0),
])
def test_bad_input_never_tracebacks(tmp_path, kind, rc_want):
    bad_tree(tmp_path / "root", kind)
    target = tmp_path / "facts"
    target.write_text("stale\n")
    rc, out, err = run("--root", str(tmp_path / "root"), str(target))
    assert (rc, out) == (rc_want, "")
    if rc == 1:
        assert one_line(err)
        assert not os.path.lexists(target)
    else:
        assert target.read_text().endswith('os_name="\ufffdt\ufffd \ufffd"\n')


def test_unreadable_file_real_eio(tmp_path):
    """A release file that fails with EIO, from the kernel: another process's
    /proc/PID/mem (offset 0 is never mapped) bind-mounted over /etc/os-release in a
    private mount namespace. The next source answers; the failure is reported."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text("")
    (root / "etc" / "debian_version").write_text("12.7\n")
    script = ('sleep 60 & pid=$!; mount --bind /proc/$pid/mem "$1/etc/os-release" && '
              '"$2" -m xe_oneshot.distribution_cli --root "$1"; rc=$?; kill $pid; exit $rc')
    res = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(root),
                          sys.executable], cwd=CHECKOUT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith('os_distro="debian"\nos_majorver="12"\n')
    assert res.stderr == ("xe-linux-distribution: warning: ignored /etc/os-release: "
                          "Input/output error\n")
    # Without the fallback: the clean "not recognised" exit, naming the failure.
    (root / "etc" / "debian_version").unlink()
    res = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(root),
                          sys.executable], cwd=CHECKOUT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert res.returncode == 1
    assert res.stderr == (
        "xe-linux-distribution: no Linux distribution recognised under %s "
        "(unreadable: /etc/os-release: Input/output error)\n" % root)
