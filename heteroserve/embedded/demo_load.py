"""The demo's load, derived from what the cluster measured, so the plan visibly changes with it.

The embedded cluster sizes its plan from measured profiles (the demo model on this machine's cores),
so fixed request rates either fit one worker whatever the phase, or swamp the machine. The demo instead
asks the planner's own compile step (`PlacementSolver` on the cluster's profiles, the same path the
running planner takes) what one colocated worker sustains for the workload's chat requests (`cap`,
req/s at their mean lengths, within the SLO and the planner's utilisation headroom), and sets:

    base  chat 0.4·cap                       → 1 colocated worker
    step  chat 1.6·cap                       → 2 (scale up, unless capped: below)
    long  chat 0.4·cap + long prompts        → P/D pools where the profiles make them pay (on an idle
                                               2-core machine they do not: colocated is cheaper)
    drop  chat 0.4·cap                       → 1 (scale down; the P/D pools drain)

Long prompts are `LONG_MIN_INPUT`..`LONG_MAX_INPUT` tokens (one length bucket, 500-999, of
`common.vocab.LENGTH_BUCKET_EDGES`: the planner's class for them is one class), arriving at
`LONG_RATE_FRACTION` of what one prefill worker sustains for them. The demo model
(`heteroserve.modelgen` preset `demo`) is heavy enough that `cap` is 11-18 chat req/s per worker on
the 2-core development machine (measured at load averages 9 and 6); the tiny model's ~60 would need
~90 req/s at the step, more than the gateway and the client serve beside two busy workers. All rates
are capped so the step stays within `STEP_BUDGET_REQ_S`: where a machine measures a higher capacity,
the rates are scaled down together and the demo says so; the step is then `STEP_BUDGET_REQ_S / cap`
workers' worth, so it still scales up while `cap` < 28 req/s, and the plan it prints shows whether
it will. On one machine every worker shares its cores,
so the demo runs with the availability floor off (`options.min_replicas: 1`, written into the run's
config): with two workers per pool as the floor, a visible scale-up would need more than two workers'
measured capacity, more than two cores can serve. `expected_plans` solves each phase's mean demand
the same way and is printed before the run: what the planner should publish (it sizes for bursts, so
it may plan more).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from control_plane.planner.solver import DemandClass, PlacementSolver
from heteroserve.embedded.config import EmbeddedConfig
from heteroserve.embedded.workload import Phase, WorkloadConfig, class_lengths
from placement.compile import compile_problem

CHAT_FRACTIONS = {"base": 0.4, "step": 1.6, "long": 0.4, "drop": 0.4}  # × cap, per phase
DURATIONS = {"base": 25.0, "step": 45.0, "long": 45.0, "drop": 40.0}  # seconds
LONG_MIN_INPUT = 700  # tokens: the demo model's profiles give colocated workers no TTFT budget for them
LONG_MAX_INPUT = 950  # and a prefill worker's prefill + transfer stays within half the TTFT SLO
LONG_RATE_FRACTION = 0.15
# Chat req/s at the step. Measured with the tiny model (34-token streams, load average ~9): the SDK
# client spends 5-7 ms of CPU per request and the gateway 10-12 ms, so 28 req/s take ~0.45 of a core
# beside the two workers the step asks for. Above a cap of 17.5 req/s per worker the step is capped,
# and it no longer asks for a second worker above 28 (a machine twice as fast as this one).
STEP_BUDGET_REQ_S = 28.0


@dataclass(frozen=True)
class DemoLoad:
    """The derived phases and what they were derived from (req/s per worker, tokens)."""

    phases: tuple[Phase, ...]
    chat_capacity_per_worker: float
    prefill_capacity_per_worker: float
    chat_shape: tuple[float, float]  # mean (prompt, output) tokens
    long_shape: tuple[float, float]
    scale: float = 1.0  # < 1: the rates were capped by STEP_BUDGET_REQ_S

    def describe(self) -> str:
        (ci, co), (li, lo) = self.chat_shape, self.long_shape
        lines = [f"measured capacity: one colocated worker sustains {self.chat_capacity_per_worker:.2f} chat "
                 f"req/s ({ci:.0f} prompt / {co:.0f} output tokens); one prefill worker "
                 f"{self.prefill_capacity_per_worker:.2f} long req/s ({li:.0f} / {lo:.0f} tokens)"]
        if self.scale < 1:
            lines.append(f"  rates × {self.scale:.2f}: the step would exceed the {STEP_BUDGET_REQ_S:g} req/s "
                         "this machine's client and gateway drive, so the plan may not scale up (see below)")
        for p in self.phases:
            rates = ", ".join(f"{c} {r:.2f}/s" for c, r in p.rate_per_s.items())
            lines.append(f"  {p.name:<5} {p.duration_seconds:3.0f} s: {rates}")
        return "\n".join(lines)


def demo_workload(base: WorkloadConfig) -> WorkloadConfig:
    """The demo's lengths: chat prompts up to 256 tokens, long prompts of `LONG_MIN_INPUT`..
    `LONG_MAX_INPUT` tokens (long enough for P/D), outputs of 16-128 tokens."""
    return replace(base, input_scale=0.5, max_input=LONG_MAX_INPUT, output_scale=0.3, min_output=16,
                   max_output=128, long_min_input=LONG_MIN_INPUT)


def _mean(pairs: list[tuple[int, int]]) -> tuple[float, float]:
    return (sum(p[0] for p in pairs) / len(pairs), sum(p[1] for p in pairs) / len(pairs))


def _solver(config: EmbeddedConfig, model_dir: Path, profiles: list[Path]) -> PlacementSolver:
    return PlacementSolver(replace(config.planning_inputs(model_dir=model_dir, extra_profiles=profiles),
                                   with_baselines=False))


def capacity(solver: PlacementSolver, shape: tuple[float, float], role: str) -> float:
    """Req/s one worker of `role` (colocated, or prefill on a P/D route) sustains for requests of
    `shape` under the default SLO, as the planner's compile step computes it (0: none can)."""
    inputs = solver.inputs
    name = inputs.class_of(inputs.default_slo, *shape)
    classes = solver.request_classes([DemandClass(name, 1.0, *shape)])
    problem = compile_problem(inputs.fleet, dict(inputs.models), classes, dict(inputs.slos), {},
                              inputs.compile_options, {}, dict(inputs.measured), dict(inputs.profiles))
    loads = ([o.load for o in problem.colocated] if role == "colocated"
             else [d.prefill_load for d in problem.disaggregated])
    return 1.0 / min(loads) if loads else 0.0


