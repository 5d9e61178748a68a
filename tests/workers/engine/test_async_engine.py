"""AsyncEngine: streaming, abort, stop, errors from generate, block listeners, async export/import."""

from __future__ import annotations

from pathlib import Path

import pytest

from cache.hashing import BlockHash, hash_prompt_blocks
from common.errors import InvalidRequestError, UnavailableError
from tests.workers.engine.conftest import greedy_request, make_prompts
from workers.engine.async_engine import AsyncEngine
from workers.engine.config import EngineConfig
from workers.engine.types import EngineRequest, KVBlock


class RecordingListener:
    def __init__(self) -> None:
        self.stored: list[BlockHash] = []
        self.evicted: list[KVBlock] = []

    def on_blocks_stored(self, hashes: list[BlockHash]) -> None:
        self.stored.extend(hashes)

    def on_blocks_evicted(self, blocks: list[KVBlock]) -> None:
        self.evicted.extend(blocks)


def _engine(model_dir: Path, **kwargs: object) -> AsyncEngine:
    return AsyncEngine.from_config(EngineConfig(model_dir, **{"num_kv_blocks": 64, **kwargs}))  # type: ignore[arg-type]


async def test_generate_requires_start_and_reports_bad_requests(tiny_model_dir: Path) -> None:
    engine = _engine(tiny_model_dir)
    assert engine.model_id == "tiny" and engine.block_size == 16 and engine.eos_token_id == 2
    assert engine.max_context_tokens == 4096
    with pytest.raises(UnavailableError):
        async for _ in engine.generate(EngineRequest("a", (1, 2))):
            pass
    await engine.start()
    try:
        with pytest.raises(InvalidRequestError) as info:
            async for _ in engine.generate(EngineRequest("b", tuple([5] * 5000))):
                pass
        assert info.value.field == "prompt"
        events = [e async for e in engine.generate(greedy_request("c", [1, 2, 3], 4))]  # still serving
        assert len(events) == 4
        running = engine.generate(greedy_request("d", [1, 2, 3], 6))
        await running.__anext__()
        with pytest.raises(InvalidRequestError) as info:
            async for _ in engine.generate(greedy_request("d", [1, 2, 3], 4)):
                pass
        assert info.value.field == "request_id"
        assert len([e async for e in running]) == 5  # the first "d" is untouched
    finally:
        await engine.stop()


async def test_abort_and_stop_end_streams(tiny_model_dir: Path) -> None:
    engine = _engine(tiny_model_dir)
    await engine.start()
    stream = engine.generate(greedy_request("long", [1, 5, 6], 3000))
    first = await stream.__anext__()
    assert first.token_id is not None
    await engine.abort("long")
    rest = [e async for e in stream]
    assert rest[-1].finish_reason == "abort" and rest[-1].token_id is None
    other = engine.generate(greedy_request("other", [1, 7, 8], 3000))
    await other.__anext__()
    await engine.stop()
    assert [e async for e in other][-1].finish_reason == "abort"
    assert engine.stats().num_running == 0


async def test_listeners_see_stored_and_evicted_blocks_with_their_kv(tiny_model_dir: Path) -> None:
    engine = _engine(tiny_model_dir, num_kv_blocks=6)
    listener = RecordingListener()
    engine.add_block_listener(listener)
    await engine.start()
    try:
        first, second = make_prompts([49, 49], seed=4)
        [e async for e in engine.generate(greedy_request("a", first, 1))]
        keys = engine.hash_keys()
        assert listener.stored == hash_prompt_blocks(first, keys)
        exported = await engine.export_blocks(hash_prompt_blocks(first, keys))
        # free queue after "a": 4, 5, then a's blocks tail first (3: partial, 2, 1, 0); "b" needs 4 blocks
        [e async for e in engine.generate(greedy_request("b", second, 1))]
        assert [b.block_hash for b in listener.evicted] == hash_prompt_blocks(first, keys)[2:3]
        by_hash = {b.block_hash: b for b in exported}
        for block in listener.evicted:  # the KV was copied out before the slot was reused
            assert block.kv.equal(by_hash[block.block_hash].kv)
        assert engine.match_prefix(hash_prompt_blocks(first, keys)) == 2
        listener.stored.clear()
        assert await engine.import_blocks(exported) == 3
        assert listener.stored == hash_prompt_blocks(first, keys)[2:]  # only the block actually inserted
        assert engine.match_prefix(hash_prompt_blocks(first, keys)) == 3
    finally:
        await engine.stop()
