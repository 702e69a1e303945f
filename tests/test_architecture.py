"""The dependency direction of ../shared/ARCHITECTURE.md, enforced by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "t2igan"

# layers from bottom to top; a module may import only from its own layer or lower ones
LAYERS: list[set[str]] = [
    {"utils", "config", "registry"},
    {"text"},
    {"data", "models"},
    {"losses"},
    {"objectives", "convert"},
    {"evaluation"},
    {"training"},
    {"presets", "pipeline"},
    {"cli", "demo"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _top(module_path: Path) -> str:
    rel = module_path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}:{node.lineno}: relative import; use absolute 't2igan.' imports")
    return out


def test_every_package_has_a_layer():
    tops = {_top(p) for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC}
    unknown = sorted(tops - set(RANK))
    assert not unknown, f"modules outside the documented layers: {unknown}; add them to docs/architecture.md"


def test_imports_point_down():
    violations = []
    for path in SRC.rglob("*.py"):
        if path.parent == SRC and path.name == "__init__.py":
            continue
        here = _top(path)
        for lineno, mod in _imports(path):
            parts = mod.split(".")
            if parts[0] != "t2igan" or len(parts) < 2:
                continue
            there = parts[1]
            if there not in RANK:
                continue
            if RANK[there] > RANK[here]:
                violations.append(f"{path.relative_to(SRC)}:{lineno}: {here} imports {mod}")
    assert not violations, "imports against the layer order:\n" + "\n".join(violations)


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from t2igan.cli import main\n")
    assert _imports(bad) == [(1, "t2igan.cli")]
    with pytest.raises(AssertionError, match="relative import"):
        rel = tmp_path / "rel.py"
        rel.write_text("from .x import y\n")
        _imports(rel)
