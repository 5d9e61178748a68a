"""The profiler's robust points: median of repeats, implausible points measured again, and TPOT counted
once the whole batch runs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from control_plane.profiler.grid import ProfileGrid
from control_plane.profiler.measure import _tpot
from control_plane.profiler.points import Robustness, implausible, measure_points


def test_plausible_grid_passes() -> None:
    # decode TPOT at (context, batch): grows with both, batch 4 costs less than 4 × batch 1
    values = {(128, 1): 2.2e-3, (128, 4): 3.0e-3, (512, 1): 2.8e-3, (512, 4): 4.1e-3}
    assert implausible(values, 0.2) == set()


def test_too_fast_batch_one_is_implausible() -> None:
    # the reading of a preempted profiler: batch 1 far below batch 4 / 4
    values = {(128, 1): 3.5e-5, (128, 4): 3.0e-3, (512, 1): 2.8e-3, (512, 4): 4.1e-3}
    bad = implausible(values, 0.2)
    assert (128, 1) in bad and (128, 4) in bad
    assert (512, 4) not in bad


def test_bigger_batch_faster_and_longer_prompt_faster_are_implausible() -> None:
    assert implausible({(64, 1): 10e-3, (64, 4): 6e-3}, 0.2) == {(64, 1), (64, 4)}
    assert implausible({(64, 1): 10e-3, (512, 1): 7e-3}, 0.2) == {(64, 1), (512, 1)}
    assert implausible({(64, 1): 10e-3, (64, 4): 9e-3}, 0.2) == set()  # within the noise allowed


def test_robustness_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="repeats"):
        Robustness(repeats=0)
    with pytest.raises(ValueError, match="retries"):
        Robustness(retries=-1)
    with pytest.raises(ValueError, match="tolerance"):
        ProfileGrid(tolerance=-0.1)


def _runs(readings: dict[tuple[int, int], list[float]]) -> tuple[dict[tuple[int, int], int], object]:
    calls: dict[tuple[int, int], int] = {}
    streams: dict[tuple[int, int], Iterator[float]] = {k: iter(v) for k, v in readings.items()}

    async def run(size: int, batch: int) -> float:
        calls[(size, batch)] = calls.get((size, batch), 0) + 1
        return next(streams[(size, batch)])

    return calls, run


def test_median_of_repeats_and_a_bad_point_measured_again() -> None:
    readings = {
        (128, 1): [4e-5, 3e-5, 2.3e-3, 2.2e-3, 2.1e-3, 2.2e-3],  # two bad runs first, then sane
        (128, 4): [3.0e-3, 3.1e-3, 2.9e-3, 3.0e-3, 3.0e-3, 3.0e-3],
    }
    calls, run = _runs(readings)
    values, still = asyncio.run(measure_points(list(readings), run, Robustness(repeats=3, retries=2)))  # type: ignore[arg-type]
    assert still == set()
    assert values[(128, 1)] == pytest.approx(2.15e-3)  # median of all 6 runs of the re-measured point
    assert values[(128, 4)] == pytest.approx(3.0e-3)
    assert calls == {(128, 1): 6, (128, 4): 6}  # one round of re-measuring, both ends of the pair


def test_a_point_still_implausible_is_kept_and_named() -> None:
    readings = {(64, 1): [9e-3] * 9, (64, 4): [5e-3] * 9}  # always a faster batch of 4
    calls, run = _runs(readings)
    heard: list[tuple[tuple[int, int], str]] = []
    values, still = asyncio.run(measure_points(list(readings), run, Robustness(repeats=3, retries=2),  # type: ignore[arg-type]
                                               lambda key, seconds, note: heard.append((key, note))))
    assert still == {(64, 1), (64, 4)} and values[(64, 4)] == 5e-3
    assert calls == {(64, 1): 9, (64, 4): 9}  # first runs plus two rounds of retries, no more
    # progress as measured: each first pass, each retry, then the points kept although implausible
    kept = "implausible after re-measuring; kept"
    assert heard == [((64, 1), ""), ((64, 4), ""), *[((64, 1), "re-measured"), ((64, 4), "re-measured")] * 2,
                     ((64, 1), kept), ((64, 4), kept)]


def test_tpot_counts_from_the_last_sequence_first_token() -> None:
    # sequence a starts at 0 and decodes every 1 ms, but its first 10 ms also prefilled b's prompt
    # (one 10 ms step); b's first token at 10 ms; from then on both decode every 1 ms
    a = [0.0, 0.010, *(0.010 + 0.001 * k for k in range(1, 21))]
    b = [0.010 + 0.001 * k for k in range(0, 21)]
    assert _tpot([a, b]) == pytest.approx(0.001)
    assert _tpot([a]) == pytest.approx((a[-1] - a[0]) / (len(a) - 1))  # alone: its whole span