def derive(config: EmbeddedConfig, model_dir: Path, profiles: list[Path],
           workload: WorkloadConfig) -> DemoLoad:
    """The demo's phases from the measured profiles (module docstring). Raises ValueError if the
    profiles give no colocated capacity for chat or no prefill capacity for long prompts."""
    solver = _solver(config, model_dir, profiles)
    lengths = class_lengths(workload)
    chat, long = _mean(lengths["chat"]), _mean(lengths["long"])
    cap, prefill = capacity(solver, chat, "colocated"), capacity(solver, long, "prefill")
    if cap <= 0 or prefill <= 0:
        raise ValueError(f"profiles: no capacity for the demo (chat {cap:.2f}, long prefill "
                         f"{prefill:.2f} req/s)")
    scale = min(1.0, STEP_BUDGET_REQ_S / (CHAT_FRACTIONS["step"] * cap))
    long_rate = round(scale * LONG_RATE_FRACTION * prefill, 3)
    phases = tuple(Phase(name, DURATIONS[name], {"chat": round(scale * f * cap, 3)}
                         | ({"long": long_rate} if name == "long" else {}))
                   for name, f in CHAT_FRACTIONS.items())
    return DemoLoad(phases, cap, prefill, chat, long, scale)


def expected_plans(config: EmbeddedConfig, model_dir: Path, profiles: list[Path],
                   load: DemoLoad) -> list[str]:
    """Per phase, the pools the planner's solver gives that phase's mean demand (one line each)."""
    solver = _solver(config, model_dir, profiles)
    inputs = solver.inputs
    shapes = {"chat": load.chat_shape, "long": load.long_shape}
    lines = []
    for phase in load.phases:
        demand = [DemandClass(inputs.class_of(inputs.default_slo, *shapes[c]), r, *shapes[c])
                  for c, r in phase.rate_per_s.items()]
        pools = solver(demand, None).plan.pools
        lines.append(f"  {phase.name:<5} → " + ", ".join(f"{p.name} {p.count}" for p in pools if p.count))
    return lines
