"""The running planner's `SolveFn`: the same path as `heteroserve plan`, on the live demand.

    demand (DemandClass per placement class) → placement.workload.RequestClass
      → placement.compile.compile_problem (roles, CPU/CSD rules, measured profiles: step times,
        transfer bandwidth rows, TTFT including the transfer, TPOT; several models; pools of every
        role on every node type the inventory allows)
      → placement.planning.make_plan (placement.solve: precheck + ILP + explanation; baselines)
      → Plan, its pools renamed to DNS labels (`pool_label`), each pool's device and each class's SLO
        stated, and the demand basis recorded.

The running plan's counts enter the ILP as `current` (its churn penalty), mapped back to placement's
pool names. Every class of `PlanningInputs.warm` is planned for at least its `min_rate_per_s`, so an
idle cluster keeps a worker able to serve each class: gateways count a request only once it is
served, so a fleet scaled to zero would never see the traffic that should scale it up again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from common.vocab import ROLES, Device, NodeKind
from control_plane.planner.types import DemandClass, SolvedPlan
from placement.catalog import Catalog
from placement.compile import CompileOptions, compile_problem
from placement.ilp.problem import SolverOptions, pool_name
from placement.measured import MeasuredTable
from placement.models import ModelSpec
from placement.plan import Classifier, Plan
from placement.planning import make_plan
from placement.profile_file import NodeProfile
from placement.workload import Buckets, RequestClass, SLOClass

DEVICE_OF_KIND: Mapping[NodeKind, Device] = {"gpu": "cuda", "cpu": "cpu", "csd": "csd"}
_CLASS = re.compile(r"^(?P<model>[^/]+)/(?P<slo>[^/]+)/i(?P<i>\d+)o(?P<j>\d+)$")


def pool_label(model: str, node_type: str, role: str, *, with_model: bool) -> str:
    """A DNS label (≤ 40 chars) naming a pool: `<node type>-<role>` (`<model>-` first when the
    planner serves several models). Long names keep a hash suffix so two never collide."""
    raw = f"{model}-{node_type}-{role}" if with_model else f"{node_type}-{role}"
    label = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    if len(label) > 40:
        label = f"{label[:31].rstrip('-')}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"
    return label


@dataclass(frozen=True)
class WarmClass:
    """Traffic every plan covers at least: `min_rate_per_s` of `slo_class` requests of these lengths."""

    slo_class: str
    input_tokens: int
    output_tokens: int
    min_rate_per_s: float
    model: str | None = None  # None: the planner's first model

    def __post_init__(self) -> None:
        if self.input_tokens < 1 or self.output_tokens < 1:
            raise ValueError("input_tokens and output_tokens must be >= 1")
        if self.min_rate_per_s < 0:
            raise ValueError(f"min_rate_per_s: must be >= 0, got {self.min_rate_per_s}")


@dataclass(frozen=True)
class PlanningInputs:
    """Everything but the demand: what the compile step needs, resolved from files at the edge."""

    fleet: Catalog
    models: Mapping[str, ModelSpec]
    slos: Mapping[str, SLOClass]
    buckets: Buckets
    inventory: Mapping[str, int] = field(default_factory=dict)
    profiles: Mapping[tuple[str, str], NodeProfile] = field(default_factory=dict)
    measured: Mapping[str, MeasuredTable] = field(default_factory=dict)
    compile_options: CompileOptions = field(default_factory=CompileOptions)
    solver_options: SolverOptions = field(default_factory=SolverOptions)
    warm: tuple[WarmClass, ...] = ()
    default_slo: str = ""
    with_baselines: bool = True

    def __post_init__(self) -> None:
        if not self.models or not self.slos:
            raise ValueError("models and slo_classes must each have at least one entry")
        if self.default_slo and self.default_slo not in self.slos:
            raise ValueError(f"default_slo: {self.default_slo!r} is not an SLO class")
        for w in self.warm:
            if w.slo_class not in self.slos:
                raise ValueError(f"classes: unknown slo_class {w.slo_class!r}")

    @property
    def classifier(self) -> Classifier:
        slos = tuple(self.slos)
        return Classifier(self.buckets.input_edges, self.buckets.output_edges, slos,
                          self.default_slo or slos[0])

    @property
    def first_model(self) -> str:
        return next(iter(self.models))

    def class_of(self, name: str, input_tokens: float, output_tokens: float) -> str:
        """Placement class name of observed traffic named `name` (the gateways name it by the plan:
        `model/slo/i<i>o<j>`; before any plan by its SLO class): kept when it is a class name,
        else classified by its mean lengths under its SLO class (or the default one)."""
        if _CLASS.match(name) and name.split("/", 1)[0] in self.models:
            return name
        c = self.classifier
        slo = name if name in self.slos else c.default_slo
        i, j = self.buckets.index(input_tokens, output_tokens)
        return f"{self.first_model}/{slo}/i{i}o{j}"

    def warm_demand(self) -> dict[str, DemandClass]:
        out: dict[str, DemandClass] = {}
        for w in self.warm:
            model = w.model or self.first_model
            i, j = self.buckets.index(w.input_tokens, w.output_tokens)
            name = f"{model}/{w.slo_class}/i{i}o{j}"
            out[name] = DemandClass(name, w.min_rate_per_s, w.input_tokens, w.output_tokens)
        return out


class PlacementSolver:
    """Callable `SolveFn` over `PlanningInputs` (module docstring). Pure apart from the solver's time."""

    def __init__(self, inputs: PlanningInputs) -> None:
        self.inputs = inputs

    def with_inventory(self, inventory: Mapping[str, int]) -> PlacementSolver:
        """The same solver over another inventory (the live node list on Kubernetes)."""
        return PlacementSolver(replace(self.inputs, inventory=dict(inventory)))

    def labels(self) -> dict[str, str]:
        """placement pool name → label, for every pool the compile step can open."""
        several = len(self.inputs.models) > 1
        return {pool_name(m, n.name, r): pool_label(m, n.name, r, with_model=several)
                for m in self.inputs.models for n in self.inputs.fleet
                for r in ROLES}

    def request_classes(self, demand: Sequence[DemandClass]) -> list[RequestClass]:
        edges_in, edges_out = self.inputs.buckets.input_edges, self.inputs.buckets.output_edges
        out = []
        for d in demand:
            m = _CLASS.match(d.name)
            assert m is not None, f"demand class {d.name!r} is not a placement class name (class_of)"
            i, j = int(m["i"]), int(m["j"])
            model = self.inputs.models[m["model"]]
            # The open last bucket holds up to the model's context; other buckets up to their edge.
            last_in, last_out = i + 2 == len(edges_in), j + 2 == len(edges_out)
            max_in = max(2 * d.mean_input_tokens, edges_in[-1]) if last_in else edges_in[i + 1]
            max_out = max(2 * d.mean_output_tokens, edges_out[-1]) if last_out else edges_out[j + 1]
            max_in = min(max_in, model.max_context_tokens)
            out.append(RequestClass(d.name, m["model"], m["slo"], (i, j), d.rate_per_s,
                                    max(d.mean_input_tokens, 1.0), max(d.mean_output_tokens, 1.0),
                                    max(max_in, d.mean_input_tokens), max(max_out, d.mean_output_tokens)))
        return out

    def __call__(self, demand: Sequence[DemandClass], running: SolvedPlan | None) -> SolvedPlan:
        inputs = self.inputs
        labels = self.labels()
        back = {label: name for name, label in labels.items()}
        current = {back[p]: n for p, n in running.counts().items() if p in back} if running else {}
        problem = compile_problem(inputs.fleet, dict(inputs.models), self.request_classes(demand),
                                  dict(inputs.slos), dict(inputs.inventory), inputs.compile_options,
                                  current, dict(inputs.measured), dict(inputs.profiles))
        plan = make_plan(problem, inputs.classifier, inputs.solver_options,
                         with_baselines=inputs.with_baselines)
        return SolvedPlan(self._decorate(plan).renamed(labels))

    def _decorate(self, plan: Plan) -> Plan:
        """State each pool's device and each class's SLO in the plan (both optional in `Plan`)."""
        fleet, slos = self.inputs.fleet, self.inputs.slos
        pools = tuple(replace(p, device=DEVICE_OF_KIND[fleet[p.node_type].kind])  # type: ignore[index]
                      for p in plan.pools)
        classes = tuple(replace(c, ttft_seconds=slos[c.slo].ttft_seconds,
                                tpot_seconds=slos[c.slo].tpot_seconds) for c in plan.classes)
        return replace(plan, pools=pools, classes=classes)


def with_demand(solved: SolvedPlan, demand: Mapping[str, Any]) -> SolvedPlan:
    """The plan with its demand basis recorded (`Plan.demand`)."""
    return SolvedPlan(replace(solved.plan, demand=dict(demand)))
