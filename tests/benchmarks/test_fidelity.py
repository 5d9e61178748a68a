"""`bench fidelity`: the window rule, the measured figures and the share deviation (pure parts), and one
--quick run with real processes (slow): Redis, gateway, actuator-started workers pinned to cores."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks import fidelity
from benchmarks._fidelity_predict import Calibration, calibration, probe_rows
from benchmarks._fidelity_replay import Served, measure, share_deviation
from benchmarks._fidelity_window import (
    DEFAULT_TRACE,
    Window,
    choose_compression,
    choose_predicted,
    peak_rate,
    pick_window,
    scaled_rows,
)

SEEDED_PROFILES = Path(__file__).resolve().parent.parent / "e2e" / "data"


def test_the_window_is_the_burstiest_of_the_evenly_spaced_candidates() -> None:
    steady = [(float(t), 100, 10) for t in range(0, 100)]  # 1 req/s over 100 s
    burst = [(60.0 + k * 0.1, 200, 20) for k in range(20)]  # 20 more in 60-62 s
    rows = sorted(steady + burst)
    window = pick_window(rows, 20.0, 1.0, 5)  # candidates start at 0, 19.75, 39.5, 59.25, 79
    assert window.start_seconds == pytest.approx(59.25)
    assert len(window.rows) == 20 + 20 and window.rows[0][0] == pytest.approx(0.75)
    assert window.mean_rate == pytest.approx(2.0)
    # arrivals halved (2 req/s, the burst at 30 s): candidates at 0, 9.875, 19.75, 29.625, 39.5
    compressed = pick_window(rows, 10.0, 2.0, 5)
    assert compressed.start_seconds == pytest.approx(29.625) and compressed.mean_rate == pytest.approx(4.0)
    with pytest.raises(ValueError, match="compression"):
        pick_window(rows, 10.0, 0.0, 5)
    with pytest.raises(ValueError, match="candidate"):
        pick_window(rows, 10.0, 1.0, 0)


def test_the_compression_is_the_smallest_of_the_ladder_where_the_plans_differ() -> None:
    rows = [(float(t), 100, 10) for t in range(0, 200)]  # 200 s at 1 req/s
    seen: list[float] = []

    def differ(window: Window) -> bool:
        seen.append(window.mean_rate)
        return window.mean_rate >= 3.9

    assert choose_compression(rows, 40.0, 3, differ) == 4.0 and seen == pytest.approx([1.0, 2.0, 3.0, 4.0])
    # a window longer than the compressed trace ends the ladder (199 s / 5 < 40 s): none differs → 1.0
    assert choose_compression(rows, 40.0, 3, lambda w: w.mean_rate > 100) == 1.0
    # a steady trace's windows (peak / mean 1.0) never exceed the planner's headroom: no plan is asked
    seen.clear()
    assert choose_compression(rows, 40.0, 3, differ, min_peak_to_mean=1.25) == 1.0 and seen == []
    bursty = sorted(rows + [(100.0 + 0.01 * k, 100, 10) for k in range(100)])  # 100 more at 100-101 s
    assert choose_compression(bursty, 40.0, 3, differ, min_peak_to_mean=1.25) == 2.0  # mean ≥ 3.9: ×2


def test_the_prediction_rule_takes_the_first_compression_and_the_burstiest_window_that_qualify() -> None:
    steady = [(float(t), 100, 10) for t in range(0, 200)]  # 200 s at 1 req/s
    rows = sorted(steady + [(150.0 + 0.01 * k, 100, 10) for k in range(30)])  # a burst at 150 s
    seen: list[tuple[float, float]] = []

    def contrast(c: float, window: Window) -> bool:
        seen.append((c, window.peak_to_mean))
        return c >= 2.0

    c, window = choose_predicted(rows, 40.0, 5, contrast) or (0.0, None)
    assert c == 2.0 and window is not None and window.peak_to_mean == max(w for k, w in seen if k == 2.0)
    # at every compression the candidates are asked burstiest first, and ×1 was asked in full before ×2
    assert [k for k, _ in seen] == [1.0] * 5 + [2.0]
    ratios = [w for k, w in seen if k == 1.0]
    assert ratios == sorted(ratios, reverse=True) and ratios[0] > ratios[-1]
    # none qualifies before the window outgrows the compressed trace (199 s / 5 < 40 s): None
    seen.clear()

    def never(c: float, window: Window) -> bool:
        seen.append((c, window.peak_to_mean))
        return False

    assert choose_predicted(rows, 40.0, 5, never) is None
    assert max(k for k, _ in seen) == 4.0


def test_the_prediction_rule_asks_the_planner_and_the_simulator(tmp_path: Path) -> None:
    """`predicted_contrast` on real plans and simulations (seeded tiny profiles): equal plans stop it
    before any simulation; different plans are simulated, and the predicate is the rule's bounds."""
    from benchmarks._fidelity_predict import planning_inputs, sizing_inputs

    inputs = sizing_inputs(planning_inputs(sorted(SEEDED_PROFILES.glob("*.json")), tmp_path / "model"), 2)
    calm = pick_window([(0.5 * t, 100, 10) for t in range(120)], 60.0, 1.0, 1)  # 2 req/s, steady
    got = fidelity.predicted_contrast(inputs, calm, 2, 256)
    assert got["contrast"] is False and got["peak_plan_pools"] == got["mean_plan_pools"]
    assert "peak_predicted_attainment" not in got

    def burst(base: int, factor: int) -> Window:  # `base` req/s for 60 s, `factor` × that for 5 s at 30 s
        extra = base * 5 * (factor - 1)
        return pick_window(sorted([(t / base, 200, 20) for t in range(60 * base)]
                                  + [(30 + 5 / extra * k, 200, 20) for k in range(extra)]), 60.0, 1.0, 1)

    # a mild burst: 2 workers for the peak, 1 for the mean, and the one worker is predicted to cope
    mild = fidelity.predicted_contrast(inputs, burst(40, 2), 2, 256)
    assert mild["peak_plan_pools"] != mild["mean_plan_pools"] and mild["contrast"] is False
    assert mild["peak_predicted_attainment"] >= fidelity.RULE_PEAK_MIN
    assert mild["mean_predicted_attainment"] > fidelity.RULE_MEAN_MAX
    # a burst of 8x the base rate: the one worker of the mean plan is predicted to miss clearly
    sharp = fidelity.predicted_contrast(inputs, burst(20, 8), 2, 256)
    assert sharp["contrast"] is True and sharp["peak_plan_pools"] != sharp["mean_plan_pools"]
    assert sharp["peak_predicted_attainment"] >= fidelity.RULE_PEAK_MIN
    assert sharp["mean_predicted_attainment"] <= fidelity.RULE_MEAN_MAX
    # beyond what two cores host: infeasible, no contrast
    assert "infeasible" in fidelity.predicted_contrast(inputs, burst(40, 8), 2, 256)


