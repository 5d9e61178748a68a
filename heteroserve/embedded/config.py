"""Configuration of the embedded cluster (`heteroserve up --config FILE`), read by `up` and the planner.

The default lives in `deploy/examples/embedded.yaml` (read from the source tree: `make install` installs
the project in editable mode). Sections: `model` (generated if missing), `gateway`,
`planner` (loop timing, hysteresis, minimum rates), `workers` (process settings), `pools` (the node
types and roles the planner may use: price, initial count, and the profile — requests/s one worker
sustains per class), `classes` (request classes by length bounds) and `inventory` (max nodes per type).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.config import build, load_mapping
from control_plane.planner.profile_solver import ProfiledClass, ProfiledPool, ProfileSpec

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_CONFIG_PATH = ROOT / "deploy" / "examples" / "embedded.yaml"


@dataclass(frozen=True)
class ModelSection:
    name: str = "tiny"
    preset: str = "tiny"
    path: str | None = None  # default: <run_dir>/models/<name>
    seed: int = 0


@dataclass(frozen=True)
class GatewaySection:
    http_port: int = 0  # 0 = a free port
    grpc_port: int = 0
    ready_timeout_seconds: float = 120.0

    def __post_init__(self) -> None:
        for name in ("http_port", "grpc_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name} must be in 0..65535, got {getattr(self, name)}")


@dataclass(frozen=True)
class PlannerSection:
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
class WorkerSection:
    kv_cache_mb: int = 64
    threads_per_worker: int = 1
    ready_timeout_seconds: float = 180.0
    drain_timeout_seconds: float = 60.0
    shared_tier: bool = True  # workers share KV blocks through the cluster's Redis
    disk_tier_mb: int = 256  # per-worker disk tier (0 = none)

    def __post_init__(self) -> None:
        if self.kv_cache_mb < 1:
            raise ValueError(f"kv_cache_mb must be >= 1, got {self.kv_cache_mb}")


@dataclass(frozen=True)
class EmbeddedConfig:
    model: ModelSection = field(default_factory=ModelSection)
    gateway: GatewaySection = field(default_factory=GatewaySection)
    planner: PlannerSection = field(default_factory=PlannerSection)
    workers: WorkerSection = field(default_factory=WorkerSection)
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

    def model_dir(self, run_dir: Path) -> Path:
        return Path(self.model.path) if self.model.path else run_dir / "models" / self.model.name


def load_embedded_config(path: str | Path | None = None) -> EmbeddedConfig:
    """Read and validate an embedded cluster file (default: deploy/examples/embedded.yaml)."""
    source = Path(path) if path else DEFAULT_CONFIG_PATH
    return build(EmbeddedConfig, load_mapping(source), source=str(source))
