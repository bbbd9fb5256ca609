"""The shared text rules (xe_oneshot/text.py)."""

import pytest

from xe_oneshot import text


@pytest.mark.parametrize("value, ok", [
    ("0", True), ("0042", True), ("12345678901234567890123", True),
    ("", False), ("-1", False), (" 1", False), ("1 ", False), ("1.0", False),
    ("\u00b2", False), ("\u0663\u0663", False), ("\uff11", False), ("1\u00b2", False),
])
def test_is_decimal_is_ascii_digits_only(value, ok):
    assert text.is_decimal(value) is ok


@pytest.mark.parametrize("value, number", [
    ("0", 0), (" 42\n", 42), ("18446744073709551615", 2 ** 64 - 1),
    ("1" * 21, None), ("9" * 5000, None), ("\u0663\u0663", None), ("0x10", None),
    ("", None), ("1 2", None),
])
def test_parse_decimal_bounds_and_refuses_garbage(value, number):
    assert text.parse_decimal(value) == number


def test_leading_decimal_stops_at_the_first_non_ascii_digit():
    assert [text.leading_decimal(s) for s in ("3rc1", "\u00b2", "12\u0663", "")] == \
        ["3", "", "12", ""]


@pytest.mark.parametrize("value, ok", [
    ("vif", True), ("net-sriov-vf", True), ("a_b@c", True), ("0", True),
    ("", False), ("a/b", False), ("a b", False), ("a.b", False), ("\u00e9", False),
    ("a\n", False),
])
def test_is_xs_name_is_xenstoreds_element_alphabet(value, ok):
    assert text.is_xs_name(value) is ok


def test_xs_path_bytes_is_the_name_alphabet_plus_slash():
    assert text.XS_PATH_BYTES == frozenset("".join(text.XS_NAME | {"/"}).encode())


def test_controls_c0_del_and_c1_become_spaces_and_the_rest_stays():
    assert text.replace_controls("a\x00b\tc\x7fd\x9be\u00a0f\u00e9") == "a b c d e\u00a0f\u00e9"
    same = "plain text"
    assert text.replace_controls(same) is same           # the common case: no copy


def test_sanitise_matches_the_c_tools_escaping():
    assert text.sanitise(b'a"b\\\x01\t\n\r\xc3\xa9\x7f') == \
        b'a"b\\\\\\001\\t\\n\\r\\xc3\\xa9\\x7f'
