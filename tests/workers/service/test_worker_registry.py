"""The worker registry in a real Redis: write, list, expire, delete, and the heartbeat's resilience."""

from __future__ import annotations

import asyncio

import pytest
from redis import asyncio as aioredis

from common import registry
from common.localredis import free_port
from common.registry import WorkerRecord
from workers.service.registration import Registration


def record(worker_id: str = "w1", **overrides: object) -> WorkerRecord:
    fields: dict[str, object] = dict(
        worker_id=worker_id, address="127.0.0.1:5001", node_type="cpu", device="cpu", role="decode",
        model="tiny", pool="p1", kv_blocks=128, max_num_seqs=8, block_size=16, started_at=1.5)
    fields.update(overrides)
    return WorkerRecord(**fields)  # type: ignore[arg-type]


def test_record_round_trips_and_ignores_unknown_fields() -> None:
    rec = record()
    assert WorkerRecord.from_json(rec.to_json()) == rec
    text = rec.to_json().replace('"block_size"', '"future_field": 7, "block_size"')
    assert WorkerRecord.from_json(text) == rec


@pytest.mark.parametrize("bad", [{"role": "both"}, {"device": "tpu"}, {"address": "nohostport"},
                                 {"kv_blocks": -1}, {"worker_id": ""}])
def test_record_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        record(**bad)


def test_record_from_malformed_json_raises_value_error() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        WorkerRecord.from_json("{nope")
    with pytest.raises(ValueError, match="incomplete"):
        WorkerRecord.from_json('{"worker_id": "x"}')


async def test_write_list_delete_and_expiry(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await registry.write_worker(client, record("w1"), ttl_seconds=30)
        await registry.write_worker(client, record("w2", role="prefill"), ttl_seconds=0.2)
        assert [r.worker_id for r in await registry.list_workers(client)] == ["w1", "w2"]
        assert await registry.get_worker(client, "w2") == record("w2", role="prefill")
        await asyncio.sleep(0.4)
        assert [r.worker_id for r in await registry.list_workers(client)] == ["w1"]
        assert await client.smembers(registry.WORKERS_INDEX_KEY) == {b"w1"}  # stale entry pruned
        await registry.delete_worker(client, "w1")
        assert await registry.list_workers(client) == []
        assert await registry.get_worker(client, "w1") is None
    finally:
        await client.aclose()


async def test_registration_heartbeat_keeps_record_alive_then_deregisters(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    reg = Registration(redis_url, record("hb"), heartbeat_seconds=0.1, ttl_seconds=0.3)
    try:
        await reg.start()
        await asyncio.sleep(0.8)  # well past one TTL: only the heartbeat keeps it alive
        assert [r.worker_id for r in await registry.list_workers(client)] == ["hb"]
        reg.mark_draining()
        await asyncio.sleep(0.2)
        found = await registry.get_worker(client, "hb")
        assert found is not None and found.draining
        await reg.stop()
        assert await registry.list_workers(client) == []
    finally:
        await client.aclose()


async def test_registration_survives_unreachable_redis(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    reg = Registration(url, record("lonely"), heartbeat_seconds=0.05, ttl_seconds=0.2)
    await reg.start()
    await asyncio.sleep(0.4)
    await reg.stop()
    warnings = [r for r in caplog.records if "registry unreachable" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not once per heartbeat
