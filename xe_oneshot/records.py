"""``@record``: the part of ``@dataclass`` the project uses, for a fraction of the cost.

Importing ``dataclasses`` pulls in ``inspect``, ``ast``, ``re`` and more: 10-20 ms,
more than the whole rest of a ``memory`` run, which starts on every timer tick. A
record is declared the same way::

    @record
    class Volume:
        name: str
        size: int = 0
        mount_points: "List[str]" = field(default_factory=list)

and gets ``__init__`` (positional in declaration order, or by keyword), ``__repr__`` and
``__eq__``; ``@record(frozen=True)`` also forbids assignment and makes it hashable.
Annotations are only read for their names: modules write those that name ``typing``
as strings (``mount_points: "List[str]"``) and import ``typing`` only under
``TYPE_CHECKING``, so it is not imported at run time (Python 3.6 has no
``from __future__ import annotations``).

Type checkers see ``record`` as a ``dataclass_transform`` (PEP 681), declared under
``TYPE_CHECKING`` only: nothing of it exists at run time.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, overload
    from typing import dataclass_transform     # typing_extensions' before 3.11: unused
    _T = TypeVar("_T")

_MISSING = object()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


def _field(default=_MISSING, default_factory=None):
    """A field's default (``field(default_factory=list)`` for a fresh list each time)."""
    if default_factory is not None:
        return _Factory(default_factory)
    return default


def _record(cls=None, *, frozen: bool = False):
    """Make ``cls`` a record (see the module docstring)."""
    if cls is None:
        return lambda c: _make(c, frozen)
    return _make(cls, frozen)


def _fields(cls) -> "Tuple[Tuple[str, ...], Dict[str, Any]]":
    """The record's field names (the bases' first, in declaration order) and defaults;
    ``field(default_factory=...)`` markers are taken off the class."""
    names: "List[str]" = []
    defaults: "Dict[str, Any]" = {}
    for base in reversed(cls.__mro__[1:]):
        for name in getattr(base, "__record_fields__", ()):
            if name not in names:
                names.append(name)
        defaults.update(getattr(base, "__record_defaults__", {}))
    for name, kind in cls.__dict__.get("__annotations__", {}).items():
        if "ClassVar" in str(kind):
            continue
        if name not in names:
            names.append(name)
        if name in cls.__dict__:
            defaults[name] = cls.__dict__[name]
            if isinstance(defaults[name], _Factory):
                delattr(cls, name)
    return tuple(names), defaults


def _make(cls, frozen: bool):
    fields, defaults = _fields(cls)
    cls.__record_fields__ = fields
    cls.__record_defaults__ = defaults
    setter = object.__setattr__

    def __init__(self, *args, **kwargs):
        if len(args) > len(fields):
            raise TypeError("%s takes %d arguments" % (cls.__name__, len(fields)))
        for name, value in zip(fields, args):
            setter(self, name, value)
        for name in fields[len(args):]:
            if name in kwargs:
                value = kwargs.pop(name)
            elif name in defaults:
                value = defaults[name]
                if isinstance(value, _Factory):
                    value = value.make()
            else:
                raise TypeError("%s: missing argument %r" % (cls.__name__, name))
            setter(self, name, value)
        if kwargs:
            raise TypeError("%s: unexpected argument %r" % (cls.__name__, next(iter(kwargs))))
        post_init = getattr(self, "__post_init__", None)
        if post_init is not None:
            post_init()

    def __repr__(self):
        return "%s(%s)" % (cls.__name__, ", ".join(
            "%s=%r" % (name, getattr(self, name)) for name in fields))

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in fields)

    cls.__init__ = __init__
    cls.__repr__ = __repr__
    cls.__eq__ = __eq__
    if frozen:
        _freeze(cls, fields)
    else:
        cls.__hash__ = None
    return cls



def _freeze(cls, fields: "Tuple[str, ...]") -> None:
    """Forbid assignment and make the record hashable (``@record(frozen=True)``)."""
    def __setattr__(self, name, value):
        raise AttributeError("%s is frozen: cannot set %s" % (cls.__name__, name))

    def __delattr__(self, name):
        raise AttributeError("%s is frozen: cannot delete %s" % (cls.__name__, name))

    def __hash__(self):
        return hash(tuple(getattr(self, n) for n in fields))

    cls.__setattr__ = __setattr__
    cls.__delattr__ = __delattr__
    cls.__hash__ = __hash__


if TYPE_CHECKING:
    def field(*, default: "Any" = ..., default_factory: "Optional[Callable[[], Any]]" = ...
              ) -> "Any":
        """See :func:`_field`."""

    @overload
    @dataclass_transform(field_specifiers=(field,))
    def record(cls: "type[_T]") -> "type[_T]": ...

    @overload
    @dataclass_transform(field_specifiers=(field,))
    def record(*, frozen: bool = False) -> "Callable[[type[_T]], type[_T]]": ...

    @dataclass_transform(field_specifiers=(field,))
    def record(cls: "Any" = None, *, frozen: bool = False) -> "Any":
        """See :func:`_record`."""
else:
    field = _field
    record = _record
