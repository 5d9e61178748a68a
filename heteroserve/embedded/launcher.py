"""The embedded cluster: Redis, a gateway, a planner and its workers as processes on this machine.

Start order, each step waiting for the previous one to be ready:
1. `redis-server` (`common.localredis`) on a free loopback port, data in `<run_dir>/redis`;
2. the model, generated into `<run_dir>/models/<name>` if missing;
2b. the profiles of the node types (`heteroserve.embedded.profiling.first_start_profiles`): from the
   cache, or measured now on the first start with a progress bar (about a minute);
3. the planner (`heteroserve planner --actuator local`): it publishes the initial plan and its
   `LocalActuator` starts the workers, which register in Redis;
4. the gateway (`heteroserve gateway`), ready when `GET /ready` answers 200.
Then `<run_dir>/cluster.json` is written. Stop order is the reverse: gateway, planner (its actuator
stops the workers), any worker still listed in `<run_dir>/workers/`, Redis; then cluster.json is
removed. Tokens and the API key are generated per run and passed to children by environment.
Every run also makes a throwaway CA and one certificate per component (gateway, planner, worker,
profiler) under `<run_dir>/tls/` (`common.certs`; keys 0600), so gateway → worker, planner → worker and
worker → worker gRPC is mutual TLS; the workers the planner starts share the `worker` certificate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from pathlib import Path

import redis

from common.errors import UnavailableError
from common.localredis import LocalRedis, RedisServerConfig, free_port
from common.logs import register_secret
from control_plane.plan_store import read_plan_sync
from heteroserve.embedded.config import EmbeddedConfig
from heteroserve.embedded.processes import ManagedProcess, heteroserve_command, stop_pid
from heteroserve.embedded.state import ClusterState, ProcessInfo, state_path, worker_files, write_state

log = logging.getLogger(__name__)

TOKEN_ENV = "HETEROSERVE_CLUSTER_TOKEN"
ADMIN_ENV = "HETEROSERVE_ADMIN_TOKEN"
API_KEY_ENV = "HETEROSERVE_API_KEY"


class EmbeddedCluster:
    """Owns every process of one embedded cluster. `start()` then `stop()` (idempotent)."""

    def __init__(self, config: EmbeddedConfig, run_dir: Path, config_path: Path | None = None,
                 log_level: str = "INFO") -> None:
        self.config = config
        self.run_dir = run_dir.resolve()
        self.config_path = config_path
        self.log_level = log_level
        self.redis: LocalRedis | None = None
        self.processes: dict[str, ManagedProcess] = {}
        self.state: ClusterState | None = None
        self.planner_metrics_port = 0
        self.profile_paths: list[Path] = []  # measured on first start (or cached); every planner gets them
        self.api_key = "hs-" + secrets.token_urlsafe(24)
        self.admin_token = secrets.token_urlsafe(24)
        self.cluster_token = secrets.token_urlsafe(24)
        for secret in (self.api_key, self.admin_token, self.cluster_token):
            register_secret(secret)

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    def start(self) -> ClusterState:
        """Start everything; on any failure stop what was started and re-raise."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        stop_stray_workers(self.run_dir)  # left by a run whose launcher was killed
        try:
            self._issue_certificates()
            self._start_redis()
            model_dir = self._ensure_model()
            self._start_planner(model_dir, self._ensure_profiles(model_dir))
            http_port, grpc_port = self._start_gateway(model_dir)
            self._wait_for_workers()
            self.state = self._write_state(model_dir, http_port, grpc_port)
            return self.state
        except BaseException:
            self.stop()
            raise

    def _env(self) -> dict[str, str]:
        return {TOKEN_ENV: self.cluster_token, ADMIN_ENV: self.admin_token, API_KEY_ENV: self.api_key,
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def _issue_certificates(self) -> None:
        from common.certs import create_cluster_certs

        create_cluster_certs(self.tls_dir)  # a new CA each run: certificates of an old run stop working
        log.info("mutual TLS between the cluster's processes: CA and certificates in %s", self.tls_dir)

    @property
    def tls_dir(self) -> Path:
        return self.run_dir / "tls"

    def _start_redis(self) -> None:
        self.redis = LocalRedis(RedisServerConfig(data_dir=self.run_dir / "redis")).start()
        log.info("redis-server on %s (pid %s)", self.redis.url, self.redis.pid)

    def _ensure_model(self) -> Path:
        model_dir = self.config.model_dir(self.run_dir)
        if not (model_dir / "config.json").exists():
            from heteroserve.modelgen import create_model

            log.info("generating the %s model into %s", self.config.model.preset, model_dir)
            create_model(model_dir, preset=self.config.model.preset, seed=self.config.model.seed)
        return model_dir

    def _ensure_profiles(self, model_dir: Path) -> list[Path]:
        from heteroserve.embedded.profiling import first_start_profiles

        assert self.redis is not None, "redis must start first"
        self.profile_paths = first_start_profiles(self.config, self.run_dir, model_dir, self.redis.url,
                                                  self.logs_dir)
        return self.profile_paths

    def _start_planner(self, model_dir: Path, profiles: list[Path]) -> None:
        assert self.redis is not None, "redis must start first"
        self.planner_metrics_port = self.config.planner.metrics_port or free_port()
        argv = heteroserve_command("planner", "--actuator", "local", "--redis-url", self.redis.url,
                                   "--run-dir", str(self.run_dir), "--model-dir", str(model_dir),
                                   "--planner-id", "embedded-planner", "--metrics-host", "127.0.0.1",
                                   "--metrics-port", str(self.planner_metrics_port),
                                   "--tls-dir", str(self.tls_dir / "planner"),
                                   "--worker-tls-dir", str(self.tls_dir / "worker"), log_level=self.log_level)
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        for path in profiles:
            argv += ["--profile", str(path)]
        log_path = self.logs_dir / "planner.log"
        self.processes["planner"] = ManagedProcess("planner", argv, log_path, self._env())

    def _write_api_keys(self) -> Path:
        """The gateway's key file: one key for the embedded user, stored as its sha256 only."""
        path = self.run_dir / "api_keys.json"
        digest = hashlib.sha256(self.api_key.encode()).hexdigest()
        entry = {"name": "embedded", "sha256": digest, "tenant": "default"}
        path.write_text(json.dumps({"api_keys": [entry]}))
        return path

    def _start_gateway(self, model_dir: Path) -> tuple[int, int]:
        assert self.redis is not None, "redis must start first"
        http_port = self.config.gateway.http_port or free_port()
        grpc_port = self.config.gateway.grpc_port or free_port()
        argv = heteroserve_command("gateway", "--host", "127.0.0.1", "--port", str(http_port),
                                   "--grpc-port", str(grpc_port), "--redis-url", self.redis.url,
                                   "--model", f"{self.config.model.name}={model_dir}",
                                   "--api-keys", str(self._write_api_keys()),
                                   "--tls-dir", str(self.tls_dir / "gateway"), log_level=self.log_level)
        gateway = ManagedProcess("gateway", argv, self.logs_dir / "gateway.log", self._env())
        self.processes["gateway"] = gateway
        gateway.wait_for_log("gateway ready on", self.config.gateway.ready_timeout_seconds)
        return http_port, grpc_port

    def _wait_for_workers(self) -> None:
        """Wait until the planner published a plan and all of its workers registered."""
        assert self.redis is not None, "redis must start first"
        deadline = time.monotonic() + self.config.workers.ready_timeout_seconds + 30
        wanted: int | None = None
        while time.monotonic() < deadline:
            for process in self.processes.values():
                process.check_alive()
            record = read_plan_sync(self.redis.url)
            if record is not None:
                wanted = sum(int(p.get("count", 0)) for p in record.plan.get("pools", []))
                if len(worker_files(self.run_dir)) >= wanted and self._registered() >= wanted:
                    return
            time.sleep(0.3)
        raise UnavailableError(f"the planner did not start its {wanted or '?'} workers in time; "
                               f"see {self.logs_dir / 'planner.log'} and {self.logs_dir}/worker-*.log")

    def _registered(self) -> int:
        assert self.redis is not None, "redis must start first"
        client = redis.Redis.from_url(self.redis.url)
        try:
            return sum(1 for _ in client.scan_iter("heteroserve:workers:*"))
        finally:
            client.close()

    def _write_state(self, model_dir: Path, http_port: int, grpc_port: int) -> ClusterState:
        assert self.redis is not None and self.redis.pid is not None, "redis must be running"
        procs = [ProcessInfo("redis", self.redis.pid, str(self.run_dir / "redis" / "redis.log"))]
        urls = {"gateway": f"http://127.0.0.1:{http_port}/metrics",
                "planner": f"http://127.0.0.1:{self.planner_metrics_port}/metrics"}
        procs += [ProcessInfo(name, p.pid, str(p.log_path), urls.get(name))
                  for name, p in self.processes.items()]
        state = ClusterState(
            run_dir=str(self.run_dir), launcher_pid=os.getpid(), redis_url=self.redis.url,
            http_url=f"http://127.0.0.1:{http_port}", grpc_address=f"127.0.0.1:{grpc_port}",
            api_key=self.api_key, admin_token=self.admin_token, cluster_token=self.cluster_token,
            model=self.config.model.name, model_dir=str(model_dir), processes=tuple(procs),
            started_at=time.time())
        write_state(self.run_dir, state)
        return state

    def dead_processes(self) -> list[str]:
        """Names of children that exited (the launcher reports them)."""
        return [name for name, p in self.processes.items() if not p.alive()]

    def stop(self) -> None:
        """Stop gateway, planner (and its workers), stray workers, Redis; remove cluster.json."""
        for name in ("gateway", "planner"):
            process = self.processes.pop(name, None)
            if process is not None:
                log.info("stopping %s (pid %d)", name, process.pid)
                process.stop(timeout_seconds=60 if name == "planner" else 20)
        stop_stray_workers(self.run_dir)
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        state_path(self.run_dir).unlink(missing_ok=True)


def stop_stray_workers(run_dir: Path) -> int:
    """Stop the workers still listed in `<run_dir>/workers/` (checking each pid is that worker) and
    remove their files. Returns how many files there were."""
    files = worker_files(run_dir)
    for worker in files:
        stop_pid(int(str(worker["pid"])), timeout_seconds=10, expect=str(worker["worker_id"]))
        (run_dir / "workers" / f"{worker['worker_id']}.json").unlink(missing_ok=True)
    return len(files)


def summary(state: ClusterState) -> str:
    """The lines `heteroserve up` prints once the cluster is ready."""
    body = json.dumps({"model": state.model, "prompt": "hello", "max_tokens": 8})
    return "\n".join([
        f"heteroserve embedded cluster is up (run dir {state.run_dir})",
        f"  REST (OpenAI-compatible): {state.http_url}/v1   gRPC: {state.grpc_address}",
        f"  API key:     {state.api_key}",
        f"  admin token: {state.admin_token}",
        f"  Redis:       {state.redis_url}",
        f"  model:       {state.model} ({state.model_dir})",
        f"  logs:        {state.run_dir}/logs/",
        "  try:  heteroserve status --run-dir " + state.run_dir,
        f"        curl -s {state.http_url}/v1/completions -H 'Authorization: Bearer {state.api_key}' "
        f"-H 'Content-Type: application/json' -d '{body}'",
        "  stop: Ctrl-C here, or  heteroserve down --run-dir " + state.run_dir,
    ])
