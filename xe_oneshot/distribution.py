"""Which Linux distribution the guest runs: the ``os_*`` facts.

Sources, first match wins (DESIGN.md, "Distribution detection"):

1. ``/etc/oracle-release``, ``enterprise-release``, ``rocky-release``,
   ``almalinux-release``, ``centos-release``, ``redhat-release``: the first line, parsed
   by product (:func:`parse_redhat_release`).
2. SUSE: ``/etc/SuSE-release`` (:func:`parse_suse_release`), then an os-release naming
   a "SUSE Linux Enterprise" product (:func:`parse_sles_os_release`).
3. ``/etc/lsb-release`` (:func:`parse_lsb_release`; no ``lsb_release`` subprocess).
4. ``/etc/debian_version`` (:func:`parse_debian_version`).
5. os-release: ``/etc/os-release``, else ``/usr/lib/os-release`` (:func:`parse_os_release`).

Each format has its own parser, a pure function over text; :func:`detect` only reads
files through a :class:`~xe_oneshot.guest.Root`. Symlinks are resolved inside the root
(:func:`resolve`): ``/etc/os-release -> ../usr/lib/os-release`` or an absolute target in
an image mounted at ``--root`` never reaches the host's files. At most
:data:`READ_LIMIT` bytes of a file are read; a file that is not a regular file (a
directory, a FIFO: never opened), unreadable (EIO...) or caught in a symlink loop counts
as absent and is reported; an unreadable ``/etc/os-release`` lets ``/usr/lib``'s answer.

Decisions where DESIGN.md is silent: "Beta" and "(... Update N)" apply to any product of
rule 1; the "minor above 90 means the next major" rule is RHEL's only; an
lsb-release ``DISTRIB_RELEASE`` without a dot gives an empty minor ("the rest");
SuSE-release gives ``sles`` for Desktop too (as the os-release rule does); an os-release
without ID but with NAME or PRETTY_NAME gives ``linux`` (os-release(5)'s default).
Detected values have control characters replaced by spaces and are cut to
:data:`MAX_VALUE` characters: oxenstored refuses values over 2048 bytes.

The facts file (``/var/cache/xe-linux-distribution``) has five lines ``key="value"`` in
the order of :data:`KEYS`. Escaping (:func:`escape`, undone by :func:`parse_facts`):

* ``\\``, ``"``, ``$`` and a backtick get a backslash, as in a shell's double quotes, so
  ``. /var/cache/xe-linux-distribution`` in sh gives back the same values;
* control characters (U+0000-U+001F, U+007F-U+009F; a newline among them) are written
  ``\\xHH``: the file stays one line per key. A shell reads these as the literal text
  ``\\xHH``; real release names never hold such characters, and detection drops them;
* every other character, UTF-8 encoded as it is.
"""

import errno
import os
import stat

from . import log
from . import guest
from .guest import VANISHED, Root
from .records import record
from .text import DIGITS, HEX, is_control, is_decimal, leading_decimal, replace_controls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional

LOG = log.getLogger(__name__)

#: Output keys, in the order of the facts file.
KEYS = ("os_distro", "os_majorver", "os_minorver", "os_uname", "os_name")

#: Where the boot service writes the facts (read by the ``os`` section).
FACTS_FILE = "/var/cache/xe-linux-distribution"

#: Rule 1, in order: the first line of the first file whose product is known wins.
REDHAT_RELEASE_FILES = (
    "/etc/oracle-release",
    "/etc/enterprise-release",
    "/etc/rocky-release",
    "/etc/almalinux-release",
    "/etc/centos-release",
    "/etc/redhat-release",
)
SUSE_RELEASE = "/etc/SuSE-release"
LSB_RELEASE = "/etc/lsb-release"
DEBIAN_VERSION = "/etc/debian_version"
#: os-release(5): the second only when the first is absent.
OS_RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release")