def test_sizing_inputs_drop_the_availability_floor_and_cap_the_inventory_by_cores(tmp_path: Path) -> None:
    from benchmarks._fidelity_predict import planning_inputs, sizing_inputs

    inputs = planning_inputs(sorted(SEEDED_PROFILES.glob("*.json")), tmp_path / "model")
    assert inputs.solver_options.min_replicas == 2 and inputs.inventory["cpu-local"] == 6
    sized = sizing_inputs(inputs, 2)
    assert sized.solver_options.min_replicas == 1
    assert sized.inventory == {"cpu-local": 2, "csd-local": 1}
    with pytest.raises(ValueError, match="cores"):
        sizing_inputs(inputs, 0)


def test_peak_rate_is_the_planners_p95_of_5s_rates() -> None:
    arrivals = [0.1] * 10 + [6.0] * 5  # slices 0-5 s: 10, 5-10 s: 5 → 2 and 1 req/s
    assert peak_rate(arrivals, 10.0) == pytest.approx(1.0 + 0.95 * 1.0)


def test_the_bundled_trace_is_scaled_as_the_demo_scales_it() -> None:
    rows = scaled_rows(DEFAULT_TRACE)
    assert len(rows) == 1500 and rows[0] == (0.0, round(374 * 0.25), round(44 * 0.1))
    assert all(24 <= i <= 768 and 4 <= o <= 32 for _, i, o in rows)
    probe = probe_rows(rows[:5])
    assert [r[0] for r in probe] == [0.0, 1.0, 2.0, 3.0, 4.0]
    # the median output, but never fewer than 16 tokens: a 4-token TPOT is three intervals of noise
    assert probe_rows([(0.0, 100, 4)] * 3)[0][1:] == (100, 16)
    assert probe_rows([(0.0, 100, 30)] * 3)[0][1:] == (100, 30)


