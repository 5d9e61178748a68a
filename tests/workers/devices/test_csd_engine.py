"""A csd engine against a real drive process: HF's greedy tokens on both attention sites, bytes counted
on the link, P/D handoff straight into the drive, and the failure paths (drive death, drive full, a
corrupt flash page), each caused for real."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from cache.hashing import hash_prompt_blocks
from common.errors import InvalidRequestError, UnavailableError
from tests.workers.engine.conftest import HFOracle, greedy_request, make_prompts, run_all
from workers.devices.csd import DriveConfig, DriveFullError, DrivePool
from workers.devices.csd.config import AttentionSite
from workers.engine.async_engine import AsyncEngine
from workers.engine.config import EngineConfig
from workers.engine.engine import LLMEngine

LENGTHS = [5, 17, 40, 70, 150]
MAX_TOKENS = 10


def drive_of(engine: LLMEngine) -> DrivePool:
    assert isinstance(engine.pool, DrivePool)
    return engine.pool


@pytest.mark.parametrize("site", ["drive", "host"])
def test_both_attention_sites_match_hf(make_csd_engine: Any, hf: HFOracle, site: AttentionSite) -> None:
    # budget 32: long prompts prefill in chunks whose context is gathered from the drive over the link
    engine = make_csd_engine(DriveConfig(time_scale=1.0, attention_site=site), max_num_batched_tokens=32)
    prompts = make_prompts(LENGTHS, seed=21)
    events = run_all(engine, [greedy_request(f"r{i}", p, MAX_TOKENS) for i, p in enumerate(prompts)])
    for i, prompt in enumerate(prompts):
        assert [e.token_id for e in events[f"r{i}"]] == hf.greedy(prompt, MAX_TOKENS), i
    stats = drive_of(engine).stats()
    assert stats.flash_bytes_read > 0 and stats.checksum_failures == 0
    assert engine.stats().kv_blocks_free == engine.stats().kv_blocks_total


def test_in_storage_moves_far_fewer_link_bytes_than_host_offload(make_csd_engine: Any) -> None:
    per_site = {}
    for site in ("drive", "host"):
        engine = make_csd_engine(DriveConfig(time_scale=1.0, attention_site=site), name=f"d-{site}",
                                 max_num_batched_tokens=1024)  # both prompts prefill in one step
        for i, prompt in enumerate(make_prompts([300, 300], seed=5)):
            engine.add_request(greedy_request(f"p{i}", prompt, 9))
        while engine.stats().generated_tokens_total < 2:  # prefill (its KV crosses the link in both cases)
            engine.step()
        before = drive_of(engine).stats()
        for _ in range(8):  # 8 decode steps of both sequences
            engine.step()
        per_site[site] = drive_of(engine).stats().minus(before)
        assert not engine.has_unfinished()
    # 16 tokens over ~300 tokens of context: host-offload carries the KV over the link, in-storage does not
    assert per_site["host"].link_bytes > 50 * per_site["drive"].link_bytes
    # contexts 301..308: 4 steps over 19 blocks, 4 over 20; 2 sequences, 2 layers; pages of 8 KiB
    pages = (4 * 19 + 4 * 20) * 2 * 2
    for stats in per_site.values():
        assert stats.flash_bytes_read == pages * 8192 and stats.flash_pages_read == pages
    assert per_site["host"].link_bytes_to_host > pages * 8192  # every page crossed the link
    assert (per_site["drive"].attention_calls, per_site["host"].attention_calls) == (8 * 2, 0)
    for stats in per_site.values():  # the cost model prices at least every byte that crossed the link
        assert stats.modelled_seconds >= stats.link_bytes / DriveConfig().link_bytes_per_s > 0


def test_kv_import_lands_on_the_drive_and_decodes_like_hf(make_csd_engine: Any, hf: HFOracle,
                                                          tiny_model_dir: Path) -> None:
    prefill = LLMEngine(EngineConfig(tiny_model_dir, num_kv_blocks=64))  # a cpu prefill worker's engine
    prompt = make_prompts([70], seed=9)[0]
    run_all(prefill, [greedy_request("p", prompt, 1)])
    keys = prefill.hash_keys()
    blocks = prefill.export_blocks(hash_prompt_blocks(prompt, keys, 16))
    decode = make_csd_engine()
    before = drive_of(decode).stats()
    assert decode.import_blocks(blocks) == 4
    assert drive_of(decode).stats().minus(before).flash_bytes_written == 4 * blocks[0].kv.numel() * 4
    events = run_all(decode, [greedy_request("d", prompt, MAX_TOKENS)])["d"]
    assert events[0].num_cached_prompt_tokens == 64
    assert [e.token_id for e in events] == hf.greedy(prompt, MAX_TOKENS)


async def test_drive_death_fails_requests_unavailable_and_nothing_hangs(make_csd_engine: Any) -> None:
    engine = AsyncEngine(make_csd_engine(DriveConfig(time_scale=200.0)))  # slow enough to be caught mid-way
    await engine.start()
    try:
        async def consume(request_id: str) -> list[Any]:
            got: list[Any] = []
            try:
                async for event in engine.generate(greedy_request(request_id, make_prompts([200])[0], 400)):
                    got.append(event)
            except UnavailableError as exc:
                got.append(exc)
            return got

        tasks = [asyncio.create_task(consume(f"r{i}")) for i in range(2)]
        while not engine.stats().generated_tokens_total:
            await asyncio.sleep(0.05)
        os.kill(drive_of(engine.engine).pid, signal.SIGKILL)
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        for got in results:
            assert isinstance(got[-1], UnavailableError) and "drive" in str(got[-1]), got[-1]
        late = await asyncio.wait_for(consume("late"), timeout=30)  # a dead drive refuses at once
        assert isinstance(late[-1], UnavailableError) and "drive" in str(late[-1])
        assert len(late) == 1
    finally:
        await asyncio.wait_for(engine.stop(), timeout=30)


def test_drive_full_refuses_at_start_and_at_admission(make_csd_engine: Any, hf: HFOracle) -> None:
    per_block = 2 * 2 * 2 * 16 * 32 * 4  # layers * (k, v) * kv_heads * block_size * head_dim * 4 bytes
    with pytest.raises(DriveFullError, match="drive full"):
        make_csd_engine(DriveConfig(time_scale=1.0, capacity_bytes=100 * per_block), num_kv_blocks=101)
    engine = make_csd_engine(DriveConfig(time_scale=1.0, capacity_bytes=16 * per_block), name="small",
                             num_kv_blocks=16)
    running = make_prompts([60], seed=3)[0]
    engine.add_request(greedy_request("running", running, MAX_TOKENS))
    tokens = [e.token_id for e in engine.step()]
    refusal = "drive full: the prompt needs 17 KV blocks, the drive holds 16 "
    with pytest.raises(InvalidRequestError, match=refusal):
        engine.add_request(greedy_request("too-long", make_prompts([16 * 16 + 5], seed=4)[0], 4))
    assert list(engine.requests) == ["running"] and drive_of(engine).full_refusals == 1
    while engine.has_unfinished():  # the running request is untouched and finishes with HF's tokens
        tokens += [e.token_id for e in engine.step()]
    assert tokens == hf.greedy(running, MAX_TOKENS)
    assert drive_of(engine).stats().checksum_failures == 0


def corrupt_page(engine: LLMEngine, layer: int, block: int) -> None:
    """Flip bytes of one flash page on disk, behind the drive's back."""
    assert engine.config.csd_path is not None
    spec = drive_of(engine).spec
    with open(engine.config.csd_path / "slot-0" / "flash.bin", "r+b") as handle:
        handle.seek((layer * spec.num_blocks + block) * spec.page_bytes + 100)
        handle.write(b"\x00\x01\x02\x03")


