"""House rules that keep the code readable, pinned so that they stay true."""

import ast
import os

from tests.support.paths import CHECKOUT

#: The longest a function in the package may be (def line to last line).
MAX_FUNCTION_LINES = 60


def _modules(top):
    return sorted((CHECKOUT / top).rglob("*.py"))


def _long_functions(top):
    """``path:line name (n lines)`` of each function under ``top`` longer than the rule."""
    long = []
    for path in _modules(top):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.body[-1].end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append("%s:%d %s (%d lines)" % (
                        path.relative_to(CHECKOUT), node.lineno, node.name, lines))
    return long


def test_no_function_in_the_package_is_longer_than_60_lines():
    assert _long_functions("xe_oneshot") == []


def test_no_test_module_imports_another():
    """Shared test code lives in tests/support/; a test module is never imported."""
    found = []
    for path in _modules("tests"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + ["%s.%s" % (node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.rpartition(".")[2].startswith("test_") for n in names):
                found.append("%s:%d" % (path.relative_to(CHECKOUT), node.lineno))
    assert found == []


def _fixture_name(node):
    """The name a ``@pytest.fixture`` (or ``@fixture``) function is requested by, or
    None when the function is not a fixture."""
    for deco in node.decorator_list:
        call = deco if isinstance(deco, ast.Call) else None
        target = call.func if call else deco
        if (isinstance(target, ast.Attribute) and target.attr == "fixture") or \
                (isinstance(target, ast.Name) and target.id == "fixture"):
            for kw in call.keywords if call else ():
                if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                    return kw.value.value
            return node.name
    return None


def fixtures_defined_twice(paths):
    """Fixture names defined in more than one file: ``{name: ["file:line", ...]}``."""
    where = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = _fixture_name(node)
                if name:
                    where.setdefault(name, []).append((path, node.lineno))
    return {name: ["%s:%d" % (os.path.relpath(str(p), str(CHECKOUT)), line)
                   for p, line in places]
            for name, places in where.items() if len({p for p, _ in places}) > 1}


def test_no_fixture_name_is_defined_in_two_places():
    """A fixture name means one thing in the whole suite (conftest, the plugins of
    tests/support/ and every test module): a module's own ``guest`` that shadows
    another's makes a reader guess which one a test gets."""
    assert fixtures_defined_twice(_modules("tests")) == {}


def test_a_fixture_defined_twice_is_found(tmp_path):
    (tmp_path / "test_a.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef guest(tmp_path):\n    return 1\n")
    (tmp_path / "test_b.py").write_text(
        "from pytest import fixture\n\n@fixture(scope='module')\ndef guest():\n    return 2\n\n"
        "@fixture(name='daemon')\ndef _daemon():\n    return 3\n\n"
        "def helper(guest):\n    return guest\n")
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef daemon():\n    return 4\n")
    found = fixtures_defined_twice([tmp_path / n for n in ("test_a.py", "test_b.py",
                                                           "conftest.py")])
    assert sorted(found) == ["daemon", "guest"]


def test_no_function_in_the_bench_is_longer_than_60_lines():
    """bench/ is split into harness, scenarios and report; it keeps the package's rule."""
    assert _long_functions("bench") == []
