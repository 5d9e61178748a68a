"""`fetch_prefix` between two real engines (tiny model): what it imports, what it refuses, what it reports."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from cache.hashing import BlockHash, hash_prompt_blocks
from common.vocab import TransferPath
from workers.engine.async_engine import AsyncEngine
from workers.engine.config import EngineConfig
from workers.engine.types import EngineRequest, KVBlock, SamplingParams
from workers.kv.fetch import PrefixFetch, fetch_prefix

PROMPT = tuple((i * 29 + 7) % 1900 + 5 for i in range(56))  # 3 full blocks + 8 tokens


class ListSource:
    """A `BlockSource` serving a fixed list of blocks (the leading run of the asked hashes it holds)."""

    def __init__(self, blocks: Sequence[KVBlock]) -> None:
        self.blocks = {b.block_hash: b for b in blocks}
        self.asked: list[list[BlockHash]] = []

    @property
    def path(self) -> TransferPath:
        return "peer"

    @property
    def name(self) -> str:
        return "a list"

    async def fetch(self, hashes: Sequence[BlockHash], model_id: str) -> list[KVBlock]:
        self.asked.append(list(hashes))
        run: list[KVBlock] = []
        for h in hashes:
            if h not in self.blocks:
                break
            run.append(self.blocks[h])
        return run


class DownSource(ListSource):
    async def fetch(self, hashes: Sequence[BlockHash], model_id: str) -> list[KVBlock]:
        raise ConnectionError("peer unreachable")


@pytest.fixture
async def pair(tiny_model_dir: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine, list[KVBlock]]]:
    """Engine `a` has run PROMPT (its 3 full blocks exported); engine `b` is empty."""
    a, b = (AsyncEngine.from_config(EngineConfig(model_dir=tiny_model_dir, num_kv_blocks=32)) for _ in "ab")
    await a.start()
    await b.start()
    request = EngineRequest("a", PROMPT, SamplingParams(max_tokens=2, ignore_eos=True))
    _ = [e async for e in a.generate(request)]
    blocks = await a.export_blocks(hash_prompt_blocks(PROMPT, a.hash_keys(), a.block_size))
    assert len(blocks) == 3
    yield a, b, blocks
    await a.stop()
    await b.stop()


def hashes_of(engine: AsyncEngine) -> list[BlockHash]:
    return hash_prompt_blocks(PROMPT, engine.hash_keys(), engine.block_size)


async def test_imports_the_missing_blocks_and_reports_them(
        pair: tuple[AsyncEngine, AsyncEngine, list[KVBlock]]) -> None:
    _, b, blocks = pair
    source = ListSource(blocks)
    block_bytes = blocks[0].kv.numel() * blocks[0].kv.element_size()
    got = await fetch_prefix(b, source, hashes_of(b), PROMPT)
    assert dataclasses.replace(got, seconds=0.0) == PrefixFetch("peer", 3, 3, 48, num_bytes=3 * block_bytes)
    assert got.complete and got.attempted
    again = await fetch_prefix(b, source, hashes_of(b), PROMPT)
    assert (again.attempted, again.num_tokens_cached, len(source.asked)) == (False, 48, 1)  # nothing asked


async def test_only_the_blocks_the_pool_lacks_are_asked_for(
        pair: tuple[AsyncEngine, AsyncEngine, list[KVBlock]]) -> None:
    _, b, blocks = pair
    assert await b.import_blocks(blocks[:1]) == 1
    source = ListSource(blocks)
    got = await fetch_prefix(b, source, hashes_of(b), PROMPT)
    assert source.asked == [hashes_of(b)[1:]]
    assert (got.num_blocks_missing, got.num_blocks_imported, got.num_tokens_cached) == (2, 2, 48)


async def test_a_block_with_other_tokens_ends_the_run(
        pair: tuple[AsyncEngine, AsyncEngine, list[KVBlock]]) -> None:
    _, b, blocks = pair
    wrong = dataclasses.replace(blocks[1], token_ids=tuple(t + 1 for t in blocks[1].token_ids))
    got = await fetch_prefix(b, ListSource([blocks[0], wrong, blocks[2]]), hashes_of(b), PROMPT)
    assert (got.num_blocks_imported, got.num_tokens_cached, got.complete, got.error) == (1, 16, False, None)
    assert b.match_prefix(hashes_of(b)) == 1


async def test_a_failing_source_changes_nothing_and_says_why(
        pair: tuple[AsyncEngine, AsyncEngine, list[KVBlock]]) -> None:
    _, b, blocks = pair
    got = await fetch_prefix(b, DownSource(blocks), hashes_of(b), PROMPT)
    assert got.error == "ConnectionError: peer unreachable"
    assert (got.num_blocks_missing, got.num_blocks_imported, got.num_bytes) == (3, 0, 0)
    assert got.num_tokens_cached == 0
    assert b.match_prefix(hashes_of(b)) == 0
