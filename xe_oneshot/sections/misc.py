"""The ``misc`` section: "management agent installed", its version, balloon support.

xapi (``xapi_guest_agent.ml``) copies ``attr/PVAddons/{Major,Minor,Micro,Build}Version``
into the VM's ``PV_drivers_version`` (``Installed`` is never read; a missing micro shows
as -1); ``xapi_pv_driver_version.ml`` parses major and minor with OCaml's
``int_of_string``, and when they do not parse the VM counts as having no PV drivers
(HVM operation checks refuse). So they come from the package version, always decimal.

``control/feature-balloon``: squeezed and XenCenter test only that the key *exists*
(``squeeze_xen.ml``, ``get_feature_balloon``: ``0`` still means "can balloon"), and
squeezed then sets memory targets. So it is ``1`` when the guest has a balloon driver
and absent otherwise: with ``--no-balloon`` or without the driver the section does not
report it and the publisher removes it. The toolstack may have made the node read-only
for the guest (EACCES on the write or the removal): the publisher warns once and
publishes the rest.

Options (:class:`Options`, in ``ctx.options["misc"]``): ``balloon`` (False with
``--no-balloon``).
"""

from .. import __version__
from . import Collected, Context
from ..records import record
from ..text import leading_decimal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List

OWNS = ("attr/PVAddons", "control/feature-balloon")

#: The device the Linux balloon driver registers (drivers/xen/xen-balloon.c): there is
#: something to act on a memory target.
BALLOON_DRIVER = "/sys/devices/system/xen_memory/xen_memory0"


@record
class Options:
    """The section's options."""

    #: Offer ballooning when the driver is there (``--no-balloon``: False, the key is
    #: removed).
    balloon: bool = True


def version_numbers(version: str) -> "List[str]":
    """Major, minor, micro, build of a version string, each a decimal integer.

    ``1.2.3`` → 1 2 3 0; ``1.2.3.45`` or ``1.2.3+45`` → 1 2 3 45; ``1.2.dev0`` → 1 2 0 0.
    """
    parts = []
    for piece in version.replace("+", ".").replace("-", ".").split("."):
        digits = leading_decimal(piece)[:18]    # ASCII only: "²" is no digit here
        if not digits:
            break
        parts.append(str(int(digits)))
        if digits != piece:     # "3rc1": keep the number, drop the tag and the rest
            break
    return (parts + ["0", "0", "0", "0"])[:4]


def collect(ctx: Context) -> Collected:
    major, minor, micro, build = version_numbers(__version__)
    values = {
        "attr/PVAddons/Installed": "1",
        "attr/PVAddons/MajorVersion": major,
        "attr/PVAddons/MinorVersion": minor,
        "attr/PVAddons/MicroVersion": micro,
        "attr/PVAddons/BuildVersion": build,
    }
    options = ctx.options.get("misc")
    if not isinstance(options, Options):
        options = Options()
    if options.balloon and ctx.root.exists(BALLOON_DRIVER):
        values["control/feature-balloon"] = "1"
    return Collected(values=values)
