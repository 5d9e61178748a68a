"""The gateway's normal P/D flows and its fallbacks against role-enforcing workers never hit a refusal.

Real processes: prefill worker `p` (pool pf), decode worker `d` (pool dc), colocated `c1`, `c2` (pool
co), one gateway with a plan sending long prompts P/D (pf → dc) and short ones colocated. The flows,
each landing an RPC on a role that must serve it (workers/service/roles.py):
  short prompt                        Session on colocated
  long prompt                         Prefill on prefill, Decode on decode, PullKV decode → prefill
  the same long prompt again (cached) Session on decode (the P/D route's decode pool alone)
  colocated worker killed mid-stream  Decode on the other colocated worker (migration)
  prefill worker killed unnoticed     Session on decode (P/D fallback: its Prefill failed)
  decode worker killed too            Session on colocated (no P/D route has workers)
The gateway polls its workers every 30 s, so it learns of a killed worker from a failed call, as in
tests/control_plane/gateway/test_gateway_faults.py.
Every worker's `heteroserve_worker_role_refusals_total` stays absent (no refusal ever counted), read
from each worker just before it is killed and from the survivors at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.localredis import LocalRedis, RedisServerConfig
from heteroserve.client.client import Client
from tests.control_plane.gateway.gateway_procs import (
    API_KEY,
    Gateway,
    healthy_ids,
    publish_plan,
    start_gateway,
    write_api_keys,
)
from tests.control_plane.gateway.plans import PD_PLAN as PLAN
from tests.control_plane.gateway.plans import PD_POOLS as POOLS
from tests.workers.service.worker_procs import CLUSTER_TOKEN, WorkerProcess, start_worker

pytestmark = pytest.mark.slow
LONG = " ".join(f"paragraph {i} of a long document to summarise" for i in range(8))
REFUSALS = "heteroserve_worker_role_refusals_total{"


def _wait(gateway: Gateway, check: str, wanted: set[str], timeout: float = 60.0) -> None:
    """Until the healthy workers are exactly `wanted`."""
    deadline = time.monotonic() + timeout
    while healthy_ids(gateway) != wanted:
        assert time.monotonic() < deadline, f"{check}: healthy {healthy_ids(gateway)}, wanted {wanted}"
        time.sleep(0.2)


def ok_calls(worker: WorkerProcess, *methods: str) -> float:
    """The worker's finished calls of `methods` with status ok."""
    total = 0.0
    for line in worker.metrics_text().splitlines():
        for method in methods:
            if line.startswith(f'heteroserve_worker_requests_total{{method="{method}",status="ok"}} '):
                total += float(line.split()[-1])
    return total


@pytest.fixture
def cluster(tiny_model_dir: Path, tmp_path: Path) -> Iterator[tuple[Gateway, dict[str, WorkerProcess]]]:
    redis = LocalRedis(RedisServerConfig(data_dir=tmp_path / "redis")).start()
    workers: dict[str, WorkerProcess] = {}
    gateway: Gateway | None = None
    try:
        for worker_id, pool in (("p", "pf"), ("d", "dc"), ("c1", "co"), ("c2", "co")):
            workers[worker_id] = start_worker(
                tiny_model_dir, role=POOLS[pool], redis_url=redis.url, worker_id=worker_id,
                extra=("--pool", pool, "--shared-tier-url", redis.url, "--drain-grace-seconds", "2"))
        publish_plan(redis.url, PLAN, "roles test")
        gateway = start_gateway(tiny_model_dir, redis.url, write_api_keys(tmp_path / "keys.yaml"),
                                "--pd-min-uncached-tokens", "32", "--refresh-seconds", "30",
                                cluster_token=CLUSTER_TOKEN)
        _wait(gateway, "start", set(workers))
        yield gateway, workers
    finally:
        if gateway is not None:
            gateway.stop()
        for worker in workers.values():
            worker.stop()
        redis.stop()


def _kill(worker: WorkerProcess) -> None:
    assert REFUSALS not in worker.metrics_text(), f"{worker.worker_id} refused a call"
    worker.proc.kill()
    worker.proc.wait(timeout=10)


def test_gateway_flows_never_hit_a_role_refusal(cluster: tuple[Gateway, dict[str, WorkerProcess]]) -> None:
    gateway, workers = cluster
    with Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        short = client.complete("short prompt", model="tiny", max_tokens=4)
        pd = client.complete(LONG, model="tiny", max_tokens=8, ignore_eos=True)
        cached = client.complete(LONG, model="tiny", max_tokens=8, ignore_eos=True)
        assert short.route.worker_id in ("c1", "c2") and not short.route.disaggregated
        assert (pd.route.prefill_worker_id, pd.route.worker_id, pd.route.disaggregated) == ("p", "d", True)
        assert (cached.route.worker_id, cached.route.disaggregated) == ("d", False)
        assert cached.token_ids == pd.token_ids
        assert ok_calls(workers["d"], "Session.Generate", "Generate") == 1  # decode alone
        assert ok_calls(workers["p"], "PullKV") >= 1

        # migration: the colocated worker holding the stream dies after 8 chunks
        prompt = "a prompt for the migration, on the colocated pool"
        holder = client.complete(prompt, model="tiny", max_tokens=1).route.worker_id
        survivor = workers["c2" if holder == "c1" else "c1"]
        chunks = []
        for chunk in client.stream(prompt, model="tiny", max_tokens=600, ignore_eos=True):
            chunks.append(chunk)
            if len(chunks) == 8:
                _kill(workers[holder])
        route = chunks[-1].route
        assert route is not None and (route.migrations, route.worker_id) == (1, survivor.worker_id)
        assert sum(len(c.token_ids) for c in chunks) == 600
        assert ok_calls(survivor, "Decode") == 1  # the resumed stream: Decode on a colocated worker

        # the prefill worker dies unnoticed (the gateway polls every 30 s): its Prefill fails, and the
        # long prompt falls back to the P/D route's decode pool alone
        _kill(workers["p"])
        alone = client.complete(LONG.replace("paragraph", "section"), model="tiny", max_tokens=4)
        assert (alone.route.worker_id, alone.route.disaggregated) == ("d", False)

        # the decode worker dies too: no P/D route has workers (the prefill one failed a call), any
        # colocated worker serves
        _kill(workers["d"])
        last = client.complete(LONG.replace("paragraph", "chapter"), model="tiny", max_tokens=4)
        assert last.route.worker_id == survivor.worker_id
    assert REFUSALS not in survivor.metrics_text()
