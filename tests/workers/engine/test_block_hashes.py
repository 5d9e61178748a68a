"""`EngineRequest.block_hashes`: the engine's prefix cache uses the hashes a request carries instead of
hashing those tokens again (the worker service hashes each prompt once)."""

from __future__ import annotations

from typing import Any

import pytest

from cache.hashing import BlockHash, hash_prompt_blocks
from common.errors import InvalidRequestError
from tests.workers.engine.conftest import greedy_request, make_prompts, run_all


def test_prefix_cache_registers_the_given_hashes_not_its_own(make_engine: Any) -> None:
    engine = make_engine()
    prompt = make_prompts([40])[0]  # 2 full blocks + 8 tokens
    given = (BlockHash(b"\x01" * 16), BlockHash(b"\x02" * 16))  # not what hashing these tokens gives
    run_all(engine, [greedy_request("r", prompt, 3, block_hashes=given)])
    own = hash_prompt_blocks(prompt, engine.hash_keys(), engine.config.block_size)
    assert engine.match_prefix(given) == 2  # registered under the carried hashes...
    assert engine.match_prefix(own) == 0  # ...and never under hashes the engine computed itself


def test_carried_hashes_give_the_same_tokens_and_prefix_hits(make_engine: Any) -> None:
    engine = make_engine()
    prompt = make_prompts([40], seed=3)[0]
    plain = run_all(engine, [greedy_request("plain", prompt, 5)])["plain"]
    fresh = make_engine()
    hashes = tuple(hash_prompt_blocks(prompt, fresh.hash_keys(), fresh.config.block_size))
    first = run_all(fresh, [greedy_request("a", prompt, 5, block_hashes=hashes)])["a"]
    second = run_all(fresh, [greedy_request("b", prompt, 5, block_hashes=hashes)])["b"]
    assert [e.token_id for e in first] == [e.token_id for e in plain]
    assert [e.token_id for e in second] == [e.token_id for e in plain]
    assert (first[0].num_cached_prompt_tokens, second[0].num_cached_prompt_tokens) == (0, 32)


def test_more_hashes_than_full_blocks_is_refused(make_engine: Any) -> None:
    engine = make_engine()
    prompt = make_prompts([40])[0]
    too_many = tuple(BlockHash(bytes([i]) * 16) for i in range(3))
    with pytest.raises(InvalidRequestError) as info:
        engine.add_request(greedy_request("r", prompt, 3, block_hashes=too_many))
    assert info.value.field == "block_hashes"
    assert engine.match_prefix(too_many) == 0
