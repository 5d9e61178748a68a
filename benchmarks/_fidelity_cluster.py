"""A pinned-plan embedded cluster for `bench fidelity`: the plan under test is published once and stays.

The parts are those of `heteroserve up` (`heteroserve.embedded.launcher`): a local `redis-server`, a
`heteroserve gateway` process reading the plan from Redis, and the `LocalActuator` starting one
`heteroserve worker` process per planned replica with the embedded config's worker settings (KV pool,
shared Redis tier, disk tier). What differs, and why:
- no planner process: the benchmark publishes the plan it measures (`PlanStore.publish`) and nothing
  re-plans during the replay, so the live cluster runs exactly the plan that was predicted;
- plaintext gRPC between the processes (no throwaway CA): TLS costs the same on every path and is
  measured by `bench chaos`/the security tests, not here;
- every worker is pinned to one core (`os.sched_setaffinity` on all of its threads): worker k of the
  plan (pools in plan order, replicas in start order) runs on core k mod cores. The simulator is given
  the same assignment (`SimOptions.cores`), so co-located workers share cores there as they do here.
  The gateway, Redis and the load generator are not pinned; they float over both cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from benchmarks._cluster import BIN, CLUSTER_TOKEN, LocalCluster
from control_plane.actuators.base import PoolTarget
from control_plane.actuators.local import LocalActuator, LocalActuatorConfig
from control_plane.gateway.auth import hash_key
from control_plane.plan_store import PlanStore

API_KEY = "hs-bench-fidelity"


def pin_process(pid: int, core: int) -> None:
    """Every thread of `pid` (and threads it starts later, which inherit) on `core` only."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), {core})


def usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


@dataclass
class PinnedCluster:
    """Redis + gateway + actuator-started workers; `apply(plan)` makes the fleet and the published plan
    match `plan` (a `placement.plan.Plan`) and returns the plan version the gateway runs."""

    workdir: Path
    model_name: str
    model_dir: Path
    kv_cache_mb: int
    disk_tier_mb: int
    shared_tier: bool
    cores: int
    http_url: str = ""
    grpc_target: str = ""
    redis_url: str = ""
    _base: LocalCluster | None = None
    _actuator: LocalActuator | None = None
    _known: dict[str, PoolTarget] = field(default_factory=dict)

    async def start(self) -> None:
        self._base = LocalCluster(self.workdir)
        self.redis_url = self._base.start_redis()
        keys = self.workdir / "api_keys.yaml"
        keys.write_text(f"api_keys:\n  - {{name: bench, sha256: {hash_key(API_KEY)}, tenant: default}}\n")
        from common.localredis import free_port

        line = await asyncio.to_thread(
            self._base._start, [BIN, "gateway", "--model", f"{self.model_name}={self.model_dir}",
                                "--port", "0", "--grpc-port", str(free_port()), "--redis-url", self.redis_url,
                                "--api-keys", str(keys)], "gateway ready on ")
        parts = line.split()
        self.http_url, self.grpc_target = parts[3], parts[5]
        self._actuator = LocalActuator(LocalActuatorConfig(
            model_dir=self.model_dir, redis_url=self.redis_url, run_dir=self.workdir / "run",
            cluster_token=CLUSTER_TOKEN, kv_cache_mb=self.kv_cache_mb, ready_timeout_seconds=180,
            shared_tier_url=self.redis_url if self.shared_tier else None, disk_tier_mb=self.disk_tier_mb))

    async def apply(self, plan: Any) -> int:
        """Workers for `plan`'s pools (pinned), the plan published, and the gateway on it with every
        worker healthy. Returns the published version."""
        assert self._actuator is not None, "start() first"
        for p in plan.pools:
            self._known[p.name] = PoolTarget(p.name, p.node_type, p.role, p.device or "cpu", p.model, 0)
        counts = {p.name: p.count for p in plan.pools}
        targets = [PoolTarget(t.pool, t.node_type, t.role, t.device, t.model, counts.get(t.pool, 0))
                   for t in self._known.values()]
        client = aioredis.Redis.from_url(self.redis_url)
        try:
            record = await PlanStore(client).publish(plan.to_dict(), leader="bench-fidelity",
                                                     reason="pinned for the fidelity replay")
        finally:
            await client.aclose()
        await self._actuator.apply(targets)
        self._pin([p.name for p in plan.pools])
        await self._wait_gateway(record.version, sum(counts.values()))
        return record.version

    def _pin(self, pool_order: Sequence[str]) -> None:
        assert self._actuator is not None, "start() first"
        by_pool: dict[str, list[Any]] = {}
        for w in self._actuator.workers():
            by_pool.setdefault(w.target.pool, []).append(w)
        cores = usable_cores()[: self.cores]
        k = 0
        for pool in pool_order:
            for worker in by_pool.get(pool, []):
                pin_process(worker.proc.pid, cores[k % len(cores)])
                k += 1

    async def _wait_gateway(self, version: int, workers: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {CLUSTER_TOKEN}"}) as http:
            while time.monotonic() < deadline:
                routing = (await http.get(f"{self.http_url}/admin/routing", timeout=5)).json()
                listed = (await http.get(f"{self.http_url}/admin/workers", timeout=5)).json()["workers"]
                healthy = sum(1 for w in listed if w["healthy"] and not w["draining"])
                if routing["plan_version"] >= version and healthy >= workers:
                    return
                await asyncio.sleep(0.3)
        raise RuntimeError(f"the gateway did not run plan {version} with {workers} healthy workers "
                           f"within {timeout} s")

    def addresses(self) -> dict[str, str]:
        """worker id → RPC address of every worker the actuator runs."""
        assert self._actuator is not None, "start() first"
        return {w.worker_id: w.address for w in self._actuator.workers()}

    async def routing(self) -> dict[str, Any]:
        """The gateway's /admin/routing (planned vs served shares since the plan was adopted)."""
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {CLUSTER_TOKEN}"}) as http:
            reply = await http.get(f"{self.http_url}/admin/routing", timeout=10)
            reply.raise_for_status()
            return dict(reply.json())

    async def stop(self) -> None:
        if self._actuator is not None:
            await self._actuator.close()
            self._actuator = None
        if self._base is not None:
            await asyncio.to_thread(self._base.stop)
            self._base = None
