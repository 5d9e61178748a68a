"""The vLLM adapter's parts without an engine: configuration checks, block naming (vLLM's blocks →
cluster block hashes), the KV events bridge over a real vLLM ZMQ publisher (live, gap + replay,
block-size refusal), the sampling translation and the metrics re-export."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from cache.hashing import BlockHash, HashKeys, hash_prompt_blocks
from common.errors import ConfigError
from workers.engine.types import EngineRequest, SamplingParams
from workers.vllm.config import VLLMEngineConfig
from workers.vllm.kv_events import BlockNamer, VLLMKVEventBridge
from workers.vllm.metrics import VLLMMetricsCollector

KEYS = HashKeys("tiny", layout="float32:b16:l2:h2:d32")
TOKENS = list(range(100, 196))  # 96 tokens: three vLLM blocks of 32, six cluster blocks of 16


def test_config_refuses_block_sizes_hashes_cannot_name() -> None:
    with pytest.raises(ValueError, match=r"^block_size must be a multiple of hash_block_size=16"):
        VLLMEngineConfig(model_dir=Path("m"), block_size=40, hash_block_size=16)
    with pytest.raises(ValueError, match=r"^block_size must be a multiple of 32 on cpu"):
        VLLMEngineConfig(model_dir=Path("m"), block_size=48, hash_block_size=16)
    with pytest.raises(ValueError, match=r"^memory_fraction must be in \(0, 1\]"):
        VLLMEngineConfig(model_dir=Path("m"), memory_fraction=0.0)
    assert VLLMEngineConfig(model_dir=Path("m"), block_size=64, hash_block_size=16).hashes_per_block == 4


def test_namer_chains_vllm_blocks_into_cluster_hashes() -> None:
    namer = BlockNamer(KEYS, block_size=32, hash_block_size=16)
    expected = hash_prompt_blocks(TOKENS, KEYS, 16)
    first = namer.stored([b"v0", b"v1"], None, TOKENS[:64], 32)
    assert first == expected[:4]
    second = namer.stored([b"v2"], b"v1", TOKENS[64:], 32)  # a later event, chained to its parent
    assert second == expected[4:]
    assert namer.match_prefix(expected) == 6 and namer.num_cached_blocks == 6
    assert namer.removed([b"v1"]) == expected[2:4]
    assert namer.match_prefix(expected) == 2
    assert namer.stored([b"x"], b"never-seen", TOKENS[:32], 32) == []  # cannot be named: not announced
    assert namer.num_unnamed_blocks == 1


def test_namer_refuses_a_mismatched_block_size() -> None:
    namer = BlockNamer(KEYS, block_size=32, hash_block_size=16)
    with pytest.raises(ConfigError, match="vLLM publishes blocks of 16 tokens but this worker was "
                                          "configured for 32") as info:
        namer.stored([b"v0"], None, TOKENS[:16], 16)
    assert info.value.field == "block_size"


def _publisher(endpoint: str, replay: str) -> object:
    from vllm.distributed.kv_events import ZmqEventPublisher

    return ZmqEventPublisher(0, endpoint=endpoint, replay_endpoint=replay)


def _batch(*events: object) -> object:
    from vllm.distributed.kv_events import KVEventBatch

    return KVEventBatch(ts=0.0, events=list(events))


def _stored(hashes: list[bytes], parent: bytes | None, tokens: list[int], block_size: int = 32) -> object:
    from vllm.distributed.kv_events import BlockStored

    return BlockStored(block_hashes=hashes, parent_block_hash=parent, token_ids=tokens,
                       block_size=block_size, lora_id=None, medium="GPU", lora_name=None)


async def _wait_for(predicate: object, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


@pytest.mark.vllm
async def test_bridge_names_live_events_and_replays_a_gap(tmp_path: Path) -> None:
    from vllm.distributed.kv_events import BlockRemoved

    endpoint, replay = f"ipc://{tmp_path}/ev.sock", f"ipc://{tmp_path}/replay.sock"
    config = VLLMEngineConfig(model_dir=tmp_path, kv_events_endpoint=endpoint,
                              kv_events_replay_endpoint=replay)
    publisher = _publisher(endpoint, replay)
    expected = hash_prompt_blocks(TOKENS, KEYS, 16)
    seen: list[tuple[str, str, list[BlockHash]]] = []
    try:
        publisher.publish(_batch(_stored([b"v0", b"v1"], None, TOKENS[:64])))  # type: ignore[attr-defined]
        await asyncio.sleep(0.5)  # published before anyone subscribed: lost on the PUB socket
        bridge = VLLMKVEventBridge(config, KEYS, lambda k, t, h: seen.append((k, t, list(h))))
        await bridge.start()
        await asyncio.sleep(0.5)  # let the subscription reach the publisher
        publisher.publish(_batch(_stored([b"v2"], b"v1", TOKENS[64:])))  # type: ignore[attr-defined]
        await _wait_for(lambda: bridge.num_cached_blocks == 6)
        publisher.publish(_batch(BlockRemoved(block_hashes=[b"v2"], medium="GPU")))  # type: ignore[attr-defined]
        await _wait_for(lambda: bridge.num_cached_blocks == 4)
        await bridge.stop()
    finally:
        publisher.shutdown()  # type: ignore[attr-defined]
    # batch 0 came from the replay socket, in order, before batch 1; nothing was announced twice
    assert seen == [("cleared", "device", []), ("stored", "device", expected[:4]),
                    ("stored", "device", expected[4:]), ("removed", "device", expected[4:])]
    assert bridge.match_prefix(expected) == 4


@pytest.mark.vllm
async def test_bridge_refuses_mismatched_blocks_and_announces_cleared(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/ev.sock"
    config = VLLMEngineConfig(model_dir=tmp_path, kv_events_endpoint=endpoint)
    publisher = _publisher(endpoint, f"ipc://{tmp_path}/unused.sock")
    seen: list[str] = []
    bridge = VLLMKVEventBridge(config, KEYS, lambda k, t, h: seen.append(k))
    try:
        await bridge.start()
        await asyncio.sleep(0.5)
        publisher.publish(_batch(_stored([b"a"], None, TOKENS[:16], block_size=16)))  # type: ignore[attr-defined]
        await _wait_for(lambda: bridge.error is not None)
        await bridge.stop()
    finally:
        publisher.shutdown()  # type: ignore[attr-defined]
    assert isinstance(bridge.error, ConfigError) and bridge.error.field == "block_size"
    assert seen == ["cleared", "cleared"] and bridge.num_cached_blocks == 0


@pytest.mark.vllm
def test_sampling_translation_keeps_our_semantics() -> None:
    from vllm.sampling_params import RequestOutputKind

    from workers.vllm.sampling import to_vllm_sampling

    request = EngineRequest("r", tuple(range(1, 11)), SamplingParams(
        max_tokens=6, temperature=0.7, top_k=5, top_p=0.9, seed=42, stop=("xy",), stop_token_ids=(3,),
        ignore_eos=True, logprobs=True), num_generated_before=2)
    params = to_vllm_sampling(request, max_model_len=2048)
    assert (params.max_tokens, params.temperature, params.top_k) == (4, 0.7, 5)
    assert (params.top_p, params.seed) == (0.9, 42)
    assert (params.stop, params.stop_token_ids, params.ignore_eos, params.logprobs) == (["xy"], [3], True, 0)
    assert params.output_kind == RequestOutputKind.DELTA
    near_end = to_vllm_sampling(EngineRequest("r", tuple(range(1, 11)), SamplingParams(max_tokens=50)), 13)
    assert near_end.max_tokens == 3 and near_end.top_k == 0 and near_end.logprobs is None


def test_metrics_collector_reexports_only_vllm_families() -> None:
    source, target = CollectorRegistry(), CollectorRegistry()
    Gauge("vllm:num_requests_running", "running", registry=source).set(3)
    Gauge("other_metric", "not ours", registry=source).set(1)
    target.register(VLLMMetricsCollector(source))
    text = generate_latest(target).decode()
    assert "vllm:num_requests_running 3.0" in text and "other_metric" not in text


def test_namer_keys_tenants_apart_by_the_salt_vllm_reports() -> None:
    import dataclasses

    namer = BlockNamer(KEYS, block_size=32, hash_block_size=16)
    acme = dataclasses.replace(KEYS, tenant_salt="acme")
    assert namer.stored([b"t0"], None, TOKENS[:32], 32, ("acme",)) == hash_prompt_blocks(TOKENS[:32], acme)
    assert namer.stored([b"t1"], b"t0", TOKENS[32:64], 32) == hash_prompt_blocks(TOKENS[:64], acme)[2:]
    assert namer.stored([b"u0"], None, TOKENS[:32], 32) == hash_prompt_blocks(TOKENS[:32], KEYS)


def test_reaper_kills_the_engine_processes_of_a_killed_worker() -> None:
    """A worker SIGKILLed (no cleanup runs) still takes vLLM's engine processes with it."""
    import os
    import subprocess
    import sys
    import time

    worker = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "from workers.vllm.reaper import Reaper\n"
        "engine = subprocess.Popen(['sleep', '300'])\n"
        "Reaper([engine.pid])\n"
        "print(engine.pid, flush=True)\n"
        "time.sleep(300)\n")], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[3])
    assert worker.stdout is not None
    engine_pid = int(worker.stdout.readline())
    time.sleep(0.5)
    worker.kill()
    worker.wait()
    for _ in range(100):
        try:
            os.kill(engine_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"engine process {engine_pid} outlived its killed worker")
