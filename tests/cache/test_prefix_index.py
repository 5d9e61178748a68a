"""PrefixIndex: exact answers, shared tier, worker removal, snapshot round trip, and (hypothesis)
snapshot + replay equals full rebuild, in memory and through a real Redis stream with a gap."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache.events import EventStreamConfig, KVEvent, KVEventPublisher
from cache.hashing import BlockHash
from cache.index_sync import PrefixIndexFollower
from cache.metrics import CacheMetrics
from cache.prefix_index import SHARED, PrefixIndex, PrefixRun

H = [BlockHash(bytes([i]) * 16) for i in range(8)]


def stored(worker: str, tier: str, *idx: int) -> KVEvent:
    return KVEvent(worker, tier, "stored", tuple(H[i] for i in idx))


def test_longest_prefix_per_worker_and_tier() -> None:
    index = PrefixIndex()
    index.apply(stored("a", "device", 0, 1, 2))
    index.apply(stored("a", "disk", 3))
    index.apply(stored("b", "device", 0))
    index.apply(stored("b", "redis", 1, 2, 3, 4))  # shared: every worker may load these
    got = index.longest_prefix(H[:6])
    # block 3: a holds it on disk but the shared redis copy is faster; block 0 is not shared
    assert got == {"a": PrefixRun(5, "redis"), "b": PrefixRun(5, "redis")}
    # b holds none of these itself: it is covered by the SHARED entry, like every unlisted worker
    assert index.longest_prefix(H[1:5]) == {"a": PrefixRun(4, "redis"), SHARED: PrefixRun(4, "redis")}
    assert index.longest_prefix_per_tier(H[:6])[("a", "device")] == 3
    assert index.longest_prefix([H[5]]) == {}
    index.check_integrity()


def test_removed_cleared_and_remove_worker() -> None:
    index = PrefixIndex()
    index.apply(stored("a", "device", 0, 1))
    index.apply(stored("a", "disk", 0, 1))
    index.apply(KVEvent("a", "device", "removed", (H[1],)))
    assert index.longest_prefix(H[:2]) == {"a": PrefixRun(2, "disk")}
    index.apply(KVEvent("a", "disk", "cleared"))
    assert index.longest_prefix(H[:2]) == {"a": PrefixRun(1, "device")}
    assert index.remove_worker("a") == 1
    assert len(index) == 0 and index.workers() == []
    index.check_integrity()


def test_longest_prefix_is_fast() -> None:
    index = PrefixIndex()
    hashes = [BlockHash(i.to_bytes(16, "little")) for i in range(128)]
    for w in range(8):
        index.apply(KVEvent(f"w{w}", "device", "stored", tuple(hashes[: 16 * (w + 1)])))
    per_call_us = float("inf")
    for _ in range(5):  # best of 5 rounds: a loaded machine only ever adds time
        start = time.perf_counter()
        for _ in range(100):
            result = index.longest_prefix(hashes)
        per_call_us = min(per_call_us, (time.perf_counter() - start) / 100 * 1e6)
    assert result["w7"] == PrefixRun(128, "device")
    assert per_call_us < 2000  # generous bound for a shared 2-core machine; typically ~100 µs


WORKERS = st.sampled_from(["w1", "w2", "w3"])
TIERS = st.sampled_from(["device", "redis", "disk"])
HASHES = st.lists(st.integers(0, 7).map(lambda i: H[i]), min_size=0, max_size=4).map(tuple)
EVENTS = st.lists(st.one_of(
    st.builds(KVEvent, WORKERS, TIERS, st.sampled_from(["stored", "removed"]), HASHES),
    st.builds(KVEvent, WORKERS, TIERS, st.just("cleared")),
), max_size=30)


def _rebuild(events: list[KVEvent]) -> PrefixIndex:
    index = PrefixIndex()
    for e in events:
        index.apply(e)
    return index


@settings(deadline=None)
@given(EVENTS, st.integers(0, 30))
def test_snapshot_plus_replay_equals_full_rebuild(events: list[KVEvent], cut: int) -> None:
    cut = min(cut, len(events))
    restored = PrefixIndex.from_bytes(_rebuild(events[:cut]).to_bytes())
    for e in events[cut:]:
        restored.apply(e)
    full = _rebuild(events)
    restored.check_integrity()
    assert restored.state() == full.state()
    assert restored.longest_prefix(H) == full.longest_prefix(H)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(EVENTS.filter(lambda e: len(e) >= 4), st.integers(1, 29), st.integers(0, 29))
async def test_follower_recovers_after_gap_like_full_rebuild(redis_url: str, events: list[KVEvent],
                                                             snap_at: int, seen_at: int) -> None:
    """F1 snapshots after `snap_at` events; F2 has seen `seen_at` <= snap_at; the stream is then trimmed
    past F2's position. F2's next poll detects the gap and must equal a full rebuild; so must a fresh F3."""
    snap_at = min(snap_at, len(events) - 1)
    seen_at = min(seen_at, snap_at)
    client = aioredis.Redis.from_url(redis_url)
    config = EventStreamConfig(stream_key=f"s{time.monotonic_ns()}", snapshot_key=f"k{time.monotonic_ns()}")
    publisher = KVEventPublisher(client, "unused", config)
    metrics = CacheMetrics(__import__("prometheus_client").CollectorRegistry())
    try:
        await publisher.flush_events(events[:seen_at])
        f2 = PrefixIndexFollower(client, config, metrics)
        await f2.recover()
        await publisher.flush_events(events[seen_at:snap_at])
        f1 = PrefixIndexFollower(client, config)
        await f1.recover()
        await f1.snapshot()
        await publisher.flush_events(events[snap_at:])
        await client.xtrim(config.stream_key, maxlen=len(events) - snap_at, approximate=False)
        await f2.poll_once()
        f3 = PrefixIndexFollower(client, config)
        await f3.recover()
        full = _rebuild(events).state()
        assert f2.index.state() == full
        assert f3.index.state() == full
        gap_seen = seen_at < snap_at
        assert metrics.index_gaps._value.get() == (1 if gap_seen else 0)
    finally:
        await client.delete(config.stream_key, config.snapshot_key)
        await client.aclose()


async def test_publisher_task_drains_in_order(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    config = EventStreamConfig(stream_key="order", snapshot_key="order-snap")
    publisher = KVEventPublisher(client, "w1", config)
    publisher.start()
    publisher.publish("stored", "device", H[:3])
    publisher.publish("removed", "device", H[1:2])
    await publisher.aclose()
    follower = PrefixIndexFollower(client, config)
    assert await follower.recover() == 2
    assert follower.index.longest_prefix(H[:3]) == {"w1": PrefixRun(1, "device")}
    await client.aclose()


def _reference_runs(index: PrefixIndex, hashes: list[BlockHash]) -> dict[str, PrefixRun]:
    """Brute force: every worker's run, block by block (own or shared), slowest tier along it."""
    state = index.state()
    rank = {"device": 0, "memory": 1, "redis": 2, "disk": 3}
    out = {}
    for worker in [*index.workers(), SHARED]:
        n, worst = 0, -1
        for h in hashes:
            ranks = [rank[t] for (w, t) in state.get(h, ()) if w in (worker, SHARED)]
            if not ranks:
                break
            n, worst = n + 1, max(worst, min(ranks))
        if n:
            out[worker] = PrefixRun(n, next(t for t, r in rank.items() if r == worst))
    return out


