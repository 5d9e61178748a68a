"""The demand the planner sizes for: a forecast peak, not the mean.

Every tick the planner observes each class's arrival rate over a short window (`window_seconds`,
e.g. 5 s: the burst scale the SLO feels) and keeps those samples for `horizon_seconds` (the actuation
horizon: how far ahead a plan must hold, about the time to start workers and the next re-plan).
The planning rate of a class is

    peak = quantile `quantile` (e.g. 0.95) of its short-window samples over the horizon

with `common.stats.percentile` (linear interpolation). A class seen once counts 0 req/s in the ticks it
is absent, so a single burst does not pin the peak forever: it leaves the horizon. The planner plans
for max(peak, the Holt forecast of the long-window mean) × headroom, and records the basis in the
plan (`Plan.demand`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from common.stats import percentile


@dataclass(frozen=True)
class PeakConfig:
    quantile: float = 0.95
    window_seconds: float = 5.0
    horizon_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.quantile <= 1:
            raise ValueError(f"quantile: must be in (0, 1], got {self.quantile}")
        if self.window_seconds <= 0:
            raise ValueError(f"window_seconds: must be > 0, got {self.window_seconds}")
        if self.horizon_seconds < self.window_seconds:
            raise ValueError(f"horizon_seconds: must be >= window_seconds, got {self.horizon_seconds}")


class PeakTracker:
    """Short-window rate samples per class over the horizon. Owned by the planner loop."""

    def __init__(self, config: PeakConfig) -> None:
        self.config = config
        self._samples: dict[str, deque[tuple[float, float]]] = {}

    def observe(self, now: float, rates: Mapping[str, float]) -> None:
        """One sample per known class at `now` (seconds, monotonic); absent classes sample 0."""
        for name in set(self._samples) | set(rates):
            samples = self._samples.setdefault(name, deque())
            samples.append((now, max(0.0, float(rates.get(name, 0.0)))))
            while samples and samples[0][0] < now - self.config.horizon_seconds:
                samples.popleft()

    def peaks(self) -> dict[str, float]:
        """Class → the quantile of its samples (req/s)."""
        out = {}
        for name, samples in self._samples.items():
            value = percentile([r for _, r in samples], self.config.quantile)
            if value is not None:
                out[name] = value
        return out

    def describe(self) -> dict[str, float | str]:
        """The basis recorded in a plan (without the rates)."""
        c = self.config
        return {"basis": "peak", "quantile": c.quantile, "window_s": c.window_seconds,
                "horizon_s": c.horizon_seconds}
