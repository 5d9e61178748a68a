"""`heteroserve bench placement`: the placement ILP against Mélange's own stack, at scale, and the
value of prefill/decode disaggregation — all measured in the same run.

1. Mélange reproduction: `gpu_info_llama7b_6x6.json` (L4, A10G, A100, H100) + the arena distribution at
   1, 2, 4, 8, 16, 32, 64, 128 req/s, slice factor 4. Two separate questions:
   - reproduced: Mélange's formulation as Mélange writes it (one binary per slice and GPU type,
     `melange.solve_slices(literal=True)`) solved to proven optimality (HiGHS, gap 0, 60 s cap) is the
     reference; our restriction to its slices (`melange.solve_slices`: the slices counted per GPU type,
     an exact reformulation without the slices' symmetry; HiGHS, gap 0) must prove the same optimum.
     A rate counts as reproduced only when both proved optimality and the costs are equal. Targets:
     every rate (`melange_reproduced_all`), each sliced solve ≤ 1 s (`sliced_seconds_max`). Mélange's
     own stack (pulp + CBC on the literal formulation, gap 0; capped at 30 s by default, `--full` 120 s,
     `--quick` 10 s, or `--cbc-cap`) runs apart: its status and whether, where it proved optimality, it
     agrees (`cbc_agrees`).
   - relaxation saving: 1 − our joint ILP (continuous shares) / the sliced optimum, per rate; ≥ 0 by
     construction, so it has no target. The joint ILP's solve time: solve_seconds_max ≤ 1 s.
2. Scale: 12 node types (incl. CPU and CSD) × 3 roles × 4 models × 36 buckets × 3 SLO classes on ONE
   fleet inventory, so the models compete for nodes and the ILP is joint (the solver splits models only
   when they share no inventory-limited type). Inventory rule (fixed before the timed solve): half the
   node counts (rounded up) the unconstrained plan uses of each type, 1,000 of each type it does not use.
   10 s limit, 1% gap. Keys: scale_solve_seconds (≤ 10), scale_gap (≤ 0.01), scale_types_at_inventory.
3. Disaggregation value, headline on calibrated node types only (H100x8, A100-80Gx8: roofline factors
   fitted to Splitwise), and apart, `uncalibrated_*`, on H100x8 / A100-80Gx8 / L4x8 / cpu-192c / csd-8x
   (L4, CPU and CSD factors are estimates). Llama-2-70B, classes from the
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
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks._placement_report import report
from benchmarks._report import Target, add_arguments, finish
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
# Node types whose roofline factors are fitted to measurements (Splitwise A100-80GB and H100, see
# placement/README.md); every other type's factors are estimates.
PD_FLEET_CALIBRATED = ("H100x8", "A100-80Gx8")
SPARE_NODES = 1000  # inventory of a type the unconstrained scale plan does not use
RATE_SCALE = 20.0
SIM_REQUESTS = 4000


def melange_reproduction(cbc_cap: float) -> dict[str, Any]:
    """Per rate: Mélange's literal formulation proven by HiGHS (the reference), our exact reformulation
    of its slices (HiGHS), Mélange's own stack (pulp + CBC, `cbc_cap`) apart, and our joint ILP."""
    profiles = melange.load_profiles(DATA / "melange" / "gpu_info_llama7b_6x6.json")
    arena = melange.load_workload(DATA / "melange" / "arena_workload_distribution_6x6.json")
    rows: list[dict[str, Any]] = []
    for rate in RATES:
        problem = melange.to_problem(profiles, arena.distribution, float(rate))
        ours = solve(problem, SolverOptions(time_limit_seconds=10))
        literal = melange.solve_slices(problem, 4, SolverOptions(time_limit_seconds=60, mip_gap=0),
                                       literal=True)
        sliced = melange.solve_slices(problem, 4, SolverOptions(time_limit_seconds=60, mip_gap=0))
        cbc = melange.solve_slices(
            problem, 4, SolverOptions(solver="cbc", time_limit_seconds=cbc_cap, mip_gap=0), literal=True
        )
        proven = literal.info.optimal and sliced.info.optimal
        rows.append(
            {
                "rate": rate,
                "ours_cost": ours.cost_per_hour,
                "ours_seconds": ours.info.solve_seconds,
                "melange_cost": literal.cost_per_hour,
                "melange_seconds": literal.info.solve_seconds,
                "sliced_cost": sliced.cost_per_hour,
                "reproduced": proven and abs(sliced.cost_per_hour - literal.cost_per_hour) <= 1e-6,
                "proven": proven,
                "cbc_cost": cbc.cost_per_hour,
                "cbc_status": cbc.info.status,
                "cbc_seconds": cbc.info.solve_seconds,
                "cbc_agrees": abs(cbc.cost_per_hour - literal.cost_per_hour) <= 1e-6
                if cbc.info.optimal else None,
                "sliced_seconds": sliced.info.solve_seconds,
                "relaxation_saving": 1 - ours.cost_per_hour / sliced.cost_per_hour,
            }
        )
    seconds = [r["ours_seconds"] for r in rows]
    savings = [r["relaxation_saving"] for r in rows]
    return {
        "rows": rows,
        "melange_reproduced_rates": sum(r["reproduced"] for r in rows),
        "melange_rates": len(rows),
        "melange_reproduced_all": all(r["reproduced"] for r in rows),
        "sliced_seconds_max": max(r["sliced_seconds"] for r in rows),
        "melange_literal_seconds_max": max(r["melange_seconds"] for r in rows),
        "cbc_proven_rates": sum(r["cbc_agrees"] is not None for r in rows),
        "cbc_disagrees_rates": sum(r["cbc_agrees"] is False for r in rows),
        "solve_seconds_max": max(seconds),
        "solve_seconds_median": statistics.median(seconds),
        "cbc_baseline_seconds_median": statistics.median(r["cbc_seconds"] for r in rows),
        "relaxation_saving_median": statistics.median(savings),
        "relaxation_saving_max": max(savings),
    }