#: Release files are a few hundred bytes; a huge one is read up to here.
READ_LIMIT = 64 * 1024
#: As the kernel's limit on symlinks followed in one path walk.
MAX_SYMLINKS = guest.MAX_SYMLINKS
#: Longest value published: oxenstored answers E2BIG above 2048 bytes (UTF-8 up to 4 per
#: character).
MAX_VALUE = 256

#: Rule 1 products: (start of the first line, distro). DDK/SDK are found by the word
#: before "release" instead (their brand varies).
REDHAT_PRODUCTS = (
    ("Red Hat Enterprise Linux", "rhel"),
    ("CentOS", "centos"),
    ("Rocky Linux", "rocky"),
    ("AlmaLinux", "almalinux"),
    ("Oracle Linux", "oracle"),
    ("Enterprise Linux Enterprise Linux", "oracle"),
    ("Scientific Linux", "scientific"),
    ("Fedora", "fedora"),
)

_BLANKS = " \t\r"
#: Escaped with a backslash inside double quotes (as by a shell).
_SHELL_SPECIAL = {"\\": "\\\\", '"': '\\"', "$": "\\$", "`": "\\`"}


@record(frozen=True)
class Distribution:
    """What was recognised (``os_uname`` is not part of it: it is the running kernel's)."""

    distro: str
    major: str
    minor: str
    name: str


# --- helpers over text -------------------------------------------------------------


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0].strip()


def _clean(value: str) -> str:
    """A detected value fit to publish: control characters -> spaces, bounded length."""
    return replace_controls(value).strip()[:MAX_VALUE]


def _make(distro: str, major: str, minor: str, name: str) -> Distribution:
    return Distribution(_clean(distro), _clean(major), _clean(minor), _clean(name))


# --- shell-style assignments (os-release, lsb-release, the facts file) --------------


def shell_value(text: str, hex_escapes: bool = False) -> str:
    """The value of the right-hand side of a shell assignment.

    ``"Ubuntu 22.04.4 LTS"`` -> ``Ubuntu 22.04.4 LTS``; ``'a b'`` and ``a\\ b`` likewise;
    quoted and unquoted pieces concatenate; an unquoted ``#`` after a blank starts a
    comment. Inside double quotes a backslash escapes only ``\\ " $ `` and a backtick
    (and, with ``hex_escapes``, ``\\xHH`` is a character: the facts file's escape).
    Lenient where a shell would fail: an unclosed quote runs to the end of the line,
    unquoted blanks inside a value are kept.
    """
    out: List[str] = []
    i, end = 0, len(text)
    while i < end and text[i] in _BLANKS:
        i += 1
    # Start in out of the latest run of unquoted blanks, -1 after anything else: a "#"
    # there starts a comment, and the run is dropped if nothing follows it.
    blanks_from = 0 if i else -1
    while i < end:
        char = text[i]
        if char == '"':
            i = _double_quoted(text, i + 1, out, hex_escapes) + 1
            blanks_from = -1
        elif char == "'":
            close = text.find("'", i + 1)
            if close < 0:
                close = end
            out.append(text[i + 1:close])
            i = close + 1
            blanks_from = -1
        elif char == "\\" and i + 1 < end:
            out.append(text[i + 1])
            i += 2
            blanks_from = -1
        elif char in _BLANKS:
            if blanks_from < 0:
                blanks_from = len(out)
            out.append(char)
            i += 1
        elif char == "#" and blanks_from >= 0:
            break
        else:
            out.append(char)
            i += 1
            blanks_from = -1
    if blanks_from >= 0:
        del out[blanks_from:]
    return "".join(out)


def _double_quoted(text: str, i: int, out: "List[str]", hex_escapes: bool) -> int:
    """Append the inside of a double-quoted string starting at ``text[i]`` to ``out``;
    returns the index of the closing quote (or the end)."""
    end = len(text)
    while i < end and text[i] != '"':
        char = text[i]
        if char == "\\" and i + 1 < end:
            nxt = text[i + 1]
            if nxt in _SHELL_SPECIAL:
                out.append(nxt)
                i += 2
                continue
            hexa = text[i + 2:i + 4]
            if hex_escapes and nxt == "x" and len(hexa) == 2 and HEX.issuperset(hexa):
                out.append(chr(int(hexa, 16)))
                i += 4
                continue
        out.append(char)
        i += 1
    return i


