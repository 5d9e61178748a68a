"""The versioned placement plan: what the planner publishes and the gateway routes by.

`Plan` is frozen and JSON-able (`to_dict` / `from_dict`, schema `PLAN_SCHEMA`). It carries pools
(name `model:node_type:role`, count), the routing of every request class (list of routes with shares
summing to 1: a colocated pool, or a (prefill pool, decode pool) pair), the cost, the baselines and the
solver outcome. `classify(input_tokens, expected_output_tokens, slo_class, model)` maps a request to
its class name with the plan's own bucket edges; `routes(class_name)` gives its routes, falling back
to the rate-weighted routes of the model's other classes for a class the plan saw no traffic for.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any

from common.errors import ConfigError, NotFoundError

PLAN_SCHEMA = 1


@dataclass(frozen=True)
class Pool:
    name: str
    model: str
    node_type: str
    role: str
    count: int
    price_per_hour: float
    device: str | None = None  # cpu | cuda | csd, when the writer knows it (the running planner does)


@dataclass(frozen=True)
class Route:
    """A share of a class: colocated (`pool`) or disaggregated (`prefill_pool` → `decode_pool`)."""

    share: float
    pool: str | None = None
    prefill_pool: str | None = None
    decode_pool: str | None = None

    def __post_init__(self) -> None:
        if (self.pool is None) == (self.prefill_pool is None or self.decode_pool is None):
            raise ValueError("route: give either pool, or both prefill_pool and decode_pool")
        if not 0 < self.share <= 1 + 1e-9:
            raise ValueError(f"share: must be in (0, 1], got {self.share}")

    @property
    def disaggregated(self) -> bool:
        return self.pool is None

    @property
    def pools(self) -> tuple[str, ...]:
        return (self.pool,) if self.pool else (str(self.prefill_pool), str(self.decode_pool))


@dataclass(frozen=True)
class ClassRouting:
    name: str
    model: str
    slo: str
    bucket: tuple[int, int]
    rate: float
    routes: tuple[Route, ...]
    ttft_seconds: float | None = None  # the class's SLO, when the writer states it
    tpot_seconds: float | None = None


@dataclass(frozen=True)
class Classifier:
    """Bucket edges (tokens) and SLO classes the plan's class names are built from."""

    input_edges: tuple[int, ...]
    output_edges: tuple[int, ...]
    slo_classes: tuple[str, ...]
    default_slo: str

    def bucket(self, input_tokens: float, output_tokens: float) -> tuple[int, int]:
        def index(edges: tuple[int, ...], tokens: float) -> int:
            return min(max(bisect.bisect_right(edges, tokens) - 1, 0), len(edges) - 2)

        return index(self.input_edges, input_tokens), index(self.output_edges, output_tokens)


@dataclass(frozen=True)
class Baseline:
    """A reference plan: `cost_per_hour` None when that baseline has no feasible solution."""

    name: str
    cost_per_hour: float | None
    instances: Mapping[str, int] = field(default_factory=dict)
    status: str = "optimal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "instances", MappingProxyType(dict(self.instances)))


@dataclass(frozen=True)
class SolveSummary:
    solver: str
    status: str
    optimal: bool
    gap: float | None
    solve_seconds: float


