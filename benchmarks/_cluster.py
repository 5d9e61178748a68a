"""Real processes for the gateway and routing benchmarks: Redis, workers and gateways on 127.0.0.1.

Every process is started with the same CLI users run (`heteroserve worker`, `heteroserve gateway`) and
stopped by `LocalCluster.stop()` (SIGTERM, then SIGKILL after a grace period). Each also dies with the
benchmark (`start_until_ready` and `LocalRedis` set the parent-death signal, `common.lifetime`): a
benchmark killed by a time limit leaves nothing running. Start clusters from a thread that lives for
the whole run.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.lifetime import die_with_parent
from common.localredis import LocalRedis, RedisServerConfig, free_port
from control_plane.gateway.auth import hash_key
from heteroserve.embedded.processes import NotReadyError, start_until_ready

CLUSTER_TOKEN = "bench-cluster-token"
BIN = str(Path(sys.executable).parent / "heteroserve")
BASE_ENV = {"HETEROSERVE_CLUSTER_TOKEN": CLUSTER_TOKEN, "HETEROSERVE_ADMIN_TOKEN": CLUSTER_TOKEN}


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
        env = {**BASE_ENV, "OMP_NUM_THREADS": str(threads)}
        proc, line, _ = start_until_ready(args, marker, env=env, timeout_seconds=timeout)
        self.procs.append(proc)
        return line

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

    def start_parallel(self, commands: Sequence[tuple[list[str], Mapping[str, str]]], marker: str,
                       timeout: float = 600.0) -> list[str]:
        """Start every (argv, extra env) at once (from this thread, so they die with it) and wait until
        each printed a stdout line holding `marker`; their ready lines, in order. stderr goes to
        `workdir/proc-<i>.log`. Starting vLLM engines one after another would cost ~50 s each."""
        ready: queue.Queue[tuple[int, str]] = queue.Queue()
        logs = []
        for i, (argv, extra) in enumerate(commands):
            logs.append(self.workdir / f"proc-{len(self.procs)}.log")
            with logs[-1].open("w") as log:  # the child keeps its own descriptor
                args, preexec = die_with_parent(argv)
                proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True,
                                        env={**os.environ, **BASE_ENV, **extra}, preexec_fn=preexec)
            self.procs.append(proc)
            threading.Thread(target=_watch, args=(proc, i, marker, ready), daemon=True).start()
        lines: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        while len(lines) < len(commands):
            try:
                i, line = ready.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                missing = len(commands) - len(lines)
                raise NotReadyError(f"{missing} process(es) not ready within {timeout:.0f} s",
                                    _tails(logs)) from None
            if not line:
                raise NotReadyError(f"{' '.join(commands[i][0][:3])} exited before {marker!r}",
                                    logs[i].read_text()[-3000:])
            lines[i] = line
        return [lines[i] for i in range(len(commands))]

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


def wait_for_workers(http_url: str, count: int, timeout: float = 60.0) -> None:
    """Until the gateway's admin API (admin token = CLUSTER_TOKEN) lists `count` healthy workers."""
    deadline = time.monotonic() + timeout
    headers = {"authorization": f"Bearer {CLUSTER_TOKEN}"}
    while time.monotonic() < deadline:
        reply = httpx.get(f"{http_url}/admin/workers", headers=headers, timeout=5)
        if reply.status_code == 200 and sum(w["healthy"] for w in reply.json()["workers"]) >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"gateway did not list {count} healthy workers within {timeout} s")


def _watch(proc: subprocess.Popen[str], index: int, marker: str, ready: queue.Queue[tuple[int, str]]) -> None:
    """Put (index, the ready line) once `marker` shows on stdout, (index, "") if stdout ends first; keep
    draining stdout so the process never blocks on a full pipe."""
    announced = False
    for line in proc.stdout or ():
        if not announced and marker in line:
            ready.put((index, line.strip()))
            announced = True
    if not announced:
        ready.put((index, ""))


def _tails(logs: list[Path]) -> str:
    return "\n".join(f"{log.name}: {log.read_text()[-600:]}" for log in logs if log.is_file())