@pytest.mark.parametrize("site", ["drive", "host"])
def test_corrupt_page_of_a_running_sequence_is_recomputed_never_used(make_csd_engine: Any, hf: HFOracle,
                                                                       site: AttentionSite) -> None:
    engine = make_csd_engine(DriveConfig(time_scale=1.0, attention_site=site), enable_prefix_caching=False)
    prompt = make_prompts([50], seed=8)[0]
    engine.add_request(greedy_request("victim", prompt, MAX_TOKENS))
    tokens = [e.token_id for e in engine.step()]  # prefill: the KV of 50 tokens is on flash
    block = engine.requests["victim"].seq.block_table[1]
    corrupt_page(engine, 1, block)
    while engine.has_unfinished():
        tokens += [e.token_id for e in engine.step()]
    assert tokens == hf.greedy(prompt, MAX_TOKENS)  # recomputed from its tokens: never a wrong token
    assert drive_of(engine).stats().checksum_failures == 1  # detected once, then erased and rewritten
    assert engine.stats().preemptions_total == 1
    assert engine.stats().kv_blocks_free == engine.stats().kv_blocks_total


def test_corrupt_cached_prefix_block_is_invalidated_and_never_served_again(make_csd_engine: Any,
                                                                           hf: HFOracle) -> None:
    engine = make_csd_engine()
    drive = drive_of(engine)
    prompt = make_prompts([50], seed=8)[0]
    run_all(engine, [greedy_request("first", prompt, 2)])  # blocks of 48 tokens stay in the prefix cache
    hashes = hash_prompt_blocks(prompt, engine.hash_keys(), 16)
    assert engine.match_prefix(hashes) == 3
    block = engine.block_manager.lookup(hashes[1])
    assert block is not None
    corrupt_page(engine, 0, block)
    events = run_all(engine, [greedy_request("second", prompt, MAX_TOKENS)])["second"]
    assert [e.token_id for e in events] == hf.greedy(prompt, MAX_TOKENS)
    assert drive.stats().checksum_failures == 1
    # block 0 was sound and stays a hit; the corrupt block 1 and the one after it were recomputed
    assert events[0].num_cached_prompt_tokens == 16
    assert engine.stats().preemptions_total == 1
    third = run_all(engine, [greedy_request("third", prompt, MAX_TOKENS)])["third"]  # the recomputed blocks
    assert [e.token_id for e in third] == hf.greedy(prompt, MAX_TOKENS)
    assert third[0].num_cached_prompt_tokens == 48
    assert drive.stats().checksum_failures == 1  # the corrupt page was never read again
    engine.block_manager.check_integrity([])


