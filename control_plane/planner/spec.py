"""The planner's input file: what it may deploy, for which traffic, and how its loop runs.

One YAML/JSON mapping (`load_planner_spec(path)`), the planner's sections:

    model:         {name, path?, architecture?}  the served model; `path`: its directory (config.json
                   gives the architecture, else `architecture` (a placement ModelSpec), else the
                   shipped model catalog by name)
    planner:       PlannerSection  loop timing, hysteresis, the peak basis, /metrics port
    slo_classes:   [{name, ttft_seconds, tpot_seconds, latency_tolerant?}]
    classes:       [{slo_class, input_tokens, output_tokens, min_rate_per_s}]  traffic every plan covers
    buckets:       {input_edges, output_edges}  request classes (default: common.vocab's edges)
    node_types:    [placement NodeType]  node types beyond (or replacing) the shipped catalog
    fleet:         [node type names]     what the plan may use (default: the `node_types` given)
    inventory:     {node_type: most nodes of that type the plan may use}
    profiles:      [{path, model?, node_types?}]  measured profiles (`heteroserve profile` files, or
                   Mélange files with `model`); node types without one use the roofline
    options:       OptionsSection  compile / solver options
    churn_penalty: $/h charged per instance added or removed (small savings do not reshuffle the fleet)

No rates per worker: capacities come from the profiles (or the roofline). Written by an operator, by
the Helm chart (`templates/planner.yaml`) or shipped as `deploy/examples/embedded.yaml`. The embedded
cluster's file is this spec plus its own sections (`FOREIGN_KEYS`: `gateway`, `workers`, `profiling`,
and the model's `preset` and `seed`); this loader skips exactly those and refuses any other unknown
key, so a typo still names its field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.config import build, load_mapping
from common.errors import ConfigError
from common.vocab import LENGTH_BUCKET_EDGES
from control_plane.planner.forecast import ForecastConfig
from control_plane.planner.peak import PeakConfig
from control_plane.planner.service import PlannerConfig
from control_plane.planner.solver import PlanningInputs, WarmClass
from placement.catalog import NodeType
from placement.compile import CompileOptions
from placement.ilp.problem import SolverOptions
from placement.models import ModelSpec, load_models, model_spec_from_hf
from placement.spec import spec_from_mapping
from placement.workload import Buckets, SLOClass

# Keys of the embedded cluster's file that are not the planner's: top-level sections (None: the whole
# section) and keys inside a planner section. Skipped, not validated, by `planner_spec_from_mapping`.
FOREIGN_KEYS: Mapping[str, tuple[str, ...] | None] = {
    "gateway": None, "workers": None, "profiling": None, "model": ("preset", "seed")}


@dataclass(frozen=True)
class ModelRef:
    """The served model: `name` (what workers register and clients send), the directory holding it
    (`path`; None: the caller's default) and, optionally, its `architecture`."""

    name: str
    path: str | None = None
    architecture: ModelSpec | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")


@dataclass(frozen=True)
class PlannerSection:
    """The loop (the `planner` section); seconds unless named otherwise. Meanings: `PlannerConfig`."""

    interval_seconds: float = 20.0
    tick_seconds: float = 2.0
    min_solve_gap_seconds: float = 4.0
    traffic_window_seconds: float = 20.0
    headroom: float = 1.0
    scale_down_confirmations: int = 2
    scale_down_stabilization_seconds: float = 0.0
    reconcile_seconds: float = 10.0
    lock_ttl_ms: int = 6000
    peak: PeakConfig = field(default_factory=PeakConfig)
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if self.interval_seconds <= 0 or self.tick_seconds <= 0:
            raise ValueError("interval_seconds and tick_seconds must be > 0")
        if self.lock_ttl_ms < 300:
            raise ValueError(f"lock_ttl_ms must be >= 300 (the lock is renewed every ttl/3), "
                             f"got {self.lock_ttl_ms}")


@dataclass(frozen=True)
class BucketSection:
    input_edges: tuple[int, ...] = LENGTH_BUCKET_EDGES
    output_edges: tuple[int, ...] = LENGTH_BUCKET_EDGES


@dataclass(frozen=True)
class ProfileRef:
    """A profile file (`placement.spec.ProfileFileSpec`): path relative to the spec file."""

    path: str
    model: str | None = None
    node_types: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OptionsSection:
    allow_disaggregation: bool = True
    csd_min_context_tokens: int = 8192
    max_routes_per_class: int | None = 12
    time_limit_seconds: float = 10.0
    transfer_utilization: float = 0.8
    baselines: bool = True
    min_replicas: int = 2  # availability: every used pool runs >= 2 workers (capped by inventory)
    pd_min_input_tokens: int = 256  # the gateway's pd_min_uncached_tokens: shorter prompts never P/D


@dataclass(frozen=True)
class PlannerSpec:
    """The planner's input (module docstring), validated at construction."""

    model: ModelRef
    planner: PlannerSection = field(default_factory=PlannerSection)
    slo_classes: tuple[SLOClass, ...] = ()
    classes: tuple[WarmClass, ...] = ()
    buckets: BucketSection = field(default_factory=BucketSection)
    node_types: tuple[NodeType, ...] = ()
    fleet: tuple[str, ...] = ()
    inventory: dict[str, int] = field(default_factory=dict)
    profiles: tuple[ProfileRef, ...] = ()
    options: OptionsSection = field(default_factory=OptionsSection)
    churn_penalty: float = 0.01

    def __post_init__(self) -> None:
        if not self.slo_classes:
            raise ValueError("slo_classes: at least one SLO class is required")
        names = {s.name for s in self.slo_classes}
        for i, c in enumerate(self.classes):
            if c.slo_class not in names:
                raise ValueError(f"classes[{i}].slo_class: unknown SLO class {c.slo_class!r}")
        Buckets(self.buckets.input_edges, self.buckets.output_edges)  # validates the edges
        if not self.fleet and not self.node_types:
            raise ValueError("fleet: name the node types to plan over (or define them in node_types)")
        if self.churn_penalty < 0:
            raise ValueError(f"churn_penalty: must be >= 0, got {self.churn_penalty}")

    def planner_config(self, planner_id: str) -> PlannerConfig:
        """The loop's configuration for the replica `planner_id` (default forecast settings)."""
        loop = self.planner
        return PlannerConfig(
            planner_id=planner_id, interval_seconds=loop.interval_seconds,
            tick_seconds=loop.tick_seconds, min_solve_gap_seconds=loop.min_solve_gap_seconds,
            traffic_window_seconds=loop.traffic_window_seconds, headroom=loop.headroom,
            scale_down_confirmations=loop.scale_down_confirmations,
            scale_down_stabilization_seconds=loop.scale_down_stabilization_seconds,
            reconcile_seconds=loop.reconcile_seconds, lock_ttl_ms=loop.lock_ttl_ms,
            forecast=ForecastConfig(), peak=loop.peak)

    def planning_inputs(self, *, base: Path | None = None, model_dir: Path | None = None,
                        extra_profiles: Sequence[Path] = (), source: str = "planner spec") -> PlanningInputs:
        """Resolve files (catalog, model config, profiles) into the solver's inputs. `model_dir`
        overrides `model.path`; `extra_profiles` add to `profiles` (the embedded cluster's measured
        files). Raises ConfigError naming the field."""
        base = (base or Path.cwd()).resolve()
        model = self._model_spec(model_dir, base, source)
        fleet = list(self.fleet) or [t.name for t in self.node_types]
        refs: list[dict[str, Any]] = [
            *({"path": p.path, "model": p.model, "node_types": p.node_types} for p in self.profiles),
            *({"path": str(p)} for p in extra_profiles)]
        placement = {
            "fleet": fleet, "inventory": dict(self.inventory),
            "node_types": [asdict(t) for t in self.node_types],
            "models": [asdict(model)],
            "slo_classes": [asdict(s) for s in self.slo_classes],
            "traffic": [], "profiles": [{k: v for k, v in r.items() if v} for r in refs],
        }
        loaded = spec_from_mapping(placement, source, base)
        o = self.options
        try:
            return PlanningInputs(
                fleet=loaded.fleet, models={model.name: model}, slos=loaded.slos,
                buckets=Buckets(self.buckets.input_edges, self.buckets.output_edges),
                inventory=dict(self.inventory), profiles=loaded.profiles, measured=loaded.measured,
                compile_options=CompileOptions(
                    allow_disaggregation=o.allow_disaggregation,
                    csd_min_context_tokens=o.csd_min_context_tokens,
                    max_routes_per_class=o.max_routes_per_class, churn_penalty=self.churn_penalty,
                    pd_min_input_tokens=o.pd_min_input_tokens),
                solver_options=SolverOptions(time_limit_seconds=o.time_limit_seconds,
                                             transfer_utilization=o.transfer_utilization,
                                             min_replicas=o.min_replicas),
                warm=tuple(w if w.model else WarmClass(w.slo_class, w.input_tokens, w.output_tokens,
                                                       w.min_rate_per_s, model.name) for w in self.classes),
                default_slo=self.slo_classes[0].name, with_baselines=o.baselines)
        except ValueError as exc:
            raise ConfigError(str(exc), source=source) from None

    def _model_spec(self, model_dir: Path | None, base: Path, source: str) -> ModelSpec:
        if self.model.architecture is not None:
            return self.model.architecture
        directory = model_dir or (base / self.model.path if self.model.path else None)
        if directory is not None and (directory / "config.json").exists():
            return model_spec_from_hf(directory, self.model.name)
        shipped = load_models()
        if self.model.name in shipped:
            return shipped[self.model.name]
        raise ConfigError(f"no architecture for model {self.model.name!r}: give model.architecture, a "
                          "model.path holding config.json, or a model of the shipped catalog",
                          field="model", source=source)


def planner_spec_from_mapping(data: Mapping[str, Any], *, source: str | None = None) -> PlannerSpec:
    """`PlannerSpec` from a parsed file, skipping `FOREIGN_KEYS`. Raises `ConfigError` naming the
    source and the field (e.g. `slo_classes[0].ttft_seconds`)."""
    own: dict[str, Any] = {}
    for key, value in data.items():
        if key in FOREIGN_KEYS and FOREIGN_KEYS[key] is None:
            continue
        skip = FOREIGN_KEYS.get(key) or ()
        own[key] = {k: v for k, v in value.items() if k not in skip} \
            if skip and isinstance(value, Mapping) else value
    return build(PlannerSpec, own, source=source)


def load_planner_spec(path: str | Path) -> PlannerSpec:
    """Read and validate the planner's file (module docstring). Raises `ConfigError`."""
    return planner_spec_from_mapping(load_mapping(path), source=str(path))
