"""`GatewayConfig`: the gateway's one frozen configuration, built at the process edge.

Secrets (`cluster_token`, admin token) are excluded from `repr`; the admin token is kept only as its
sha256 digest, like API keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.tls import TLSFiles
from control_plane.gateway.auth import ApiKeySpec
from control_plane.orchestrator.config import OrchestratorConfig
from control_plane.router.config import RouterConfig


@dataclass(frozen=True)
class ModelSpec:
    """A served model: `name` (what clients send as `model`, and what workers register) and the
    directory holding its tokenizer and config."""

    name: str
    path: Path

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("models[].name must not be empty")


@dataclass(frozen=True)
class GatewayConfig:
    """Everything one gateway process needs.

    Limits: `max_body_bytes` (413 above), `max_tokens_limit` (upper bound of max_tokens, 400 above),
    `default_max_tokens` (when a request sets none). `orchestrator`: timeouts, fault budgets, the P/D
    threshold and `block_size` of each generation (`OrchestratorConfig`; its `unary_timeout_seconds`
    also bounds the cluster view's stats and health calls). `refresh_seconds` is the period of
    registry, stats and plan refresh. `orchestrator.block_size` and `kv_dtype` must be the workers'
    (they are part of every block hash).
    """

    models: tuple[ModelSpec, ...]
    cluster_token: str = field(repr=False)
    redis_url: str | None = field(default=None, repr=False)
    admin_token_sha256: str | None = field(default=None, repr=False)
    api_keys: tuple[ApiKeySpec, ...] = ()
    allow_anonymous: bool = False
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int | None = None
    max_body_bytes: int = 1_048_576
    max_tokens_limit: int = 4096
    default_max_tokens: int = 16
    refresh_seconds: float = 0.5
    kv_dtype: str = "float32"
    orchestrator: OrchestratorConfig = field(default_factory=OrchestratorConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    tls: TLSFiles | None = None  # mutual TLS to the workers (common.tls); None: plaintext (dev)

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models must name at least one model")
        if len({m.name for m in self.models}) != len(self.models):
            raise ValueError("models: names must be unique")
        if not self.cluster_token:
            raise ValueError("cluster_token must not be empty")
        for name in ("http_port",):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name} must be in 0..65535, got {getattr(self, name)}")
        if self.grpc_port is not None and not 0 <= self.grpc_port <= 65535:
            raise ValueError(f"grpc_port must be in 0..65535, got {self.grpc_port}")
        for name in ("max_body_bytes", "max_tokens_limit", "default_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError("default_max_tokens must be <= max_tokens_limit")
        if self.refresh_seconds <= 0:
            raise ValueError(f"refresh_seconds must be > 0, got {self.refresh_seconds}")
        if len({k.name for k in self.api_keys}) != len(self.api_keys):
            raise ValueError("api_keys: names must be unique")
        if self.router.block_size != self.orchestrator.block_size:
            raise ValueError(f"router.block_size must equal orchestrator.block_size (the workers' tokens per "
                             f"KV block, which the cost model counts in), got {self.router.block_size} and "
                             f"{self.orchestrator.block_size}")