def parse_assignments(text: str, hex_escapes: bool = False) -> "Dict[str, str]":
    """``KEY=value`` lines (os-release(5), lsb-release): ``{"KEY": "value"}``.

    ``ID=debian`` / ``NAME="Debian GNU/Linux"`` / ``ID='x'``. Comments, blank lines and
    lines that are not assignments are skipped; the last assignment of a key wins.
    """
    fields: Dict[str, str] = {}
    for line in text.split("\n"):
        line = line.strip()
        if not line or line[0] == "#":
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not _is_name(key):
            continue
        fields[key] = shell_value(value, hex_escapes)
    return fields


def _is_name(key: str) -> bool:
    """A shell variable name: ``PRETTY_NAME``."""
    return (bool(key) and max(key) < "\x80" and key[0] not in DIGITS  # no str.isascii: 3.7+
            and key.replace("_", "a").isalnum())


# --- the parsers, one per format ------------------------------------------------------


def parse_redhat_release(text: str) -> "Optional[Distribution]":
    """Rule 1: a redhat-style release line.

    ``CentOS Linux release 7.9.2009 (Core)`` -> centos 7 9;
    ``Red Hat Enterprise Linux AS release 4 (Nahant Update 4)`` -> rhel 4 4;
    ``Red Hat Enterprise Linux Server release 5.1 Beta (Tikanga)`` -> rhel 5 1beta;
    ``Red Hat Enterprise Linux Server release 4.92 (Tikanga)`` -> rhel 5 0beta;
    ``XenServer DDK release 0.5.6-2991c (xenenterprise)`` -> xe-ddk 0.5.6 2991c.
    None when the product is not one of rule 1's.
    """
    line = _first_line(text)
    words = line.split()
    if "release" not in words:
        return None
    at = words.index("release")
    if at == 0 or at + 1 == len(words):
        return None
    version, tail = words[at + 1], [word.strip("()") for word in words[at + 2:]]
    if words[at - 1] in ("DDK", "SDK"):
        # The version is <major>-<build>: "0.5.6-2991c".
        major, dash, minor = version.rpartition("-")
        if not dash:
            major, minor = version, "0"
        if not major:
            return None
        return _make("xe-" + words[at - 1].lower(), major, minor, line)
    for prefix, distro in REDHAT_PRODUCTS:
        if line.startswith(prefix):
            break
    else:
        return None
    head, _, rest = version.partition(".")
    major = leading_decimal(head)
    if not major or major != head:
        return None
    minor = leading_decimal(rest)
    if not minor:
        # "(Nahant Update 4)": RHEL 3/4 and their rebuilds counted updates this way.
        minor = "0"
        if "Update" in tail:
            update = tail.index("Update")
            if update + 1 < len(tail):
                minor = leading_decimal(tail[update + 1]) or "0"
    if distro == "rhel" and int(minor) > 90:
        # Pre-release of the next major: "release 4.92" was RHEL 5.0 Beta.
        major, minor = str(int(major) + 1), "0beta"
    elif "Beta" in tail:
        minor += "beta"
    return _make(distro, major, minor, line)


def parse_suse_release(text: str) -> "Optional[Distribution]":
    """Rule 2: ``/etc/SuSE-release`` of SUSE Linux Enterprise.

    ``SUSE Linux Enterprise Server 11 (x86_64)`` / ``VERSION = 11`` / ``PATCHLEVEL = 4``
    -> sles 11 4 (Desktop likewise). openSUSE's gives None (os-release knows it).
    """
    name = _first_line(text)
    if not name.lower().startswith("suse linux enterprise "):
        return None
    version = patchlevel = ""
    for line in text.split("\n")[1:]:
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key == "VERSION":
            version = value.strip()
        elif sep and key == "PATCHLEVEL":
            patchlevel = value.strip()
    major = leading_decimal(version)
    if not major:
        # No VERSION line: the first number of the product line.
        major = next((word for word in name.split() if is_decimal(word)), "")
    if not major:
        return None
    return _make("sles", major, leading_decimal(patchlevel) or "0", name)