@settings(deadline=None)
@given(EVENTS, st.lists(st.integers(0, 7).map(lambda i: H[i]), max_size=8))
def test_longest_prefix_matches_brute_force(events: list[KVEvent], query: list[BlockHash]) -> None:
    index = _rebuild(events)
    got = index.longest_prefix(query)
    for worker, expected in _reference_runs(index, query).items():
        assert got.get(worker, got.get(SHARED)) == expected, worker
    for worker in got:
        assert worker in _reference_runs(index, query)


async def test_removed_worker_stays_removed_until_it_restarts(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    config = EventStreamConfig(stream_key="rm", snapshot_key="rm-snap")
    publisher = KVEventPublisher(client, "unused", config)
    try:
        await publisher.flush_events([stored("w1", "device", 0, 1), stored("w2", "device", 0)])
        follower = PrefixIndexFollower(client, config)
        await follower.recover()
        await follower.snapshot()  # the snapshot still holds w1
        assert follower.remove_worker("w1") == 2
        await follower.recover()  # a rebuild from that snapshot must not bring w1 back
        await publisher.flush_events([stored("w1", "device", 2), stored("w1", "redis", 0)])
        await follower.poll_once()
        assert follower.index.longest_prefix(H[:2]) == {"w2": PrefixRun(1, "device"),
                                                       SHARED: PrefixRun(1, "redis")}
        await publisher.flush_events([KVEvent("w1", "device", "cleared"), stored("w1", "device", 0, 1)])
        await follower.poll_once()
        assert follower.index.longest_prefix(H[:2])["w1"] == PrefixRun(2, "device")
    finally:
        await client.aclose()


# Block table under churn: many hashes (some sharing their low 8 bytes, so only the full 128 bits tell
# them apart), enough to grow and rebuild the table, against a plain dict-of-sets reference model.
MANY = [BlockHash(bytes([i % 7]) * 8 + i.to_bytes(8, "little")) for i in range(400)]
CHURN = st.lists(st.one_of(
    st.builds(KVEvent, WORKERS, TIERS, st.sampled_from(["stored", "stored", "removed"]),
              st.lists(st.sampled_from(MANY), max_size=40).map(tuple)),
    st.builds(KVEvent, WORKERS, TIERS, st.just("cleared")),
), max_size=60)


def _reference(events: list[KVEvent]) -> dict[BlockHash, frozenset[tuple[str, str]]]:
    held: dict[BlockHash, set[tuple[str, str]]] = {}
    for e in events:
        key = (SHARED if e.tier == "redis" else e.worker_id, e.tier)
        if e.kind == "stored":
            for h in e.hashes:
                held.setdefault(h, set()).add(key)
        elif e.kind == "removed":
            for h in e.hashes:
                held.get(h, set()).discard(key)
        else:
            for holders in held.values():
                holders.discard(key)
    return {h: frozenset(v) for h, v in held.items() if v}


@settings(deadline=None, max_examples=60)
@given(CHURN, st.lists(st.sampled_from(["w1", "w2", "w3"]), max_size=2), st.integers(0, 399))
def test_table_matches_reference_model_under_churn(events: list[KVEvent], leaving: list[str],
                                                   start: int) -> None:
    index = _rebuild(events)
    expected = _reference(events)
    for worker in leaving:
        dropped = index.remove_worker(worker)
        assert dropped == sum(1 for v in expected.values() for (w, _) in v if w == worker)
        expected = {h: frozenset(x for x in v if x[0] != worker) for h, v in expected.items()}
        expected = {h: v for h, v in expected.items() if v}
    index.check_integrity()
    assert index.state() == expected
    assert len(index) == len(expected)
    query = MANY[start:start + 12]
    runs: dict[tuple[str, str], int] = {}
    alive: set[tuple[str, str]] | None = None
    for i, h in enumerate(query):  # reference per-tier runs: holders of every block so far
        alive = set(expected.get(h, ())) if alive is None else alive & expected.get(h, frozenset())
        runs.update({key: i + 1 for key in alive})
    assert index.longest_prefix_per_tier(query) == runs
    assert PrefixIndex.from_bytes(index.to_bytes()).state() == expected


def test_many_holders_and_growth_keep_exact_answers() -> None:
    index = PrefixIndex()
    hashes = tuple(BlockHash(i.to_bytes(16, "big")) for i in range(5000))  # grows the table 4 times
    for w in range(5):
        index.apply(KVEvent(f"w{w}", "device", "stored", hashes[: 1000 * (w + 1)]))
    assert len(index) == 5000
    assert index.longest_prefix_per_tier(hashes[:1200]) == {
        ("w0", "device"): 1000, **{(f"w{w}", "device"): 1200 for w in range(1, 5)}}
    index.apply(KVEvent("w3", "device", "cleared"))
    assert index.remove_worker("w4") == 5000
    assert index.longest_prefix(hashes[:2500]) == {"w0": PrefixRun(1000, "device"),
                                                   "w1": PrefixRun(2000, "device"),
                                                   "w2": PrefixRun(2500, "device")}
    assert index.workers() == ["w0", "w1", "w2"] and len(index) == 3000
    index.check_integrity()


def test_bad_hash_length_is_named() -> None:
    import pytest

    with pytest.raises(ValueError, match="block hash must be 16 bytes, got 3"):
        PrefixIndex().apply(KVEvent("w1", "device", "stored", (BlockHash(b"abc"),)))
