"""Plan and prediction for `bench fidelity`: the live planner's solver and the calibrated simulator.

`planning_inputs` reads the embedded config (deploy/examples/embedded.yaml) and the measured profiles
of this machine exactly as the embedded planner does (`EmbeddedConfig.planning_inputs`). `plan_for`
runs the planner's own `PlacementSolver` on the window's classes at a chosen total rate (its peak, or
its mean) plus the config's warm classes. `predict` replays the window on that plan in
`placement.simulator`, calibrated from the same profiles (`MeasuredSteps.fit` per node type and role,
the measured KV transfer), not the roofline, with the gateway's P/D threshold and this machine's
core sharing (`SimOptions.pd_min_input_tokens`, `SimOptions.cores`), and the native engine's scheduling
(decode-first iterations of `max_num_batched_tokens` tokens, at most `max_num_seqs` sequences: the
workers' engine defaults; `SimOptions.step_token_budget`, since 2026-12-07).

Probe of the co-located set (`_fidelity_probe.py`, `calibration`): the profiles are measured one idle
worker at a time, straight on the worker's RPC, each point the fastest of its repeats; the replay runs
the whole fleet pinned on two cores shared with the gateway, the load generator and whatever else this
machine runs, and every token crosses the gateway. The probe's warm requests through the gateway give a
first-token overhead (measured − predicted TTFT: the gateway hop plus the live worker's distance from its
profile; `SimOptions.first_token_overhead_seconds`) and a decode factor on every decode step
(`ScaledSteps`). When the plan's workers use more than one core, the probe's concurrent streams (one
per core in use) give the slowdown of an iteration while the other cores are busy too
(`SimOptions.core_slowdown`: their TPOT over the lone requests'). The benchmark reports the errors with
and without the calibration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.vocab import ROLES

Row = tuple[float, int, int]
SLO_CLASS = "interactive"  # every replayed request is of the default SLO class


def planning_inputs(profiles: Sequence[Path], model_dir: Path, config: Any = None) -> Any:
    """The embedded planner's inputs with `profiles` (`config`: an `EmbeddedConfig`, default the
    embedded cluster's); generates the config's model into `model_dir` if missing."""
    from heteroserve.embedded.config import load_embedded_config
    from heteroserve.modelgen import create_model

    config = config or load_embedded_config()
    if not (model_dir / "config.json").exists():
        create_model(model_dir, preset=config.model.preset, seed=config.model.seed)
    return config.planning_inputs(model_dir=model_dir, extra_profiles=sorted(profiles))


def sizing_inputs(inputs: Any, cores: int) -> Any:
    """The planner's inputs for a comparison of sizing on this machine (`bench fidelity`'s docstring,
    "Sizing rule"): the availability floor off (`min_replicas` 1) and every node type's inventory capped
    at `cores` (one pinned worker per core is what this machine can host). Raises ValueError on cores < 1."""
    from dataclasses import replace

    if cores < 1:
        raise ValueError(f"cores: must be >= 1, got {cores}")
    return replace(inputs, inventory={k: min(int(v), cores) for k, v in inputs.inventory.items()},
                   solver_options=replace(inputs.solver_options, min_replicas=1))


def plan_for(inputs: Any, rows: Sequence[Row], total_rate: float) -> Any:
    """The live planner's solver on the window's classes (their shares of `rows`, mean lengths),
    scaled to `total_rate` req/s in all, plus the warm classes. Returns a `placement.plan.Plan`."""
    from control_plane.planner.solver import PlacementSolver
    from control_plane.planner.types import DemandClass

    groups: dict[str, list[tuple[int, int]]] = {}
    for _, i, o in rows:
        groups.setdefault(inputs.class_of(SLO_CLASS, i, o), []).append((i, o))
    demand = dict(inputs.warm_demand())
    for name, members in groups.items():
        share = len(members) / len(rows)
        mean_in = sum(m[0] for m in members) / len(members)
        mean_out = sum(m[1] for m in members) / len(members)
        demand[name] = DemandClass(name, total_rate * share, mean_in, mean_out)
    return PlacementSolver(inputs)(list(demand.values()), None).plan


def predict(plan: Any, inputs: Any, rows: Sequence[Row], *, cores: int, pd_min_input_tokens: int,
            calibration: Calibration | None = None, wake: bool = True) -> Any:
    """`placement.simulator.simulate` of `rows` on `plan`, calibrated from the measured profiles and the
    co-located fleet's probe (`calibration`; None = the profiles alone). `wake`: the profiles' measured
    cost of leaving idle (`NodeProfile.idle`) applies; off for the probe, whose requests run back to
    back on a worker that is never idle."""
    from placement.perf.steps import MeasuredSteps, ScaledSteps
    from placement.simulator import SimOptions, SimRequest, simulate

    c = calibration or Calibration()
    steps: dict[tuple[str, str], Any] = {}
    transfer = {}
    wakes = {}
    for (_, node_type), profile in inputs.profiles.items():
        if wake and profile.idle is not None:
            wakes[node_type] = profile.idle
        for role in ROLES:
            fitted = MeasuredSteps.fit(profile, role)
            if fitted is not None:
                steps[(node_type, role)] = ScaledSteps(fitted, decode_scale=c.decode_scale)
        point = profile.transfer_path("peer") or profile.transfer_path("shared")
        if point is not None:
            transfer[node_type] = point
    requests = [SimRequest(a, i, o, inputs.first_model, SLO_CLASS) for a, i, o in rows]
    options = SimOptions(steps=steps, transfer=transfer, cores=cores, pd_min_input_tokens=pd_min_input_tokens,
                         first_token_overhead_seconds=c.first_token_overhead_seconds, wake=wakes,
                         core_slowdown=c.core_slowdown if cores else (), **engine_scheduling())
    return simulate(plan, requests, inputs.fleet, dict(inputs.models), dict(inputs.slos), options)


def engine_scheduling() -> dict[str, int]:
    """The simulator's scheduling options for the workers' native engine, from its defaults (the
    embedded workers run them): `step_token_budget` and `max_batch`."""
    from workers.engine.config import EngineConfig

    default = EngineConfig(model_dir=Path("."))  # the defaults; no model is read
    return {"step_token_budget": default.max_num_batched_tokens, "max_batch": default.max_num_seqs}


def predicted(sim: Any, seconds: float) -> dict[str, Any]:
    """The figures the benchmark compares, from a `SimResult`; per-pool throughput over the window's
    `seconds` (as measured), not over the simulated span (first arrival to last finish)."""
    return {"ttft_p50": sim.ttft_p50, "ttft_p90": sim.ttft_p90, "tpot_p50": sim.tpot_p50,
            "slo_attainment": sim.slo_attainment, "disaggregated_fraction": sim.disaggregated_fraction,
            "throughput": {p: r * sim.duration_seconds / seconds for p, r in sim.throughput.items()},
            "utilization": dict(sim.utilization)}


PROBE_REQUESTS = 5  # the simulator's side of the probe: lone requests, so their count does not matter
# the probe's outputs are at least this long (since session 7): the code trace's median output of 4
# tokens gave a TPOT from 3 intervals, and tokens arriving together through the gateway made it 0.39-0.49
# of the worker's step (the decode factor of the 21:38 and 21:41 UTC runs on 2026-12-07; the same
# worker's lone TPOT straight on its RPC was 0.96-1.24 of the profile's)
PROBE_MIN_OUTPUT_TOKENS = 16


def probe_rows(rows: Sequence[Row]) -> list[Row]:
    """`PROBE_REQUESTS` lone requests, one per second, of the window's median input length and its
    median output length, at least `PROBE_MIN_OUTPUT_TOKENS` (the probe's requests as the simulator
    predicts them: alone in the fleet)."""
    ins, outs = sorted(r[1] for r in rows), sorted(r[2] for r in rows)
    out = max(outs[len(outs) // 2], PROBE_MIN_OUTPUT_TOKENS)
    return [(float(k), ins[len(ins) // 2], out) for k in range(PROBE_REQUESTS)]


@dataclass(frozen=True)
class Calibration:
    """What the probe of the co-located fleet adds to the profiles (module docstring)."""

    first_token_overhead_seconds: float = 0.0
    decode_scale: float = 1.0
    core_slowdown: tuple[float, ...] = ()  # by number of busy cores; () = none measured


def calibration(predicted_probe: Any, measured_probe: dict[str, Any],
                concurrent: dict[str, Any] | None = None) -> Calibration:
    """From the probe (`_fidelity_probe.probe`, warm requests through the gateway) and the simulator's
    uncalibrated prediction of the same requests (`predicted_probe`, a `SimResult` of `probe_rows`):
    the first-token overhead measured − predicted TTFT p50 (≥ 0), the decode factor measured / predicted
    TPOT p50 (0.0 and 1.0 when a figure is missing or zero). With the probe's concurrent rounds
    (`_fidelity_probe.concurrent` on n workers): their `slowdown` is the factor with n busy cores (at
    least 1: being busy elsewhere speeds nothing up), linear from 1.0 at one busy core."""
    ttft, tpot = measured_probe["ttft_p50"], measured_probe["tpot_p50"]
    overhead = max(0.0, ttft - predicted_probe.ttft_p50) if ttft is not None else 0.0
    decode = tpot / predicted_probe.tpot_p50 if tpot and predicted_probe.tpot_p50 > 0 else 1.0
    slowdown: tuple[float, ...] = ()
    if concurrent and concurrent.get("slowdown") and concurrent["streams"] > 1:
        n, factor = concurrent["streams"], max(1.0, concurrent["slowdown"])
        slowdown = tuple(1.0 + (factor - 1.0) * k / (n - 1) for k in range(n))
    return Calibration(overhead, decode, slowdown)
