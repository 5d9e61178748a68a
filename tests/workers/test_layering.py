"""Inside `workers`, imports run one way: engine <- kv <- service (workers/README.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKERS = Path(__file__).resolve().parents[2] / "workers"
# package -> the workers packages it must never import
FORBIDDEN = {"engine": ("workers.kv", "workers.service"), "kv": ("workers.service",)}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_never_import_upper_ones(package: str) -> None:
    files = sorted((WORKERS / package).rglob("*.py"))
    assert files, f"workers/{package} has no modules"
    offending = [f"{path.relative_to(WORKERS)} imports {name}"
                 for path in files for name in sorted(imported_modules(path))
                 if name.startswith(FORBIDDEN[package])]
    assert offending == []
