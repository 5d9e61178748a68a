"""The one percentile of the project, so that a "p99" means the same in every report, the simulator,
the profiler and every benchmark.

`percentile(values, q)` takes q in [0, 1] (0.99 is p99) and interpolates linearly between the two
nearest order statistics: rank (n - 1) * q of the sorted values, the definition numpy uses by default
("linear", Hyndman & Fan type 7). It returns None for no values, so an empty sample is never reported
as a latency of 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-quantile (q in [0, 1]) of `values`, linearly interpolated; None when `values` is empty.

    Raises ValueError for q outside [0, 1] or a NaN value. Does not modify `values`."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q: must be in [0, 1] (0.99 is p99), got {q!r}")
    ordered = sorted(values)
    if not ordered:
        return None
    if any(math.isnan(v) for v in ordered):
        raise ValueError("values: contains NaN")
    rank = (len(ordered) - 1) * q
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)
