"""Real worker processes (`heteroserve worker` on 127.0.0.1) for the worker-service tests (helpers)."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from heteroserve.embedded.processes import NotReadyError, start_until_ready
from heteroserve.localredis import free_port

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
