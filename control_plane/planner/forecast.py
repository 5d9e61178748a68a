"""Smoothing and short-term forecast of per-class arrival rates (Holt's linear method).

For each request class, every observation x_t (requests/s over the traffic window) updates

    level_t = alpha * x_t + (1 - alpha) * (level_{t-1} + trend_{t-1})
    trend_t = beta * (level_t - level_{t-1}) + (1 - beta) * trend_{t-1}

and the forecast `horizon` observations ahead is max(0, level + horizon * trend). The planner plans
for max(level, forecast) — it provisions for a rising trend early and never plans below the
smoothed present. A class first seen starts at level = x, trend = 0; a class missing from an
observation counts as x = 0 (its level decays towards zero at rate alpha).

`significant_change(planned, now)` says whether the rates moved enough since the last solve to solve
again before the interval: some class's rate differs by more than `relative_threshold` of the rate
planned for, and by more than `absolute_threshold_rps` (so that noise around zero never triggers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ForecastConfig:
    alpha: float = 0.6
    beta: float = 0.2
    horizon: float = 0.5
    relative_threshold: float = 0.25
    absolute_threshold_rps: float = 0.05

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if self.horizon < 0:
            raise ValueError(f"horizon must be >= 0, got {self.horizon}")
        if self.relative_threshold <= 0:
            raise ValueError(f"relative_threshold must be > 0, got {self.relative_threshold}")
        if self.absolute_threshold_rps < 0:
            raise ValueError(f"absolute_threshold_rps must be >= 0, got {self.absolute_threshold_rps}")


class RateForecaster:
    """Per-class Holt smoother. Not thread-safe; owned by the planner loop."""

    def __init__(self, config: ForecastConfig) -> None:
        self.config = config
        self._level: dict[str, float] = {}
        self._trend: dict[str, float] = {}

    def observe(self, rates: Mapping[str, float]) -> None:
        """Fold in one observation (class -> requests/s). Classes absent from `rates` observe 0."""
        a, b = self.config.alpha, self.config.beta
        for name in set(self._level) | set(rates):
            x = max(0.0, float(rates.get(name, 0.0)))
            if name not in self._level:
                self._level[name], self._trend[name] = x, 0.0
                continue
            previous = self._level[name]
            level = a * x + (1 - a) * (previous + self._trend[name])
            self._level[name] = max(0.0, level)
            self._trend[name] = b * (self._level[name] - previous) + (1 - b) * self._trend[name]

    def smoothed(self) -> dict[str, float]:
        return dict(self._level)

    def planning_rates(self) -> dict[str, float]:
        """max(level, forecast) per class: the rates to provision for."""
        h = self.config.horizon
        return {name: max(level, level + h * self._trend[name]) for name, level in self._level.items()}


def significant_change(planned: Mapping[str, float], now: Mapping[str, float],
                       config: ForecastConfig) -> bool:
    """True if some class's rate moved by more than both thresholds since `planned`."""
    for name in set(planned) | set(now):
        before, after = planned.get(name, 0.0), now.get(name, 0.0)
        delta = abs(after - before)
        if delta > config.absolute_threshold_rps and delta > config.relative_threshold * max(before, 1e-9):
            return True
    return False
