"""The readable table every benchmark prints: one row per key, with its target and a verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Target = tuple[str, float]  # ("<=" | ">=", limit)


def meets(value: float, target: Target) -> bool:
    op, limit = target
    return value <= limit if op == "<=" else value >= limit


def target_table(result: Mapping[str, Any], targets: Mapping[str, Target], key_width: int = 28) -> str:
    """`key  value  [op limit ok|MISSED]` per entry of `result`, in order."""
    rows = [f"{'metric':<{key_width}} {'value':>14}  target"]
    for key, value in result.items():
        target = targets.get(key)
        mark = f"{target[0]} {target[1]} {'ok' if meets(value, target) else 'MISSED'}" if target else ""
        rows.append(f"{key:<{key_width}} {value!s:>14}  {mark}")
    return "\n".join(rows)