def test_the_probe_gives_an_additive_first_token_overhead_and_a_decode_factor() -> None:
    @dataclass(frozen=True)
    class Sim:
        ttft_p50: float
        tpot_p50: float

    # the paired gateway share (0.006) is reported, not used: the overhead is measured − predicted TTFT
    got = calibration(Sim(0.020, 0.001), {"ttft_p50": 0.030, "tpot_p50": 0.003, "gateway_overhead": 0.006})
    assert got.first_token_overhead_seconds == pytest.approx(0.010) and got.decode_scale == pytest.approx(3.0)
    assert calibration(Sim(0.040, 0.001), {"ttft_p50": 0.030, "tpot_p50": None}) == Calibration(0.0, 1.0)


def test_concurrent_streams_give_the_slowdown_by_busy_cores() -> None:
    @dataclass(frozen=True)
    class Sim:
        ttft_p50: float
        tpot_p50: float

    lone = {"ttft_p50": 0.030, "tpot_p50": 0.004}
    two = calibration(Sim(0.020, 0.002), lone, {"slowdown": 1.5, "streams": 2})
    assert two.core_slowdown == pytest.approx((1.0, 1.5)) and two.decode_scale == pytest.approx(2.0)
    three = calibration(Sim(0.020, 0.002), lone, {"slowdown": 2.0, "streams": 3})
    assert three.core_slowdown == pytest.approx((1.0, 1.5, 2.0))  # linear from one busy core
    faster = calibration(Sim(0.020, 0.002), lone, {"slowdown": 0.75, "streams": 2})
    assert faster.core_slowdown == (1.0, 1.0)  # noise below the lone requests is no speed-up
    assert calibration(Sim(0.020, 0.002), lone, {"slowdown": None, "streams": 2}).core_slowdown == ()
    assert calibration(Sim(0.020, 0.002), lone, None).core_slowdown == ()


def test_the_decode_stretch_starts_after_the_prefills() -> None:
    from benchmarks._fidelity_probe import decode_stretch

    times = [0.0, 0.05, 0.10, 0.20, 0.22, 0.24, 0.26]  # three slow steps while prompts were prefilled
    assert decode_stretch(times) == pytest.approx(0.02)
    assert decode_stretch(times, skip=0) == pytest.approx(0.26 / 6)
    assert decode_stretch([0.0, 0.1, 0.2, 0.3]) is None  # fewer than two tokens after the skip


def test_measure_counts_a_failed_request_as_a_miss() -> None:
    served = [Served(0.0, 5, 0.1, 0.01, "a"), Served(0.0, 5, 0.3, 0.01, "a"),
              Served(0.0, 5, 0.1, 0.05, "b"), Served(0.0, 5, error="UnavailableError: down")]
    got = measure(served, ttft_slo=0.2, tpot_slo=0.02, seconds=2.0)
    assert got["slo_attainment"] == 0.25 and got["failed"] == 1
    assert got["ttft_p50"] == pytest.approx(0.1) and got["throughput"] == {"a": 1.0, "b": 0.5}


def test_share_deviation_counts_only_the_requests_between_the_snapshots() -> None:
    def snapshot(n: int, served_a: float) -> dict[str, object]:
        return {"classes": [{"request_class": "c", "route": "a", "planned_share": 0.5,
                             "served_share": served_a, "requests": n},
                            {"request_class": "c", "route": "b", "planned_share": 0.5,
                             "served_share": 1 - served_a, "requests": n}]}

    worst, rows = share_deviation(snapshot(10, 1.0), snapshot(30, 0.6))  # 10 → 18 on a: 8 of the 20 new
    assert worst == pytest.approx(0.1)
    assert rows == [("c", "a", 0.5, 0.4, 20), ("c", "b", 0.5, 0.6, 20)]
    assert share_deviation(snapshot(10, 1.0), snapshot(10, 1.0)) == (None, [])


