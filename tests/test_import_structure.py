"""The package's import structure: data flows one way (backend -> functions -> layers -> models
-> optim -> data -> train -> export -> cli), so a module imports only modules of its own level or
below -- at the top of the file or inside a function alike -- and no modules import each other
round a cycle.  Read from the sources (ast), nothing imported."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import cnn_xp

PACKAGE = Path(cnn_xp.__file__).parent

# Levels, lowest first: a module of cnn_xp/<part> may import parts of its own level or a lower one.
LEVELS = [
    {"_version", "registry"},
    {"backend", "threads", "heap", "serialization", "distributed"},
    {"checks", "init"},
    {"functions"},
    {"layers"},
    {"models"},
    {"optim"},
    {"datasets", "data"},
    {"train"},
    {"export"},
    {"book"},
    {"cli"},
    {"", "bench", "convert", "doctor", "evaluate", "predict", "__main__"},  # the package and its program shims
]
LEVEL = {part: i for i, parts in enumerate(LEVELS) for part in parts}


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _type_checking_only(node: ast.AST, tree: ast.Module) -> bool:
    return any(
        isinstance(block, ast.If)
        and "TYPE_CHECKING" in ast.unparse(block.test)
        and any(node is inner for stmt in block.body for inner in ast.walk(stmt))
        for block in ast.walk(tree)
    )


def imports() -> dict[str, set[str]]:
    """module -> the cnn_xp modules it imports at run time (a package's submodule where named)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = _name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                named = [f"{source}.{a.name}" for a in node.names]
                targets = named if all(_is_module(n) for n in named) else [source]
            else:
                continue
            if _type_checking_only(node, tree):
                continue
            graph[module] |= {t for t in targets if t.split(".")[0] == "cnn_xp" and t != module}
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_part_has_a_level():
    parts = {_part(_name(p)) for p in PACKAGE.rglob("*.py")}
    assert parts <= set(LEVEL), f"parts without a level: {sorted(parts - set(LEVEL))}"


def test_no_module_imports_a_higher_level():
    upward = [
        f"{src} imports {dst}"
        for src, targets in imports().items()
        for dst in targets
        if not src.endswith("__main__") and LEVEL[_part(dst)] > LEVEL[_part(src)]
    ]
    assert upward == []


def test_no_import_cycles():
    edges = imports()
    cycles, index, low, stack, on_stack, counter = [], {}, {}, [], set(), [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    assert cycles == []