def _scale_classes() -> tuple[list[RequestClass], dict[str, SLOClass], Buckets]:
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
    return classes, slos, buckets


def scale_instance() -> dict[str, Any]:
    """The 432 classes of 4 models on one fleet inventory, so the ILP is joint (the solver splits models
    only when they share no inventory-limited node type). Rule for the inventory, fixed before the timed
    solve: ⌈½⌉ of the node counts the unconstrained plan uses of each type (the models must then
    compete for those nodes), `SPARE_NODES` of each type it does not use."""
    catalog, models = load_catalog(), load_models()
    classes, slos, _ = _scale_classes()
    fleet = catalog.subset(SCALE_TYPES)
    free = compile_problem(fleet, models, classes, slos)
    unconstrained = solve(free, SolverOptions(time_limit_seconds=30, mip_gap=0.01))
    used: dict[str, int] = {}
    for pool, n in zip(free.pools, unconstrained.counts, strict=True):
        used[pool.node_type] = used.get(pool.node_type, 0) + n
    inventory = {t: (used[t] + 1) // 2 if used.get(t) else SPARE_NODES for t in SCALE_TYPES}
    started = time.perf_counter()
    problem = compile_problem(fleet, models, classes, slos, inventory)
    compile_seconds = time.perf_counter() - started
    s = solve(problem, SolverOptions(time_limit_seconds=10, mip_gap=0.01))
    by_type: dict[str, int] = {}
    for pool, n in zip(problem.pools, s.counts, strict=True):
        by_type[pool.node_type] = by_type.get(pool.node_type, 0) + n
    return {
        "scale_solve_seconds": s.info.solve_seconds,
        "scale_gap": s.info.gap,
        "scale_compile_seconds": compile_seconds,
        "scale_status": s.info.status,
        "scale_cost_per_hour": s.cost_per_hour,
        "scale_unconstrained_cost_per_hour": unconstrained.cost_per_hour,
        "scale_classes": len(classes),
        "scale_models": len(SCALE_MODELS),
        "scale_pools": len(problem.pools),
        "scale_routes": len(problem.disaggregated),
        "scale_inventory": inventory,
        "scale_types_at_inventory": sorted(t for t, n in by_type.items() if n >= inventory[t]),
    }


def pd_value(fleet_names: tuple[str, ...]) -> dict[str, Any]:
    """Joint (P/D allowed) vs colocated-only plans for Llama-2-70B on `fleet_names`, per Azure trace."""
    catalog, models = load_catalog(), load_models()
    fleet = catalog.subset(fleet_names)
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
    out["fleet"] = list(fleet_names)
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


TARGETS: dict[str, Target] = {
    "melange_reproduced_all": ("==", True),
    "sliced_seconds_max": ("<=", 1.0),
    "solve_seconds_max": ("<=", 1.0),
    "scale_solve_seconds": ("<=", 10.0),
    "scale_gap": ("<=", 0.01),
    "pd_plan_slo_attainment": (">=", 0.99),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="heteroserve bench placement")
    add_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="cap the CBC baseline at 10 s (default 30 s)")
    parser.add_argument("--full", action="store_true", help="cap the CBC baseline at 120 s (default 30 s)")
    parser.add_argument("--cbc-cap", type=float, help="CBC baseline cap in seconds")
    args = parser.parse_args(argv)
    cap = args.cbc_cap or (10.0 if args.quick else 120.0 if args.full else 30.0)
    with native_stdout_silenced():
        mel = melange_reproduction(cap)
        scale = scale_instance()
        pd = pd_value(PD_FLEET_CALIBRATED)
        pd_all = pd_value(PD_FLEET)
        calibration = calibration_error()
    report(mel, scale, pd, pd_all, cap)
    print(
        "calibration MAPE: "
        + ", ".join(f"{k.removeprefix('calibration_')} {100 * v:.1f}%" for k, v in calibration.items())
    )
    result = {
        **{k: v for k, v in mel.items() if k != "rows"},
        "melange_rows": mel["rows"],
        **scale,
        **{k: v for k, v in pd.items() if k.startswith("pd_")},
        "pd_fleet_calibrated": list(PD_FLEET_CALIBRATED),
        "pd_by_trace": {name: pd[name] for name in ("conv", "code")},
        "uncalibrated_pd_saving_vs_colocated": pd_all["pd_saving_vs_colocated"],
        "uncalibrated_pd_plan_slo_attainment": pd_all["pd_plan_slo_attainment"],
        "uncalibrated_fleet": list(PD_FLEET),
        "uncalibrated_by_trace": {name: pd_all[name] for name in ("conv", "code")},
        **calibration,
        "cbc_cap_seconds": cap,
    }
    return finish(result, TARGETS, args)
