"""cache/ layers do not import upwards (see cache/README.md), and cache imports no other component."""

from __future__ import annotations

import ast
from pathlib import Path

CACHE = Path(__file__).resolve().parents[2] / "cache"
LAYER = {
    "cache.hashing": 0, "cache.serde": 0, "cache.metrics": 0,
    "cache.tiers": 1,
    "cache.store": 2, "cache.config": 2, "cache.events": 2,
    "cache.prefix_index": 3, "cache.index_sync": 3, "cache._block_table": 3,
}
ALLOWED_OUTSIDE = ("common.errors", "common.config", "common.logs", "common.localredis")


def _layer(module: str) -> int:
    for prefix, layer in LAYER.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} has no layer: add it to LAYER and to cache/README.md")


def test_layers_do_not_import_upwards() -> None:
    checked = 0
    for path in CACHE.rglob("*.py"):
        if path.name == "__init__.py" and path.parent == CACHE:
            continue
        module = ".".join(path.relative_to(CACHE.parent).with_suffix("").parts).removesuffix(".__init__")
        own = _layer(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "cache":  # from cache import serde
                names = [f"cache.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.startswith("cache"):
                    theirs = _layer(name)
                    assert theirs <= own, f"{module} (layer {own}) imports {name} (layer {theirs})"
                elif name.startswith(("heteroserve", "workers", "control_plane", "placement")):
                    assert name.startswith(ALLOWED_OUTSIDE), f"{module} imports {name}"
                checked += 1
    assert checked > 20