def parse_sles_os_release(text: str) -> "Optional[Distribution]":
    """Rule 2: an os-release of SUSE Linux Enterprise, its VERSION_ID agreeing.

    ``PRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"`` + ``VERSION_ID="15.5"``
    -> sles 15 5; ``..."SUSE Linux Enterprise Desktop 15"`` + ``"15"`` -> sles 15 0.
    """
    fields = parse_assignments(text)
    pretty = fields.get("PRETTY_NAME", "")
    prefix = "SUSE Linux Enterprise "
    if not pretty.startswith(prefix):
        return None
    words = pretty[len(prefix):].split()
    service_pack = "0"
    if words and words[-1].startswith("SP") and is_decimal(words[-1][2:]):
        service_pack = words.pop()[2:]
    if len(words) < 2 or not is_decimal(words[-1]):
        return None  # no product word, or no major: "SUSE Linux Enterprise Micro 5.5"
    major = words[-1]
    id_major, _, id_minor = fields.get("VERSION_ID", "").partition(".")
    if id_major != major or (id_minor or "0") != service_pack:
        return None
    return _make("sles", major, service_pack, pretty)


def parse_lsb_release(text: str) -> "Optional[Distribution]":
    """Rule 3: ``/etc/lsb-release``.

    ``DISTRIB_ID=Ubuntu`` / ``DISTRIB_RELEASE=22.04`` /
    ``DISTRIB_DESCRIPTION="Ubuntu 22.04.4 LTS"`` -> ubuntu 22 04. Gooroom keeps its
    capital (its tooling expects ``Gooroom``). None unless all three are set.
    """
    fields = parse_assignments(text)
    ident = fields.get("DISTRIB_ID", "").strip()
    release = fields.get("DISTRIB_RELEASE", "").strip()
    description = fields.get("DISTRIB_DESCRIPTION", "").strip()
    if not (ident and release and description):
        return None
    distro = "Gooroom" if ident.lower() == "gooroom" else ident.lower()
    major, _, minor = release.partition(".")
    if not major:
        return None
    return _make(distro, major, minor, description)


def parse_debian_version(text: str) -> "Optional[Distribution]":
    """Rule 4: ``/etc/debian_version``.

    ``12.7`` -> debian 12 7; ``8`` -> debian 8 0; ``trixie/sid`` -> debian with empty
    major and minor. Anything else (``kali-rolling``) is None.
    """
    line = _first_line(text)
    head, dot, rest = line.partition(".")
    if is_decimal(head):
        major, minor = head, leading_decimal(rest) or "0"
    elif "/sid" in line:
        major = minor = ""
    else:
        return None
    return _make("debian", major, minor, "Debian " + line)


def parse_os_release(text: str) -> "Optional[Distribution]":
    """Rule 5: os-release(5).

    ``ID=nixos`` / ``VERSION_ID="24.05"`` / ``PRETTY_NAME="NixOS 24.05 (Uakari)"``
    -> nixos 24 05; no VERSION_ID (Arch) -> ``unknown`` major and minor.
    None when the file names nothing (no ID, NAME nor PRETTY_NAME).
    """
    fields = parse_assignments(text)
    ident, name, pretty = (fields.get(key, "").strip()
                           for key in ("ID", "NAME", "PRETTY_NAME"))
    if not (ident or name or pretty):
        return None
    head, _, rest = fields.get("VERSION_ID", "").strip().partition(".")
    major = leading_decimal(head) or "unknown"
    minor = leading_decimal(rest) or "unknown"
    if not pretty:
        pretty = " ".join(part for part in (name or "Linux", fields.get("VERSION", ""))
                          if part)
    return _make(ident or "linux", major, minor, pretty)


# --- reading through a root ---------------------------------------------------------


