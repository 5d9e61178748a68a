"""Goodput under SLOs, from a replay's per-request results (`benchmarks/_replay.py`).

A request is *good* when it completed without error, its TTFT ≤ `SLO.ttft_s` and its TPOT ≤
`SLO.tpot_s` (a one-token reply has no TPOT and is judged by TTFT alone). Goodput = good requests /
the arrival span of the windows replayed (seconds from a window's first to its last arrival, after
time compression, summed over windows): the span is fixed by the trace, the same for every system,
so a system that falls behind is not also rewarded with a longer denominator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SLO:
    """Latency objectives of one request, in seconds; both > 0."""

    ttft_s: float
    tpot_s: float

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tpot_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0 seconds, got {getattr(self, name)}")


def is_good(result: Mapping[str, Any], slo: SLO) -> bool:
    """Whether one request met both SLOs (see the module docstring)."""
    if result.get("error") is not None or result.get("ttft") is None:
        return False
    tpot = result.get("tpot")
    return bool(result["ttft"] <= slo.ttft_s and (tpot is None or tpot <= slo.tpot_s))


def goodput(results: Sequence[Mapping[str, Any]], span_s: float, slo: SLO) -> dict[str, Any]:
    """`goodput_rps` (good requests / `span_s`), `good`, `requests` and `slo_attainment` (good /
    requests). Raises ValueError when `span_s` <= 0."""
    if not span_s > 0:
        raise ValueError(f"span_s: must be > 0 seconds, got {span_s}")
    good = sum(is_good(r, slo) for r in results)
    return {"goodput_rps": good / span_s, "good": good, "requests": len(results),
            "slo_attainment": good / len(results) if results else None}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator; None when either is missing or the denominator is 0 (no finite ratio)."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator
