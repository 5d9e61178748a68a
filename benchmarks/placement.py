"""`heteroserve bench placement`: the placement ILP against Mélange's own stack, at scale, and the
value of prefill/decode disaggregation — all measured in the same run.

1. Mélange reproduction: `gpu_info_llama7b_6x6.json` (L4, A10G, A100, H100) + the arena distribution at
   1, 2, 4, 8, 16, 32, 64, 128 req/s, slice factor 4. Ours: the joint ILP (continuous shares, HiGHS).
   Peer: Mélange's formulation on Mélange's stack (pulp + CBC, no time limit of its own, capped here so
   the run stays practical: 30 s by default, `--full` 120 s as in issue 5, `--quick` 10 s, or `--cbc-cap`).
   The reference optimum is the better of that and the same formulation on
   HiGHS (60 s cap), flagged when neither proved optimality.
   Keys: melange_cost_ratio_max (ours / Mélange optimum, target ≤ 1.0), solve_seconds_max (≤ 1 s),
   solve_seconds_median, cbc_baseline_seconds_median.
2. Scale: 12 node types (incl. CPU and CSD) × 3 roles × 4 models × 36 buckets × 3 SLO classes,
   10 s limit, 1% gap. Keys: scale_solve_seconds (≤ 10), scale_gap (≤ 0.01), scale_compile_seconds.
3. Disaggregation value: Llama-2-70B on H100x8 / A100-80Gx8 / L4x8 / cpu-192c / csd-8x, classes from the
   Azure 2023 conversation and code traces (rates × `RATE_SCALE`), joint plan vs colocated-only plan;
   the joint plan is replayed in the simulator (first `SIM_REQUESTS` requests' lengths, Poisson arrivals
   at the planned rate, seed 0; also, for reference, the trace's own arrival times compressed by
   `RATE_SCALE`, whose bursts exceed the planned mean rate).
   Keys: pd_saving_vs_colocated (1 − Σ joint cost / Σ colocated cost),
   pd_plan_slo_attainment (min over the traces, target ≥ 0.99), plus per-trace figures.
4. Calibration error of the shipped roofline factors (mean absolute percentage error): against Splitwise
   (fitted data) per GPU and phase, and against DistServe's A100 coefficients (held out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from common.logs import native_stdout_silenced
from placement import melange
from placement.catalog import load_catalog
from placement.compile import CompileOptions, compile_problem
from placement.ilp.problem import SolverOptions
from placement.models import load_models
from placement.plan import Classifier
from placement.planning import to_plan
from placement.simulator import SimOptions, requests_from_trace, simulate
from placement.solve import solve
from placement.trace import load_trace, with_poisson_arrivals
from placement.workload import (
    Buckets,
    RequestClass,
    SLOClass,
    classes_from_distribution,
    classes_from_lengths,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RATES = (1, 2, 4, 8, 16, 32, 64, 128)
SCALE_TYPES = (
    "H100",
    "H100x8",
    "A100-80G",
    "A100-40G",
    "L40S",
    "L40Sx4",
    "A10G",
    "L4",
    "L4x8",
    "T4",
    "cpu-64c",
    "csd-8x",
)
SCALE_MODELS = ("llama2-7b", "llama3-8b", "mistral-7b", "llama2-13b")
PD_FLEET = ("H100x8", "A100-80Gx8", "L4x8", "cpu-192c", "csd-8x")
RATE_SCALE = 20.0
SIM_REQUESTS = 4000


def melange_reproduction(cbc_cap: float) -> dict[str, Any]:
    profiles = melange.load_profiles(DATA / "melange" / "gpu_info_llama7b_6x6.json")
    arena = melange.load_workload(DATA / "melange" / "arena_workload_distribution_6x6.json")
    rows: list[dict[str, Any]] = []
    for rate in RATES:
        problem = melange.to_problem(profiles, arena.distribution, float(rate))
        ours = solve(problem, SolverOptions(time_limit_seconds=10))
        cbc = melange.solve_slices(
            problem, 4, SolverOptions(solver="cbc", time_limit_seconds=cbc_cap, mip_gap=0)
        )
        highs = melange.solve_slices(problem, 4, SolverOptions(time_limit_seconds=60, mip_gap=0))
        best = min((r for r in (cbc, highs) if r.info.has_solution), key=lambda r: r.cost_per_hour)
        rows.append(
            {
                "rate": rate,
                "ours_cost": ours.cost_per_hour,
                "ours_seconds": ours.info.solve_seconds,
                "melange_cost": best.cost_per_hour,
                "melange_proven": cbc.info.optimal or highs.info.optimal,
                "cbc_cost": cbc.cost_per_hour,
                "cbc_status": cbc.info.status,
                "cbc_seconds": cbc.info.solve_seconds,
                "highs_melange_seconds": highs.info.solve_seconds,
            }
        )
    seconds = [r["ours_seconds"] for r in rows]
    return {
        "rows": rows,
        "melange_cost_ratio_max": max(r["ours_cost"] / r["melange_cost"] for r in rows),
        "solve_seconds_max": max(seconds),
        "solve_seconds_median": statistics.median(seconds),
        "cbc_baseline_seconds_median": statistics.median(r["cbc_seconds"] for r in rows),
        "melange_all_proven_optimal": all(r["melange_proven"] for r in rows),
    }


def scale_instance() -> dict[str, Any]:
    catalog, models = load_catalog(), load_models()
    slos = {
        "interactive": SLOClass("interactive", 1.0, 0.06),
        "standard": SLOClass("standard", 4.0, 0.15),
        "batch": SLOClass("batch", 60.0, 1.0, latency_tolerant=True),
    }
    edges = (0, 25, 100, 250, 500, 1000, 2000)
    buckets = Buckets(edges, edges)
    arena = melange.load_workload(DATA / "melange" / "arena_workload_distribution_6x6.json").distribution
    weights = [[max(w, 1e-3) for w in row] for row in arena]  # all 36 buckets carry traffic
    classes: list[RequestClass] = []
    for m, model in enumerate(SCALE_MODELS):
        for slo, rate in zip(slos, (200.0, 100.0, 50.0), strict=True):
            classes += classes_from_distribution(model, slo, rate * (1 + 0.3 * m), weights, buckets)
    started = time.perf_counter()
    problem = compile_problem(catalog.subset(SCALE_TYPES), models, classes, slos)
    compile_seconds = time.perf_counter() - started
    s = solve(problem, SolverOptions(time_limit_seconds=10, mip_gap=0.01))
    return {
        "scale_solve_seconds": s.info.solve_seconds,
        "scale_gap": s.info.gap,
        "scale_compile_seconds": compile_seconds,
        "scale_status": s.info.status,
        "scale_cost_per_hour": s.cost_per_hour,
        "scale_classes": len(classes),
        "scale_pools": len(problem.pools),
        "scale_routes": len(problem.disaggregated),
    }


def pd_value() -> dict[str, Any]:
    catalog, models = load_catalog(), load_models()
    fleet = catalog.subset(PD_FLEET)
    slos = {"interactive": SLOClass("interactive", 2.0, 0.1)}
    buckets = Buckets((0, 256, 512, 1024, 2048, 4096, 8192), (0, 64, 128, 256, 512, 1024, 4096))
    classifier = Classifier(buckets.input_edges, buckets.output_edges, ("interactive",), "interactive")
    out: dict[str, Any] = {}
    joint_total = coloc_total = 0.0
    attainments = []
    for name in ("conv", "code"):
        trace = load_trace(DATA / "traces" / f"azure2023_AzureLLMInferenceTrace_{name}.csv")
        classes = classes_from_lengths(
            "llama2-70b",
            "interactive",
            zip(trace.input_tokens, trace.output_tokens, strict=True),
            trace.duration_seconds,
            buckets,
            RATE_SCALE,
        )
        problem = compile_problem(fleet, models, classes, slos, options=CompileOptions())
        joint = solve(problem)
        colocated = solve(problem.without_disaggregation())
        plan = to_plan(problem, joint, classifier)
        rate = sum(c.rate for c in classes)
        replay = with_poisson_arrivals(trace.head(SIM_REQUESTS), rate, seed=0)
        sim = simulate(
            plan,
            requests_from_trace(replay, "llama2-70b", "interactive"),
            fleet,
            models,
            slos,
            SimOptions(seed=0),
        )
        # the same plan against the trace's own (bursty) arrival times, compressed by RATE_SCALE
        raw = trace.scaled(RATE_SCALE).head(SIM_REQUESTS)
        raw_sim = simulate(
            plan,
            requests_from_trace(raw, "llama2-70b", "interactive"),
            fleet,
            models,
            slos,
            SimOptions(seed=0),
        )
        joint_total += joint.cost_per_hour
        coloc_total += colocated.cost_per_hour
        attainments.append(sim.slo_attainment)
        out[name] = {
            "rate": rate,
            "joint_cost": joint.cost_per_hour,
            "colocated_cost": colocated.cost_per_hour,
            "saving": 1 - joint.cost_per_hour / colocated.cost_per_hour,
            "pools": {p.name: p.count for p in plan.pools},
            "slo_attainment": sim.slo_attainment,
            "ttft_p99": sim.ttft_p99,
            "tpot_p99": sim.tpot_p99,
            "pd_fraction": sim.disaggregated_fraction,
            "slo_attainment_raw_arrivals": raw_sim.slo_attainment,
        }
    out["pd_saving_vs_colocated"] = 1 - joint_total / coloc_total
    out["pd_plan_slo_attainment"] = min(attainments)
    return out


def calibration_error() -> dict[str, float]:
    from placement.perf.calibration import distserve_check, evaluate, load_splitwise

    catalog, models = load_catalog(), load_models()
    rows = load_splitwise(DATA / "latency" / "splitwise_perf_model.csv")
    out: dict[str, float] = {}
    for name, key in (("A100-80G", "a100"), ("H100", "h100")):
        prefill, decode = evaluate(catalog[name], models, [r for r in rows if r.hardware == name])
        out[f"calibration_prefill_mape_{key}"] = prefill
        out[f"calibration_decode_mape_{key}"] = decode
    prefill, decode, _ = distserve_check(
        catalog["A100-80G"], models, DATA / "latency" / "profiler-a100-80g.distserve.json"
    )
    out["calibration_distserve_prefill_mape"] = prefill
    out["calibration_distserve_decode_mape"] = decode
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="heteroserve bench placement")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="cap the CBC baseline at 10 s (default 30 s)")
    parser.add_argument("--full", action="store_true", help="cap the CBC baseline at 120 s (default 30 s)")
    parser.add_argument("--cbc-cap", type=float, help="CBC baseline cap in seconds")
    args = parser.parse_args(argv)
    cap = args.cbc_cap or (10.0 if args.quick else 120.0 if args.full else 30.0)
    with native_stdout_silenced():
        mel = melange_reproduction(cap)
        scale = scale_instance()
        pd = pd_value()
        calibration = calibration_error()
    report(mel, scale, pd, cap)
    print(
        "calibration MAPE: "
        + ", ".join(f"{k.removeprefix('calibration_')} {100 * v:.1f}%" for k, v in calibration.items())
    )
    if args.json:
        keys = {k: v for k, v in mel.items() if k != "rows"}
        print(json.dumps({**keys, **scale, **pd, **calibration, "cbc_cap_seconds": cap}))
    return 0


def report(mel: dict[str, Any], scale: dict[str, Any], pd: dict[str, Any], cap: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"Mélange reproduction (slice factor 4; CBC capped at {cap:g} s)")
    for col in ("rate", "ours $/h", "ours s", "Mélange opt $/h", "proven", "CBC s", "CBC status"):
        t.add_column(col, justify="right")
    for r in mel["rows"]:
        t.add_row(
            str(r["rate"]),
            f"{r['ours_cost']:.2f}",
            f"{r['ours_seconds']:.3f}",
            f"{r['melange_cost']:.2f}",
            str(r["melange_proven"]),
            f"{r['cbc_seconds']:.2f}",
            r["cbc_status"],
        )
    console.print(t)
    console.print(
        f"melange_cost_ratio_max {mel['melange_cost_ratio_max']:.4f} (≤ 1.0)  solve_seconds max "
        f"{mel['solve_seconds_max']:.3f} / median {mel['solve_seconds_median']:.3f} (≤ 1 s)  "
        f"CBC median {mel['cbc_baseline_seconds_median']:.2f} s"
    )
    console.print(
        f"scale: {scale['scale_classes']} classes, {scale['scale_pools']} pools, {scale['scale_routes']} "
        f"P/D routes: {scale['scale_status']} in {scale['scale_solve_seconds']:.2f} s (≤ 10), gap "
        f"{100 * (scale['scale_gap'] or 0):.2f}% (≤ 1%), compile {scale['scale_compile_seconds']:.2f} s"
    )
    for name in ("conv", "code"):
        x = pd[name]
        console.print(
            f"P/D {name} @ {x['rate']:.1f} req/s: joint {x['joint_cost']:.2f} $/h vs colocated "
            f"{x['colocated_cost']:.2f} $/h (saving {100 * x['saving']:.1f}%), simulated SLO attainment "
            f"{100 * x['slo_attainment']:.2f}%, TTFT p99 {x['ttft_p99']:.2f} s, "
            f"TPOT p99 {x['tpot_p99']:.3f} s (raw trace arrivals: "
            f"{100 * x['slo_attainment_raw_arrivals']:.1f}%)"
        )
    console.print(
        f"pd_saving_vs_colocated {pd['pd_saving_vs_colocated']:.3f}  "
        f"pd_plan_slo_attainment {pd['pd_plan_slo_attainment']:.4f} (≥ 0.99)"
    )
