"""Find the highest rate one worker sustains for one length bucket under an SLO.

Algorithm: a rate "meets" the SLO when no request failed and the p90 TTFT and p90 TPOT of an open-loop
run at that rate are within the SLO. Start at `start_rate`; double while it meets (at most
`max_doublings` times), halve while it does not (down to `min_rate`, below which the bucket gets 0);
then bisect `bisect_steps` times between the last rate that met and the first that did not. The answer
is the highest rate that met. Every probe is a real measurement; nothing is extrapolated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

PERCENTILE = 0.9  # the SLO's quantile, q in [0, 1] as `common.stats.percentile` takes it (p90)


@dataclass(frozen=True)
class SLO:
    ttft_seconds: float
    tpot_seconds: float

    def __post_init__(self) -> None:
        if self.ttft_seconds <= 0 or self.tpot_seconds <= 0:
            raise ValueError(f"SLO values must be > 0, got ttft={self.ttft_seconds} tpot={self.tpot_seconds}")


@dataclass(frozen=True)
class SearchOptions:
    start_rate: float = 1.0
    min_rate: float = 0.25
    max_doublings: int = 8
    bisect_steps: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.min_rate <= self.start_rate:
            raise ValueError(f"need 0 < min_rate <= start_rate, got {self.min_rate}, {self.start_rate}")


@dataclass(frozen=True)
class Probe:
    rate: float
    met: bool
    ttft_p90_seconds: float
    tpot_p90_seconds: float
    failed: int


ProbeFn = Callable[[float], Awaitable[Probe]]


async def max_rate_within_slo(probe: ProbeFn, options: SearchOptions) -> tuple[float, list[Probe]]:
    """(highest rate that met the SLO or 0.0, every probe in order)."""
    probes: list[Probe] = []

    async def met(rate: float) -> bool:
        result = await probe(rate)
        probes.append(result)
        return result.met

    rate = options.start_rate
    if await met(rate):
        good, bad = rate, None
        for _ in range(options.max_doublings):
            if not await met(rate * 2):
                bad = rate * 2
                break
            rate *= 2
            good = rate
        if bad is None:
            return good, probes
    else:
        bad = rate
        while True:
            rate /= 2
            if rate < options.min_rate:
                return 0.0, probes
            if await met(rate):
                good = rate
                break
            bad = rate
    for _ in range(options.bisect_steps):
        mid = (good + bad) / 2
        if await met(mid):
            good = mid
        else:
            bad = mid
    return good, probes
