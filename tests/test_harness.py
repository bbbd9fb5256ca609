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
