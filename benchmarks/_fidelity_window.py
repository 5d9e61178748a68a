"""The trace window `bench fidelity` plans for, predicts and replays, chosen by a rule fixed in advance.

Rule (nothing here looks at a plan, a prediction or a measurement):
1. Trace: `--trace FILE` (any `placement.trace` format), default the bundled first 1,500 requests of
   the Azure 2023 conversation trace (heteroserve/embedded/data).
2. Lengths scaled to the tiny model and this machine exactly as `heteroserve demo` does
   (`heteroserve.embedded.workload.WorkloadConfig` defaults: prompt × 0.25 clipped to [24, 768],
   output × 0.1 clipped to [4, 32]).
3. Arrivals divided by `compression` (a flag, fixed before the run; 1.0 = the trace's own timing).
4. Window: `k` candidate windows of `seconds` (after compression), evenly spaced from the trace's start
   to its end; the one with the highest peak / mean arrival-rate ratio is taken (peak = the planner's
   rule, the `PEAK_QUANTILE` of rates over `PEAK_WINDOW_S` slices), first one on a tie.
5. Compression, when not given (`choose_compression`): the smallest of `COMPRESSIONS` whose
   compressed trace still spans the window, whose window's peak / mean is at least `min_peak_to_mean`
   (the caller gives the planner's utilisation headroom, 1 / `max_utilization`: a burst the mean-sized
   plan's headroom absorbs is no test of sizing; since 2026-12-07 17:36 UTC) and whose window the
   peak-sized and the mean-sized plans (a predicate the caller gives: the planner, no prediction, no
   measurement) size differently; 1.0 when none does (the contrast then does not exist on this
   machine, and the benchmark says so).
6. Compression and window by prediction (`choose_predicted`; the rule `bench fidelity` applies since
   2026-12-07 20:58 UTC, replacing step 5 there, which stays as its fallback): compressions of
   `COMPRESSIONS` ascending while the window lies inside the compressed trace, and at each the
   candidate windows of step 4 burstiest first; the first window for which the caller's predicate on
   plans and simulator predictions holds (nothing measured live enters it; `bench fidelity`'s
   docstring states the predicate).
Rows are (arrival seconds from the window's start, input tokens, output tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRACE = ROOT / "heteroserve" / "embedded" / "data" / "azure2023_conv_first1500.csv"
# the ladder of step 5, fixed in advance: every integer from 1 to 16 (until 2026-12-07 14:58 UTC: 1, 2,
# 4, 8, 16, whose steps jumped over ×3, where plans for a model ~4× tiny's step times first differ)
COMPRESSIONS = tuple(float(k) for k in range(1, 17))
PEAK_QUANTILE, PEAK_WINDOW_S = 0.95, 5.0  # the embedded planner's peak rule (deploy/examples/embedded.yaml)

Row = tuple[float, int, int]  # arrival s, input tokens, output tokens


@dataclass(frozen=True)
class Window:
    """The chosen window: its rows, where it starts in the (compressed) trace, and its rates."""

    rows: tuple[Row, ...]
    start_seconds: float
    seconds: float
    peak_rate: float
    mean_rate: float
    candidates: int

    @property
    def peak_to_mean(self) -> float:
        return self.peak_rate / self.mean_rate if self.mean_rate else 0.0


def scaled_rows(path: Path) -> list[Row]:
    """The trace's rows with the demo's length scaling (module docstring, step 2)."""
    from heteroserve.embedded.workload import WorkloadConfig
    from placement.trace import load_trace

    c = WorkloadConfig(trace=path, phases=())
    trace = load_trace(path)
    return [(a, min(max(round(i * c.input_scale), c.min_input), c.max_input),
             min(max(round(o * c.output_scale), c.min_output), c.max_output))
            for a, i, o in zip(trace.arrivals, trace.input_tokens, trace.output_tokens, strict=True)]


def peak_rate(arrivals: Sequence[float], seconds: float) -> float:
    """The planner's rule: the `PEAK_QUANTILE` of arrival rates over `PEAK_WINDOW_S` slices of the
    `seconds` span starting at 0 (arrivals relative to it)."""
    slices = max(1, int(seconds // PEAK_WINDOW_S))
    counts = [0] * slices
    for a in arrivals:
        counts[min(int(a // PEAK_WINDOW_S), slices - 1)] += 1
    return float(percentile([c / PEAK_WINDOW_S for c in counts], PEAK_QUANTILE) or 0.0)


def candidate_windows(rows: Sequence[Row], seconds: float, compression: float, k: int) -> list[Window]:
    """Steps 3-4 of the module docstring without the choice: every candidate window that holds a
    request, in trace order. Raises ValueError naming a bad argument."""
    if seconds <= 0:
        raise ValueError(f"window seconds must be > 0, got {seconds}")
    if compression <= 0:
        raise ValueError(f"compression must be > 0, got {compression}")
    if k < 1:
        raise ValueError(f"k (candidate windows) must be >= 1, got {k}")
    timed = [(a / compression, i, o) for a, i, o in rows]
    if not timed:
        raise ValueError("the trace has no requests")
    last = max(timed[-1][0] - seconds, 0.0)
    out: list[Window] = []
    for n in range(k):
        start = last * n / (k - 1) if k > 1 else 0.0
        inside = tuple((a - start, i, o) for a, i, o in timed if start <= a < start + seconds)
        if inside:
            mean = len(inside) / seconds
            out.append(Window(inside, start, seconds, peak_rate([r[0] for r in inside], seconds), mean, k))
    return out


def by_burstiness(windows: Sequence[Window]) -> list[Window]:
    """Highest peak / mean first; trace order on a tie."""
    return sorted(windows, key=lambda w: -w.peak_to_mean)


def pick_window(rows: Sequence[Row], seconds: float, compression: float, k: int) -> Window:
    """The rule of the module docstring (steps 3-4). Raises ValueError naming a bad argument."""
    windows = candidate_windows(rows, seconds, compression, k)
    if not windows:
        raise ValueError(f"no candidate window of {seconds} s holds a request")
    return by_burstiness(windows)[0]


def choose_predicted(rows: Sequence[Row], seconds: float, k: int,
                     contrast: Callable[[float, Window], bool]) -> tuple[float, Window] | None:
    """Step 6 of the module docstring: the first (compression, window), compressions of `COMPRESSIONS`
    ascending while the window lies inside the compressed trace, and at each the candidate windows
    burstiest first, for which `contrast(compression, window)` (the caller's predicate on plans and
    predictions only) holds; None when none does."""
    span = max((r[0] for r in rows), default=0.0)
    for c in COMPRESSIONS:
        if span / c < seconds:  # the window would reach past the trace: its mean rate would be wrong
            break
        for window in by_burstiness(candidate_windows(rows, seconds, c, k)):
            if contrast(c, window):
                return c, window
    return None


def choose_compression(rows: Sequence[Row], seconds: float, k: int,
                       plans_differ: Callable[[Window], bool], min_peak_to_mean: float = 0.0) -> float:
    """Step 5 of the module docstring: the smallest compression of `COMPRESSIONS` at which the whole
    window lies inside the compressed trace, its peak / mean is at least `min_peak_to_mean` and
    `plans_differ(window)`; 1.0 when none does."""
    span = max((r[0] for r in rows), default=0.0)
    for c in COMPRESSIONS:
        if span / c < seconds:  # the window would reach past the trace: its mean rate would be wrong
            break
        window = pick_window(rows, seconds, c, k)
        if window.peak_to_mean >= min_peak_to_mean and plans_differ(window):
            return c
    return 1.0
