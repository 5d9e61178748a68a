"""`LocalActuator`: makes the worker processes on this machine match a plan's pools (embedded mode).

Each worker is a `heteroserve worker` child process (own session, so a terminal Ctrl-C reaches only
the launcher, which then stops things in order). A node type is emulated by the device kind the
plan gives the pool (cpu / cuda / csd) plus the declared `--node-type`; a CSD worker gets its own
drive folder under `<run_dir>/csd/<worker_id>`; with `shared_tier_url` every worker reads and writes
the shared Redis KV tier, and with `disk_tier_mb` each gets its own node-local disk tier under
`<run_dir>/disk/<worker_id>`.

apply(targets), per pool, scale-ups first (all new workers of a call start in parallel), then
scale-downs:
- scale-up: start the process with `--port 0` (the worker binds a free port itself: a port picked
  here could be taken while the engine loads, ~50 s for vLLM), then wait until the worker has
  registered in Redis (`common.registry`) and take its address from that record — gateways route only
  to registered workers, so no request reaches a worker before it is ready. The metrics port must be
  picked here (0 turns metrics off); a worker that exits because another process took it is started
  again on a fresh one, up to `METRICS_PORT_ATTEMPTS` times. A worker that exits or is not ready
  within `ready_timeout_seconds` is killed and reported as `UnavailableError` naming its log file.
- scale-down: the newest workers go first. Each is drained (the `DrainFn`; default: the worker's
  Drain RPC, which makes it refuse new work — gateways retry elsewhere — and waits for running
  requests), then sent SIGTERM, and SIGKILL after `stop_timeout_seconds`.
A worker process that died on its own is forgotten at the next `apply`/`current`, so re-applying the
same targets replaces it. Each running worker has `<run_dir>/workers/<worker_id>.json` (pid, ports,
pool) so `heteroserve down` can stop it even if the actuator's process died; and every worker gets
the parent-death signal (`common.lifetime`): when the planner process ends without stopping its
workers (SIGKILL, a crash), the kernel kills them. `apply` forks on the event loop's thread, which
lives as long as the planner.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from common.errors import HeteroserveError, UnavailableError
from common.lifetime import die_with_parent
from common.localredis import free_port
from common.registry import get_worker
from common.tls import ClientTLS, TLSFiles
from common.vocab import Engine
from control_plane.actuators.base import ApplyResult, DrainFn, DrainTarget, PoolChange, PoolTarget
from workerrpc.client import WorkerClient

log = logging.getLogger(__name__)
METRICS_PORT_ATTEMPTS = 3  # starts of one worker whose metrics port was taken before it bound it
METRICS_BIND_FAILURE = "cannot serve metrics on"  # the worker's error when its metrics port is taken


@dataclass(frozen=True)
class LocalActuatorConfig:
    model_dir: Path
    redis_url: str
    run_dir: Path
    cluster_token: str = ""
    kv_cache_mb: int = 64
    host: str = "127.0.0.1"
    ready_timeout_seconds: float = 120.0
    drain_timeout_seconds: float = 60.0
    stop_timeout_seconds: float = 15.0
    threads_per_worker: int = 1
    shared_tier_url: str | None = None  # Redis of the shared KV tier (None: no shared tier)
    disk_tier_mb: int = 0  # per-worker disk tier under <run_dir>/disk/<worker_id> (0: none)
    python: str = sys.executable
    extra_args: tuple[str, ...] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    tls: TLSFiles | None = None  # the planner's certificate for Drain calls (None: plaintext)
    worker_tls_dir: Path | None = None  # `--tls-dir` of the workers it starts (None: plaintext)
    engines: Mapping[str, Engine] = field(default_factory=dict)  # node type → engine (absent: native)
    vllm_memory_fraction: float = 0.05  # `--vllm-memory-fraction` of vLLM workers

    def __post_init__(self) -> None:
        if self.kv_cache_mb < 1:
            raise ValueError(f"kv_cache_mb must be >= 1, got {self.kv_cache_mb}")
        for name in ("ready_timeout_seconds", "drain_timeout_seconds", "stop_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be >= 1, got {self.threads_per_worker}")


@dataclass
class LocalWorker:
    """One worker process this actuator started. `ready` once registered in Redis; `address`
    (host:port of its gRPC service, bound by the worker itself) is known from then on."""

    worker_id: str
    target: PoolTarget
    metrics_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    ready: bool = False
    registered_address: str | None = None  # from the worker's registration; None until ready

    @property
    def address(self) -> str:
        if self.registered_address is None:
            raise RuntimeError(f"worker {self.worker_id} is not ready: its address is not known yet")
        return self.registered_address

    def alive(self) -> bool:
        return self.proc.poll() is None


class LocalActuator:
    """Implements `control_plane.actuators.base.Actuator` with local processes."""

    def __init__(self, config: LocalActuatorConfig, drain: DrainFn | None = None) -> None:
        self.config = config
        self._drain = drain or self._drain_rpc
        self._workers: dict[str, list[LocalWorker]] = {}
        self._redis = aioredis.Redis.from_url(config.redis_url)
        self._tag = secrets.token_hex(2)
        self._seq = 0
        self._lock = asyncio.Lock()
        (config.run_dir / "workers").mkdir(parents=True, exist_ok=True)
        (config.run_dir / "logs").mkdir(parents=True, exist_ok=True)

    # -- Actuator interface -----------------------------------------------------------------------
    async def apply(self, targets: Sequence[PoolTarget]) -> ApplyResult:
        async with self._lock:
            self._forget_dead()
            ups = [(t, t.replicas - len(self._workers.get(t.pool, []))) for t in targets]
            starting = [self._start_ready(t) for t, n in ups for _ in range(max(0, n))]
            changes = [PoolChange(t.pool, t.replicas - n, t.replicas) for t, n in ups if n > 0]
            outcomes = await asyncio.gather(*starting, return_exceptions=True)
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            if failed:  # the failed ones are stopped already; the ready ones keep serving
                raise failed[0]
            drained: list[DrainTarget] = []
            failures: list[DrainTarget] = []
            for target, n in ups:
                if n < 0:
                    changes.append(PoolChange(target.pool, target.replicas - n, target.replicas))
                    for worker in self._workers[target.pool][n:][::-1]:
                        ok = await self._drain_and_stop(worker)
                        (drained if ok else failures).append(self._drain_target(worker))
            return ApplyResult(tuple(changes), tuple(drained), tuple(failures))

    async def current(self) -> dict[str, int]:
        self._forget_dead()
        return {pool: sum(w.ready for w in ws) for pool, ws in self._workers.items()}

    async def close(self) -> None:
        """Stop every worker this actuator started (SIGTERM: they drain themselves), then disconnect."""
        async with self._lock:
            await asyncio.gather(*(self._stop(w) for ws in self._workers.values() for w in ws))
            self._workers.clear()
        await self._redis.aclose()

    def workers(self) -> list[LocalWorker]:
        """The running workers (a copy), pool by pool, oldest first."""
        return [w for ws in self._workers.values() for w in ws]

    # -- processes ------------------------------------------------------------------------------
    async def _start_ready(self, target: PoolTarget) -> LocalWorker:
        """Start one worker of `target` and wait until it is ready (module docstring: a worker whose
        metrics port was taken is started again). A worker that fails is stopped before the raise."""
        for attempt in range(1, METRICS_PORT_ATTEMPTS + 1):
            worker = self._start(target)
            try:
                await self._wait_ready(worker)
                return worker
            except HeteroserveError:
                await self._stop(worker)
                if attempt == METRICS_PORT_ATTEMPTS or not _metrics_port_taken(worker.log_path):
                    raise
                log.warning("worker %s: metrics port %d was taken before it bound it; starting it again",
                            worker.worker_id, worker.metrics_port)
        raise AssertionError("unreachable")

    def _start(self, target: PoolTarget) -> LocalWorker:
        self._seq += 1
        worker_id = f"{target.pool}-{self._tag}{self._seq}"
        metrics_port = free_port()
        log_path = self.config.run_dir / "logs" / f"worker-{worker_id}.log"
        args = [self.config.python, "-m", "heteroserve.cli", "worker",
                "--model", str(self.config.model_dir), "--device", target.device, "--role", target.role,
                "--host", self.config.host, "--port", "0", "--metrics-port", str(metrics_port),
                "--node-type", target.node_type, "--pool", target.pool, "--worker-id", worker_id,
                "--redis-url", self.config.redis_url, "--kv-cache-mb", str(self.config.kv_cache_mb),
                *self.config.extra_args]
        if target.device == "csd":
            args += ["--csd-path", str(self.config.run_dir / "csd" / worker_id)]
        if self.config.engines.get(target.node_type, "native") == "vllm":
            args += ["--engine", "vllm", "--vllm-memory-fraction", str(self.config.vllm_memory_fraction)]
        if self.config.shared_tier_url:
            args += ["--shared-tier-url", self.config.shared_tier_url]
        if self.config.worker_tls_dir is not None:
            args += ["--tls-dir", str(self.config.worker_tls_dir)]
        if self.config.disk_tier_mb > 0:
            args += ["--disk-tier", str(self.config.run_dir / "disk" / worker_id),
                     "--disk-tier-mb", str(self.config.disk_tier_mb)]
        threads = str(self.config.threads_per_worker)
        env = {**os.environ, "HETEROSERVE_CLUSTER_TOKEN": self.config.cluster_token,
               "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, **self.config.extra_env}
        with log_path.open("ab") as log_file:
            # Dies with the planner (common.lifetime): a SIGKILLed planner leaves no worker behind.
            argv, preexec = die_with_parent(args)
            proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec)
        worker = LocalWorker(worker_id, target, metrics_port, proc, log_path)
        self._workers.setdefault(target.pool, []).append(worker)
        self._write_pid_file(worker)
        log.info("starting worker %s (%s %s on %s), log %s", worker_id, target.role, target.device,
                 target.node_type, log_path)
        return worker

    async def _wait_ready(self, worker: LocalWorker) -> None:
        deadline = time.monotonic() + self.config.ready_timeout_seconds
        while time.monotonic() < deadline:
            if not worker.alive():
                raise UnavailableError(f"worker {worker.worker_id} exited with code "
                                       f"{worker.proc.returncode} before it was ready; see {worker.log_path}")
            record = await get_worker(self._redis, worker.worker_id)
            if record is not None and not record.draining:
                worker.ready, worker.registered_address = True, record.address
                self._write_pid_file(worker)
                log.info("worker %s ready on %s", worker.worker_id, worker.address)
                return
            await asyncio.sleep(0.2)
        raise UnavailableError(f"worker {worker.worker_id} not ready after "
                               f"{self.config.ready_timeout_seconds}s; see {worker.log_path}")

    async def _drain_and_stop(self, worker: LocalWorker) -> bool:
        ok = True
        try:
            await self._drain(self._drain_target(worker))
        except (HeteroserveError, OSError, TimeoutError) as exc:
            log.warning("drain of %s failed (%s); stopping it anyway", worker.worker_id, exc)
            ok = False
        await self._stop(worker)
        return ok

    async def _stop(self, worker: LocalWorker) -> None:
        ws = self._workers.get(worker.target.pool, [])
        if worker in ws:
            ws.remove(worker)
        if worker.alive():
            worker.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.config.stop_timeout_seconds
            while worker.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if worker.alive():
                log.warning("worker %s ignored SIGTERM for %.0fs; killing it", worker.worker_id,
                            self.config.stop_timeout_seconds)
                worker.proc.kill()
            worker.proc.wait()
        self._pid_file(worker).unlink(missing_ok=True)
        log.info("worker %s stopped", worker.worker_id)

    async def _drain_rpc(self, target: DrainTarget) -> None:
        if target.address is None:
            return
        tls = ClientTLS(self.config.tls) if self.config.tls is not None else None
        async with WorkerClient(target.address, self.config.cluster_token, tls=tls) as client:
            reply = await client.drain(timeout_seconds=self.config.drain_timeout_seconds)
        if not reply.drained:
            raise TimeoutError(f"{target.name} still holds {reply.remaining} requests after drain")

    def _forget_dead(self) -> None:
        for ws in self._workers.values():
            for worker in [w for w in ws if not w.alive()]:
                log.warning("worker %s exited with code %s; see %s", worker.worker_id,
                            worker.proc.returncode, worker.log_path)
                ws.remove(worker)
                self._pid_file(worker).unlink(missing_ok=True)

    def _write_pid_file(self, worker: LocalWorker) -> None:
        t = worker.target
        self._pid_file(worker).write_text(json.dumps({
            "worker_id": worker.worker_id, "pid": worker.proc.pid, "pool": t.pool, "role": t.role,
            "device": t.device, "node_type": t.node_type, "address": worker.registered_address,
            "metrics_port": worker.metrics_port, "log": str(worker.log_path)}))

    def _pid_file(self, worker: LocalWorker) -> Path:
        return self.config.run_dir / "workers" / f"{worker.worker_id}.json"

    @staticmethod
    def _drain_target(worker: LocalWorker) -> DrainTarget:
        return DrainTarget(pool=worker.target.pool, name=worker.worker_id, address=worker.registered_address)


def _metrics_port_taken(log_path: Path) -> bool:
    """Whether the worker logging to `log_path` exited because its metrics port was taken."""
    try:
        return METRICS_BIND_FAILURE in log_path.read_text(errors="replace")[-4000:]
    except OSError:
        return False
