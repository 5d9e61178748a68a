"""`heteroserve status -o table|wide|json`, run as a user runs it (a subprocess, stdout a pipe).

The cluster it reports on is real data in a real Redis (a published plan, a registered worker whose id
and address are longer than an 80-column table leaves room for) and a real /metrics endpoint for the
gateway; the planner is absent, so its part must be `null`, never zeros.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from common.localredis import free_port
from common.registry import WorkerRecord, write_worker
from control_plane.plan_store import PlanStore
from heteroserve.embedded.state import ClusterState, write_state
from heteroserve.embedded.status import collect
from heteroserve.embedded.status_output import natural_width, write_status
from placement.plan import Baseline, Classifier, ClassRouting, Plan, Pool, Route, SolveSummary

WORKER_ID = "cpu-colocated-a-very-long-worker-identifier-0001"
ADDRESS = "127.0.0.1:54321"
PLAN = Plan(  # the one plan document the planner publishes
    pools=(Pool("cpu-colocated", "tiny", "cpu-local", "colocated", 2, 0.1, "cpu"),),
    classes=(ClassRouting("tiny/interactive/i2o0", "tiny", "interactive", (2, 0), 1.0,
                          (Route(1.0, pool="cpu-colocated"),), 1.0, 0.1),),
    classifier=Classifier((0, 25, 100, 250), (0, 25, 100), ("interactive",), "interactive"),
    cost_per_hour=0.35, baselines=(Baseline("colocated_only", 0.5),),
    solve=SolveSummary("highs", "optimal", True, 0.0, 0.01)).to_dict()


async def _seed(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await PlanStore(client).publish(PLAN, leader="embedded-planner", reason="initial")
        await write_worker(client, WorkerRecord(
            worker_id=WORKER_ID, address=ADDRESS, node_type="cpu-local", device="cpu", role="colocated",
            model="tiny", pool="cpu-colocated", kv_blocks=64, max_num_seqs=8, block_size=16,
            started_at=time.time()), ttl_seconds=120)
    finally:
        await client.aclose()


@pytest.fixture
def run_dir(tmp_path: Path, redis_url: str) -> Path:
    """cluster.json of a cluster whose gateway /metrics is a real endpoint (3 ok, 1 failed request)."""
    registry = CollectorRegistry()
    requests = Counter("heteroserve_gateway_requests", "", ["status"], registry=registry)
    requests.labels(status="200").inc(3)
    requests.labels(status="429").inc()
    ttft = Histogram("heteroserve_gateway_ttft_seconds", "", registry=registry)
    for seconds in (0.1, 0.3):
        ttft.observe(seconds)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    asyncio.run(_seed(redis_url))
    write_state(tmp_path, ClusterState(
        run_dir=str(tmp_path), launcher_pid=os.getpid(), redis_url=redis_url,
        http_url=f"http://127.0.0.1:{port}", grpc_address="127.0.0.1:50050", api_key="k", admin_token="a",
        cluster_token="c", model="tiny", model_dir=str(tmp_path / "models"), started_at=1000.0))
    yield tmp_path
    server.shutdown()
    thread.join(timeout=5)


def status(run_dir: Path, *args: str) -> str:
    env = {**os.environ, "COLUMNS": "80"}  # what a CI job or a pipe without a terminal gets
    result = subprocess.run([sys.executable, "-m", "heteroserve.cli", "status", "--run-dir", str(run_dir),
                             *args], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_json_holds_exactly_the_documented_fields(run_dir: Path) -> None:
    doc: dict[str, Any] = json.loads(status(run_dir, "-o", "json"))
    assert sorted(doc) == ["cache_hit_rate", "cluster", "collected_at", "gateway", "plan", "planner", "pools",
                           "routing", "schema", "schema_version", "workers"]
    # this gateway has no admin API: null (tests/control_plane/gateway covers it)
    assert doc["routing"] is None
    assert (doc["schema"], doc["schema_version"]) == ("heteroserve.status", 1)
    assert doc["cluster"] == {"run_dir": str(run_dir), "http_url": doc["cluster"]["http_url"],
                              "grpc_address": "127.0.0.1:50050", "model": "tiny", "started_at": 1000.0}
    plan = doc["plan"]
    assert sorted(plan) == ["baselines", "cost_per_hour", "leader", "published_at", "reason", "version"]
    assert (plan["version"], plan["reason"], plan["leader"]) == (1, "initial", "embedded-planner")
    assert (plan["cost_per_hour"], plan["baselines"]) == (0.35, {"colocated_only": 0.5})
    assert doc["pools"] == [{"name": "cpu-colocated", "node_type": "cpu-local", "role": "colocated",
                             "device": "cpu", "desired": 2, "running": 1, "price_per_hour": 0.1}]
    assert doc["workers"] == [{"worker_id": WORKER_ID, "pool": "cpu-colocated", "node_type": "cpu-local",
                               "role": "colocated", "device": "cpu", "address": ADDRESS, "draining": False,
                               "metrics_reachable": False, "running_requests": None,
                               "waiting_requests": None, "kv_blocks_used": None,
                               "decode_tokens_total": None}]
    assert doc["gateway"] == {"requests_ok": 3, "requests_failed": 1, "mean_ttft_seconds": pytest.approx(0.2),
                              "mean_tpot_seconds": None}
    assert doc["planner"] is None, "no planner metrics: null, not zeros"
    assert doc["cache_hit_rate"] == {"device": None, "redis": None, "disk": None}
    assert abs(doc["collected_at"] - time.time()) < 60


@pytest.mark.parametrize("output", ["wide", "table"])
def test_without_a_terminal_nothing_is_truncated(run_dir: Path, output: str) -> None:
    text = status(run_dir, "-o", output)
    assert WORKER_ID in text and ADDRESS in text, text
    assert "…" not in text, "no cell may be cut"
    assert max(len(line) for line in text.splitlines()) > 80, "the tables are wider than the terminal default"


def test_table_on_a_terminal_fits_its_width(run_dir: Path, redis_url: str) -> None:
    import io

    from heteroserve.embedded.state import read_state

    snapshot = collect(read_state(run_dir))
    out = io.StringIO()
    os.environ["COLUMNS"] = "80"
    try:
        write_status(snapshot, "table", out, is_terminal=True)
    finally:
        del os.environ["COLUMNS"]
    assert max(len(line) for line in out.getvalue().splitlines()) <= 80
    wide = io.StringIO()
    write_status(snapshot, "wide", wide, is_terminal=False)
    lines = wide.getvalue().splitlines()
    from heteroserve.embedded.status import render

    assert max(len(line) for line in lines) <= natural_width(render(snapshot))
    assert any(WORKER_ID in line for line in lines)
