"""House rules that keep the code readable, pinned so that they stay true."""

import ast

from tests.support.paths import CHECKOUT

#: The longest a function in the package may be (def line to last line).
MAX_FUNCTION_LINES = 60


def _modules(top):
    return sorted((CHECKOUT / top).rglob("*.py"))


def test_no_function_in_the_package_is_longer_than_60_lines():
    long = []
    for path in _modules("xe_oneshot"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.body[-1].end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append("%s:%d %s (%d lines)" % (
                        path.relative_to(CHECKOUT), node.lineno, node.name, lines))
    assert long == []


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