def test_drive_collector_exports_the_drive_counters_and_its_death(make_csd_engine: Any) -> None:
    from prometheus_client import CollectorRegistry

    from workers.devices.csd.metrics import register_drive_metrics

    engine = make_csd_engine()
    registry = CollectorRegistry()
    assert register_drive_metrics(engine.pool, registry)
    assert not register_drive_metrics(object(), CollectorRegistry())  # not a drive: nothing registered
    run_all(engine, [greedy_request("r", make_prompts([40], seed=2)[0], 5)])
    stats = drive_of(engine).stats()
    value = registry.get_sample_value
    assert value("heteroserve_csd_attention_calls_total") == stats.attention_calls == 4 * 2
    assert value("heteroserve_csd_flash_read_bytes_total") == stats.flash_bytes_read > 0
    # the scrape's own stats query is counted on the link, so the counter is at least the earlier snapshot
    to_drive = value("heteroserve_csd_link_bytes_total", {"direction": "to_drive"})
    assert to_drive is not None and to_drive > stats.link_bytes_to_drive
    assert value("heteroserve_csd_drive_up") == 1
    os.kill(drive_of(engine).pid, signal.SIGKILL)
    assert value("heteroserve_csd_drive_up") == 0  # the last counts stay exported
    assert value("heteroserve_csd_attention_calls_total") == 8
