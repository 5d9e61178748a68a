"""Planned vs served share on a real gateway with three colocated pools of real workers: a
prefix-heavy workload is split as planned within ±0.05 (prefix affinity on, its deviations bounded
and counted), and a malformed plan keeps the old one in use."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import heteroserve
from common.localredis import LocalRedis
from control_plane.router.split import DEFAULT_EPSILON
from placement.plan import Route
from tests.control_plane.gateway.gateway_procs import (
    ADMIN_TOKEN,
    API_KEY,
    Gateway,
    Worker,
    admin,
    publish_plan,
    start_gateway,
    start_worker,
    wait_for_plan,
    wait_for_workers,
)
from tests.control_plane.gateway.plans import document

pytestmark = pytest.mark.slow
SHARES = {"pa": 0.5, "pb": 0.3, "pc": 0.2}
PLAN = document({p: "colocated" for p in SHARES},
                {"tiny/interactive/i1o0": [Route(s, pool=p) for p, s in SHARES.items()]})
NUM_REQUESTS = 120
# Prefix-heavy: four long shared prefixes (~150 tokens, many full blocks) and a short unique tail.
PREFIXES = [" ".join(f"system rule {j} of tenant {k}, follow it" for j in range(9)) for k in range(4)]


@pytest.fixture(scope="module")
def share_cluster(tiny_model_dir: Path, gw_redis: LocalRedis, keys_file: Path) -> Iterator[Gateway]:
    import redis

    redis.Redis.from_url(gw_redis.url).flushall()
    workers: list[Worker] = [start_worker(tiny_model_dir, gw_redis.url, f"w-{p}", pool=p) for p in SHARES]
    publish_plan(gw_redis.url, PLAN)
    gateway = start_gateway(tiny_model_dir, gw_redis.url, keys_file)
    try:
        wait_for_workers(gateway, len(workers))
        wait_for_plan(gateway, 1)
        yield gateway
    finally:
        gateway.stop()
        for w in workers:
            w.stop()


def _served(gateway: Gateway) -> dict[str, dict[str, Any]]:
    return {r["route"]: r for r in admin(gateway, "routing")["classes"]}


def test_prefix_heavy_workload_follows_the_planned_split(share_cluster: Gateway) -> None:
    gateway = share_cluster
    pools: list[str] = []
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        for i in range(NUM_REQUESTS):
            done = client.complete(f"{PREFIXES[i % 4]} question {i}", model="tiny", max_tokens=1)
            pools.append(done.route.pool)
    counts = Counter(pools)
    for pool, share in SHARES.items():
        assert abs(counts[pool] / NUM_REQUESTS - share) <= 0.05, (pool, counts)
        # the deviation bound: no route above share + ε of the decisions (+1: the round robin's slack)
        assert counts[pool] <= (share + DEFAULT_EPSILON) * NUM_REQUESTS + 1, (pool, counts)
    served = _served(gateway)
    assert {p: served[p]["served_share"] for p in SHARES} == {p: counts[p] / NUM_REQUESTS for p in SHARES}
    assert {p: served[p]["requests"] for p in SHARES} == dict.fromkeys(SHARES, NUM_REQUESTS)
    routing = admin(gateway, "routing")
    assert routing["deviations"]["prefix_affinity"] > 0  # affinity was on and did pull requests
    metrics = httpx.get(f"{gateway.http_url}/metrics", timeout=10).text
    deviations = routing["deviations"]["prefix_affinity"]
    name = 'heteroserve_gateway_route_deviations_total{reason="prefix_affinity"}'
    assert f"{name} {deviations:.1f}" in metrics
    assert 'heteroserve_gateway_planned_share{pool="pb",role="colocated",slo_class="interactive"} 0.3' \
        in metrics


def test_malformed_plan_keeps_the_old_plan(share_cluster: Gateway, gw_redis: LocalRedis) -> None:
    gateway = share_cluster
    broken = {**PLAN, "classes": [{"name": "tiny/interactive/i1o0", "model": "tiny", "slo": "interactive",
                                   "bucket": [1, 0], "rate": 1.0, "routes": [{"share": 2.0, "pool": "pa"}]}]}
    publish_plan(gw_redis.url, broken)
    routing = admin(gateway, "routing")
    for _ in range(100):
        if routing["plan_error"]:
            break
        time.sleep(0.1)
        routing = admin(gateway, "routing")
    assert routing["plan_version"] == 1 and "version 2" in routing["plan_error"]
    assert "share" in routing["plan_error"]
    metrics = httpx.get(f"{gateway.http_url}/metrics", timeout=10).text
    assert 'heteroserve_gateway_plan_rejected_total{reason="malformed"} 1.0' in metrics
    assert "heteroserve_gateway_plan_version 1.0" in metrics
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        for i in range(10):
            client.complete(f"a fresh long prompt {i} " * 12, model="tiny", max_tokens=1)
    served = _served(gateway)  # still the old plan's split, counted since it was adopted
    assert all(served[p]["requests"] == NUM_REQUESTS + 10 for p in SHARES)
    assert all(abs(served[p]["served_share"] - share) <= 0.05 for p, share in SHARES.items()), served


def test_status_shows_planned_vs_served(share_cluster: Gateway, gw_redis: LocalRedis, tmp_path: Path) -> None:
    """`heteroserve status` (json and wide) reads the gateway's /admin/routing."""
    import io

    from heteroserve.embedded.state import ClusterState
    from heteroserve.embedded.status import collect
    from heteroserve.embedded.status_output import status_document, write_status

    state = ClusterState(run_dir=str(tmp_path), launcher_pid=0, redis_url=gw_redis.url,
                         http_url=share_cluster.http_url, grpc_address=share_cluster.grpc_target,
                         api_key=API_KEY, admin_token=ADMIN_TOKEN, cluster_token="c", model="tiny",
                         model_dir=str(tmp_path), started_at=0.0)
    snapshot = collect(state)
    routing = status_document(snapshot)["routing"]
    assert routing["plan_version"] == 1 and routing["epsilon"] == DEFAULT_EPSILON
    pools = {p["pool"]: p for p in routing["pools"]}
    assert {p: pools[p]["planned_share"] for p in SHARES} == pytest.approx(SHARES)
    assert all(abs(pools[p]["served_share"] - s) <= 0.05 for p, s in SHARES.items())
    assert sorted(routing["classes"][0]) == ["decode_pool", "planned_share", "pool", "prefill_pool",
                                             "request_class", "requests", "route", "served_share",
                                             "slo_class"]
    out = io.StringIO()
    write_status(snapshot, "wide", out, is_terminal=False)
    text = out.getvalue()
    assert "planned vs served share" in text and "tiny/interactive/i1o0" in text
    assert f"{pools['pb']['served_share']:.3f}" in text
