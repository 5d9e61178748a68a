"""Configuration of one worker process: identity, network, registry, and the engine it runs.

Built once at the process edge (`heteroserve worker` flags and environment) and never mutated. The
engine's own settings live in `workers.engine.config.EngineConfig`; `WorkerConfig` carries only what
the service needs plus the few engine knobs exposed as flags (`kv_cache_mb`, `csd_path`), which
`workers.service.server.engine_config()` turns into an `EngineConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cache.config import CacheConfig
from common.tls import TLSFiles
from common.vocab import DEVICES, ROLES, Device, Role

CLUSTER_TOKEN_ENV = "HETEROSERVE_CLUSTER_TOKEN"


@dataclass(frozen=True)
class WorkerConfig:
    """One worker. Every invalid value raises `ValueError` naming the field.

    `port` 0 picks a free port (the bound one is printed and registered). `advertise_host` is the host
    peers dial when it differs from the bound `host` (e.g. bound to 0.0.0.0). `metrics_port` 0 disables
    the Prometheus endpoint. `redis_url` None runs without registration (standalone / tests).
    `cache` configures the tiered KV store below the engine's pool (None = no store: Prefill's
    `publish_to_shared_tier` is ignored and Decode from the shared tier prefills locally).
    `publish_kv_events` appends the pool's block events to the KV event stream in `redis_url`.
    `heartbeat_seconds` must be well below `registration_ttl_seconds` so one late heartbeat does not
    drop the worker. `drain_grace_seconds` bounds how long a drain waits for running requests.
    `cluster_token` is a secret: it is excluded from `repr`. `tls` (None = plaintext, dev only) makes
    the gRPC server require client certificates of the cluster CA and the worker's own PullKV calls
    present its certificate (`common.tls`); the token is still required on top. `health_port` (None =
none) serves only the standard gRPC health service, in plaintext, for probes that cannot speak mutual
TLS (the kubelet's gRPC probe); 0 picks a free port. `session_port` is the plain session port a
    worker serving plaintext binds beside gRPC (`workers/service/session_port.py`: the gateway's fast
    path; never bound with `tls`): 0 picks a free port (one machine), a fixed number lets a network
    policy admit it (the Helm chart), None binds none (clients stay on gRPC).
    """

    worker_id: str
    model_dir: Path
    cluster_token: str = field(repr=False)
    device: Device = "cpu"
    role: Role = "colocated"
    host: str = "127.0.0.1"
    advertise_host: str | None = None
    port: int = 0
    node_type: str = "cpu"
    pool: str = "default"
    redis_url: str | None = field(default=None, repr=False)
    cache: CacheConfig | None = None
    publish_kv_events: bool = True
    csd_path: Path | None = None
    kv_cache_mb: int | None = None
    metrics_port: int = 0
    heartbeat_seconds: float = 1.0
    registration_ttl_seconds: float = 3.0
    drain_grace_seconds: float = 30.0
    tls: TLSFiles | None = None
    health_port: int | None = None
    session_port: int | None = 0

    def __post_init__(self) -> None:
        if not self.worker_id or any(c in self.worker_id for c in " :/\t\n"):
            raise ValueError(f"worker_id must be non-empty without spaces, ':' or '/', "
                             f"got {self.worker_id!r}")
        if not self.cluster_token:
            raise ValueError(f"cluster_token must not be empty (set ${CLUSTER_TOKEN_ENV})")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if self.device == "csd" and self.csd_path is None:
            raise ValueError("csd_path is required when device is 'csd'")
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ValueError(f"{name} must be in 0..65535, got {value}")
        for name in ("health_port", "session_port"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 65535:
                raise ValueError(f"{name} must be in 0..65535, got {value}")
        if self.kv_cache_mb is not None and self.kv_cache_mb <= 0:
            raise ValueError(f"kv_cache_mb must be positive, got {self.kv_cache_mb}")
        for name in ("node_type", "pool"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        if self.heartbeat_seconds <= 0:
            raise ValueError(f"heartbeat_seconds must be positive, got {self.heartbeat_seconds}")
        if self.registration_ttl_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(f"registration_ttl_seconds must be >= 2 x heartbeat_seconds, "
                             f"got {self.registration_ttl_seconds}")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        if self.drain_grace_seconds < 0:
            raise ValueError(f"drain_grace_seconds must be >= 0, got {self.drain_grace_seconds}")
