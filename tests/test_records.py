"""``@record``: the small dataclass stand-in."""

import pytest


def test_record_behaves_like_the_dataclass_parts_we_use():
    from xe_oneshot.records import field, record

    @record
    class Vol:
        name: str
        size: int = 0
        points: list = field(default_factory=list)

    a, b = Vol("xvda", points=["/"]), Vol(name="xvda")
    assert (a.name, a.size, a.points, b.points) == ("xvda", 0, ["/"], [])
    assert Vol("x").points is not Vol("x").points
    assert a != b and Vol("xvda", 0, []) == b
    assert repr(b) == "Vol(name='xvda', size=0, points=[])"
    with pytest.raises(TypeError, match="missing argument 'name'"):
        Vol()
    with pytest.raises(TypeError, match="unexpected argument 'colour'"):
        Vol("x", colour=1)

    @record(frozen=True)
    class Key:
        path: str

    assert Key("a") == Key("a") and len({Key("a"), Key("a")}) == 1
    with pytest.raises(AttributeError):
        Key("a").path = "b"
