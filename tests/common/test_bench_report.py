"""The benchmark table's verdicts."""

from __future__ import annotations

from benchmarks._report import meets, target_table


def test_verdicts() -> None:
    targets = {"ratio": (">=", 2.0), "ms": ("<=", 2.0)}
    assert meets(2.0, targets["ratio"]) and not meets(1.99, targets["ratio"])
    assert meets(2.0, targets["ms"]) and not meets(2.01, targets["ms"])
    table = target_table({"ratio": 2.5, "ms": 2.4, "other": 7}, targets, key_width=8)
    lines = table.splitlines()
    assert lines[1].endswith(">= 2.0 ok") and lines[2].endswith("<= 2.0 MISSED")
    assert lines[3].split() == ["other", "7"]
