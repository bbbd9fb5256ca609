"""Text rules shared by the whole package: what counts as a number, a XenStore name, hex,
a control character. One copy each, because the wrong copy is easy to write:
``str.isdigit()`` is true of ``"²"`` and ``"٣"``, which ``int()`` refuses or reads, and
``int()`` of thousands of digits raises.

No imports: every command loads this module.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

#: ASCII decimal digits (never ``str.isdigit``: it takes any Unicode digit).
DIGITS = frozenset("0123456789")
#: Hex digits, either case; ``HEX_LOWER``: as the kernel prints them (MACs, /proc).
HEX = frozenset("0123456789abcdefABCDEF")
HEX_LOWER = frozenset("0123456789abcdef")
HEX_BYTES = frozenset(b"0123456789abcdefABCDEF")
#: The characters of a XenStore path element (xenstored's ``is_valid_path``:
#: ``A-Za-z0-9-_@``); a path adds ``/``.
XS_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_@")
XS_PATH_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_@/")


def is_decimal(text: str) -> bool:
    """``"0"``, ``"0042"``: one or more ASCII digits, nothing else (``"²"``, ``"-1"``,
    ``" 1"`` and ``""`` are not)."""
    return bool(text) and DIGITS.issuperset(text)


def parse_decimal(text: str, max_digits: int = 20) -> "Optional[int]":
    """The value of an ASCII decimal of at most ``max_digits`` digits (20: any 64-bit
    count), surrounding whitespace allowed; None for anything else. Garbage from the
    guest must skip one value, never raise."""
    text = text.strip()
    return int(text) if len(text) <= max_digits and is_decimal(text) else None


def leading_decimal(text: str) -> str:
    """The ASCII digits ``text`` starts with: ``"3rc1"`` → ``"3"``, ``"²"`` → ``""``."""
    end = 0
    while end < len(text) and text[end] in DIGITS:
        end += 1
    return text[:end]


def is_xs_name(text: str) -> bool:
    """Whether ``text`` may be one element of a XenStore path (``vif``, ``net-sriov-vf``)."""
    return bool(text) and XS_NAME.issuperset(text)


def is_control(char: str) -> bool:
    """C0 controls, DEL and the C1 controls (U+0080-U+009F: U+009B is a terminal's CSI,
    like ESC [)."""
    code = ord(char)
    return code < 32 or 127 <= code <= 159


def replace_controls(text: str, by: str = " ") -> str:
    """``text`` with every control character (see :func:`is_control`) replaced by ``by``."""
    if text.isprintable():          # no control character (C speed: every value passes)
        return text
    return "".join(by if is_control(c) else c for c in text)


def sanitise(value: bytes) -> bytes:
    """Escape a value as the C tools print it (``xs_sanitise_value``): printable ASCII
    except backslash as is; ``\\t \\n \\r \\\\``; below 8 octal ``\\001``; else ``\\xNN``.

    >>> sanitise(b'a"b\\\\\\x01\\xc3\\xa9')
    b'a"b\\\\\\\\\\\\001\\\\xc3\\\\xa9'
    """
    out = bytearray()
    for c in value:
        if 32 <= c <= 126 and c != 92:
            out.append(c)
        elif c == 9:
            out += b"\\t"
        elif c == 10:
            out += b"\\n"
        elif c == 13:
            out += b"\\r"
        elif c == 92:
            out += b"\\\\"
        elif c < 8:
            out += b"\\%03o" % c
        else:
            out += b"\\x%02x" % c
    return bytes(out)
