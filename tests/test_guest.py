"""guest.Root: every guest path mapped under the base, its symlinks resolved inside it."""

import errno
import os

import pytest

from xe_oneshot.guest import MAX_SYMLINKS, Root


@pytest.fixture
def linked_root(tmp_path):
    """``/etc -> /usr/lib`` (absolute), ``/usr/lib/os-release``, and outside the root a
    file that a link followed on the host would reach."""
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text("ID=inside\n")
    (tmp_path / "os-release").write_text("ID=outside\n")
    os.symlink("/usr/lib", str(root / "etc"))
    return root


@pytest.mark.parametrize("path, resolved", [
    ("/etc/os-release", "/usr/lib/os-release"),
    ("/etc/../../../os-release", "/os-release"),          # .. of /etc is /usr, then /
    ("/missing/../etc/os-release", "/usr/lib/os-release"),
    ("/a/b/c", "/a/b/c"),
])
def test_resolve_stays_inside_the_root(linked_root, path, resolved):
    assert Root(str(linked_root)).resolve(path) == resolved


def test_reads_follow_links_inside_the_root_only(linked_root):
    root = Root(str(linked_root))
    assert root.read_line("/etc/os-release") == "ID=inside"
    assert root.read_line("/etc/../../../os-release") is None     # not ../os-release
    os.symlink("../../os-release", str(linked_root / "usr/lib/up"))
    assert root.read_line("/usr/lib/up") is None                  # / has no os-release
    assert root.readlink("/etc") == "/usr/lib"                    # the link itself
    assert root.lexists("/etc") and root.exists("/etc/os-release")
    assert root.listdir("/etc") == ["os-release", "up"]


def test_a_link_loop_reads_as_absent(linked_root):
    os.symlink("b", str(linked_root / "a"))
    os.symlink("a", str(linked_root / "b"))
    root = Root(str(linked_root))
    assert root.read_text("/a/x") is None and root.listdir("/a") == []
    assert not root.exists("/a") and root.lexists("/a")
    with pytest.raises(OSError) as err:
        root.resolve("/a")
    assert err.value.errno == errno.ELOOP


def test_a_chain_of_max_symlinks_is_followed(linked_root):
    for i in range(MAX_SYMLINKS - 1):
        os.symlink("l%d" % (i + 1), str(linked_root / ("l%d" % i)))
    os.symlink("/usr/lib/os-release", str(linked_root / ("l%d" % (MAX_SYMLINKS - 1))))
    assert Root(str(linked_root)).read_line("/l0") == "ID=inside"


def test_the_real_root_is_the_kernels():
    root = Root("/")
    assert root.path("/proc/../proc/self") == "/proc/../proc/self"     # no work done
    assert root.resolve("/x/../y") == "/x/../y"
