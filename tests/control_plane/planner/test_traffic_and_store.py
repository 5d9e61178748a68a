"""Traffic statistics, the plan store and the leader lock against a real redis-server."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from common.vocab import LENGTH_BUCKET_EDGES
from control_plane.plan_store import PlanStore, PlanWatcher, read_plan_sync
from control_plane.planner.forecast import ForecastConfig, RateForecaster, significant_change
from control_plane.planner.leader import RedisLeaderLock
from control_plane.traffic import TrafficConfig, TrafficReader, TrafficRecorder, length_bucket


def test_length_buckets_follow_melange_edges() -> None:
    assert [length_bucket(n) for n in (0, 24, 25, 99, 100, 1999, 2000, 10**6)] == [0, 0, 1, 1, 2, 5, 6, 6]
    assert len(LENGTH_BUCKET_EDGES) == 7


async def test_recorded_traffic_is_read_back_per_class(redis_url: str) -> None:
    config = TrafficConfig(redis_url=redis_url, bucket_seconds=1, flush_interval_seconds=0.05)
    recorder = TrafficRecorder(config)
    try:
        for _ in range(30):
            recorder.record("chat", 120, 30, ttft_s=0.1, tpot_s=0.02, slo_met=True)
        for i in range(10):
            recorder.record("batch", 600, 300, ttft_s=2.0, tpot_s=0.5, slo_met=i < 5)
        assert recorder.flush()
    finally:
        recorder.close()
    reader = TrafficReader(config)
    try:
        snap = await reader.snapshot(window_seconds=10.0)
    finally:
        await reader.close()
    chat, batch = snap.classes["chat"], snap.classes["batch"]
    assert chat.num_requests == 30 and batch.num_requests == 10
    assert chat.mean_input_tokens == 120 and chat.mean_output_tokens == 30
    assert chat.input_histogram[length_bucket(120)] == 30 and sum(chat.input_histogram) == 30
    assert batch.output_histogram[length_bucket(300)] == 10
    assert batch.slo_attainment == 0.5 and chat.slo_attainment == 1.0
    assert batch.mean_ttft_s == pytest.approx(2.0)
    assert chat.arrival_rate_per_s == pytest.approx(30 / snap.covered_seconds)
    assert 10.0 <= snap.covered_seconds <= 11.0


async def test_snapshot_window_excludes_old_buckets(redis_url: str) -> None:
    config = TrafficConfig(redis_url=redis_url, bucket_seconds=1)
    client = aioredis.Redis.from_url(redis_url)
    old = int(time.time()) - 100
    await client.hset(f"{config.prefix}:{old}", mapping={"chat|n": 50})
    reader = TrafficReader(config, client=client)
    snap = await reader.snapshot(window_seconds=5.0)
    assert snap.classes == {}
    snap = await reader.snapshot(window_seconds=200.0)
    assert snap.classes["chat"].num_requests == 50
    await client.aclose()


def test_recorder_survives_redis_down() -> None:
    config = TrafficConfig(redis_url="redis://127.0.0.1:1/0", flush_interval_seconds=10)
    recorder = TrafficRecorder(config)
    recorder.record("chat", 10, 10, 0.1, 0.01, True)
    start = time.monotonic()
    assert recorder.flush() is False
    assert time.monotonic() - start < 5
    recorder.record("chat", 10, 10, 0.1, 0.01, True)
    assert recorder._pending  # kept for the next flush
    recorder._stop.set()
    recorder._thread.join()


async def test_plan_store_versions_and_watcher(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = PlanStore(client)
    assert await store.read() is None and await store.version() == 0
    seen: list[int] = []

    async def on_plan(record) -> None:  # type: ignore[no-untyped-def]
        seen.append(record.version)

    watcher = PlanWatcher(store, on_plan, poll_seconds=0.02)
    watcher.start()
    first = await store.publish({"pools": [{"name": "a", "count": 1}]}, leader="p1", reason="initial")
    await asyncio.sleep(0.1)
    second = await store.publish({"pools": [{"name": "a", "count": 2}]}, leader="p1", reason="load")
    await asyncio.sleep(0.1)
    await watcher.stop()
    assert (first.version, second.version) == (1, 2)
    assert seen == [1, 2]
    assert watcher.latest is not None and watcher.latest.plan["pools"][0]["count"] == 2
    assert [r.version for r in await store.history()] == [2, 1]
    synced = read_plan_sync(redis_url)
    assert synced is not None and synced.reason == "load"
    await client.aclose()


async def test_leader_lock_exclusive_renew_and_takeover(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    a = RedisLeaderLock(client, "a", key="t:lock", ttl_ms=200)
    b = RedisLeaderLock(client, "b", key="t:lock", ttl_ms=200)
    assert await a.try_acquire() and not await b.try_acquire()
    assert await a.renew() and not await b.renew()
    assert await a.current_leader() == "a"
    await asyncio.sleep(0.3)  # a stops renewing: the lease expires
    assert await b.try_acquire() and not await a.renew()
    assert not await a.release() and await b.release()
    assert await a.try_acquire()
    await client.aclose()


def test_forecaster_follows_a_step_and_detects_it() -> None:
    config = ForecastConfig(alpha=0.6, beta=0.3)
    f = RateForecaster(config)
    for _ in range(5):
        f.observe({"chat": 1.0})
    assert f.smoothed()["chat"] == pytest.approx(1.0)
    f.observe({"chat": 2.0})
    assert 1.5 < f.planning_rates()["chat"] <= 2.5
    assert significant_change({"chat": 1.0}, f.planning_rates(), config)
    assert not significant_change({"chat": 1.0}, {"chat": 1.1}, config)
    assert not significant_change({}, {"chat": 0.01}, config)
    f.observe({})
    assert f.smoothed()["chat"] < 2.0
