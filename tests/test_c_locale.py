"""The commands in the C locale (udev's and a bare init's environment, no LANG).

Python 3.7+ uses UTF-8 there (PEP 538/540); 3.6, the system Python of RHEL 8 and SLES 15,
would encode stdout as ASCII and die on the first non-ASCII fact with a traceback."""

import os
import subprocess
import sys

import pytest

from tests.support.paths import CHECKOUT

NAME = "Débian GNU/Linux 12 (bookwörm) ☃"


@pytest.fixture
def release_root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text(
        'NAME="Débian"\nID=debian\nVERSION_ID="12"\nPRETTY_NAME="%s"\n' % NAME,
        encoding="utf-8")
    return tmp_path


def run_in_locale(locale, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env.update(LC_ALL=locale, PYTHONPATH=str(CHECKOUT), XENSTORED_PATH="/nonexistent")
    res = subprocess.run([sys.executable] + list(args), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=60)
    return res.returncode, res.stdout.decode("utf-8"), res.stderr.decode("utf-8")


def test_print_of_a_non_ascii_os_name_is_the_same_in_the_c_locale(release_root):
    args = ("-m", "xe_oneshot", "--root", str(release_root), "--section", "os", "--print")
    rc, out, err = run_in_locale("C", *args)
    assert (rc, err) == (0, "")
    assert "data/os_name = " in out
    assert (rc, out, err) == run_in_locale("C.UTF-8", *args)


def test_distribution_cli_prints_a_non_ascii_os_name_in_the_c_locale(release_root):
    rc, out, err = run_in_locale("C", "-m", "xe_oneshot.distribution_cli", "--root",
                                 str(release_root))
    assert (rc, err) == (0, "")
    assert 'os_name="%s"\n' % NAME in out


def test_free_space_of_a_non_ascii_mount_point_in_the_c_locale(tmp_path):
    """Python 3.6 in the C locale encodes str paths as ASCII: a mount point named
    /dátá ☃ made statvfs raise UnicodeEncodeError and failed the volumes section. The
    kernel's bytes are used as they came (UTF-8), whatever the locale."""
    from tests.support.blockdev import XVD_MAJOR, FakeBlock
    guest = FakeBlock(tmp_path / "guest")
    guest.xen_disk("xvdb", 16, 2 * 2097152)
    guest.partition("xvdb", 1, (XVD_MAJOR, 17), 2097152, udev={"ID_FS_TYPE": "ext4"})
    guest.mount((XVD_MAJOR, 17), "/dátá ☃", "ext4", "/dev/xvdb1")
    args = ("-m", "xe_oneshot", "--root", str(guest.root), "--section", "volumes",
            "--print", "--format", "json")
    rc, out, err = run_in_locale("C", *args)
    assert (rc, err) == (0, "")
    import json
    keys = json.loads(out)
    assert keys["data/volumes/0/mount_points/0"] == "/dátá ☃"
    assert int(keys["data/volumes/0/free"]) > 0
    rc_utf8, out_utf8, err_utf8 = run_in_locale("C.UTF-8", *args)
    keys_utf8 = json.loads(out_utf8)
    # free space is the host's, read twice: it may move between the runs
    del keys["data/volumes/0/free"], keys_utf8["data/volumes/0/free"]
    assert (rc, keys, err) == (rc_utf8, keys_utf8, err_utf8)
