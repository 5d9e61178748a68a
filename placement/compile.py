"""Compile catalog + models + request classes into the ILP's numeric `Problem`.

For each model and each node type in the fleet, pools of the three roles are created when they have at
least one option. An option exists only where every per-route rule holds:
- memory: weights + one request's KV fit (profiles report "memory" / "kv_capacity" otherwise);
- SLO: colocated and decode rates > 0 under TTFT / TPOT (profiles, with headroom);
- TTFT including KV transfer: a P/D route (prefill type a → decode type b) needs prefill time +
  transfer(a → b) within the TTFT budget (the prefill rate is computed with that transfer);
- CSD rule: CSD nodes take only decode, and only of classes whose SLO class is latency tolerant or
  whose mean prompt is ≥ `csd_min_context_tokens`.
Route pruning: of a class's P/D routes only the `max_routes_per_class` cheapest by marginal cost
(price_prefill·load_prefill + price_decode·load_decode) are kept (None keeps all). A 12-type fleet has
~140 routes per class; keeping 12 shrinks the ILP ~10× and lets HiGHS close the gap, at the price of
optimality being proven over the kept routes only.
Measured profiles (`profiles`, keyed by (model, node type)) replace the roofline for that pair: each
role's rate comes from the step times fitted to that role's measurements (`perf/steps.py`), the
KV transfer time of a P/D route from the prefill side's measured path (`peer`, else `shared`; else
the decode side's; else the roofline over the NICs; never below the NIC roofline), and its pools'
bandwidth rows use the measured transfer bandwidth when it is below the NIC's.
Every excluded option leaves a reason in `Problem.exclusions[class]` for the explainer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from common.vocab import Role
from placement.catalog import Catalog, NodeType
from placement.ilp.problem import ColocatedOption, Demand, DisaggregatedOption, PoolSpec, Problem
from placement.measured import MeasuredTable
from placement.models import ModelSpec
from placement.perf.roofline import kv_transfer_seconds
from placement.perf.steps import MeasuredSteps, StepTimes
from placement.profile_file import NodeProfile, TransferPoint
from placement.profiles import Capacity, ProfileOptions, colocated_capacity, decode_capacity, prefill_capacity
from placement.workload import RequestClass, SLOClass


@dataclass(frozen=True)
class CompileOptions:
    """What the compiler may generate. `csd_min_context_tokens`: prompt length that admits CSD decode.
    `pd_min_input_tokens`: a class whose mean prompt is shorter gets no P/D route (the gateway runs
    such prompts on the decode worker alone, `pd_min_uncached_tokens`, so a P/D route would plan
    prefill work that never happens); 0 = every class may be disaggregated."""

    allow_disaggregation: bool = True
    csd_min_context_tokens: int = 8192
    pd_min_input_tokens: int = 0
    max_routes_per_class: int | None = 12
    churn_penalty: float = 0.0
    profile: ProfileOptions = field(default_factory=ProfileOptions)

    def __post_init__(self) -> None:
        if self.csd_min_context_tokens < 0:
            raise ValueError(f"csd_min_context_tokens: must be >= 0, got {self.csd_min_context_tokens}")
        if self.pd_min_input_tokens < 0:
            raise ValueError(f"pd_min_input_tokens: must be >= 0, got {self.pd_min_input_tokens}")
        if self.max_routes_per_class is not None and self.max_routes_per_class < 1:
            raise ValueError(f"max_routes_per_class: must be >= 1, got {self.max_routes_per_class}")
        if self.churn_penalty < 0:
            raise ValueError(f"churn_penalty: must be >= 0, got {self.churn_penalty}")


def csd_allowed(cls: RequestClass, slo: SLOClass, options: CompileOptions) -> bool:
    return slo.latency_tolerant or cls.input_tokens >= options.csd_min_context_tokens


ProfileKey = tuple[str, str]  # (model, node type)


def measured_transfer(profile: NodeProfile | None) -> TransferPoint | None:
    """The path the system uses first (peer `PullKV`), else the shared tier; None if unmeasured."""
    if profile is None:
        return None
    return profile.transfer_path("peer") or profile.transfer_path("shared")


class _Builder:
    def __init__(self, profiles: Mapping[ProfileKey, NodeProfile]) -> None:
        self.pools: list[PoolSpec] = []
        self.index: dict[tuple[str, str, str], int] = {}
        self.exclusions: dict[str, list[str]] = defaultdict(list)
        self.profiles = profiles

    def pool(self, model: str, node: NodeType, role: Role) -> int:
        key = (model, node.name, role)
        if key not in self.index:
            self.index[key] = len(self.pools)
            bandwidth = node.network_bytes_per_second
            measured = measured_transfer(self.profiles.get((model, node.name)))
            if measured is not None and role != "colocated":
                bandwidth = min(bandwidth, measured.bytes_per_second)
            self.pools.append(PoolSpec(model, node.name, role, node.price_per_hour, bandwidth))
        return self.index[key]

    def steps(self, model: str, node: NodeType, role: Role) -> StepTimes | str | None:
        """Measured step times of the role, None for the roofline, or why the profile cannot serve."""
        profile = self.profiles.get((model, node.name))
        if profile is None:
            return None
        fitted = MeasuredSteps.fit(profile, role)
        return fitted if fitted is not None else f"measured: {node.name} profile has no {role} points"

    def transfer_seconds(self, model: ModelSpec, tokens: float, pnode: NodeType, dnode: NodeType) -> float:
        nic = kv_transfer_seconds(model, tokens, pnode, dnode)
        for node in (pnode, dnode):
            measured = measured_transfer(self.profiles.get((model.name, node.name)))
            if measured is not None:  # never faster than the NICs (a one-machine profile is loopback)
                return max(measured.seconds_for(tokens * model.kv_bytes_per_token), nic)
        return nic

    def capacity(self, cls: RequestClass, role: str, node: NodeType, cap: Capacity) -> bool:
        if cap.rate > 0:
            return True
        self.exclusions[cls.name].append(f"{cap.binding}: {role} on {node.name}: {cap.detail}")
        return False


def compile_problem(
    fleet: Catalog,
    models: Mapping[str, ModelSpec],
    classes: Sequence[RequestClass],
    slos: Mapping[str, SLOClass],
    inventory: Mapping[str, int] | None = None,
    options: CompileOptions | None = None,
    current: Mapping[str, int] | None = None,
    measured: Mapping[str, MeasuredTable] | None = None,
    profiles: Mapping[ProfileKey, NodeProfile] | None = None,
) -> Problem:
    """The ILP input for serving `classes` on node types of `fleet`. Pure (no I/O).

    `measured`: model → measured colocated rates (Mélange format) that replace the roofline's for that
    model; `profiles`: (model, node type) → measured profile replacing the roofline for every role."""
    measured = measured or {}
    options = options or CompileOptions()
    b = _Builder(profiles or {})
    demands, colocated, disaggregated = [], [], []
    for c, cls in enumerate(classes):
        model, slo = models[cls.model], slos[cls.slo]
        demands.append(
            Demand(cls.name, cls.model, cls.slo, cls.rate, cls.input_tokens * model.kv_bytes_per_token)
        )
        csd_ok = csd_allowed(cls, slo, options)
        gpus = [n for n in fleet if n.kind != "csd"]
        for node in gpus:
            steps = b.steps(cls.model, node, "colocated")
            if isinstance(steps, str):
                cap = Capacity(0.0, "measured", steps)
            elif cls.model in measured and steps is None:
                cap = measured[cls.model].capacity(node.name, cls)
            else:
                cap = colocated_capacity(model, node, cls, slo, options.profile, steps)
            if b.capacity(cls, "colocated", node, cap):
                colocated.append(ColocatedOption(c, b.pool(cls.model, node, "colocated"), 1.0 / cap.rate))
        if not options.allow_disaggregation or cls.input_tokens < options.pd_min_input_tokens:
            continue
        decoders: list[tuple[NodeType, float]] = []
        for node in fleet:
            if node.kind == "csd" and not csd_ok:
                b.exclusions[cls.name].append(
                    f"csd: decode on {node.name} needs a latency-tolerant SLO "
                    f"or prompts >= {options.csd_min_context_tokens} tokens"
                )
                continue
            steps = b.steps(cls.model, node, "decode")
            cap = (
                Capacity(0.0, "measured", steps)
                if isinstance(steps, str)
                else decode_capacity(model, node, cls, slo, options.profile, steps)
            )
            if b.capacity(cls, "decode", node, cap):
                decoders.append((node, cap.rate))
        routes: list[tuple[float, NodeType, NodeType, float, float, float]] = []
        for pnode in gpus:
            psteps = b.steps(cls.model, pnode, "prefill")
            for dnode, drate in decoders:
                transfer = b.transfer_seconds(model, cls.input_tokens, pnode, dnode)
                cap = (
                    Capacity(0.0, "measured", psteps)
                    if isinstance(psteps, str)
                    else prefill_capacity(model, pnode, cls, slo, options.profile, transfer, psteps)
                )
                if b.capacity(cls, f"prefill→{dnode.name}", pnode, cap):
                    marginal = pnode.price_per_hour / cap.rate + dnode.price_per_hour / drate
                    routes.append((marginal, pnode, dnode, 1.0 / cap.rate, 1.0 / drate, transfer))
        routes.sort(key=lambda r: (r[0], r[1].name, r[2].name))
        for _, pnode, dnode, pload, dload, transfer in routes[: options.max_routes_per_class]:
            disaggregated.append(
                DisaggregatedOption(
                    c,
                    b.pool(cls.model, pnode, "prefill"),
                    b.pool(cls.model, dnode, "decode"),
                    pload,
                    dload,
                    transfer,
                )
            )
    return Problem(
        tuple(demands),
        tuple(b.pools),
        tuple(colocated),
        tuple(disaggregated),
        dict(inventory or {}),
        dict(current or {}),
        options.churn_penalty,
        {k: tuple(v) for k, v in b.exclusions.items()},
    )
