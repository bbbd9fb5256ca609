"""The ``xenstore`` CLI: byte-for-byte the same output and exit status as Debian's C
``xenstore-*`` tools on the same tree (the real daemon), plus its own error handling."""

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from xe_oneshot.xenstore import Client
from xe_oneshot.xenstore_cli import parse_args, sanitise, unsanitise, UsageError

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

AWKWARD = {
    "plain": b"x",
    "empty": b"",
    "quotes": b'he said "hi" and \'bye\'',
    "backslash": b"a\\b\\\\c\\",
    "newlines": b"line1\nline2\r\n\ttabbed",
    "utf8": "h\u00e9llo \u20ac \u65e5\u672c".encode(),
    "binary": b"\x00\x01\x07\x08\x1b\x7f\x80\xfe\xff",
    "percent": b"%s %d %n",
    "long": b"v" * 300,
    "spaces": b"  lead and trail  ",
}


def seed_tree(xs, base):
    for name, value in AWKWARD.items():
        xs.write(base + "/" + name, value)
    # values around the 80-column truncation boundary: linewid + len + 8 vs 80
    for n in (68, 69, 70, 71, 72):
        xs.write("%s/edge/e%d" % (base, n), b"w" * (n - 3))
        xs.write("%s/edge/esc%d" % (base, n), b"\x01" * (n // 4))
    deep = base + "/deep"
    for level in range(78):   # deeper than 80 - 8 columns: printf's negative precision
        deep += "/d%d" % level
    xs.write(deep, "bottom of a deep tree " * 3)
    xs.mkdir(base + "/emptydir/sub")
    xs.write(base + "/node/with/children", "kid")
    xs.write(base + "/node", "parent value")
    xs.write(base + "/long-name-" + "n" * 90, "long name")


@pytest.fixture(scope="module")
def tree(xenstored):
    base = "/cli"
    with Client.open(env=xenstored.env()) as xs:
        seed_tree(xs, base)
    return base


def ours(xenstored, *args, prog=None, stdin=None, env=None):
    """Run our CLI (as ``xenstore ARGS`` or as ``prog ARGS``); returns CompletedProcess."""
    if prog is None:
        cmd = [sys.executable, "-m", "xe_oneshot.xenstore_cli"] + list(args)
    else:
        cmd = [sys.executable, "-c",
               "import sys; sys.argv[0] = %r; sys.path.insert(0, %r); "
               "from xe_oneshot.xenstore_cli import main; sys.exit(main())" % (prog, CHECKOUT)
               ] + list(args)
    return subprocess.run(cmd, env=env or xenstored.env(), cwd=CHECKOUT, stdin=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)


def theirs(xenstored, tool, *args):
    return subprocess.run([str(xenstored.tool(tool))] + list(args), env=xenstored.env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)


def same_as_c(xenstored, command, *args):
    mine = ours(xenstored, command, *args)
    c = theirs(xenstored, "xenstore-" + command, *args)
    assert mine.stdout == c.stdout, (mine.stdout.decode(errors="replace"),
                                     c.stdout.decode(errors="replace"))
    assert mine.returncode == c.returncode, mine.stderr
    return mine, c


# -- same bytes as the C tools ---------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("ls", "/cli"), ("ls", "-f", "/cli"), ("ls", "-p", "/cli"), ("ls", "-f", "-p", "/cli"),
    ("ls", "/cli/edge"), ("ls", "/cli/node"), ("ls", "/cli/plain"), ("ls", "/nope"),
    ("list", "/cli"), ("list", "-p", "/cli/node"), ("list", "/cli/emptydir"),
    ("list", "/nope"), ("list", "/cli", "/nope"),
    ("read", "/cli/quotes"), ("read", "/cli/backslash", "/cli/newlines", "/cli/utf8"),
    ("read", "/cli/binary"), ("read", "-p", "/cli/plain", "/cli/empty"),
    ("read", "-R", "/cli/binary"), ("read", "/cli/long"), ("read", "/nope"),
    ("read", "/cli/plain", "/nope", "/cli/empty"), ("read", "/cli/emptydir"),
    ("exists", "/cli/plain"), ("exists", "/cli/plain", "/cli/emptydir/sub"),
    ("exists", "/nope"), ("exists", "/cli/plain", "/nope"),
], ids=lambda a: " ".join(a))
def test_output_and_status_equal_c_tools(xenstored, tree, args):
    same_as_c(xenstored, *args)


