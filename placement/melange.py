"""Mélange compatibility: its profile / workload files, its own ILP, and conversion to our `Problem`.

Mélange's formulation (Griggs et al., "Mélange: Cost Efficient LLM Serving by Exploiting GPU
Heterogeneity"): the rate w_b·R of each bucket b is cut into k = `slice_factor` equal slices; binary
x_sj puts slice s wholly on GPU type j, where it needs r_s / T_jb instances; integer y_j counts GPUs.
Minimise Σ c_j·y_j s.t. Σ_j x_sj = 1 per slice and Σ_s (r_s / T_jb)·x_sj ≤ y_j per type. Types with
T_jb = 0 cannot take bucket b. `solve_slices` runs it on any `Problem`'s colocated options, so it is
also the "Mélange's formulation" baseline of every plan.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pulp

from common.errors import ConfigError, InfeasibleError
from placement.ilp.backend import run
from placement.ilp.problem import ColocatedOption, Demand, PoolSpec, Problem, SolverOptions
from placement.ilp.result import SolveInfo


@dataclass(frozen=True)
class MelangeProfiles:
    """GPU type → (cost $/h, tputs[i][j] req/s for input bucket i, output bucket j)."""

    costs: Mapping[str, float]
    tputs: Mapping[str, tuple[tuple[float, ...], ...]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "costs", MappingProxyType(dict(self.costs)))
        object.__setattr__(self, "tputs", MappingProxyType(dict(self.tputs)))

    def restricted(self, names: Sequence[str]) -> MelangeProfiles:
        return MelangeProfiles({n: self.costs[n] for n in names}, {n: self.tputs[n] for n in names})


@dataclass(frozen=True)
class MelangeWorkload:
    distribution: tuple[tuple[float, ...], ...]
    rate: float | None = None
    slice_factor: int | None = None


@dataclass(frozen=True)
class MelangeResult:
    cost_per_hour: float
    instances: Mapping[str, int]
    info: SolveInfo
    slice_factor: int = 1
    extra: Mapping[str, float] = field(default_factory=dict)


def _read(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read Mélange JSON ({exc})", source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("top level must be an object", source=str(path))
    return data


def load_profiles(path: str | Path) -> MelangeProfiles:
    """Read a Mélange GPU-info file: either `{gpu: {cost, tputs}}` or `{"gpu_info": {...}}`."""
    data = _read(path)
    info = data.get("gpu_info", data)
    costs, tputs = {}, {}
    for gpu, entry in info.items():
        if not isinstance(entry, dict) or "cost" not in entry or "tputs" not in entry:
            continue
        if entry["cost"] <= 0:
            raise ConfigError("cost must be > 0", field=f"{gpu}.cost", source=str(path))
        costs[gpu] = float(entry["cost"])
        tputs[gpu] = tuple(tuple(float(x) for x in row) for row in entry["tputs"])
    if not costs:
        raise ConfigError("no GPU entries with cost and tputs", source=str(path))
    return MelangeProfiles(costs, tputs)


def load_workload(path: str | Path) -> MelangeWorkload:
    """Read a Mélange workload file (`workload_distribution`, optional rate and slice factor)."""
    data = _read(path)
    if "workload_distribution" not in data:
        raise ConfigError("missing workload_distribution", field="workload_distribution", source=str(path))
    dist = tuple(tuple(float(x) for x in row) for row in data["workload_distribution"])
    if any(x < 0 for row in dist for x in row):
        raise ConfigError("fractions must be >= 0", field="workload_distribution", source=str(path))
    rate = data.get("total_request_rate")
    slices = data.get("slice_factor")
    return MelangeWorkload(dist, float(rate) if rate is not None else None, int(slices) if slices else None)


def to_problem(
    profiles: MelangeProfiles, distribution: Sequence[Sequence[float]], rate: float, model: str = "model"
) -> Problem:
    """Our Problem for Mélange inputs: one class per non-empty bucket, one colocated pool per GPU type."""
    if rate < 0:
        raise ConfigError(f"rate must be >= 0, got {rate}", field="rate")
    pools = tuple(PoolSpec(model, gpu, "colocated", cost) for gpu, cost in profiles.costs.items())
    demands: list[Demand] = []
    options: list[ColocatedOption] = []
    exclusions: dict[str, tuple[str, ...]] = {}
    for i, row in enumerate(distribution):
        for j, w in enumerate(row):
            if w <= 0:
                continue
            c = len(demands)
            demands.append(Demand(f"{model}/default/i{i}o{j}", model, "default", w * rate))
            options += [
                ColocatedOption(c, p, 1.0 / profiles.tputs[pool.node_type][i][j])
                for p, pool in enumerate(pools)
                if profiles.tputs[pool.node_type][i][j] > 0
            ]
            exclusions[demands[-1].name] = ("tpot: every GPU type has throughput 0 for this bucket",)
    return Problem(tuple(demands), pools, tuple(options), exclusions=exclusions)


def solve_slices(problem: Problem, slice_factor: int, options: SolverOptions, *,
                 literal: bool = False) -> MelangeResult:
    """Mélange's own ILP (each class cut into `slice_factor` equal slices, each slice on one GPU type)
    on `problem`'s colocated options. `literal`: one binary per (slice, pool), as Mélange writes it;
    default: the slices counted per pool (an exact reformulation without the slices' symmetry)."""
    if slice_factor < 1:
        raise ConfigError(f"slice_factor must be >= 1, got {slice_factor}", field="slice_factor")
    lp = pulp.LpProblem("melange", pulp.LpMinimize)
    pools = sorted({o.pool for o in problem.colocated})
    y = {
        p: lp.add_variable(f"y_{p}", 0, problem.inventory.get(problem.pools[p].node_type), cat="Integer")
        for p in pools
    }
    lp += pulp.lpSum(problem.pools[p].price_per_hour * y[p] for p in pools)
    by_demand: dict[int, list[ColocatedOption]] = defaultdict(list)
    for o in problem.colocated:
        by_demand[o.demand].append(o)
    load: dict[int, list[pulp.LpAffineExpression]] = defaultdict(list)
    for c, demand in enumerate(problem.demands):
        if demand.rate <= 0:
            continue
        if not by_demand[c]:
            raise InfeasibleError(
                f"class {demand.name} has no GPU type that can serve it",
                constraint="no_option",
                request_class=demand.name,
            )
        # Mélange's slices of one class are identical, so "slice s goes to pool p" (binary, one per
        # slice) is exactly "w of the class's slices go to pool p" (integer 0..slice_factor): the same
        # feasible plans and optimum, without the slice_factor! symmetric copies of each plan that
        # made branch and bound slow (e.g. 14 s instead of < 1 s at rate 16 of the arena set).
        slice_rate = demand.rate / slice_factor
        if literal:  # as Mélange writes it: one binary per (slice, pool)
            for s in range(slice_factor):
                x = [lp.add_variable(f"x_{c}_{s}_{o.pool}", cat="Binary") for o in by_demand[c]]
                lp += pulp.lpSum(x) == 1, f"slice_{c}_{s}"
                for o, var in zip(by_demand[c], x, strict=True):
                    load[o.pool].append(slice_rate * o.load * var)
            continue
        w = [lp.add_variable(f"w_{c}_{o.pool}", 0, slice_factor, cat="Integer") for o in by_demand[c]]
        lp += pulp.lpSum(w) == slice_factor, f"slices_{c}"
        for o, var in zip(by_demand[c], w, strict=True):
            load[o.pool].append(slice_rate * o.load * var)
    for p in pools:
        lp += pulp.lpSum(load[p]) <= y[p], f"capacity_{p}"
    info = run(lp, options)
    if not info.has_solution:
        raise InfeasibleError(f"Mélange formulation: {info.status}", constraint="capacity")
    counts = {p: round(y[p].value() or 0) for p in pools}
    cost = sum(n * problem.pools[p].price_per_hour for p, n in counts.items())
    instances: dict[str, int] = defaultdict(int)
    for p, n in counts.items():
        if n:
            instances[problem.pools[p].node_type] += n
    return MelangeResult(round(cost, 6), dict(instances), info, slice_factor)
