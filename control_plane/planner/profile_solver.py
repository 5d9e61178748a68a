"""A planner `SolveFn` over measured profiles: per pool, the sustainable requests/s of one worker for
each request class it can serve (what `heteroserve profile` measures, or an operator states).

It builds the placement ILP's `Problem` directly from those numbers — a colocated option per
(class, colocated pool with a rate), a P/D option per (class, prefill pool, decode pool) that both
have a rate, load = 1 / rate instances per req/s — and calls `placement.solve.solve` with the
running plan's counts (churn penalty). When the fleet does not change and the running plan's routing
still fits the new rates, that routing is kept (the ILP's routing is one of many equal-cost optima,
and re-publishing a different one each solve only shuffles traffic). Baselines are solved the same
way on restricted fleets: `colocated-only` (no P/D routes) and `single-type` (the cheapest fleet of
one node type only).

Published document (what `control_plane.gateway.plan` and `heteroserve status` read):

    {"model", "status", "cost_per_hour", "baselines": {name: $/h},
     "pools":   [{"name", "node_type", "role", "device", "count", "price_per_hour"}],
     "routing": {class: {pool: share}},   # P/D share appears on both its prefill and decode pool
     "classes": [{"name", "slo_class", "max_input_tokens", "max_output_tokens", "ttft_seconds",
                  "tpot_seconds", "rate_per_s"}]}

Pool names are the operator's (DNS labels, as `PoolTarget` requires), not placement's
`model:node_type:role`, so routing, worker registration and deployments all use one name.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from common.errors import InfeasibleError
from common.vocab import Device, Role, parse_device, parse_role
from control_plane.planner.types import DemandClass, PoolPlan, SolvedPlan
from placement.ilp.problem import (
    ColocatedOption,
    Demand,
    DisaggregatedOption,
    PoolSpec,
    Problem,
    SolverOptions,
)
from placement.solve import solve


@dataclass(frozen=True)
class ProfiledPool:
    name: str
    node_type: str
    role: Role
    device: Device
    price_per_hour: float
    rate_per_worker: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parse_role(self.role)  # built from a file, the Literal is checked already; from code, here
        parse_device(self.device)
        if self.price_per_hour < 0:
            raise ValueError(f"price_per_hour must be >= 0 (pool {self.name})")
        if any(r <= 0 for r in self.rate_per_worker.values()):
            raise ValueError(f"rate_per_worker values must be > 0 (pool {self.name})")


@dataclass(frozen=True)
class ProfiledClass:
    name: str
    slo_class: str = ""
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    ttft_seconds: float = 2.0  # the SLO; gateways count requests that met it (control_plane.traffic)
    tpot_seconds: float = 0.2


@dataclass(frozen=True)
class ProfileSpec:
    model: str
    pools: tuple[ProfiledPool, ...]
    classes: tuple[ProfiledClass, ...]
    inventory: dict[str, int] = field(default_factory=dict)
    churn_penalty: float = 0.01
    time_limit_seconds: float = 10.0
    # Every class is planned for at least this rate, so an idle cluster keeps a worker able to serve
    # each class: gateways count a request only once it is served, so a fleet scaled to zero would
    # never see the traffic that should scale it up again.
    idle_rate_per_s: float = 0.01

    def __post_init__(self) -> None:
        keys = [(p.node_type, p.role) for p in self.pools]
        if len(set(keys)) != len(keys):
            raise ValueError("pools: at most one pool per (node_type, role)")
        if len({p.name for p in self.pools}) != len(self.pools):
            raise ValueError("pools: names must be unique")


class ProfileSolver:
    """Callable `SolveFn`; pure apart from the solver's wall time."""

    def __init__(self, spec: ProfileSpec) -> None:
        self.spec = spec

    def __call__(self, demand: Sequence[DemandClass], running: SolvedPlan | None) -> SolvedPlan:
        rates = {c.name: self.spec.idle_rate_per_s for c in self.spec.classes}
        rates.update({d.name: max(d.rate_per_s, self.spec.idle_rate_per_s) for d in demand})
        current = running.counts() if running else {}
        problem = self._problem(self.spec.pools, rates, current)
        options = SolverOptions(time_limit_seconds=self.spec.time_limit_seconds)
        solution = solve(problem, options)
        counts = dict(zip((p.name for p in self.spec.pools), solution.counts, strict=True))
        routing: dict[str, dict[str, float]] = defaultdict(dict)
        for k, share in solution.colocated_shares.items():
            o = problem.colocated[k]
            _add(routing, problem.demands[o.demand].name, self.spec.pools[o.pool].name, share)
        for k, share in solution.disaggregated_shares.items():
            d = problem.disaggregated[k]
            name = problem.demands[d.demand].name
            _add(routing, name, self.spec.pools[d.prefill_pool].name, share)
            _add(routing, name, self.spec.pools[d.decode_pool].name, share)
        if running is not None and running.counts() == counts \
                and self.routing_fits(running.document.get("routing") or {}, rates, counts):
            routing = running.document["routing"]  # same fleet, old routing still fits: keep it stable
        baselines = self._baselines(rates, options)
        pools = tuple(PoolPlan(p.name, p.node_type, p.role, p.device, counts[p.name])
                      for p in self.spec.pools)
        document = {
            "model": self.spec.model, "status": solution.info.status,
            "cost_per_hour": solution.cost_per_hour, "baselines": baselines,
            "pools": [{"name": p.name, "node_type": p.node_type, "role": p.role, "device": p.device,
                       "count": counts[p.name], "price_per_hour": p.price_per_hour} for p in self.spec.pools],
            "routing": {c: dict(sorted(s.items())) for c, s in sorted(routing.items())},
            "classes": [{"name": c.name, "slo_class": c.slo_class, "max_input_tokens": c.max_input_tokens,
                         "max_output_tokens": c.max_output_tokens, "ttft_seconds": c.ttft_seconds,
                         "tpot_seconds": c.tpot_seconds, "rate_per_s": round(rates.get(c.name, 0), 4)}
                        for c in self.spec.classes],
        }
        return SolvedPlan(pools, solution.cost_per_hour, baselines, solution.info.status, document)

    def routing_fits(self, routing: Mapping[str, Mapping[str, float]], rates: Mapping[str, float],
                     counts: Mapping[str, int]) -> bool:
        """True if `routing` serves every class with a rate (colocated + prefill shares = 1) within
        every pool's capacity `counts[pool]` at these rates. The ILP's routing is one of many optima;
        keeping a still-valid one avoids shifting traffic back and forth between equal-cost routes."""
        load: dict[str, float] = defaultdict(float)
        by_name = {p.name: p for p in self.spec.pools}
        for cls, rate in rates.items():
            shares = routing.get(cls, {})
            served = sum(v for pool, v in shares.items() if pool in by_name
                         and by_name[pool].role != "decode")  # colocated + prefill shares
            if rate > 0 and abs(served - 1.0) > 1e-3:
                return False
            for pool, share in shares.items():
                profile = by_name.get(pool)
                if profile is None or cls not in profile.rate_per_worker:
                    return False
                load[pool] += rate * share / profile.rate_per_worker[cls]
        return all(load[pool] <= counts.get(pool, 0) + 1e-6 for pool in load)

    def _problem(self, pools: Sequence[ProfiledPool], rates: Mapping[str, float],
                 current: Mapping[str, int]) -> Problem:
        model = self.spec.model
        demands = tuple(Demand(c.name, model, c.slo_class or "default", float(rates.get(c.name, 0.0)))
                        for c in self.spec.classes)
        specs = tuple(PoolSpec(model, p.node_type, p.role, p.price_per_hour) for p in pools)
        coloc, disagg = [], []
        for c, cls in enumerate(self.spec.classes):
            for i, p in enumerate(pools):
                if p.role == "colocated" and cls.name in p.rate_per_worker:
                    coloc.append(ColocatedOption(c, i, 1.0 / p.rate_per_worker[cls.name]))
            for i, pre in enumerate(pools):
                for j, dec in enumerate(pools):
                    if pre.role == "prefill" and dec.role == "decode" and cls.name in pre.rate_per_worker \
                            and cls.name in dec.rate_per_worker:
                        disagg.append(DisaggregatedOption(c, i, j, 1.0 / pre.rate_per_worker[cls.name],
                                                          1.0 / dec.rate_per_worker[cls.name], 0.0))
        by_name = {p.name: s.name for p, s in zip(pools, specs, strict=True)}
        running = {by_name[n]: k for n, k in current.items() if n in by_name}
        return Problem(demands, specs, tuple(coloc), tuple(disagg), inventory=dict(self.spec.inventory),
                       current=running, churn_penalty=self.spec.churn_penalty if running else 0.0)

    def _baselines(self, rates: Mapping[str, float], options: SolverOptions) -> dict[str, float]:
        out: dict[str, float] = {}
        with contextlib.suppress(InfeasibleError):
            out["colocated-only"] = solve(self._problem(self.spec.pools, rates, {}).without_disaggregation(),
                                          options).cost_per_hour
        singles = []
        for node_type in sorted({p.node_type for p in self.spec.pools}):
            subset = [p for p in self.spec.pools if p.node_type == node_type]
            try:
                singles.append(solve(self._problem(subset, rates, {}), options).cost_per_hour)
            except InfeasibleError:
                continue
        if singles:
            out["single-type"] = min(singles)
        return out


def _add(routing: dict[str, dict[str, float]], request_class: str, pool: str, share: float) -> None:
    routing[request_class][pool] = round(routing[request_class].get(pool, 0.0) + share, 6)


def parse_document(document: Mapping[str, object]) -> SolvedPlan:
    """A `SolvedPlan` from a published document (a planner adopting the plan after a takeover)."""
    pools = tuple(PoolPlan(str(p["name"]), str(p["node_type"]), parse_role(str(p["role"]), "pools[].role"),
                           parse_device(str(p["device"]), "pools[].device"), int(p["count"]))
                  for p in document.get("pools", []))  # type: ignore[attr-defined]
    baselines = dict(document.get("baselines", {}))  # type: ignore[call-overload]
    return SolvedPlan(pools, float(document.get("cost_per_hour", 0.0)), baselines,  # type: ignore[arg-type]
                      str(document.get("status", "adopted")), dict(document))