def test_ls_of_whole_store_equals_c(xenstored, tree):
    mine, c = same_as_c(xenstored, "ls")
    assert b"cli = \"\"\n" in mine.stdout and b' binary = "\\000\\001\\a' not in mine.stdout


def test_ls_values_are_escaped_like_c(xenstored, tree):
    """The expected lines here are written out by hand from xs_sanitise_value's rules."""
    out = ours(xenstored, "ls", "/cli").stdout.decode()
    assert 'quotes = "he said "hi" and \'bye\'"\n' in out
    assert 'backslash = "a\\\\b\\\\\\\\c\\\\"\n' in out
    assert 'newlines = "line1\\nline2\\r\\n\\ttabbed"\n' in out
    assert 'binary = "\\000\\001\\007\\x08\\x1b\\x7f\\x80\\xfe\\xff"\n' in out
    assert 'long = "' + "v" * (80 - 8 - 4) + '\\..."\n' in out


@pytest.mark.parametrize("columns", [40, 100, 9])
def test_ls_on_a_tty_truncates_to_its_width_like_c(xenstored, tree, columns):
    def on_tty(cmd):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST   # no \n -> \r\n
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        proc = subprocess.Popen(cmd, env=xenstored.env(), cwd=CHECKOUT, stdout=slave,
                                stderr=subprocess.DEVNULL)
        os.close(slave)
        data = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
            elif proc.poll() is not None:
                break
        proc.wait(10)
        os.close(master)
        return data
    mine = on_tty([sys.executable, "-m", "xe_oneshot.xenstore_cli", "ls", "/cli"])
    c = on_tty([str(xenstored.tool("xenstore-ls")), "/cli"])
    assert mine == c
    assert b"\\..." in mine


def test_write_then_c_read(xenstored):
    assert ours(xenstored, "write", "/t/a", "x").returncode == 0
    assert theirs(xenstored, "xenstore-read", "/t/a").stdout == b"x\n"


def test_write_escapes_like_c(xenstored):
    value = r"tab\there \x41\102 back\\slash \q"
    assert ours(xenstored, "write", "/t/esc/ours", value).returncode == 0
    theirs(xenstored, "xenstore-write", "/t/esc/theirs", value)
    with Client.open(env=xenstored.env()) as xs:
        assert xs.read("/t/esc/ours") == xs.read("/t/esc/theirs") == \
            b"tab\there AB back\\slash q"
    assert ours(xenstored, "write", "-R", "/t/esc/raw", r"a\nb").returncode == 0
    assert xenstored.read("/t/esc/raw") == r"a\\nb"   # C tool shows the backslash escaped


def test_write_several_pairs_and_non_ascii(xenstored):
    res = ours(xenstored, "write", "/t/w/a", "1", "/t/w/b", "d\u00e9j\u00e0")
    assert res.returncode == 0, res.stderr
    with Client.open(env=xenstored.env()) as xs:
        assert xs.read("/t/w/b") == "d\u00e9j\u00e0".encode()
    assert xenstored.read("/t/w/a") == "1"


def test_c_writes_we_read_round_trip(xenstored):
    theirs(xenstored, "xenstore-write", "/t/rt", r"a\nb\x00c")
    assert ours(xenstored, "read", "/t/rt").stdout == b"a\\nb\\000c\n"
    assert ours(xenstored, "read", "-R", "/t/rt").stdout == b"a\nb\x00c"


