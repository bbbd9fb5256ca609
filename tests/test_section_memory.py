"""The memory section on a guest's /proc/meminfo."""

import pytest

from tests.support.fakeguest import FakeGuest
from xe_oneshot.guest import Root
from xe_oneshot.sections import Context, SectionError, memory


def test_memory_prefers_memavailable(tmp_path):
    FakeGuest(tmp_path).meminfo(total=4000000, available=1234567, free=99)
    got = memory.collect(Context(root=Root(str(tmp_path))))
    assert got.values == {"data/meminfo_total": "4000000", "data/meminfo_free": "1234567"}
    assert got.tolerance == {"data/meminfo_free": 40000}


def test_memory_falls_back_to_memfree_on_old_kernels(tmp_path):
    FakeGuest(tmp_path).meminfo(total=4000000, available=None, free=321)
    got = memory.collect(Context(root=Root(str(tmp_path))))
    assert got.values["data/meminfo_free"] == "321"


@pytest.mark.parametrize("text", ["", "garbage\x00\xff", "MemTotal: lots kB\n",
                                  "MemTotal:  100 kB\n", "MemTotal:\nMemFree:\n",
                                  "MemTotal: 9999999999999999999999 kB\nMemFree: 1 kB\n"])
def test_memory_garbage_is_a_section_error(tmp_path, text):
    FakeGuest(tmp_path).file("/proc/meminfo", text)
    with pytest.raises(SectionError):
        memory.collect(Context(root=Root(str(tmp_path))))


def test_memory_missing_file_is_a_section_error(tmp_path):
    with pytest.raises(SectionError, match="missing"):
        memory.collect(Context(root=Root(str(tmp_path))))


@pytest.mark.parametrize("digits", ["\u0663\u0663", "\u00b2", "\uff13\uff13"])
def test_memory_hostile_unicode_digits_are_not_numbers(tmp_path, digits):
    """Arabic-Indic, superscript and full-width digits: ``str.isdigit`` takes them all
    (and ``int`` reads ``٣٣`` as 33); the kernel writes ASCII only."""
    FakeGuest(tmp_path).file("/proc/meminfo", "MemTotal: %s kB\nMemFree: 10 kB\n" % digits)
    with pytest.raises(SectionError):
        memory.collect(Context(root=Root(str(tmp_path))))


# -- layout on fields, no /proc -------------------------------------------------------

def test_memory_keys_from_fields():
    got = memory.memory_keys({"MemTotal": 150, "MemFree": 7, "MemAvailable": 90})
    assert got.values == {"data/meminfo_total": "150", "data/meminfo_free": "90"}
    assert got.tolerance == {"data/meminfo_free": 1}      # 1% of 150 kB, at least 1


@pytest.mark.parametrize("fields", [{}, {"MemTotal": 0, "MemFree": 1}, {"MemFree": 5},
                                    {"MemTotal": 100}])
def test_memory_keys_refuse_an_incomplete_meminfo(fields):
    with pytest.raises(SectionError):
        memory.memory_keys(fields)
