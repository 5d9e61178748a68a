"""`heteroserve worker --engine vllm`: the vLLM engine behind the same Worker service process.

The same `WorkerServer` (gRPC Worker service, auth, errors, drain, health, registration, metrics) as
the native engine, hosting a `VLLMEngine`. Differences: the KV events come from vLLM's ZMQ publisher
through `VLLMKVEventBridge` (so `kv_events_endpoint` is set whenever events are published), the
tiered store is reached through vLLM's KV connector rather than the worker's read-through, and vLLM's
`vllm:*` metrics join the worker's /metrics.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from workers.vllm.metrics import VLLMMetricsCollector

if TYPE_CHECKING:
    from cache.events import KVEventPublisher
    from workers.config import WorkerConfig
    from workers.vllm.config import VLLMEngineConfig


def event_endpoints(worker_id: str, directory: Path | None = None) -> tuple[str, str]:
    """Per-worker IPC addresses for vLLM's KV-event publisher and its replay socket (no ports to pick)."""
    base = Path(directory or tempfile.gettempdir()) / f"hs-vllm-{worker_id}"
    return f"ipc://{base}-events.sock", f"ipc://{base}-replay.sock"


def event_publisher(config: WorkerConfig) -> KVEventPublisher | None:
    """The KV event publisher of `config` (None without Redis or with events off)."""
    if not (config.redis_url and config.publish_kv_events):
        return None
    from redis import asyncio as aioredis

    from cache.events import KVEventPublisher

    client = aioredis.Redis.from_url(config.redis_url, socket_timeout=2.0, socket_connect_timeout=1.0)
    return KVEventPublisher(client, config.worker_id)


async def serve(config: WorkerConfig, engine_config: VLLMEngineConfig,
                on_ready: Callable[[str], None] | None = None, openai_port: int | None = None) -> int:
    """Run a vLLM worker (and its OpenAI HTTP front on `openai_port` unless None) until SIGTERM /
    SIGINT, then drain and stop; returns the exit code (0)."""
    from workers.service.server import WorkerServer, run_until_signal
    from workers.vllm.engine import VLLMEngine

    engine = await asyncio.to_thread(VLLMEngine.from_config, engine_config)
    engine.publish_kv_events_to(event_publisher(config))
    registry = CollectorRegistry()
    registry.register(VLLMMetricsCollector())
    server = WorkerServer(config, engine, registry=registry)
    return await run_until_signal(server, on_ready, openai_port)