def test_rm_removes_subtree_and_tidy(xenstored):
    ours(xenstored, "write", "/t/rm/a/b/c", "1", "/t/rm/keep", "k")
    assert ours(xenstored, "rm", "/t/rm/a").returncode == 0
    assert xenstored.read("/t/rm/a/b/c") is None and xenstored.read("/t/rm/a") is None
    ours(xenstored, "write", "/t/rm2/x/y/z", "1")
    assert ours(xenstored, "rm", "-t", "/t/rm2/x/y/z").returncode == 0
    assert xenstored.read("/t/rm2") is None   # empty, valueless parents went too
    res = ours(xenstored, "rm", "/t/nope/deeper")
    assert res.returncode == 1 and b"ENOENT" in res.stderr


def test_chmod(xenstored):
    ours(xenstored, "write", "/t/perm/a/b", "1")
    res = ours(xenstored, "chmod", "/t/perm/a", "n0", "r1", "b2")
    assert res.returncode == 0, res.stderr
    assert theirs(xenstored, "xenstore-ls", "-p", "/t/perm").stdout.rstrip().endswith(
        b"(n0,r1,b2)\n b = \"1\" . . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)")
    assert ours(xenstored, "chmod", "-r", "/t/perm/a", "w3").returncode == 0
    with Client.open(env=xenstored.env()) as xs:
        assert xs.get_perms("/t/perm/a/b") == ["w3"]
        assert xs.get_perms("/t/perm") == ["n0"]
    res = ours(xenstored, "chmod", "/t/perm/a", "x1")
    assert res.returncode == 2 and b"invalid permission" in res.stderr


@pytest.mark.parametrize("mode", ["r\u00b2", "r\u0663", "r" + "9" * 5000, "r32752",
                                  "b" + "0" * 3000 + "1x", "r-1", "r 1"],
                         ids=["superscript", "arabic-indic", "5000-digits", "reserved",
                              "zeros-then-junk", "negative", "space"])
def test_chmod_hostile_domid_is_a_usage_error_in_one_line(xenstored, mode):
    ours(xenstored, "write", "/t/perm2", "1")
    res = ours(xenstored, "chmod", "/t/perm2", "n0", mode)
    assert res.returncode == 2, res.stderr
    assert b"Traceback" not in res.stderr
    first = res.stderr.decode().splitlines()[0]
    assert " chmod: invalid permission " in first and len(first) < 200
    with Client.open(env=xenstored.env()) as xs:
        assert xs.get_perms("/t/perm2") == ["n0"]


#: A legal path a guest can build under its own home: ~1000 levels (2 KiB).
DEEP = "/t/deep" + "/a" * 1000


@pytest.fixture(scope="module")
def deep(xenstored):
    with Client.open(env=xenstored.env()) as xs:
        xs.write(DEEP, "bottom")
    return DEEP


@pytest.mark.parametrize("args", [("ls", "/t/deep"), ("ls", "-f", "/t/deep"),
                                  ("ls", "-p", "/t/deep")], ids=" ".join)
def test_ls_of_a_thousand_levels_deep_tree_equals_c(xenstored, deep, args):
    mine, _c = same_as_c(xenstored, *args)
    assert mine.returncode == 0 and b"Traceback" not in mine.stderr
    lines = mine.stdout.splitlines()
    assert len(lines) == 1000 and b' = "bottom' in lines[-1]


def test_chmod_recursive_on_a_thousand_levels_deep_tree(xenstored, deep):
    res = ours(xenstored, "chmod", "-r", "/t/deep", "n0", "r9")
    assert (res.returncode, res.stderr) == (0, b"")
    with Client.open(env=xenstored.env()) as xs:
        assert xs.get_perms(DEEP) == ["n0", "r9"]
        assert xs.get_perms(DEEP.rsplit("/", 500)[0]) == ["n0", "r9"]
    res = ours(xenstored, "chmod", "-u", DEEP, "n0", "r8")
    assert (res.returncode, res.stderr) == (0, b"")
    with Client.open(env=xenstored.env()) as xs:
        assert xs.get_perms("/t/deep") == ["n0", "r8"] == xs.get_perms("/t")
        assert xs.get_perms("/") == ["n0"]