def resolve(root: Root, guest_path: str) -> str:
    """The guest path with every symlink resolved inside the root.

    With ``/etc/os-release -> ../usr/lib/os-release`` (or ``-> /usr/lib/os-release``),
    ``/etc/os-release`` -> ``/usr/lib/os-release``: an absolute target and ``..`` stay in
    the guest, never on the host (:meth:`Root.resolve`, the one copy of that rule).
    Raises OSError(ELOOP) after :data:`MAX_SYMLINKS`.
    """
    return root.resolve(guest_path)


def read_release_file(root: Root, guest_path: str,
                      problems: "Optional[List[str]]" = None) -> "Optional[str]":
    """A release file's text (at most :data:`READ_LIMIT` bytes, UTF-8 with undecodable
    bytes replaced), or None when it is absent or cannot be read. A reason for the
    latter is appended to ``problems`` (or logged as a warning when it is None)."""
    reason = None
    try:
        real = resolve(root, guest_path)
        mode = os.stat(root.path(real)).st_mode
        if stat.S_ISREG(mode):
            data = root.read_bytes(real, None, READ_LIMIT)
            return None if data is None else data.decode("utf-8", "replace")
        reason = "not a regular file"
    except OSError as err:
        if err.errno in VANISHED and err.errno != errno.ELOOP:
            return None
        reason = err.strerror or str(err)
    message = "%s: %s" % (guest_path, reason)
    if problems is None:
        LOG.warning("ignoring %s", message)
    else:
        problems.append(message)
    return None


def detect(root: Root, problems: "Optional[List[str]]" = None) -> "Optional[Distribution]":
    """The guest's distribution by DESIGN.md's rules, or None if nothing is recognised.

    Files that exist but cannot be read are skipped; why goes to ``problems`` (a list
    the caller reports) or, without one, to the log.
    """
    def read(path: str) -> "Optional[str]":
        return read_release_file(root, path, problems)

    for path in REDHAT_RELEASE_FILES:
        text = read(path)
        found = parse_redhat_release(text) if text is not None else None
        if found:
            return found
    text = read(SUSE_RELEASE)
    found = parse_suse_release(text) if text is not None else None
    if found:
        return found
    os_release = read(OS_RELEASE_FILES[0])
    if os_release is None:
        os_release = read(OS_RELEASE_FILES[1])
    found = parse_sles_os_release(os_release) if os_release is not None else None
    if found:
        return found
    text = read(LSB_RELEASE)
    found = parse_lsb_release(text) if text is not None else None
    if found:
        return found
    text = read(DEBIAN_VERSION)
    found = parse_debian_version(text) if text is not None else None
    if found:
        return found
    return parse_os_release(os_release) if os_release is not None else None


# --- the facts file -------------------------------------------------------------------


def facts(found: Distribution, uname: str) -> "Dict[str, str]":
    """The five facts, keyed as in the file: ``{"os_distro": "debian", ...}``."""
    return dict(zip(KEYS, (found.distro, found.major, found.minor, uname, found.name)))


def escape(value: str) -> str:
    """``a "b" $c`` -> ``a \\"b\\" \\$c``: the inside of the file's double quotes."""
    if value.isprintable() and not any(char in value for char in _SHELL_SPECIAL):
        return value
    out = []
    for char in value:
        if char in _SHELL_SPECIAL:
            out.append(_SHELL_SPECIAL[char])
        elif is_control(char):
            out.append("\\x%02x" % ord(char))
        else:
            out.append(char)
    return "".join(out)


def render(values: "Dict[str, str]") -> str:
    """The facts file: ``os_distro="debian"`` ... one line per key of :data:`KEYS`."""
    return "".join('%s="%s"\n' % (key, escape(values[key])) for key in KEYS)


def parse_facts(text: str) -> "Dict[str, str]":
    """The facts file back: ``os_name="Ubuntu 24.04.1 LTS"`` -> ``{"os_name": ...}``.

    Exact inverse of :func:`render`; reads older files (plain ``key="value"``) too.
    """
    return parse_assignments(text, hex_escapes=True)
