"""``pytest -m "not slow"`` is the quick loop: it must still reach every test module."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def _is_slow_mark(node: ast.expr) -> bool:
    return ast.unparse(node).endswith("mark.slow")


def quick_tests(path: Path) -> list[str]:
    """Names of the test functions in ``path`` that ``-m "not slow"`` keeps."""
    tree = ast.parse(path.read_text())
    for stmt in tree.body:  # a module-wide pytestmark = pytest.mark.slow removes them all
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in stmt.targets):
            marks = stmt.value.elts if isinstance(stmt.value, (ast.List, ast.Tuple)) else [stmt.value]
            if any(_is_slow_mark(m) for m in marks):
                return []
    return [
        f.name
        for f in tree.body
        if isinstance(f, ast.FunctionDef)
        and f.name.startswith("test_")
        and not any(_is_slow_mark(d) for d in f.decorator_list)
    ]


def test_every_test_module_has_quick_tests():
    modules = sorted(TESTS.rglob("test_*.py"))
    assert len(modules) >= 30
    without = [str(p.relative_to(TESTS)) for p in modules if not quick_tests(p)]
    assert without == [], f"modules with only slow tests (the quick loop would skip them): {without}"


def test_the_slow_mark_is_seen(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text("import pytest\n\n@pytest.mark.slow\ndef test_a():\n    pass\n\ndef test_b():\n    pass\n")
    assert quick_tests(sample) == ["test_b"]
    sample.write_text("import pytest\npytestmark = [pytest.mark.slow]\n\ndef test_b():\n    pass\n")
    assert quick_tests(sample) == []
