"""Measured profiles: the rate search, and `heteroserve profile` against a real worker process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.profiler.profile import ProfileConfig, representative
from control_plane.profiler.search import SLO, Probe, SearchOptions, max_rate_within_slo
from placement.melange import load_profiles


def threshold_probe(capacity: float, seen: list[float]):  # type: ignore[no-untyped-def]
    async def probe(rate: float) -> Probe:
        seen.append(rate)
        return Probe(rate, rate <= capacity, 0.0, 0.0, 0)

    return probe


async def test_search_doubles_then_bisects() -> None:
    seen: list[float] = []
    rate, probes = await max_rate_within_slo(threshold_probe(5.0, seen), SearchOptions(start_rate=1.0))
    assert seen == [1.0, 2.0, 4.0, 8.0, 6.0, 5.0, 5.5]
    assert rate == 5.0 and len(probes) == 7


async def test_search_halves_below_start() -> None:
    seen: list[float] = []
    rate, _ = await max_rate_within_slo(threshold_probe(0.3, seen),
                                        SearchOptions(start_rate=1.0, min_rate=0.1, bisect_steps=1))
    assert seen == [1.0, 0.5, 0.25, 0.375]
    assert rate == 0.25


async def test_search_gives_zero_when_nothing_meets() -> None:
    rate, probes = await max_rate_within_slo(threshold_probe(0.0, []), SearchOptions(start_rate=1.0,
                                                                                    min_rate=0.5))
    assert rate == 0.0 and [p.rate for p in probes] == [1.0, 0.5]


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="input_edges"):
        ProfileConfig("cpu", 1.0, SLO(1, 1), input_edges=(0, 64, 32))
    with pytest.raises(ValueError, match="cost_per_hour"):
        ProfileConfig("cpu", 0.0, SLO(1, 1))
    assert representative(0, 64) == 8 and representative(64, 256) == 128


def run_profile(model: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "heteroserve.cli", "profile", "--model", str(model),
            "--node-type", "cpu-test", "--cost-per-hour", "0.5", "--out", str(out), *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_profile_a_real_worker(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    done = run_profile(tiny_model_dir, out, "--input-edges", "0,16,64", "--output-edges", "0,8",
                       "--probe-seconds", "1.5", "--start-rate", "2", "--max-doublings", "1",
                       "--ttft-slo-ms", "5000", "--tpot-slo-ms", "1000")
    assert done.returncode == 0, done.stderr[-2000:]
    profiles = load_profiles(out)
    tputs = profiles.tputs["cpu-test"]
    assert profiles.costs["cpu-test"] == 0.5
    assert len(tputs) == 2 and all(len(row) == 1 for row in tputs)
    assert all(rate >= 2.0 for row in tputs for rate in row), tputs  # a loose SLO holds at the start rate


@pytest.mark.slow
def test_impossible_slo_gives_zero(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    done = run_profile(tiny_model_dir, out, "--input-edges", "0,16", "--output-edges", "0,8",
                       "--probe-seconds", "1", "--start-rate", "1", "--min-rate", "1",
                       "--tpot-slo-ms", "0.001")
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_profiles(out).tputs["cpu-test"] == ((0.0,),)
    assert "misses the SLO" in done.stderr
