"""Real processes for the gateway tests: `heteroserve worker` and `heteroserve gateway` on 127.0.0.1."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from common.localredis import free_port
from heteroserve.embedded.processes import NotReadyError, start_until_ready

CLUSTER_TOKEN = "gw-test-cluster-token"
ADMIN_TOKEN = "gw-test-admin-token"
API_KEY = "sk-test-acme-0001"
OTHER_KEY = "sk-test-globex-0002"
LIMITED_KEY = "sk-test-limited-0003"
READY_TIMEOUT_SECONDS = 90.0
BIN = str(Path(sys.executable).parent / "heteroserve")


@dataclass
class Proc:
    proc: subprocess.Popen[str]
    ready_line: str
    stderr_lines: list[str] = field(default_factory=list)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, without deregistering or draining."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)


def _start(args: list[str], marker: str, cluster_token: str = CLUSTER_TOKEN) -> Proc:
    env = {"HETEROSERVE_CLUSTER_TOKEN": cluster_token, "HETEROSERVE_ADMIN_TOKEN": ADMIN_TOKEN,
           "OMP_NUM_THREADS": "1"}
    try:
        proc, line, errors = start_until_ready(args, marker, env=env, timeout_seconds=READY_TIMEOUT_SECONDS)
    except NotReadyError as exc:
        pytest.fail(f"{args[1]} did not become ready ({exc}); stderr:\n{exc.stderr}")
    return Proc(proc, line, errors)


@dataclass
class Worker(Proc):
    worker_id: str = ""
    address: str = ""


def start_worker(model_dir: Path, redis_url: str | None, worker_id: str, *, role: str = "colocated",
                 pool: str = "default", shared_tier: bool = False, port: int = 0) -> Worker:
    args = [BIN, "worker", "--model", str(model_dir), "--role", role, "--port", str(port), "--worker-id",
            worker_id, "--pool", pool, "--drain-grace-seconds", "2"]
    if redis_url:
        args += ["--redis-url", redis_url]
    if shared_tier:
        args += ["--shared-tier-url", redis_url]
    p = _start(args, " ready on ")
    return Worker(p.proc, p.ready_line, p.stderr_lines, worker_id, p.ready_line.rsplit(" ", 1)[-1])


@dataclass
class Gateway(Proc):
    http_url: str = ""
    grpc_target: str = ""


def write_api_keys(path: Path) -> Path:
    from control_plane.gateway.auth import hash_key

    path.write_text(
        "api_keys:\n"
        f"  - {{name: acme, sha256: {hash_key(API_KEY)}, tenant: acme}}\n"
        f"  - {{name: globex, sha256: {hash_key(OTHER_KEY)}, tenant: globex}}\n"
        f"  - {{name: limited, sha256: {hash_key(LIMITED_KEY)}, tenant: tiny-co, requests_per_minute: 2,"
        " max_tokens_per_request: 8}\n")
    return path


def start_gateway(model_dir: Path, redis_url: str, keys_file: Path, *extra: str,
                  cluster_token: str = CLUSTER_TOKEN) -> Gateway:
    """`cluster_token`: the workers' (tests/workers/service/worker_procs.py has its own)."""
    args = [BIN, "gateway", "--model", str(model_dir), "--port", "0", "--grpc-port", str(free_port()),
            "--redis-url", redis_url, "--api-keys", str(keys_file), *extra]
    p = _start(args, "gateway ready on ", cluster_token)
    parts = p.ready_line.split()
    return Gateway(p.proc, p.ready_line, p.stderr_lines, parts[3], parts[5])


def wait_for_workers(gateway: Gateway, count: int, timeout: float = 30.0) -> list[dict[str, object]]:
    """Poll /admin/workers until `count` healthy workers are listed."""
    import httpx

    deadline = time.monotonic() + timeout
    workers: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        reply = httpx.get(f"{gateway.http_url}/admin/workers",
                          headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
        workers = [w for w in reply.json()["workers"] if w["healthy"]]
        if len(workers) >= count:
            return workers
        time.sleep(0.2)
    raise AssertionError(f"only {len(workers)} healthy workers after {timeout}s: {workers}")


def admin(gateway: Gateway, path: str) -> Any:
    """GET /admin/<path> with the admin token, as JSON."""
    import httpx

    return httpx.get(f"{gateway.http_url}/admin/{path}", timeout=5,
                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).json()


def healthy_ids(gateway: Gateway) -> set[str]:
    return {w["worker_id"] for w in admin(gateway, "workers")["workers"] if w["healthy"]}


def publish_plan(redis_url: str, plan: dict[str, Any], reason: str = "test") -> None:
    """Publish a plan document as the planner would (the gateway adopts it on its next look)."""
    import redis.asyncio as aioredis

    from control_plane.plan_store import PlanStore

    async def publish() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await PlanStore(client).publish(plan, leader="test", reason=reason)
        finally:
            await client.aclose()
    asyncio.run(publish())


def wait_for_plan(gateway: Gateway, version: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while admin(gateway, "plan").get("in_use_version") != version:
        assert time.monotonic() < deadline, f"gateway never adopted plan version {version}"
        time.sleep(0.2)