def test_watch_prints_event_paths(xenstored):
    ours(xenstored, "write", "/t/watch/a", "0")
    proc = subprocess.Popen([sys.executable, "-m", "xe_oneshot.xenstore_cli", "watch",
                             "-n", "3", "/t/watch"], env=xenstored.env(), cwd=CHECKOUT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    assert first == b"/t/watch\n"
    xenstored.write("/t/watch/a", "1")
    xenstored.write("/t/watch/b", "2")
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == b"/t/watch/a\n/t/watch/b\n"


# -- argv[0] dispatch, errors, usage ---------------------------------------------------------


@pytest.mark.parametrize("prog,args", [
    ("xenstore-read", ("/cli/quotes", "/cli/utf8")), ("xenstore-list", ("/cli/node",)),
    ("xenstore-ls", ("/cli/node",)), ("xenstore-exists", ("/cli/nope",)),
])
def test_called_as_xenstore_dash_command(xenstored, tree, prog, args):
    mine = ours(xenstored, *args, prog="/usr/bin/" + prog)
    c = theirs(xenstored, prog, *args)
    assert (mine.stdout, mine.returncode) == (c.stdout, c.returncode)


def test_xenstore_error_is_one_line_without_traceback(xenstored):
    res = ours(xenstored, "read", "/nope")
    assert res.returncode == 1 and res.stdout == b""
    assert res.stderr == b"xenstore read /nope: ENOENT (No such file or directory)\n"
    res = ours(xenstored, "list", "/nope")
    assert res.stderr == b"xenstore list /nope: ENOENT (No such file or directory)\n"
    res = ours(xenstored, "read", "a//b")
    assert res.returncode == 1 and res.stderr.count(b"\n") == 1 and b"EINVAL" in res.stderr


def test_no_xenstore_is_one_line_and_exit_3(xenstored, tmp_path):
    env = dict(xenstored.env(), XENSTORED_PATH=str(tmp_path / "absent.sock"))
    res = ours(xenstored, "read", "/a", env=env)
    assert res.returncode == 3
    assert res.stderr.count(b"\n") == 1 and b"absent.sock" in res.stderr
    assert b"Traceback" not in res.stderr


@pytest.mark.parametrize("args", [(), ("bogus",), ("read",), ("read", "-x", "/a"),
                                  ("write", "/a"), ("write", "/a", "1", "/b"),
                                  ("ls", "/a", "/b"), ("chmod", "/a"), ("watch", "-n"),
                                  ("watch", "-n", "x", "/a"), ("read", "--bogus", "/a")],
                         ids=lambda a: " ".join(a) or "none")
def test_usage_errors(xenstored, args):
    res = ours(xenstored, *args)
    assert res.returncode == 2
    assert res.stdout == b"" and b"usage:" in res.stderr and b"Traceback" not in res.stderr


def test_help(xenstored):
    res = ours(xenstored, "--help")
    assert res.returncode == 0 and b"watch" in res.stdout and b"chmod" in res.stdout
    res = ours(xenstored, "ls", "-h")
    assert res.returncode == 0 and res.stdout.startswith(b"usage: ")


# -- pure helpers --------------------------------------------------------------------------


def test_sanitise_and_unsanitise_round_trip():
    for value in AWKWARD.values():
        assert unsanitise(sanitise(value)) == value
    assert sanitise(b"\x00\t\\") == b"\\000\\t\\\\"
    assert unsanitise(b"\\x4") == b"\x04" and unsanitise(b"\\xg") == b"xg"
    assert unsanitise(b"\\1234") == b"S4" and unsanitise(b"end\\") == b"end\x00"


def test_parse_args_gnu_style():
    assert parse_args("ls", ["/a", "-fp"]) == ({"f": "", "p": ""}, ["/a"])
    assert parse_args("watch", ["-n2", "/a"]) == ({"n": "2"}, ["/a"])
    assert parse_args("watch", ["--number=2", "/a"]) == ({"n": "2"}, ["/a"])
    assert parse_args("write", ["/a", "--", "-1"]) == ({}, ["/a", "-1"])
    with pytest.raises(UsageError):
        parse_args("write", ["-t"])


def test_pyxs_peer_and_cli(xenstored):
    pyxs = pytest.importorskip("pyxs")
    assert ours(xenstored, "write", "/t/py/ours", r"from\tCLI").returncode == 0
    with pyxs.Client(unix_socket_path=str(xenstored.socket)) as peer:
        assert peer.read(b"/t/py/ours") == b"from\tCLI"
        peer.write(b"/t/py/theirs", b"\x00 \"q\" \\ \x7f~")  # pyxs: 7-bit ASCII only
    mine = ours(xenstored, "read", "/t/py/theirs")
    assert mine.stdout == theirs(xenstored, "xenstore-read", "/t/py/theirs").stdout
    assert mine.stdout == b"\\000 \"q\" \\\\ \\x7f~\n"


def test_ls_into_a_closed_pipe_is_quiet(xenstored):
    with Client.open(env=xenstored.env()) as xs:
        xs.transaction(lambda tx: [xs.write("/t/many/n%04d" % i, "v" * 60, tx)
                                   for i in range(2000)])
    res = subprocess.run("%s -m xe_oneshot.xenstore_cli ls /t/many | head -1"
                         % sys.executable, shell=True, env=xenstored.env(), cwd=CHECKOUT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert res.stdout == b'n0000 = "' + b"v" * 60 + b'"\n'
    assert res.stderr == b""


def test_ls_with_unreadable_nodes_equals_c_through_the_proxy(xenstored, tree, tmp_path):
    """A guest may not read every node: the C tools and ours both talk through the fault
    proxy, which refuses some reads, permission lookups and listings with EACCES."""
    from tests.support.fault_proxy import FaultProxy, Rule

    def compare(env, *commands):
        for args in commands:
            mine = ours(xenstored, *args, env=env)
            c = subprocess.run([str(xenstored.tool("xenstore-" + args[0]))] + list(args[1:]),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=30)
            assert (mine.stdout, mine.returncode) == (c.stdout, c.returncode), args
        return mine

    with FaultProxy(xenstored.socket, tmp_path / "proxy.sock") as proxy:
        env = proxy.env(xenstored.env())
        proxy.rules += [Rule(op="read", path="^/cli/(plain|node/with)$", error="EACCES"),
                        Rule(op="get_perms", path="^/cli/quotes$", error="EACCES")]
        compare(env, ("ls", "-p", "/cli"), ("ls", "-f", "-p", "/cli"), ("read", "/cli/plain"))
        out = compare(env, ("ls", "/cli")).stdout
        assert b"\nplain:\n" in out and b"\n with:\n" in out
        assert proxy.counts["get_perms"] > 0
        # A subtree that cannot be listed ends the walk (xenstore-ls 4.17 does so too).
        proxy.rules.append(Rule(op="directory", path="^/cli/emptydir$", error="EACCES"))
        res = compare(env, ("ls", "/cli"), ("list", "/cli/emptydir"))
        assert res.returncode == 1
        assert res.stderr == b"xenstore list /cli/emptydir: EACCES (Permission denied)\n"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_trees_print_like_c(xenstored, seed):
    """Random names, depths and byte values (any byte, up to oxenstored's 2048): ls, ls -f,
    ls -p, list and read print the same bytes as the C tools."""
    import random
    rng = random.Random(seed)
    alphabet = "abcXYZ019-_@"
    base = "/fuzz/%d" % seed
    leaves = []
    with Client.open(env=xenstored.env()) as xs:
        for _ in range(60):
            parts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
                     for _ in range(rng.randint(1, 6))]
            size = rng.choice([0, 1, 5, 40, 70, 75, 200, 2048])
            value = bytes(rng.randrange(256) for _ in range(size))
            path = base + "/" + "/".join(parts)
            xs.write(path, value)
            leaves.append(path)
    for args in (("ls", base), ("ls", "-f", base), ("ls", "-p", base), ("list", base),
                 ("read",) + tuple(leaves[:15])):
        same_as_c(xenstored, *args)
