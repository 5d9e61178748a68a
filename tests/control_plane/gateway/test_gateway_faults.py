"""Faults with real processes: a worker SIGKILLed before the first token (retry elsewhere) and in the
middle of a stream (migration: the client sees every token exactly once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import heteroserve
from common.localredis import LocalRedis, free_port
from common.registry import WorkerRecord
from control_plane.orchestrator.cluster import ClusterView
from control_plane.router import InflightTracker
from tests.control_plane.gateway.gateway_procs import (
    API_KEY,
    CLUSTER_TOKEN,
    Gateway,
    Worker,
    start_gateway,
    start_worker,
    wait_for_workers,
)

pytestmark = pytest.mark.slow
PROMPT = " ".join(f"line {i} of a prompt that spans several KV blocks" for i in range(6))


@pytest.fixture
def cluster(tiny_model_dir: Path, gw_redis: LocalRedis,
            keys_file: Path) -> Iterator[tuple[Gateway, dict[str, Worker]]]:
    import redis

    redis.Redis.from_url(gw_redis.url).flushall()
    workers = {f"f-{i}": start_worker(tiny_model_dir, gw_redis.url, f"f-{i}") for i in range(2)}
    # a long refresh period: the gateway keeps believing in a killed worker until a call to it fails
    gateway = start_gateway(tiny_model_dir, gw_redis.url, keys_file, "--refresh-seconds", "30")
    try:
        wait_for_workers(gateway, 2)
        yield gateway, workers
    finally:
        gateway.stop()
        for w in workers.values():
            w.stop()


def test_retry_before_first_token_on_another_worker(cluster: tuple[Gateway, dict[str, Worker]]) -> None:
    gateway, workers = cluster
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        first = client.complete(PROMPT, model="tiny", max_tokens=16)
        holder = first.route.worker_id
        workers[holder].kill()
        again = client.complete(PROMPT, model="tiny", max_tokens=16)
    assert again.route.worker_id != holder
    assert again.route.retries == 1
    assert again.token_ids == first.token_ids


def test_mid_stream_migration_exactly_once(cluster: tuple[Gateway, dict[str, Worker]]) -> None:
    gateway, workers = cluster
    max_tokens = 1200
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        holder = client.complete(PROMPT, model="tiny", max_tokens=1).route.worker_id
        chunks = []
        for chunk in client.stream(PROMPT, model="tiny", max_tokens=max_tokens, ignore_eos=True):
            chunks.append(chunk)
            if len(chunks) == 8:
                workers[holder].kill()
        survivor = next(w for w in workers if w != holder)
        reference = client.complete(PROMPT, model="tiny", max_tokens=max_tokens, ignore_eos=True)
    final = chunks[-1]
    assert final.route is not None and final.route.migrations == 1, final.route
    assert final.route.worker_id == survivor
    streamed = [t for c in chunks for t in c.token_ids]
    assert len(streamed) == max_tokens == final.usage.completion_tokens  # type: ignore[union-attr]
    assert streamed == list(reference.token_ids)


def session_port_streams(gateway: Gateway, worker: Worker) -> int:
    """The gateway's open connections to the worker's plain session port (workers/service/session_port.py):
    the worker's listening ports other than its gRPC port that the gateway is connected to."""
    grpc_port = int(worker.address.rsplit(":", 1)[1])
    listening = {c.laddr.port for c in psutil.Process(worker.proc.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN} - {grpc_port}
    return sum(1 for c in psutil.Process(gateway.proc.pid).net_connections("tcp")
               if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port in listening)


def test_worker_killed_mid_stream_on_the_session_port_migrates_exactly_once(
        cluster: tuple[Gateway, dict[str, Worker]]) -> None:
    """As above, with the stream checked to run over the worker's plain session port (the default
    without TLS) when the worker dies: the broken connection fails the generation as UNAVAILABLE and
    the orchestrator migrates it."""
    gateway, workers = cluster
    max_tokens = 1200
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        holder = client.complete(PROMPT, model="tiny", max_tokens=1).route.worker_id  # learns the port
        chunks = []
        for chunk in client.stream(PROMPT, model="tiny", max_tokens=max_tokens, ignore_eos=True):
            chunks.append(chunk)
            if len(chunks) == 8:
                assert session_port_streams(gateway, workers[holder]) == 1
                workers[holder].kill()
        reference = client.complete(PROMPT, model="tiny", max_tokens=max_tokens, ignore_eos=True)
    final = chunks[-1]
    assert final.route is not None and final.route.migrations == 1, final.route
    assert final.route.worker_id != holder
    streamed = [t for c in chunks for t in c.token_ids]
    assert len(streamed) == max_tokens and streamed == list(reference.token_ids)


async def test_unhealthy_worker_leaves_candidates_until_it_recovers(tiny_model_dir: Path) -> None:
    port = free_port()
    record = WorkerRecord(worker_id="h-0", address=f"127.0.0.1:{port}", node_type="cpu", device="cpu",
                          role="colocated", model="tiny", pool="default", kv_blocks=0, max_num_seqs=0,
                          block_size=16, started_at=0.0)
    view = ClusterView(None, CLUSTER_TOKEN, InflightTracker(), unary_timeout_seconds=2.0)
    view.add_static(record)
    await view.refresh()
    assert [w.healthy for w in view.snapshot()] == [False]  # nothing listens yet
    worker = start_worker(tiny_model_dir, None, "h-0", port=port)
    try:
        await view.refresh()
        assert [w.healthy for w in view.snapshot()] == [True]
        view.mark_failed("h-0")
        assert [w.healthy for w in view.snapshot()] == [False]
        await view.refresh()
        assert [w.healthy for w in view.snapshot()] == [True]
        worker.kill()
        await view.refresh()
        assert [w.healthy for w in view.snapshot()] == [False]
    finally:
        worker.stop()
        await view.stop()
