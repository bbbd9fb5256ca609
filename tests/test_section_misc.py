"""The misc section: PVAddons version keys and control/feature-balloon."""

import pytest

from xe_oneshot.guest import Root
from xe_oneshot.sections import Context, misc


@pytest.mark.parametrize("version, numbers", [
    ("1.2.3", ["1", "2", "3", "0"]), ("1.2.3.45", ["1", "2", "3", "45"]),
    ("1.2.3+45", ["1", "2", "3", "45"]), ("2.0.dev1", ["2", "0", "0", "0"]),
    ("3.1rc1", ["3", "1", "0", "0"]), ("007", ["7", "0", "0", "0"]), ("x", ["0"] * 4),
    ("1.\u00b2", ["1", "0", "0", "0"]), ("\u0663.1", ["0"] * 4),
    ("1." + "9" * 5000, ["1", "9" * 18, "0", "0"]),
])
def test_version_numbers_are_always_decimal(version, numbers):
    assert misc.version_numbers(version) == numbers


def test_misc_keys_and_balloon_option(tmp_path):
    """feature-balloon: "1" with a balloon driver, absent (removed) otherwise."""
    root = Root(str(tmp_path))
    got = misc.collect(Context(root=root)).values
    assert got["attr/PVAddons/Installed"] == "1"
    assert int(got["attr/PVAddons/MajorVersion"]) >= 1
    assert "control/feature-balloon" not in got                 # no driver
    (tmp_path / "sys/devices/system/xen_memory/xen_memory0").mkdir(parents=True)
    assert misc.collect(Context(root=root)).values["control/feature-balloon"] == "1"
    assert "control/feature-balloon" not in misc.collect(
        Context(root=root, options={"misc": misc.Options(balloon=False)})).values
    assert misc.collect(Context(root=root, options={"misc": misc.Options()})).values[
        "control/feature-balloon"] == "1"
