"""Real workers for the worker-service tests (helpers): `heteroserve worker` processes on 127.0.0.1, a
`WorkerServer` in the test's own process, and a bare gRPC server answering one Worker method (for
workers of another version)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from common.localredis import free_port
from heteroserve.embedded.processes import NotReadyError, start_until_ready
from workers.config import WorkerConfig
from workers.engine.async_engine import AsyncEngine
from workers.service.server import WorkerServer, engine_config

CLUSTER_TOKEN = "test-cluster-token-1234"
READY_TIMEOUT_SECONDS = 90.0


@dataclass
class WorkerProcess:
    """One `heteroserve worker` subprocess; `address` is its gRPC host:port."""

    proc: subprocess.Popen[str]
    worker_id: str
    address: str
    metrics_port: int
    stderr_lines: list[str] = field(default_factory=list)

    def metrics_text(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample: metric("heteroserve_worker_kv_transfer_bytes_total", 'tier="peer"')."""
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in self.metrics_text().splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        raise AssertionError(f"{wanted} not exported")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)


def start_worker(model_dir: Path, *, role: str = "colocated", redis_url: str | None = None,
                 worker_id: str | None = None, extra: tuple[str, ...] = ()) -> WorkerProcess:
    """Start a worker and wait for its ready line; kills it and fails the test if it does not come."""
    worker_id = worker_id or f"test-{role}-{free_port()}"
    metrics_port = free_port()
    args = [str(Path(sys.executable).parent / "heteroserve"), "worker", "--model", str(model_dir),
            "--role", role, "--port", "0", "--worker-id", worker_id, "--metrics-port", str(metrics_port),
            *extra]
    if redis_url:
        args += ["--redis-url", redis_url]
    env = {"HETEROSERVE_CLUSTER_TOKEN": CLUSTER_TOKEN, "OMP_NUM_THREADS": "1"}
    try:
        proc, line, stderr_lines = start_until_ready(args, " ready on ", env=env,
                                                     timeout_seconds=READY_TIMEOUT_SECONDS)
    except NotReadyError as exc:
        pytest.fail(f"worker did not become ready ({exc}); stderr:\n{exc.stderr}")
    assert line.startswith(f"worker {worker_id} ready on 127.0.0.1:"), line
    return WorkerProcess(proc, worker_id, line.rsplit(" ", 1)[-1], metrics_port, stderr_lines)


def inprocess_server(model_dir: Path, worker_id: str, token: str, **config: Any) -> WorkerServer:
    """A `WorkerServer` (real engine, 8 MB KV pool, own metrics registry) in this process, not started."""
    worker_config = WorkerConfig(worker_id=worker_id, model_dir=model_dir, cluster_token=token, kv_cache_mb=8,
                                 **config)
    engine = AsyncEngine.from_config(engine_config(worker_config))
    return WorkerServer(worker_config, engine, registry=CollectorRegistry())


@contextlib.asynccontextmanager
async def one_method_server(method: str, handler: grpc.RpcMethodHandler) -> AsyncIterator[str]:
    """A gRPC server on 127.0.0.1 that answers only `heteroserve.v1.Worker/<method>` with `handler`
    (e.g. a worker built before an RPC existed); yields its address."""
    server = aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("heteroserve.v1.Worker",
                                                                          {method: handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
