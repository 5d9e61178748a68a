"""The planner's input file: what it may deploy, for which traffic, and how its loop runs.

One YAML/JSON mapping (`load_planner_spec(path)`), the planner's sections:

    model:         {name, path?}   the model the plan serves; `path`: its directory (local actuator)
    planner:       PlannerSection  loop timing, hysteresis, minimum rates, /metrics port
    pools:         [ProfiledPool]  name, node_type, role, device, price_per_hour, rate_per_worker
    classes:       [ProfiledClass] request classes by length bounds, with their SLO
    inventory:     {node_type: most nodes of that type the plan may use}
    churn_penalty: $/h charged per instance added or removed (small savings do not reshuffle the fleet)

Written by an operator, by the Helm chart (`templates/planner.yaml`) or shipped as
`deploy/examples/embedded.yaml`. The embedded cluster's file is this spec plus its own sections
(`FOREIGN_KEYS`: `gateway`, `workers`, and the model's `preset` and `seed`); this loader skips
exactly those and refuses any other unknown key, so a typo still names its field. The embedded
cluster (`heteroserve.embedded.config.EmbeddedConfig`) validates the whole file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config import build, load_mapping
from control_plane.planner.forecast import ForecastConfig
from control_plane.planner.profile_solver import ProfiledClass, ProfiledPool, ProfileSpec
from control_plane.planner.service import PlannerConfig

# Keys of the embedded cluster's file that are not the planner's: top-level sections (None: the whole
# section) and keys inside a planner section. Skipped, not validated, by `planner_spec_from_mapping`.
FOREIGN_KEYS: Mapping[str, tuple[str, ...] | None] = {
    "gateway": None, "workers": None, "model": ("preset", "seed")}


@dataclass(frozen=True)
class ModelRef:
    """The served model: `name` (what workers register and clients send) and, for a planner that
    starts workers itself, the directory holding it (`path`; None: the caller's default)."""

    name: str
    path: str | None = None

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
    headroom: float = 1.2
    scale_down_confirmations: int = 2
    scale_down_stabilization_seconds: float = 0.0
    reconcile_seconds: float = 10.0
    lock_ttl_ms: int = 6000
    min_rate_per_s: dict[str, float] = field(default_factory=dict)
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if self.interval_seconds <= 0 or self.tick_seconds <= 0:
            raise ValueError("interval_seconds and tick_seconds must be > 0")
        if self.lock_ttl_ms < 300:
            raise ValueError(f"lock_ttl_ms must be >= 300 (the lock is renewed every ttl/3), "
                             f"got {self.lock_ttl_ms}")


@dataclass(frozen=True)
class PlannerSpec:
    """The planner's input (module docstring). Validated at construction: at least one pool and one
    class, unique pool names, at most one pool per (node_type, role)."""

    model: ModelRef
    planner: PlannerSection = field(default_factory=PlannerSection)
    pools: tuple[ProfiledPool, ...] = ()
    classes: tuple[ProfiledClass, ...] = ()
    inventory: dict[str, int] = field(default_factory=dict)
    churn_penalty: float = 0.01

    def __post_init__(self) -> None:
        if not self.pools or not self.classes:
            raise ValueError("pools and classes must each list at least one entry")
        self.profile_spec()  # validates pool names, roles and (node_type, role) uniqueness

    def profile_spec(self) -> ProfileSpec:
        """What the planner's `ProfileSolver` needs from this file."""
        return ProfileSpec(model=self.model.name, pools=self.pools, classes=self.classes,
                           inventory=dict(self.inventory), churn_penalty=self.churn_penalty)

    def planner_config(self, planner_id: str) -> PlannerConfig:
        """The loop's configuration for the replica `planner_id` (default forecast settings)."""
        loop = self.planner
        return PlannerConfig(
            planner_id=planner_id, model=self.model.name, interval_seconds=loop.interval_seconds,
            tick_seconds=loop.tick_seconds, min_solve_gap_seconds=loop.min_solve_gap_seconds,
            traffic_window_seconds=loop.traffic_window_seconds, headroom=loop.headroom,
            scale_down_confirmations=loop.scale_down_confirmations,
            scale_down_stabilization_seconds=loop.scale_down_stabilization_seconds,
            reconcile_seconds=loop.reconcile_seconds, lock_ttl_ms=loop.lock_ttl_ms,
            min_rate_per_s=dict(loop.min_rate_per_s), forecast=ForecastConfig())


def planner_spec_from_mapping(data: Mapping[str, Any], *, source: str | None = None) -> PlannerSpec:
    """`PlannerSpec` from a parsed file, skipping `FOREIGN_KEYS`. Raises `ConfigError` naming the
    source and the field (e.g. `pools[2].role`)."""
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
