"""Configuration of the embedded cluster (`heteroserve up --config FILE`), read by `up` and the planner.

The file is the planner's input spec (`control_plane.planner.spec.PlannerSpec`: `model`, `planner`,
`slo_classes`, `classes`, `node_types`, `fleet`, `inventory`, `profiles`, `options`, `churn_penalty`)
plus the sections only the embedded cluster reads: `gateway` (ports), `workers` (settings of the
worker processes a local planner starts, among them the engine of each node type: `workers.engines`),
`profiling` (the first-start measurement of every local node type) and the model's `preset` and `seed`
(generated if missing). Those extra keys are what
`control_plane.planner.spec.FOREIGN_KEYS` lists, so a planner reading this file skips them.

The default lives in `deploy/examples/embedded.yaml` (read from the source tree: `make install` installs
the project in editable mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.config import build, load_mapping
from common.vocab import Engine
from control_plane.planner.spec import ModelRef, PlannerSpec

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_CONFIG_PATH = ROOT / "deploy" / "examples" / "embedded.yaml"


@dataclass(frozen=True)
class ModelSection(ModelRef):
    """The planner's model reference plus how to generate it when `path` holds none."""

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
class WorkerSection:
    """Settings of the worker processes. `engines`: node type → engine its workers run (`native`, the
    default for a node type not listed, or `vllm`: `heteroserve worker --engine vllm`, on cpu or gpu
    node types only). A node type runs one engine, so a vLLM pool is its own node type to the planner
    and the profiler (its profile is cached under that engine). `vllm_memory_fraction`: the share of
    host memory (GPU memory on cuda) each vLLM engine may take, `--vllm-memory-fraction`; its KV pool
    is sized by `kv_cache_mb` like a native worker's."""

    kv_cache_mb: int = 64
    threads_per_worker: int = 1
    ready_timeout_seconds: float = 180.0
    drain_timeout_seconds: float = 60.0
    shared_tier: bool = True  # workers share KV blocks through the cluster's Redis
    disk_tier_mb: int = 256  # per-worker disk tier (0 = none)
    engines: dict[str, Engine] = field(default_factory=dict)
    vllm_memory_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.kv_cache_mb < 1:
            raise ValueError(f"kv_cache_mb must be >= 1, got {self.kv_cache_mb}")
        if not 0 < self.vllm_memory_fraction <= 1:
            raise ValueError(f"vllm_memory_fraction must be in (0, 1], got {self.vllm_memory_fraction}")

    def engine_of(self, node_type: str) -> Engine:
        return self.engines.get(node_type, "native")


@dataclass(frozen=True)
class ProfilingSection:
    """The first start measures a profile of every node type of `node_types` (one idle worker per
    role, `control_plane.profiler.grid.FIRST_START_GRID`), cached in `cache_dir` (default
    `<run_dir>/profiles`) by model hash, machine fingerprint, engine (`workers.engines`) and node
    type. `enabled: false` plans on the roofline of the `node_types` entries instead."""

    enabled: bool = True
    cache_dir: str | None = None


@dataclass(frozen=True)
class EmbeddedConfig(PlannerSpec):
    """The planner's spec (its fields and validation, inherited: the file format is flat) with the
    embedded cluster's sections. `model` defaults to the generated tiny model."""

    model: ModelSection = field(default_factory=ModelSection)
    gateway: GatewaySection = field(default_factory=GatewaySection)
    workers: WorkerSection = field(default_factory=WorkerSection)
    profiling: ProfilingSection = field(default_factory=ProfilingSection)

    def __post_init__(self) -> None:
        super().__post_init__()
        kinds = self.node_kinds()
        for node_type, engine in self.workers.engines.items():
            where = f"workers.engines.{node_type}"
            if node_type not in kinds:
                raise ValueError(f"{where}: {node_type!r} is not a node type of the fleet "
                                 f"({', '.join(kinds) or 'none'})")
            if engine == "vllm" and kinds[node_type] == "csd":
                raise ValueError(f"{where}: the vllm engine runs on cpu or gpu node types, "
                                 f"not on {node_type!r} (kind csd)")

    def node_kinds(self) -> dict[str, str]:
        """Node type → kind, for every node type of the fleet (a type the `node_types` section does
        not define counts as `cpu`: the embedded cluster emulates it with CPU workers)."""
        defined = {t.name: t.kind for t in self.node_types}
        return {name: defined.get(name, "cpu") for name in (self.fleet or tuple(defined))}

    def model_dir(self, run_dir: Path) -> Path:
        return Path(self.model.path) if self.model.path else run_dir / "models" / self.model.name

    def profile_cache_dir(self, run_dir: Path) -> Path:
        return Path(self.profiling.cache_dir) if self.profiling.cache_dir else run_dir / "profiles"


def load_embedded_config(path: str | Path | None = None) -> EmbeddedConfig:
    """Read and validate an embedded cluster file (default: deploy/examples/embedded.yaml)."""
    source = Path(path) if path else DEFAULT_CONFIG_PATH
    return build(EmbeddedConfig, load_mapping(source), source=str(source))
