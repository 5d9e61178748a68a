"""A grid of measured points made robust to a shared machine: median of repeats, implausible points
measured again.

On a loaded machine a single run can be wildly off in either direction: a preempted profiler reads a
whole stream at once (a decode-only TPOT of 0.035 ms at batch 1, below the same worker's batch 4), or a
busy core doubles a step. The fastest of the repeats (the rule until 2026-12-07) kept exactly those
too-fast readings, and they flipped the planner's P/D choice between two runs. So:

1. every point is the **median** of `repeats` runs;
2. the points are checked against what batching can do (`implausible`), with the value of a point being
   seconds per batch (prefill) or per step (decode), at (size, batch) with size the prompt or the
   context length. For two batches b < b' at one size: v(b') ≥ v(b) / (1 + tol) (a bigger batch is not
   faster) and v(b') ≤ v(b) · (b'/b) · (1 + tol) (batching is not worse than running the sequences one
   after another). For two sizes s < s' at one batch: v(s') ≥ v(s) / (1 + tol) (more tokens are not
   faster);
3. each point in a violated pair is measured `repeats` more times and its median taken over all its
   runs, up to `retries` rounds; what is still implausible then is kept and named (the caller says so).
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

Key = tuple[int, int]  # (size: prompt or context tokens, batch)


@dataclass(frozen=True)
class Robustness:
    """How many runs make a point and how much noise the plausibility checks allow."""

    repeats: int = 3
    retries: int = 2
    tolerance: float = 0.2

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats: must be >= 1, got {self.repeats}")
        if self.retries < 0:
            raise ValueError(f"retries: must be >= 0, got {self.retries}")
        if not 0 <= self.tolerance < 10:
            raise ValueError(f"tolerance: must be in [0, 10), got {self.tolerance}")


def implausible(values: Mapping[Key, float], tolerance: float) -> set[Key]:
    """The points of every violated pair of the module docstring's rules (step 2)."""
    bad: set[Key] = set()
    slack = 1.0 + tolerance
    keys = sorted(values)
    for a in keys:
        for b in keys:
            (sa, ba), (sb, bb) = a, b
            va, vb = values[a], values[b]
            if sa == sb and ba < bb and (vb < va / slack or vb > va * (bb / ba) * slack):
                bad |= {a, b}
            if ba == bb and sa < sb and vb < va / slack:
                bad |= {a, b}
    return bad


Report = Callable[[Key, float, str], None]  # (key, median so far in seconds, note) as each point is measured


async def measure_points(keys: Sequence[Key], run: Callable[[int, int], Awaitable[float]],
                         rules: Robustness,
                         report: Report | None = None) -> tuple[dict[Key, float], set[Key]]:
    """(median per key, keys still implausible after the retries); `run(size, batch)` measures once.
    `report` hears each point as soon as it is measured (note "" the first time, "re-measured" after a
    retry, "implausible after re-measuring; kept" at the end), so a long grid shows progress."""
    samples: dict[Key, list[float]] = {k: [] for k in keys}
    tell = report or (lambda key, seconds, note: None)

    async def more(k: Key, note: str) -> None:
        samples[k] += [await run(*k) for _ in range(rules.repeats)]
        tell(k, statistics.median(samples[k]), note)

    for k in keys:
        await more(k, "")
    for _ in range(rules.retries):
        bad = implausible(_medians(samples), rules.tolerance)
        if not bad:
            break
        for k in sorted(bad):
            await more(k, "re-measured")
    values = _medians(samples)
    still = implausible(values, rules.tolerance)
    for k in sorted(still):
        tell(k, values[k], "implausible after re-measuring; kept")
    return values, still


def _medians(samples: Mapping[Key, list[float]]) -> dict[Key, float]:
    return {k: statistics.median(v) for k, v in samples.items()}
