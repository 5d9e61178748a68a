"""Placement spec files (YAML or JSON) → typed inputs of the compiler, ILP and simulator.

This is the process edge: it reads the spec, the catalogs it names and any trace files, and turns every
problem into a one-line `ConfigError` naming file, field and reason. Shape (see
deploy/examples/placement/*.yaml):

    fleet: [H100x8, A100-80Gx8, L4x8, cpu-192c, csd-8x]   # node types allowed (default: whole catalog)
    inventory: {H100x8: 4}                               # max nodes per type (absent = unlimited)
    slo_classes: [{name: interactive, ttft_seconds: 2, tpot_seconds: 0.1}]
    traffic:
      - {model: llama2-70b, slo_class: interactive, trace: conv.csv, rate_scale: 1}
      - {model: llama2-7b, slo_class: interactive, rate: 8, distribution: {weights: [[...]]}}
    buckets: {input_edges: [...], output_edges: [...]}   # class buckets (defaults below)
    options: {time_limit_seconds: 10, allow_disaggregation: true, slice_factor: 1, ...}
    catalog: my_nodes.yaml      # optional node catalog replacing the shipped one
    node_types: [...]           # optional extra / overriding node types
    models: [...]               # optional extra / overriding model specs
    current: {"llama2-70b:H100x8:colocated": 2}   # running plan, for the churn penalty
    profiles:                   # measured profiles replacing the roofline's
      - {path: cpu-local.profile.json}                     # `heteroserve profile` file: every role
      - {model: llama2-7b, path: gpu_info.json, node_types: {A100: A100-80G}}   # Mélange: colocated
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from common.config import build, load_mapping
from common.errors import ConfigError
from common.vocab import LENGTH_BUCKET_EDGES
from placement.catalog import Catalog, NodeType, load_catalog
from placement.compile import CompileOptions
from placement.ilp.problem import SolverOptions
from placement.measured import MeasuredTable, from_melange
from placement.melange import load_profiles
from placement.models import ModelSpec, load_models
from placement.plan import Classifier
from placement.profile_file import NodeProfile, is_profile_document, load_node_profile
from placement.profiles import ProfileOptions
from placement.trace import Trace, load_trace
from placement.workload import (
    Buckets,
    RequestClass,
    SLOClass,
    classes_from_distribution,
    classes_from_lengths,
)

DEFAULT_INPUT_EDGES = (0, 128, 256, 512, 1024, 2048, 4096, 8192, 32768)
DEFAULT_OUTPUT_EDGES = (0, 32, 64, 128, 256, 512, 1024, 4096)


@dataclass(frozen=True)
class BucketSpec:
    input_edges: tuple[int, ...] = DEFAULT_INPUT_EDGES
    output_edges: tuple[int, ...] = DEFAULT_OUTPUT_EDGES


@dataclass(frozen=True)
class DistributionSpec:
    """Fractions per (input bucket, output bucket) of the spec's `buckets`, rows = input buckets."""

    weights: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class TrafficSpec:
    """One model × SLO class stream: a `trace` file, or a `rate` (req/s) with a `distribution`."""

    model: str
    slo_class: str
    rate: float | None = None
    distribution: DistributionSpec | None = None
    trace: str | None = None
    rate_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate < 0:
            raise ValueError(f"rate: must be >= 0, got {self.rate}")
        if self.rate_scale <= 0:
            raise ValueError(f"rate_scale: must be > 0, got {self.rate_scale}")
        if (self.trace is None) == (self.distribution is None):
            raise ValueError("trace: give exactly one of trace, distribution")
        if self.distribution is not None and self.rate is None:
            raise ValueError("rate: required with a distribution")


@dataclass(frozen=True)
class ProfileFileSpec:
    """A profile file: a `heteroserve profile` file (model and node type inside it; `model` and
    `node_types` optional renames), or a Mélange-format file for `model` (`node_types` maps its GPU
    names to catalog names)."""

    path: str
    model: str | None = None
    node_types: dict[str, str] = field(default_factory=dict)
    input_edges: tuple[int, ...] = LENGTH_BUCKET_EDGES
    output_edges: tuple[int, ...] = LENGTH_BUCKET_EDGES


