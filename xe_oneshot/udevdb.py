"""The udev database: what udev learned about a block device, without a ``blkid`` process.

udev keeps one file per device, ``/run/udev/data/b<major>:<minor>``; its ``E:`` lines are
the device's properties (``ID_FS_TYPE``, ``ID_PART_ENTRY_UUID``, ...).
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict

    from .guest import Root

UDEV_DATA = "/run/udev/data"


def parse(text: str) -> "Dict[str, str]":
    """The ``E:`` properties of a udev database file.

    Sample line: ``E:ID_FS_TYPE=ext4``. Other records (``S:`` links, ``I:``, ``G:``
    tags, ...) and lines that do not parse are ignored.
    """
    props = {}
    for line in text.splitlines():
        if line.startswith("E:"):
            name, sep, value = line[2:].partition("=")
            if sep and name:
                props[name] = value
    return props


def read_block(root: "Root", major: int, minor: int) -> "Dict[str, str]":
    """Properties of block device ``major:minor``; empty if udev has no record of it."""
    text = root.read_text("%s/b%d:%d" % (UDEV_DATA, major, minor), limit=256 * 1024)
    return parse(text) if text is not None else {}
