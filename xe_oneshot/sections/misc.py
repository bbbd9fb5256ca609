"""The ``misc`` section: "management agent installed", its version, balloon support.

xapi reads ``attr/PVAddons/*`` to show that guest tools are installed and which version;
it parses Major/Minor/Micro/BuildVersion as integers, and shows no version at all when
they do not parse, so they come from the package version and are always decimal.
``control/feature-balloon`` tells the toolstack the guest's balloon driver may be used;
the toolstack may have made the node read-only for the guest (EACCES): the publisher
warns and publishes the rest.
"""

from __future__ import annotations

from .. import __version__
from . import Collected, Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List

OWNS = ("attr/PVAddons", "control/feature-balloon")


def version_numbers(version: str) -> List[str]:
    """Major, minor, micro, build of a version string, each a decimal integer.

    ``1.2.3`` → 1 2 3 0; ``1.2.3.45`` or ``1.2.3+45`` → 1 2 3 45; ``1.2.dev0`` → 1 2 0 0.
    """
    parts = []
    for piece in version.replace("+", ".").replace("-", ".").split("."):
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(str(int(digits)))
        if digits != piece:     # "3rc1": keep the number, drop the tag and the rest
            break
    return (parts + ["0", "0", "0", "0"])[:4]


def collect(ctx: Context) -> Collected:
    major, minor, micro, build = version_numbers(__version__)
    return Collected(values={
        "attr/PVAddons/Installed": "1",
        "attr/PVAddons/MajorVersion": major,
        "attr/PVAddons/MinorVersion": minor,
        "attr/PVAddons/MicroVersion": micro,
        "attr/PVAddons/BuildVersion": build,
        "control/feature-balloon": "0" if ctx.no_balloon else "1",
    })
