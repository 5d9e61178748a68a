"""`heteroserve plan`: solve a placement spec (YAML or JSON); --simulate TRACE replays a trace against it.

    heteroserve plan SPEC.yaml [--simulate TRACE] [--json] [--time-limit S]
    heteroserve plan --melange PROFILES.json --workload DIST.json [--rate R] [--slice-factor K] [--json]

The second form takes Mélange's own files and prints Mélange's formulation's answer (same keys as
its solver: cost_per_hour, instances, status, solve_seconds) plus our joint ILP's answer under "joint".
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from common.logs import native_stdout_silenced

HELP = "solve a placement spec (YAML or JSON); --simulate TRACE replays a trace against the plan"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", help="placement spec file (YAML or JSON)")
    parser.add_argument(
        "--simulate",
        metavar="TRACE",
        help="replay this trace against the plan (as the first traffic entry's model and SLO class)",
    )
    parser.add_argument("--sim-requests", type=int, default=5000, help="replay at most N requests (5000)")
    parser.add_argument(
        "--poisson",
        action="store_true",
        help="replay the trace's lengths with Poisson arrivals at the planned rate",
    )
    parser.add_argument("--seed", type=int, default=0, help="simulator seed (0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--time-limit", type=float, help="solver time limit in seconds")
    parser.add_argument("--melange", metavar="PROFILES", help="Mélange GPU-info JSON (Mélange mode)")
    parser.add_argument("--workload", metavar="DIST", help="Mélange workload-distribution JSON")
    parser.add_argument("--rate", type=float, help="total request rate, req/s (Mélange mode)")
    parser.add_argument("--slice-factor", type=int, help="Mélange slice factor (default: file's, else 1)")
    parser.add_argument("--gpus", help="comma-separated GPU types to keep (Mélange mode)")


def run(args: argparse.Namespace) -> int:
    from common.errors import ConfigError

    if args.melange:
        return _run_melange(args)
    if not args.spec:
        raise ConfigError("give a spec file, or --melange PROFILES --workload DIST", field="spec")
    return _run_spec(args)


def _run_spec(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from common.errors import InfeasibleError
    from placement.compile import compile_problem
    from placement.planning import make_plan
    from placement.spec import load_spec

    spec = load_spec(args.spec)
    options = spec.solver_options
    if args.time_limit:
        options = replace(options, time_limit_seconds=args.time_limit)
    try:
        with native_stdout_silenced():
            problem = compile_problem(
                spec.fleet,
                spec.models,
                spec.classes,
                spec.slos,
                spec.inventory,
                spec.compile_options,
                spec.current,
                spec.measured,
                spec.profiles,
            )
            plan = make_plan(problem, spec.classifier, options, slice_factor=spec.slice_factor)
    except InfeasibleError as exc:
        raise InfeasibleError(
            f"{args.spec}: {exc}", constraint=exc.constraint, request_class=exc.request_class
        ) from None
    simulation = _simulate(args, spec, plan) if args.simulate else None
    if args.json:
        out: dict[str, Any] = {
            "cost_per_hour": plan.cost_per_hour,
            "status": plan.solve.status,
            "solve_seconds": plan.solve.solve_seconds,
            "plan": plan.to_dict(),
        }
        if simulation is not None:
            out["simulation"] = simulation
        print(json.dumps(out))
        return 0
    from heteroserve.cli._plan_view import render_plan

    render_plan(plan, simulation)
    return 0


def _simulate(args: argparse.Namespace, spec: Any, plan: Any) -> dict[str, Any]:
    from dataclasses import asdict

    from placement.simulator import SimOptions, requests_from_trace, simulate
    from placement.trace import load_trace, with_poisson_arrivals

    trace = load_trace(args.simulate, seed=args.seed).head(args.sim_requests)
    first = spec.traffic[0]
    if args.poisson:
        rate = sum(c.rate for c in spec.classes if c.model == first.model and c.slo == first.slo_class)
        trace = with_poisson_arrivals(trace, rate, args.seed)
    requests = requests_from_trace(trace, first.model, first.slo_class)
    result = simulate(plan, requests, spec.fleet, spec.models, spec.slos, SimOptions(seed=args.seed))
    return {
        k: (dict(v) if isinstance(v, dict) or hasattr(v, "items") else v) for k, v in asdict(result).items()
    }


def _run_melange(args: argparse.Namespace) -> int:
    from common.errors import ConfigError
    from placement import melange
    from placement.ilp.problem import SolverOptions
    from placement.solve import solve

    if not args.workload:
        raise ConfigError("--workload DIST.json is required with --melange", field="workload")
    profiles = melange.load_profiles(args.melange)
    if args.gpus:
        unknown = [g for g in args.gpus.split(",") if g not in profiles.costs]
        if unknown:
            raise ConfigError(f"unknown GPU type {unknown[0]!r}", field="gpus")
        profiles = profiles.restricted(args.gpus.split(","))
    workload = melange.load_workload(args.workload)
    rate = args.rate if args.rate is not None else workload.rate
    if rate is None:
        raise ConfigError("no rate: pass --rate or set total_request_rate in the workload", field="rate")
    slices = args.slice_factor or workload.slice_factor or 1
    options = SolverOptions(time_limit_seconds=args.time_limit or 60.0)
    problem = melange.to_problem(profiles, workload.distribution, rate)
    with native_stdout_silenced():
        result = melange.solve_slices(problem, slices, options)
        joint = solve(problem, options)
    joint_instances = {problem.pools[i].node_type: n for i, n in enumerate(joint.counts) if n}
    out: dict[str, Any] = {
        "cost_per_hour": result.cost_per_hour,
        "instances": dict(result.instances),
        "status": result.info.status,
        "solve_seconds": round(result.info.solve_seconds, 4),
        "slice_factor": slices,
        "joint": {
            "cost_per_hour": joint.cost_per_hour,
            "status": joint.info.status,
            "solve_seconds": round(joint.info.solve_seconds, 4),
            "instances": joint_instances,
        },
    }
    if not args.json:
        melange_line = f"{result.cost_per_hour:.2f} $/h {dict(result.instances)} ({result.info.status})"
        print(f"Mélange formulation: {melange_line}")
        print(f"joint ILP:           {joint.cost_per_hour:.2f} $/h {joint_instances}")
    print(json.dumps(out))
    return 0
