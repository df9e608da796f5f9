"""Nothing cnn_xp reads can execute code: no pickle, eval or friends anywhere in the package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cnn_xp"
FORBIDDEN = {
    r"\bimport\s+(c?pickle|dill|cloudpickle|shelve|marshal|joblib)\b": "a pickle-family module",
    r"\bfrom\s+(c?pickle|dill|cloudpickle|shelve|marshal|joblib)\b": "a pickle-family module",
    r"allow_pickle\s*=\s*True": "numpy.load(allow_pickle=True)",
    r"(?<!def )(?<![\w.])eval\s*\(": "eval()",  # not `def eval(self)` (train/eval mode)
    r"(?<!def )(?<![\w.])exec\s*\(": "exec()",
    r"__import__\s*\(": "__import__()",
    r"\btorch\.load\s*\(": "torch.load()",
    r"\byaml\.(unsafe_)?load\s*\(": "yaml.load()",
    r"(?<![\w.])compile\s*\(": "compile()",  # builtin compile, not re.compile
}
SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_sources():
    assert len(SOURCES) > 20


# The one module that reads pickles — the book's weight files — does it with an unpickler that
# resolves only inert stand-ins (tests/book/test_weights.py feeds it malicious pickles).
RESTRICTED_UNPICKLER = Path("book/weights.py")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_code_executing_loaders(path):
    text = path.read_text()
    for pattern, what in FORBIDDEN.items():
        if path.relative_to(PACKAGE) == RESTRICTED_UNPICKLER and what == "a pickle-family module":
            continue
        for m in re.finditer(pattern, text):
            line = text.count("\n", 0, m.start()) + 1
            pytest.fail(f"{path.relative_to(PACKAGE.parent)}:{line}: uses {what}")


def test_numpy_loads_refuse_pickles():
    """Every numpy.load in the package passes allow_pickle=False explicitly."""
    for path in SOURCES:
        for m in re.finditer(r"numpy\.load\(([^)]*)\)", path.read_text()):
            assert "allow_pickle=False" in m.group(1), f"{path}: numpy.load without allow_pickle=False"


def test_the_restricted_unpickler_never_uses_the_plain_one():
    """book/weights.py subclasses pickle.Unpickler with its own find_class and persistent_load,
    and never calls pickle.load/loads or the plain Unpickler."""
    text = (PACKAGE / RESTRICTED_UNPICKLER).read_text()
    assert re.search(r"class _Unpickler\(pickle\.Unpickler\):\n    def find_class", text)
    assert "def persistent_load" in text
    for plain in ("pickle.load(", "pickle.loads(", "pickle.Unpickler("):
        assert plain not in text, plain