def test_without_a_peak_vs_mean_contrast_check_fails() -> None:
    """The peak plan meeting the SLO says nothing about sizing unless the mean-sized plan, a different
    fleet, misses it: otherwise the part is skipped, and a skipped part fails `--check`."""
    same = {"contrast_predicted": True, "mean_plan_equals_peak_plan": True,
            "mean_slo_attainment_measured": 1.0}
    mean_meets = {"contrast_predicted": True, "mean_plan_equals_peak_plan": False,
                  "mean_slo_attainment_measured": 0.97}
    mean_misses = {"contrast_predicted": True, "mean_plan_equals_peak_plan": False,
                   "mean_slo_attainment_measured": 0.6}
    assert fidelity.contrast_missing(same) and fidelity.contrast_missing(mean_meets)
    assert fidelity.contrast_missing(mean_misses) == []
    # a miss on a window the prediction rule did not choose (its fallback) is no contrast: noise can make it
    unpredicted = {**mean_misses, "contrast_predicted": False}
    assert "no window" in fidelity.contrast_missing(unpredicted)[0]
    args = fidelity.parse(["--check"])
    result = {"ttft_p50_error": 0.0, "tpot_p50_error": 0.0, "slo_attainment_error": 0.0,
              "share_deviation_max": 0.0, "slo_attainment_measured": 1.0}
    assert fidelity.finish(result, fidelity.TARGETS, args, skipped=fidelity.contrast_missing(same)) == 1
    assert fidelity.finish(result, fidelity.TARGETS, args, skipped=[]) == 0


@pytest.mark.slow
def test_quick_run_serves_the_window_live_and_reports_every_figure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the seeded profiles are the tiny model's: the cluster serves that model, not the rule's default
    code = fidelity.main(["--quick", "--profiles", str(SEEDED_PROFILES), "--model-preset", "tiny",
                          "--run-dir", str(tmp_path), "--json"])
    assert code == 0  # without --check a missed target does not fail the run
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    measured = result["peak_measured"]
    assert result["requests"] > 10 and measured["failed"] == 0, measured["errors"]
    served = sum(measured["throughput"].values()) * result["window_seconds"]
    assert served == pytest.approx(result["requests"])  # every request of the window was served
    # every planned route was followed exactly: the gateway's smooth weighted round robin
    assert result["share_deviation_max"] is not None and result["share_deviation_max"] <= 0.05
    for name in ("ttft_p50_error", "tpot_p50_error", "slo_attainment_error", "slo_attainment_measured",
                 "ttft_p50_error_uncalibrated", "mean_slo_attainment_measured"):
        assert isinstance(result[name], float), name
    assert result["peak_probe"]["decode_scale"] > 0
    probe = result["peak_probe"]
    assert probe["failed"] == 0 and probe["direct_ttft_p50"] > 0 and len(probe["pairs"]) >= 1
    assert isinstance(probe["gateway_overhead_seconds"], float)
    assert {"worker", "gateway", "bench"} <= set(measured["tree_cores"])  # the parts' cores in the window
    batched = probe["batched"]  # step 4, a diagnostic: batch 4 and batch 1 on one worker, next to the profile
    assert batched["failed"] == 0 and batched["batch"] == 4
    assert batched["lone_ratio"] > 0 and batched["batch_ratio"] > 0
    assert batched["profile_batch_step"] > batched["profile_lone_step"] > 0
    if sum(result["peak_plan_pools"].values()) > 1:  # workers on two cores: the concurrent rounds ran
        assert probe["concurrent"]["failed"] == 0 and len(probe["core_slowdown"]) == 2
    assert not list((tmp_path / "live" / "run" / "workers").glob("*.json")), "a worker was left running"


def test_the_prediction_schedules_as_the_workers_engine_does(tmp_path: Path) -> None:
    from benchmarks._fidelity_predict import engine_scheduling
    from workers.engine.config import EngineConfig

    engine = EngineConfig(model_dir=tmp_path)
    assert engine_scheduling() == {"step_token_budget": engine.max_num_batched_tokens,
                                   "max_batch": engine.max_num_seqs}



