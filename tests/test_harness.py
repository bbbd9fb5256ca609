"""The test harness itself: the real daemon starts, answers the C tools, logs writes."""


def test_daemon_round_trip_with_c_tools(xenstored):
    mark = xenstored.log_mark()
    xenstored.write("harness/a", "hello world")
    assert xenstored.read("harness/a") == "hello world"
    assert xenstored.read("/local/domain/0/harness/a") == "hello world"
    assert xenstored.tree("harness") == {"a": "hello world"}
    ops = [(e.op, e.path) for e in xenstored.writes_since(mark)]
    assert ops == [("write", "harness/a")]


def test_seeded_store(tmp_path):
    from tests.support.xenstored import XenStored
    with XenStored(tmp_path, seed=[("/local/domain/0/x/mac", "00:16:3e:00:00:01")]) as d:
        assert d.read("x/mac") == "00:16:3e:00:00:01"


def test_the_support_index_names_every_harness_module():
    """tests/support/__init__.py is the harness's index: every module in it is listed
    there (and what the issue asks the harness to offer is among them)."""
    import tests.support
    from tests.support.paths import CHECKOUT
    index = tests.support.__doc__
    modules = sorted(p.stem for p in (CHECKOUT / "tests" / "support").glob("*.py")
                     if p.stem != "__init__")
    assert [m for m in modules if "``%s``" % m not in index] == []
    for part in ("paths", "xenstored", "fault_proxy", "fakeguest", "blockdev", "netns",
                 "collector", "xapi_oracle"):
        assert part in modules
