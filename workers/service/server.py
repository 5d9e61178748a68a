"""Bootstrap of one worker process: engine, gRPC server, health, metrics, registration, drain.

Lifecycle owned by `WorkerServer`:
  start(): engine -> KV cache link (events, write-back) -> gRPC server (auth, role and error
           interceptors, Worker + health services; mutual TLS with `config.tls`: transport.py)
           -> without TLS, the plain session port (session_port.py) -> health SERVING -> metrics HTTP
           endpoint -> registry heartbeat -> metrics sampling task.
  drain_and_stop(grace): refuse new work (UNAVAILABLE "draining"; health NOT_SERVING; registry record
           marked draining) -> wait up to `grace` seconds for running calls -> deregister -> stop the
           server (1 s for stragglers) -> stop the metrics endpoint, the engine, the KV cache link.
`serve(config)` runs that lifecycle as a process: it drains on SIGTERM or SIGINT and returns 0, or, when
its device fails (a csd drive process gone), leaves the cluster the same way and returns 1, so that its
supervisor (the kubelet, the embedded actuator) replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, start_http_server

from cache.hashing import hash_prompt_blocks
from common.errors import UnavailableError
from common.logs import register_secret
from common.registry import WorkerRecord
from common.tls import ReloadingMaterial
from heteroserve.v1 import worker_pb2_grpc
from workerrpc.client import MAX_MESSAGE_BYTES, WORKER_SERVICE
from workers.kv.cache_link import WorkerKVCache
from workers.kv.loader import PrefixLoader, PromptHasher
from workers.metrics import WorkerMetrics
from workers.service.drain import DrainGate
from workers.service.interceptors import AuthInterceptor, ErrorInterceptor
from workers.service.registration import Registration
from workers.service.roles import RoleInterceptor, serves
from workers.service.servicer import WorkerServicer
from workers.service.session_port import SessionPort
from workers.service.transport import bind, peer_tls, start_health_port

if TYPE_CHECKING:
    from workers.config import WorkerConfig
    from workers.engine.async_engine import AsyncEngine
    from workers.engine.config import EngineConfig
    from workers.service.engine_api import WorkerEngine

log = logging.getLogger(__name__)
# Clients (the gateway) may ping as often as every second to check a long-lived Session stream; gRPC's
# default (5 minutes without data) would answer their 10 s keepalive with GOAWAY "too_many_pings".
KEEPALIVE_SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1_000),
    ("grpc.http2.max_ping_strikes", 0))

METRICS_INTERVAL_SECONDS = 1.0


def engine_config(config: WorkerConfig) -> EngineConfig:
    """The engine configuration for a worker: its model, device and KV budget; engine defaults otherwise."""
    from workers.engine.config import EngineConfig

    kwargs: dict[str, Any] = {"model_dir": config.model_dir, "device": config.device,
                              "csd_path": config.csd_path}
    if config.kv_cache_mb is not None:
        kwargs["kv_cache_bytes"] = config.kv_cache_mb * 2**20
    return EngineConfig(**kwargs)


class WorkerServer:
    """One engine behind one gRPC server. Owns the engine's lifecycle from `start()` on.
    `hash_prompt` hashes each request's prompt blocks, once per request (tests pass a counting one)."""

    def __init__(self, config: WorkerConfig, engine: WorkerEngine, *,
                 registry: CollectorRegistry | None = None, kv_cache: WorkerKVCache | None = None,
                 hash_prompt: PromptHasher = hash_prompt_blocks,
                 device_failure: Callable[[], str | None] = lambda: None) -> None:
        """`device_failure`: polled every metrics interval; a reason (a csd drive gone) makes the worker
        leave the cluster (health NOT_SERVING, registry draining) and `failed` set, so its process exits
        non-zero and is replaced (`run_until_signal`)."""
        self.config = config
        self.engine = engine
        self._device_failure = device_failure
        self.failure: str | None = None
        self.failed = asyncio.Event()
        self.registry = registry or CollectorRegistry()
        self.metrics = WorkerMetrics(self.registry)
        self.gate = DrainGate()
        self._health = health.aio.HealthServicer()
        self.kv_cache = kv_cache
        loader = PrefixLoader(engine, self.metrics, config.cluster_token, tls=peer_tls(config),
                              store=kv_cache.store if kv_cache is not None else None, hash_prompt=hash_prompt)
        self.servicer = WorkerServicer(engine, config, self.metrics, loader, self.gate,
                                       kv_cache=kv_cache, on_drain=self._on_drain)
        self._server: aio.Server | None = None
        self._health_server: aio.Server | None = None  # plaintext health-only port (transport.py)
        # the plain session port (session_port.py): bound when serving plaintext and the role serves Session
        self.session_port: SessionPort | None = None
        self.tls_material: ReloadingMaterial | None = None  # the served certificate (None: plaintext)
        self._registration: Registration | None = None
        self._metrics_http: tuple[Any, Any] | None = None
        self._metrics_task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def address(self) -> str:
        """The address peers dial (`advertise_host`, else the bound host) with the bound port."""
        return f"{self.config.advertise_host or self.config.host}:{self.port}"

    async def start(self) -> str:
        """Start everything; returns `address`. Raises `UnavailableError` if a port cannot be bound;
        whatever was started by then is stopped again."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        log.info("worker %s serving %s on %s (%s, %s)", self.config.worker_id, self.engine.model_id,
                 self.address, self.config.device, self.config.role)
        return self.address

    async def _start(self) -> None:
        register_secret(self.config.cluster_token)
        await self.engine.start()
        if self.kv_cache is not None:
            await self.kv_cache.start()
        server = aio.server(
            interceptors=[AuthInterceptor(self.config.cluster_token),
                          RoleInterceptor(self.config.worker_id, self.config.role,
                                          self.metrics.record_role_refusal),
                          ErrorInterceptor(self.metrics.record_request)],
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.so_reuseport", 0), *KEEPALIVE_SERVER_OPTIONS])
        worker_pb2_grpc.add_WorkerServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        self.port, self.tls_material = bind(server, self.config)  # mTLS or (dev) plaintext, logged
        await server.start()
        self._server = server
        if (self.tls_material is None and self.config.session_port is not None
                and serves(self.config.role, "Session")):
            self.session_port = SessionPort(self.servicer.new_session_handler, self.config.cluster_token)
            await self.session_port.start(self.config.host, self.config.session_port)
            self.servicer.session_port = self.session_port
        self._health_server = await start_health_port(self._health, self.config)
        if self.config.metrics_port:
            try:
                self._metrics_http = start_http_server(self.config.metrics_port, addr=self.config.host,
                                                       registry=self.registry)
            except OSError as exc:
                raise UnavailableError(f"cannot serve metrics on {self.config.host}:"
                                       f"{self.config.metrics_port}: {exc}") from None
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        if self.config.redis_url:
            self._registration = Registration(self.config.redis_url, self._record(),
                                              heartbeat_seconds=self.config.heartbeat_seconds,
                                              ttl_seconds=self.config.registration_ttl_seconds)
            await self._registration.start()
        self._metrics_task = asyncio.create_task(self._sample_metrics(), name="worker-metrics")

    async def drain_and_stop(self, grace_seconds: float | None = None) -> int:
        """Drain (see module docstring) and stop everything; returns the calls cut off at the end."""
        grace = self.config.drain_grace_seconds if grace_seconds is None else grace_seconds
        await self.servicer.start_draining()
        remaining = await self.gate.wait_idle(grace)
        if remaining:
            log.warning("drain grace of %.1f s over with %d calls still running; stopping them",
                        grace, remaining)
        await self.stop()
        return remaining

    async def stop(self) -> None:
        """Stop at once (no drain): deregister, stop serving, stop the engine. Idempotent."""
        if self._registration is not None:
            await self._registration.stop()
            self._registration = None
        if self.session_port is not None:
            self.servicer.session_port = None
            await self.session_port.close()
            self.session_port = None
        if self._server is not None:
            self.servicer.close_sessions()
            await self._server.stop(grace=1.0)
            self._server = None
        if self._health_server is not None:
            await self._health_server.stop(grace=None)
            self._health_server = None
        if self._metrics_task is not None:
            self._metrics_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._metrics_task
            self._metrics_task = None
        if self._metrics_http is not None:
            http_server, thread = self._metrics_http
            http_server.shutdown()
            http_server.server_close()
            thread.join(timeout=5)
            self._metrics_http = None
        await self._stop_engine()

    async def _stop_engine(self) -> None:
        await self.engine.stop()
        if self.kv_cache is not None:
            await self.kv_cache.aclose()
            self.kv_cache = None

    def _record(self) -> WorkerRecord:
        stats = self.engine.stats()
        return WorkerRecord(
            worker_id=self.config.worker_id, address=self.address, node_type=self.config.node_type,
            device=self.config.device, role=self.config.role, model=self.engine.model_id,
            pool=self.config.pool, kv_blocks=stats.kv_blocks_total,
            max_num_seqs=self.engine.max_num_seqs, block_size=self.engine.block_size,
            started_at=time.time(), metrics_port=self.config.metrics_port)

    async def _on_drain(self) -> None:
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._registration is not None:
            self._registration.mark_draining()

    async def _set_health(self, status: int) -> None:
        for service in ("", WORKER_SERVICE):
            await self._health.set(service, status)

    async def _sample_metrics(self) -> None:
        while True:
            if self.failure is None:
                await self._check_device()
            self.metrics.observe_engine_stats(self.engine.stats())
            await asyncio.sleep(METRICS_INTERVAL_SECONDS)

    async def _check_device(self) -> None:
        reason = self._device_failure()
        if reason is None:
            return
        self.failure = reason
        log.error("device failed (%s): leaving the cluster; the process exits 1 to be replaced", reason)
        await self.servicer.start_draining()  # no new work; calls on the device fail UNAVAILABLE, migrate
        self.failed.set()


async def serve(config: WorkerConfig, on_ready: Callable[[str], None] | None = None,
                openai_port: int | None = None) -> int:
    """Run a worker until SIGTERM / SIGINT (exit code 0) or its device fails (1), then drain and stop."""
    from workers.devices.csd.metrics import register_drive_metrics
    from workers.devices.csd.pool import drive_failure
    from workers.engine.async_engine import AsyncEngine

    engine = await asyncio.to_thread(AsyncEngine.from_config, engine_config(config))
    # the loaded model and imports never become garbage: move them out of the collector's view so
    # full collections stop walking them (worker pauses of 10-150 ms were seen)
    gc.collect()
    gc.freeze()
    registry = CollectorRegistry()  # one registry: worker and cache metrics on the same /metrics
    register_drive_metrics(engine.engine.pool, registry)  # a csd worker's drive counters too
    server = WorkerServer(config, engine, registry=registry,
                          kv_cache=await build_kv_cache(config, engine, registry),
                          device_failure=drive_failure(engine.engine.pool))
    return await run_until_signal(server, on_ready, openai_port)


async def run_until_signal(server: WorkerServer, on_ready: Callable[[str], None] | None = None,
                           openai_port: int | None = None) -> int:
    """Start `server` (and its OpenAI HTTP front on `openai_port` unless None), serve until SIGTERM /
    SIGINT or a device failure, then drain and stop; returns the exit code (0; 1 after a device
    failure)."""
    from workers.openai_http import start_openai_http

    config = server.config
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    address = await server.start()
    front = await start_openai_http(server, openai_port) if openai_port is not None else None
    if on_ready is not None:
        on_ready(address)
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(server.failed.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if server.failure is None:
            log.info("signal received: draining (grace %.1f s)", config.drain_grace_seconds)
    finally:
        for wait in waits:
            wait.cancel()
        await server.drain_and_stop()
        if front is not None:
            await front.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0 if server.failure is None else 1


async def build_kv_cache(config: WorkerConfig, engine: AsyncEngine,
                         registry: CollectorRegistry | None = None) -> WorkerKVCache | None:
    """The worker's KV cache link for `config`: a store when `config.cache` is set (its tier metrics on
    `registry` when given), an event publisher when `config.redis_url` is set and `publish_kv_events`;
    None when neither."""
    from redis import asyncio as aioredis

    from cache.config import build_store
    from cache.events import KVEventPublisher
    from cache.metrics import CacheMetrics

    metrics = CacheMetrics(registry) if registry is not None else None
    store = await build_store(config.cache, metrics) if config.cache is not None else None
    publisher = None
    if config.redis_url and config.publish_kv_events:
        client = aioredis.Redis.from_url(config.redis_url, socket_timeout=2.0, socket_connect_timeout=1.0)
        publisher = KVEventPublisher(client, config.worker_id)
    if store is None and publisher is None:
        return None
    return WorkerKVCache(engine, store, publisher)
