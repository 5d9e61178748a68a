"""Real processes for the gateway and routing benchmarks: Redis, workers and gateways on 127.0.0.1.

Every process is started with the same CLI users run (`heteroserve worker`, `heteroserve gateway`) and
stopped by `LocalCluster.stop()` (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from control_plane.gateway.auth import hash_key
from heteroserve.localredis import LocalRedis, RedisServerConfig, free_port

CLUSTER_TOKEN = "bench-cluster-token"
BIN = str(Path(sys.executable).parent / "heteroserve")


@dataclass
class LocalCluster:
    workdir: Path
    redis: LocalRedis | None = None
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def start_redis(self) -> str:
        self.redis = LocalRedis(RedisServerConfig(data_dir=self.workdir / "redis")).start()
        return self.redis.url

    def _start(self, args: list[str], marker: str, timeout: float = 180.0,
               threads: int = 1) -> str:
        env = {**os.environ, "HETEROSERVE_CLUSTER_TOKEN": CLUSTER_TOKEN, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.procs.append(proc)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump, args=(proc, lines), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if proc.poll() is not None:
                    break
                continue
            if marker in line:
                return line.strip()
        raise RuntimeError(f"{args[1]} did not start: {' '.join(args)}")

    def start_worker(self, model_dir: Path, worker_id: str, redis_url: str | None,
                     extra: tuple[str, ...] = ()) -> str:
        """Start a colocated worker; returns its gRPC address."""
        args = [BIN, "worker", "--model", str(model_dir), "--port", "0", "--worker-id", worker_id, *extra]
        if redis_url:
            args += ["--redis-url", redis_url]
        return self._start(args, " ready on ").rsplit(" ", 1)[-1]

    def start_gateway(self, model_dir: Path, redis_url: str, keys: dict[str, str],
                      *extra: str) -> tuple[str, str]:
        """Start a gateway whose API keys map key → tenant; returns (REST base URL, gRPC target)."""
        keys_file = self.workdir / f"keys-{free_port()}.yaml"
        entries = [f"  - {{name: k{i}, sha256: {hash_key(k)}, tenant: {t}}}\n"
                   for i, (k, t) in enumerate(keys.items())]
        keys_file.write_text("api_keys:\n" + "".join(entries))
        line = self._start([BIN, "gateway", "--model", str(model_dir), "--port", "0", "--grpc-port",
                            str(free_port()), "--redis-url", redis_url, "--api-keys", str(keys_file),
                            *extra], "gateway ready on ")
        parts = line.split()
        return parts[3], parts[5]

    def stop_process(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            self.stop_process(proc)
        self.procs.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    for line in proc.stdout or ():
        lines.put(line)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
