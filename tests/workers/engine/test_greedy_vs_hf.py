"""Greedy tokens equal `transformers` greedy tokens, whatever batching, chunking, caching or KV source."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cache.hashing import hash_prompt_blocks
from tests.workers.engine.conftest import HFOracle, greedy_request, make_prompts, run_all
from workers.engine import paged_kernel
from workers.engine.async_engine import AsyncEngine
from workers.engine.config import EngineConfig
from workers.engine.types import EngineRequest

LENGTHS = [5, 16, 17, 33, 70, 150, 260]
MAX_TOKENS = 12


async def _generate_all(engine: AsyncEngine, requests: list[EngineRequest]) -> dict[str, list[Any]]:
    async def one(request: EngineRequest) -> list[Any]:
        return [event async for event in engine.generate(request)]

    results = await asyncio.gather(*(one(r) for r in requests))
    return {r.request_id: events for r, events in zip(requests, results, strict=True)}


@pytest.mark.parametrize("chunked,budget", [(True, 32), (False, 512)])
async def test_concurrent_requests_match_hf(tiny_model_dir: Path, hf: HFOracle, chunked: bool, budget: int
                                            ) -> None:
    config = EngineConfig(tiny_model_dir, num_kv_blocks=256, max_num_batched_tokens=budget,
                          enable_chunked_prefill=chunked)
    engine = AsyncEngine.from_config(config)
    prompts = make_prompts(LENGTHS)
    await engine.start()
    try:
        for round_ in range(2):  # the second round hits the prefix cache
            requests = [greedy_request(f"r{round_}-{i}", p, MAX_TOKENS) for i, p in enumerate(prompts)]
            events = await _generate_all(engine, requests)
            for i, prompt in enumerate(prompts):
                got = [e.token_id for e in events[f"r{round_}-{i}"]]
                assert got == hf.greedy(prompt, MAX_TOKENS), (round_, i)
                first = events[f"r{round_}-{i}"][0]
                assert first.num_prompt_tokens == len(prompt)
                expected_cached = ((len(prompt) - 1) // 16) * 16 if round_ else 0
                assert first.num_cached_prompt_tokens == expected_cached, (round_, i)
                assert events[f"r{round_}-{i}"][-1].finish_reason == "length"
        stats = engine.stats()
        assert stats.generated_tokens_total == 2 * len(prompts) * MAX_TOKENS
        assert stats.kv_blocks_free == stats.kv_blocks_total  # nothing leaked
    finally:
        await engine.stop()


def test_shared_prefix_hits_match_hf(make_engine: Any, hf: HFOracle) -> None:
    engine = make_engine(max_num_batched_tokens=64)
    base = make_prompts([48], seed=5)[0]
    tails = make_prompts([9, 20, 31], seed=6)
    prompts = [base + t[1:] for t in tails]
    run_all(engine, [greedy_request("warm", base, 1)])
    events = run_all(engine, [greedy_request(f"p{i}", p, MAX_TOKENS) for i, p in enumerate(prompts)])
    for i, prompt in enumerate(prompts):
        assert [e.token_id for e in events[f"p{i}"]] == hf.greedy(prompt, MAX_TOKENS)
        assert events[f"p{i}"][0].num_cached_prompt_tokens == 48  # the 3 full blocks of the shared base
    assert engine.stats().cached_tokens_total == 3 * 48


def test_preemption_by_recompute_keeps_tokens(make_engine: Any, hf: HFOracle) -> None:
    engine = make_engine(num_kv_blocks=24, max_num_batched_tokens=64)
    prompts = make_prompts(LENGTHS, seed=3)
    events = run_all(engine, [greedy_request(f"q{i}", p, 20) for i, p in enumerate(prompts)])
    assert engine.stats().preemptions_total > 0
    for i, prompt in enumerate(prompts):
        assert [e.token_id for e in events[f"q{i}"]] == hf.greedy(prompt, 20)


def test_decode_with_imported_kv_matches_hf(make_engine: Any, hf: HFOracle) -> None:
    prefill, decode = make_engine(), make_engine()
    prompt = make_prompts([70], seed=9)[0]
    expected = hf.greedy(prompt, MAX_TOKENS)
    first = run_all(prefill, [greedy_request("pre", prompt, 1)])["pre"]
    assert [e.token_id for e in first] == expected[:1]
    hashes = hash_prompt_blocks(prompt, prefill.hash_keys(), 16)
    blocks = prefill.export_blocks(hashes)
    assert [b.block_hash for b in blocks] == hashes and len(blocks) == 4
    assert tuple(blocks[0].kv.shape) == (2, 2, 2, 16, 32)
    assert decode.import_blocks(blocks) == 4
    assert decode.match_prefix(hashes) == 4
    request = greedy_request("dec", prompt + expected[:1], MAX_TOKENS, num_generated_before=1)
    events = run_all(decode, [request])["dec"]
    assert [e.token_id for e in events] == expected[1:]
    assert events[0].num_cached_prompt_tokens == 64
    assert decode.stats().prompt_tokens_total == 71 - 64  # only the tail was computed


def test_csd_device_matches_hf(tiny_model_dir: Path, tmp_path: Path, hf: HFOracle) -> None:
    from workers.engine.engine import LLMEngine

    engine = LLMEngine(EngineConfig(tiny_model_dir, device="csd", csd_path=tmp_path / "drive",
                                    kv_cache_bytes=64 * 2**20))
    pool_file = tmp_path / "drive" / "slot-0" / "flash.bin"  # the drive's flash (workers/devices/csd)
    assert pool_file.stat().st_size == engine.pool.spec.total_bytes  # capacity = bytes of the drive
    prompts = make_prompts(LENGTHS[:4], seed=11)
    events = run_all(engine, [greedy_request(f"c{i}", p, MAX_TOKENS) for i, p in enumerate(prompts)])
    for i, prompt in enumerate(prompts):
        assert [e.token_id for e in events[f"c{i}"]] == hf.greedy(prompt, MAX_TOKENS)
    with open(pool_file, "rb") as handle:  # the KV really lives in the file
        assert any(handle.read(1 << 20))
    # a second engine on the same drive directory gets its own pool file
    LLMEngine(EngineConfig(tiny_model_dir, device="csd", csd_path=tmp_path / "drive", num_kv_blocks=8))
    assert (tmp_path / "drive" / "slot-1" / "flash.bin").is_file()


@pytest.mark.cuda
def test_cuda_device_matches_hf(tiny_model_dir: Path, hf: HFOracle) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from workers.engine.engine import LLMEngine

    engine = LLMEngine(EngineConfig(tiny_model_dir, device="cuda", num_kv_blocks=128))
    prompts = make_prompts(LENGTHS[:3], seed=12)
    events = run_all(engine, [greedy_request(f"g{i}", p, MAX_TOKENS) for i, p in enumerate(prompts)])
    for i, prompt in enumerate(prompts):
        assert [e.token_id for e in events[f"g{i}"]] == hf.greedy(prompt, MAX_TOKENS)


def test_bfloat16_runs_on_cpu(make_engine: Any) -> None:
    engine = make_engine(dtype="bfloat16")
    assert engine.pool.storage.dtype.is_floating_point and engine.pool.storage.element_size() == 2
    events = run_all(engine, [greedy_request("bf", make_prompts([40], seed=13)[0], 8)])["bf"]
    assert len(events) == 8 and all(e.token_id is not None for e in events)


@pytest.mark.parametrize("kernel", [True, False])
def test_decode_attention_paths_match_hf(make_engine: Any, hf: HFOracle, monkeypatch: pytest.MonkeyPatch,
                                         kernel: bool) -> None:
    """The compiled kernel (K and V read in place) and the pure-torch fallback (no compiler, or
    HETEROSERVE_PAGED_KERNEL=0) both give HF's tokens on a batch of decodes of different lengths."""
    if not kernel:
        monkeypatch.setattr(paged_kernel, "load", lambda: None)
    engine = make_engine(max_num_batched_tokens=512)
    assert (engine.runner.kernel is not None) == kernel
    prompts = make_prompts(LENGTHS, seed=9)
    events = run_all(engine, [greedy_request(f"p{i}", p, MAX_TOKENS) for i, p in enumerate(prompts)])
    for i, prompt in enumerate(prompts):
        assert [e.token_id for e in events[f"p{i}"]] == hf.greedy(prompt, MAX_TOKENS), i