def test_the_load_meter_tells_other_jobs_from_the_benchmarks_own_processes() -> None:
    """Real processes: a busy child of this process counts as ours; a busy process started outside
    this tree (by a shell that exits, so it is re-parented) counts as another job's. Compared with each
    spinner's own CPU time, not with a wall-clock share, which other jobs on the machine would move."""
    import os
    import resource
    import subprocess
    import sys
    import time
    from pathlib import Path

    from benchmarks._fidelity_load import TICKS, descendants, foreign_cores, snapshot

    spin = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"
    before, reaped = snapshot(), resource.getrusage(resource.RUSAGE_CHILDREN)
    child = subprocess.Popen([sys.executable, "-c", spin])
    assert child.pid in descendants(os.getpid())
    child.wait()  # reaped: its CPU time is now this process's cutime
    ours = snapshot()
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (now.ru_utime + now.ru_stime) - (reaped.ru_utime + reaped.ru_stime)
    assert child_cpu > 0.2 and ours.ours - before.ours >= child_cpu - 0.05  # counted as the benchmark's

    def cpu_of(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:13]) / TICKS

    out = subprocess.run(["sh", "-c", f'{sys.executable} -c "{spin}" >/dev/null 2>&1 & echo $!'],
                         capture_output=True, text=True, check=True)
    other = int(out.stdout.strip())
    assert other not in descendants(os.getpid())
    start, other_start = snapshot(), cpu_of(other)
    time.sleep(1.0)
    end, other_cpu = snapshot(), cpu_of(other) - other_start
    got = foreign_cores(start, end)
    assert got is not None and other_cpu > 0.2
    assert got >= 0.8 * other_cpu / (end.wall - start.wall)  # the outside spinner's share, at least


def test_the_load_meter_names_the_benchmarks_parts() -> None:
    """Real processes: a child with a worker's argv is a `worker`, this process the `bench`; the CPU a
    busy worker child spends between two snapshots is counted as the worker part's cores."""
    import os
    import subprocess
    import sys
    import time

    from benchmarks._fidelity_load import part_cores, part_of, snapshot

    spin = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"
    child = subprocess.Popen([sys.executable, "-c", spin, "worker", "--role", "colocated"])
    try:
        deadline = time.monotonic() + 5
        while part_of(child.pid) != "worker" and time.monotonic() < deadline:
            time.sleep(0.01)  # until the child has exec'd (before, its command line is the fork's)
        assert part_of(os.getpid()) == "bench" and part_of(child.pid) == "worker"
        before = snapshot()
        time.sleep(1.0)
        cores = part_cores(before, snapshot())
        assert cores["worker"] > 0.1 and "bench" in cores
    finally:
        child.kill()
        child.wait()


def test_each_plan_replays_prompts_no_other_plan_has_cached(tmp_path: Path) -> None:
    """The mean plan runs on a worker the peak plan's replay left, with the shared Redis tier: prompts
    it had served would be prefix hits (until 86477f7 they were the same prompts). Each plan's prompts
    now come from its own seed: no first KV block (16 tokens) of one plan's prompts is another's."""
    from tokenizers import Tokenizer

    from benchmarks._fidelity_predict import planning_inputs

    model_dir = tmp_path / "model"
    planning_inputs(sorted(SEEDED_PROFILES.glob("*.json")), model_dir)  # generates the model
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    rows = [(float(k), 344, 4) for k in range(325)]
    first = {basis: [tuple(tok.encode(p).ids[:16]) for p in fidelity.plan_prompts(model_dir, rows, seed)]
             for basis, seed in fidelity.PROMPT_SEEDS.items()}
    # nor within one plan: the corpus is short, so offsets alone repeated (272 of 325 distinct before)
    assert len(set(first["peak"])) == len(set(first["mean"])) == 325
    assert not set(first["peak"]) & set(first["mean"])
    prompts = fidelity.plan_prompts(model_dir, rows, 7)
    counts = [len(tok.encode(p, add_special_tokens=False).ids) for p in prompts]
    assert all(abs(c - 344) <= 3 for c in counts), counts  # the requested length, give or take a merge
    # the same seed gives the same prompts (a plan's window is replayable), so the seeds are what differ
    assert fidelity.plan_prompts(model_dir, rows[:5], 0) == fidelity.plan_prompts(model_dir, rows[:5], 0)
    assert len(set(fidelity.PROMPT_SEEDS.values())) == len(fidelity.PROMPT_SEEDS)