@dataclass(frozen=True)
class OptionsSpec:
    solver: str = "highs"
    time_limit_seconds: float = 10.0
    mip_gap: float = 1e-4
    allow_disaggregation: bool = True
    csd_min_context_tokens: int = 8192
    churn_penalty: float = 0.0
    slice_factor: int = 1
    max_utilization: float = 0.8
    ttft_headroom: float = 0.5
    tpot_headroom: float = 0.9
    colocated_tpot_headroom: float = 0.8
    transfer_utilization: float = 0.8
    max_routes_per_class: int | None = 12


@dataclass(frozen=True)
class PlacementSpec:
    traffic: tuple[TrafficSpec, ...]
    slo_classes: tuple[SLOClass, ...]
    fleet: tuple[str, ...] = ()
    inventory: dict[str, int] = field(default_factory=dict)
    buckets: BucketSpec = BucketSpec()
    options: OptionsSpec = OptionsSpec()
    catalog: str | None = None
    node_types: tuple[NodeType, ...] = ()
    models: tuple[ModelSpec, ...] = ()
    model_catalog: str | None = None
    current: dict[str, int] = field(default_factory=dict)
    profiles: tuple[ProfileFileSpec, ...] = ()
    version: int = 1


@dataclass(frozen=True)
class LoadedSpec:
    """Everything a plan needs, typed and validated. `traces`: traffic index → its trace, if any."""

    source: str
    fleet: Catalog
    models: dict[str, ModelSpec]
    slos: dict[str, SLOClass]
    classes: tuple[RequestClass, ...]
    inventory: dict[str, int]
    compile_options: CompileOptions
    solver_options: SolverOptions
    classifier: Classifier
    slice_factor: int
    current: dict[str, int]
    traces: dict[int, Trace]
    traffic: tuple[TrafficSpec, ...]
    measured: dict[str, MeasuredTable] = field(default_factory=dict)
    profiles: dict[tuple[str, str], NodeProfile] = field(default_factory=dict)


