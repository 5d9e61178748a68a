"""P/D orchestration with real prefill, decode and colocated workers and a published `Plan`: the
planned prefill→decode pairings are respected, a route without workers gives its share to the others."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import heteroserve
from common.localredis import LocalRedis
from placement.plan import Route
from tests.control_plane.gateway.gateway_procs import (
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
LONG = " ".join(f"paragraph {i} of a long document to summarise" for i in range(8))  # 162 tokens: i1
POOLS = {"co": "colocated", "pf-a": "prefill", "pf-b": "prefill", "dc-a": "decode", "dc-b": "decode"}
# Long prompts go P/D on two crossed pairs; short ones colocated.
PLAN = document(POOLS, {"tiny/interactive/i1o0": [Route(0.5, prefill_pool="pf-a", decode_pool="dc-b"),
                                                  Route(0.5, prefill_pool="pf-b", decode_pool="dc-a")],
                        "tiny/interactive/i0o0": [Route(1.0, pool="co")]})
PAIRS = {"p-a": "d-b", "p-b": "d-a"}


@pytest.fixture(scope="module")
def pd_cluster(tiny_model_dir: Path, gw_redis: LocalRedis,
               keys_file: Path) -> Iterator[tuple[Gateway, dict[str, Worker]]]:
    import redis

    redis.Redis.from_url(gw_redis.url).flushall()
    specs = {"p-a": ("prefill", "pf-a"), "p-b": ("prefill", "pf-b"), "d-a": ("decode", "dc-a"),
             "d-b": ("decode", "dc-b"), "c-0": ("colocated", "co")}
    workers = {name: start_worker(tiny_model_dir, gw_redis.url, name, role=role, pool=pool,
                                  shared_tier=role != "colocated") for name, (role, pool) in specs.items()}
    publish_plan(gw_redis.url, PLAN, "pd test")
    gateway = start_gateway(tiny_model_dir, gw_redis.url, keys_file, "--pd-min-uncached-tokens", "32")
    try:
        wait_for_workers(gateway, len(workers))
        wait_for_plan(gateway, 1)
        yield gateway, workers
    finally:
        gateway.stop()
        for w in workers.values():
            w.stop()


def _doc(i: int) -> str:
    return " ".join(f"section {j} of document {i}, never seen before" for j in range(8))


def test_pd_requests_follow_the_planned_pairings(pd_cluster: tuple[Gateway, dict[str, Worker]]) -> None:
    gateway, _ = pd_cluster
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        pd = client.complete(LONG, model="tiny", max_tokens=20, ignore_eos=True)
        more = [client.complete(_doc(i), model="tiny", max_tokens=4, ignore_eos=True) for i in range(5)]
        short = client.complete("short prompt", model="tiny", max_tokens=4)
    assert pd.route.disaggregated and PAIRS[pd.route.prefill_worker_id] == pd.route.worker_id
    assert len(pd.token_ids) == 20
    for done in more:  # every P/D request decodes on its prefill pool's planned partner, never crossed
        assert done.route.disaggregated, done.route
        assert PAIRS[done.route.prefill_worker_id] == done.route.worker_id, done.route
    used = Counter(d.route.prefill_worker_id for d in [pd, *more])
    assert used == {"p-a": 3, "p-b": 3}  # 0.5 / 0.5, exactly, by the round robin
    assert not short.route.disaggregated and short.route.worker_id == "c-0"
    # now cached, the same prompt runs on a decode pool alone (no second prefill): same tokens
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        again = client.complete(LONG, model="tiny", max_tokens=20, ignore_eos=True)
    assert not again.route.disaggregated and again.route.worker_id in ("d-a", "d-b")
    assert again.token_ids == pd.token_ids
    routing = admin(gateway, "routing")
    pools = {(p["pool"], p["role"]): p for p in routing["pools"] if p["slo_class"] == "interactive"}
    # planned shares weighted by the classes served: 7 long requests (half to pf-a), 1 short one
    assert pools[("pf-a", "prefill")]["planned_share"] == pytest.approx(0.5 * 7 / 8)
    assert pools[("co", "colocated")]["planned_share"] == pytest.approx(1 / 8)
    assert pools[("co", "colocated")]["served_share"] == pytest.approx(1 / 8)
    assert pools[("dc-b", "decode")]["served_share"] == pools[("pf-a", "prefill")]["served_share"]


def test_route_without_workers_gives_its_share_to_the_others(
        pd_cluster: tuple[Gateway, dict[str, Worker]]) -> None:
    gateway, workers = pd_cluster
    workers["p-a"].kill()
    deadline = time.monotonic() + 30
    while any(w["worker_id"] == "p-a" and w["healthy"] for w in admin(gateway, "workers")["workers"]):
        assert time.monotonic() < deadline, "the gateway never noticed p-a is gone"
        time.sleep(0.2)
    before = admin(gateway, "routing")["deviations"]["route_unavailable"]
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        done = [client.complete(_doc(100 + i), model="tiny", max_tokens=4, ignore_eos=True) for i in range(4)]
    assert [(d.route.prefill_worker_id, d.route.worker_id) for d in done] == [("p-b", "d-a")] * 4
    assert admin(gateway, "routing")["deviations"]["route_unavailable"] == before + 4
    metrics = httpx.get(f"{gateway.http_url}/metrics", timeout=10).text
    assert 'heteroserve_gateway_route_deviations_total{reason="route_unavailable"} ' in metrics