@dataclass(frozen=True)
class Plan:
    """A solved placement. `version` is the planner's generation number (monotonic per cluster)."""

    pools: tuple[Pool, ...]
    classes: tuple[ClassRouting, ...]
    classifier: Classifier
    cost_per_hour: float
    baselines: tuple[Baseline, ...]
    solve: SolveSummary
    version: int = 0
    demand: Mapping[str, Any] | None = None  # what the rates are (module docstring); None: as given

    # -- lookups ---------------------------------------------------------------------------------
    # Lookup indexes, built once per plan on first use (not fields: equality and to_dict ignore them).
    @cached_property
    def _models(self) -> tuple[str, ...]:
        return tuple(sorted({c.model for c in self.classes}))

    @cached_property
    def _by_name(self) -> dict[str, ClassRouting]:
        return {c.name: c for c in self.classes}

    def classify(
        self,
        input_tokens: float,
        expected_output_tokens: float,
        slo_class: str | None = None,
        model: str | None = None,
    ) -> str:
        """Class name of a request. Unknown / missing SLO class → `classifier.default_slo`; model None →
        the plan's only model (NotFoundError if ambiguous or unknown)."""
        models = self._models
        if model is None:
            if len(models) != 1:
                raise NotFoundError(f"plan serves {len(models)} models; name one", field="model")
            model = models[0]
        elif model not in models:
            raise NotFoundError(f"model {model!r} is not in the plan", field="model")
        slo = slo_class if slo_class in self.classifier.slo_classes else self.classifier.default_slo
        i, j = self.classifier.bucket(input_tokens, expected_output_tokens)
        return f"{model}/{slo}/i{i}o{j}"

    def routes(self, class_name: str) -> tuple[Route, ...]:
        """Routes of a class; for a class without planned traffic, the rate-weighted routes of its model."""
        by_name = self._by_name
        if class_name in by_name and by_name[class_name].routes:
            return by_name[class_name].routes
        model = class_name.split("/", 1)[0]
        weights: dict[Route, float] = defaultdict(float)
        for c in self.classes:
            if c.model == model:
                for r in c.routes:
                    weights[Route(1.0, r.pool, r.prefill_pool, r.decode_pool)] += c.rate * r.share
        total = sum(weights.values())
        if total <= 0:
            raise NotFoundError(f"no routes for class {class_name!r}", field="class")
        return tuple(Route(w / total, r.pool, r.prefill_pool, r.decode_pool) for r, w in weights.items())

    def pool(self, name: str) -> Pool:
        for p in self.pools:
            if p.name == name:
                return p
        raise NotFoundError(f"pool {name!r} is not in the plan", field="pool")

    def baseline(self, name: str) -> Baseline | None:
        return next((b for b in self.baselines if b.name == name), None)

    def counts(self) -> dict[str, int]:
        """Pool name → planned instances."""
        return {p.name: p.count for p in self.pools}

    def renamed(self, names: Mapping[str, str]) -> Plan:
        """The same plan with pools renamed by `names` (old → new; absent names kept), in pools and
        routes alike. The running planner renames placement's `model:node_type:role` to the DNS labels
        its workers register and its actuators deploy under."""

        def n(name: str | None) -> str | None:
            return None if name is None else names.get(name, name)

        return replace(
            self,
            pools=tuple(replace(p, name=names.get(p.name, p.name)) for p in self.pools),
            classes=tuple(
                replace(
                    c,
                    routes=tuple(
                        Route(r.share, n(r.pool), n(r.prefill_pool), n(r.decode_pool)) for r in c.routes
                    ),
                )
                for c in self.classes
            ),
        )

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; routes omit their None fields; `schema` names the format version."""
        out: dict[str, Any] = {
            "schema": PLAN_SCHEMA,
            "version": self.version,
            "cost_per_hour": self.cost_per_hour,
            "pools": [{k: v for k, v in asdict(p).items() if v is not None} for p in self.pools],
            "classes": [
                {
                    "name": c.name,
                    "model": c.model,
                    "slo": c.slo,
                    "bucket": list(c.bucket),
                    "rate": c.rate,
                    "routes": [{k: v for k, v in asdict(r).items() if v is not None} for r in c.routes],
                    **({"ttft_seconds": c.ttft_seconds} if c.ttft_seconds is not None else {}),
                    **({"tpot_seconds": c.tpot_seconds} if c.tpot_seconds is not None else {}),
                }
                for c in self.classes
            ],
            "classifier": {
                "input_edges": list(self.classifier.input_edges),
                "output_edges": list(self.classifier.output_edges),
                "slo_classes": list(self.classifier.slo_classes),
                "default_slo": self.classifier.default_slo,
            },
            "baselines": [
                {
                    "name": b.name,
                    "cost_per_hour": b.cost_per_hour,
                    "instances": dict(b.instances),
                    "status": b.status,
                }
                for b in self.baselines
            ],
            "solve": asdict(self.solve),
        }
        if self.demand is not None:
            out["demand"] = dict(self.demand)
        return out

    def to_json(self) -> str:
        """Compact JSON of `to_dict()` (what the planner writes to Redis)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        """Inverse of `to_json`; ConfigError on invalid JSON or a malformed plan."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"plan is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError("plan JSON must be an object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Inverse of `to_dict`; ConfigError naming the field on a malformed or newer-schema plan."""
        if data.get("schema") != PLAN_SCHEMA:
            raise ConfigError(
                f"unsupported plan schema {data.get('schema')!r} (expected {PLAN_SCHEMA})", field="schema"
            )
        try:
            c = data["classifier"]
            return cls(
                pools=tuple(Pool(**p) for p in data["pools"]),
                classes=tuple(
                    ClassRouting(
                        x["name"],
                        x["model"],
                        x["slo"],
                        tuple(x["bucket"]),
                        x["rate"],
                        tuple(Route(**r) for r in x["routes"]),
                        x.get("ttft_seconds"),
                        x.get("tpot_seconds"),
                    )
                    for x in data["classes"]
                ),
                classifier=Classifier(
                    tuple(c["input_edges"]),
                    tuple(c["output_edges"]),
                    tuple(c["slo_classes"]),
                    c["default_slo"],
                ),
                cost_per_hour=float(data["cost_per_hour"]),
                baselines=tuple(Baseline(**b) for b in data["baselines"]),
                solve=SolveSummary(**data["solve"]),
                version=int(data.get("version", 0)),
                demand=data.get("demand"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed plan ({type(exc).__name__}: {exc})") from None