def _relative(base: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base / path


def load_spec(path: str | Path) -> LoadedSpec:
    """Read and validate a placement spec; raises ConfigError naming file and field."""
    source = str(path)
    return spec_from_mapping(load_mapping(source), source, Path(source).resolve().parent)


def spec_from_mapping(data: Mapping[str, Any], source: str, base: Path | None = None, *,
                      strict: bool = False) -> LoadedSpec:
    """As `load_spec`, for a spec already in memory (e.g. a request body, `source` = how errors name
    it); file names in it resolve against `base` (default: the current directory). `strict` takes
    JSON's types only (a request body), not the strings YAML and environment variables allow."""
    spec = build(PlacementSpec, data, source=source, strict=strict)
    try:
        return _resolve(spec, source, (base or Path.cwd()).resolve())
    except ValueError as exc:
        raise ConfigError(str(exc), source=source) from None


def _resolve(spec: PlacementSpec, source: str, base: Path) -> LoadedSpec:
    catalog = load_catalog(_relative(base, spec.catalog) if spec.catalog else None).merged(spec.node_types)
    models = load_models(_relative(base, spec.model_catalog) if spec.model_catalog else None)
    models.update({m.name: m for m in spec.models})
    for i, name in enumerate(spec.fleet):
        if name not in catalog:
            raise ConfigError(
                f"unknown node type {name!r} (known: {', '.join(catalog.names())})",
                field=f"fleet[{i}]",
                source=source,
            )
    fleet = catalog.subset(spec.fleet) if spec.fleet else catalog
    for name, count in spec.inventory.items():
        if name not in fleet:
            raise ConfigError(
                f"unknown node type {name!r} (not in the fleet)", field=f"inventory.{name}", source=source
            )
        if count < 0:
            raise ConfigError(f"must be >= 0, got {count}", field=f"inventory.{name}", source=source)
    slos = {s.name: s for s in spec.slo_classes}
    if not slos:
        raise ConfigError("at least one SLO class is required", field="slo_classes", source=source)
    buckets = Buckets(spec.buckets.input_edges, spec.buckets.output_edges)
    classes: list[RequestClass] = []
    traces: dict[int, Trace] = {}
    for i, t in enumerate(spec.traffic):
        if t.model not in models:
            raise ConfigError(
                f"unknown model {t.model!r} (known: {', '.join(sorted(models))})",
                field=f"traffic[{i}].model",
                source=source,
            )
        if t.slo_class not in slos:
            raise ConfigError(
                f"unknown SLO class {t.slo_class!r}", field=f"traffic[{i}].slo_class", source=source
            )
        if t.trace is not None:
            trace = load_trace(_relative(base, t.trace))
            traces[i] = trace
            classes += classes_from_lengths(
                t.model,
                t.slo_class,
                zip(trace.input_tokens, trace.output_tokens, strict=True),
                trace.duration_seconds,
                buckets,
                t.rate_scale,
            )
        else:
            assert t.distribution is not None and t.rate is not None, "validated in TrafficSpec"
            try:
                classes += classes_from_distribution(
                    t.model, t.slo_class, t.rate * t.rate_scale, t.distribution.weights, buckets
                )
            except ValueError as exc:
                raise ConfigError(str(exc), field=f"traffic[{i}].distribution", source=source) from None
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ConfigError(
            "two traffic entries share a model and SLO class; merge them", field="traffic", source=source
        )
    measured, profiles = _measured(spec, source, base, catalog, models)
    o = spec.options
    profile = ProfileOptions(
        max_utilization=o.max_utilization,
        ttft_headroom=o.ttft_headroom,
        tpot_headroom=o.tpot_headroom,
        colocated_tpot_headroom=o.colocated_tpot_headroom,
    )
    return LoadedSpec(
        source,
        fleet,
        models,
        slos,
        tuple(classes),
        dict(spec.inventory),
        CompileOptions(
            allow_disaggregation=o.allow_disaggregation,
            csd_min_context_tokens=o.csd_min_context_tokens,
            max_routes_per_class=o.max_routes_per_class,
            churn_penalty=o.churn_penalty,
            profile=profile,
        ),
        SolverOptions(
            solver=o.solver,  # type: ignore[arg-type]
            time_limit_seconds=o.time_limit_seconds,
            mip_gap=o.mip_gap,
            transfer_utilization=o.transfer_utilization,
        ),
        Classifier(buckets.input_edges, buckets.output_edges, tuple(slos), spec.slo_classes[0].name),
        o.slice_factor,
        dict(spec.current),
        traces,
        spec.traffic,
        measured,
        profiles,
    )


def _measured(
    spec: PlacementSpec, source: str, base: Path, catalog: Catalog, models: dict[str, ModelSpec]
) -> tuple[dict[str, MeasuredTable], dict[tuple[str, str], NodeProfile]]:
    out: dict[str, MeasuredTable] = {}
    node_profiles: dict[tuple[str, str], NodeProfile] = {}
    for i, entry in enumerate(spec.profiles):
        path = _relative(base, entry.path)
        if is_profile_document(load_mapping(path)):
            profile = _node_profile(entry, i, path, source, catalog, models)
            node_profiles[(profile.model, profile.node_type)] = profile
            continue
        if entry.model is None:
            raise ConfigError("required for a Mélange file", field=f"profiles[{i}].model", source=source)
        if entry.model not in models:
            raise ConfigError(f"unknown model {entry.model!r}", field=f"profiles[{i}].model", source=source)
        profiles = load_profiles(_relative(base, entry.path))
        for gpu in profiles.costs:
            name = entry.node_types.get(gpu, gpu)
            if name not in catalog:
                raise ConfigError(
                    f"GPU {gpu!r} maps to unknown node type {name!r}; map it in node_types",
                    field=f"profiles[{i}].node_types",
                    source=source,
                )
        try:
            out[entry.model] = from_melange(
                profiles, entry.node_types, entry.input_edges, entry.output_edges, source=str(entry.path)
            )
        except ValueError as exc:
            raise ConfigError(str(exc), field=f"profiles[{i}]", source=source) from None
    return out, node_profiles


def _node_profile(
    entry: ProfileFileSpec, i: int, path: Path, source: str, catalog: Catalog, models: dict[str, ModelSpec]
) -> NodeProfile:
    """A `heteroserve profile` file, renamed by the entry's `model` / `node_types`, checked against the
    catalog and models so a typo names its field."""
    profile = load_node_profile(path)
    profile = replace(
        profile,
        model=entry.model or profile.model,
        node_type=entry.node_types.get(profile.node_type, profile.node_type),
    )
    if profile.model not in models:
        raise ConfigError(f"unknown model {profile.model!r}", field=f"profiles[{i}].model", source=source)
    if profile.node_type not in catalog:
        raise ConfigError(
            f"profile of node type {profile.node_type!r} not in the catalog; add it under node_types",
            field=f"profiles[{i}].node_types",
            source=source,
        )
    return profile
