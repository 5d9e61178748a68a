"""One measurement each, against real workers through the real Worker RPCs (`workerrpc.client`).

- `colocated_prefill` / `prefill_batch`: `batch` prompts of `input_tokens` sent together to an idle
  worker (`Generate` with one output token on a colocated worker, `Prefill` on a prefill worker);
  seconds until the last first token.
- `colocated_decode` / `disaggregated_decode`: `batch` sequences of context `context_tokens` decoding
  `output_tokens` together (`Generate` on a colocated worker; on a decode worker, `Decode` whose KV
  comes from a prefill worker over `PullKV`). TPOT = median over sequences of (last token − first
  token) / (tokens − 1), counted from the moment every sequence of the batch had its first token
  (`_tpot`): a stream may deliver tokens in bursts, so only a span of many tokens is a measurement of
  decode steps, never the gap between two chunks; and before the last sibling started, the steps
  also prefilled it.
- `colocated_decode_span`: the same TPOT from completion times instead, (time until `batch`
  sequences of `output_tokens` finished − time until `batch` sequences of one token finished) /
  (`output_tokens` − 1). For engines whose stream can lag the whole decode: vLLM's engine core runs
  in its own process and its output collector merges the tokens a busy consumer has not read yet,
  so on a loaded machine one chunk may carry nearly all tokens and the first-to-last span is ~0.
- `wake_cost`: the first-token time of lone prompts sent back to back, and of the same kind of prompts
  each sent after the worker sat idle for `idle_seconds` (medians of `samples` each): a worker woken
  from idle is slower than one kept busy, and a stream at moderate load meets mostly idle workers.
- `peer_transfer` / `shared_transfer`: the KV of one prefilled prompt, pulled with `PullKV` from the
  prefill worker, or read from the shared Redis tier it was published to; (payload bytes, seconds).

Prompts are random token ids (seeded; never two alike, so no prefix cache hit hides work).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from cache.hashing import BlockHash
from cache.tiers.redis_tier import RedisTier, RedisTierConfig
from heteroserve.v1 import common_pb2, worker_pb2
from workerrpc.client import WorkerClient

FIRST_TOKEN_ID = 10  # clear of the special tokens of small vocabularies


@dataclass
class Prompts:
    """Source of distinct random prompts below `vocab_size`."""

    vocab_size: int
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def make(self, num_tokens: int) -> list[int]:
        return [self._rng.randrange(FIRST_TOKEN_ID, self.vocab_size) for _ in range(num_tokens)]


def _sampling(max_tokens: int) -> common_pb2.SamplingParams:
    return common_pb2.SamplingParams(max_tokens=max_tokens, ignore_eos=True)


def _rid() -> str:
    return f"profile-{uuid.uuid4().hex[:12]}"


async def _arrivals(chunks: AsyncIterator[common_pb2.TokenChunk]) -> list[float]:
    """perf_counter time of every token of a stream (a chunk of n tokens counts n times)."""
    times: list[float] = []
    async for chunk in chunks:
        now = time.perf_counter()
        times += [now] * len(chunk.token_ids)
    return times


def _tpot(streams: Sequence[list[float]]) -> float:
    """Median over sequences of their TPOT once the whole batch runs: (last − first token time) /
    (tokens − 1), over the tokens from the moment the last sequence had its first token on. Before
    that, the batch's other prompts were still being prefilled (the engine admits them a step or more
    apart, and a step that prefills a prompt also decodes the running ones), so a sequence's whole span
    would count sibling prefills as decode time: measured on the demo model, 4 × 512-token contexts
    read 9.9 ms per token from the whole span against 4.1 ms on a decode-only worker. A sequence with
    fewer than 3 tokens from then on falls back to its whole span."""
    assert all(len(s) > 1 for s in streams), "a sequence produced < 2 tokens; the stream ended early"
    started = max(s[0] for s in streams)
    per_sequence = []
    for s in streams:
        j = bisect.bisect_left(s, started)
        j = j if len(s) - j >= 3 else 0
        per_sequence.append((s[-1] - s[j]) / (len(s) - 1 - j))
    return statistics.median(per_sequence)


async def colocated_prefill(client: WorkerClient, prompts: Prompts, input_tokens: int, batch: int) -> float:
    started = time.perf_counter()
    requests = [worker_pb2.GenerateRequest(request_id=_rid(), prompt_token_ids=prompts.make(input_tokens),
                                           sampling=_sampling(1)) for _ in range(batch)]
    await asyncio.gather(*(_arrivals(client.generate(r)) for r in requests))
    return time.perf_counter() - started


async def prefill_batch(client: WorkerClient, prompts: Prompts, input_tokens: int, batch: int,
                        *, publish: bool = False) -> tuple[float, list[worker_pb2.PrefillResponse]]:
    """(seconds, responses) of `batch` Prefill calls sent together."""
    requests = [worker_pb2.PrefillRequest(request_id=_rid(), prompt_token_ids=prompts.make(input_tokens),
                                          sampling=_sampling(1), publish_to_shared_tier=publish)
                for _ in range(batch)]
    started = time.perf_counter()
    responses = await asyncio.gather(*(client.prefill(r) for r in requests))
    return time.perf_counter() - started, [*responses]


@dataclass(frozen=True)
class Lone:
    """Medians over lone requests: TTFT, TPOT and span (first token to last), seconds."""

    ttft: float
    tpot: float
    span: float


async def _lone(client: WorkerClient, prompts: Prompts, input_tokens: int, output_tokens: int) -> list[float]:
    """(TTFT, TPOT, span) of one lone greedy request."""
    started = time.perf_counter()
    request = worker_pb2.GenerateRequest(request_id=_rid(), prompt_token_ids=prompts.make(input_tokens),
                                         sampling=_sampling(output_tokens))
    times = await _arrivals(client.generate(request))
    return [times[0] - started, _tpot([times]), times[-1] - started]


async def wake_cost(client: WorkerClient, prompts: Prompts, input_tokens: int, output_tokens: int,
                    idle_seconds: float, samples: int) -> tuple[Lone, Lone]:
    """(back to back, after `idle_seconds` idle): medians of `samples` lone requests each. The two
    kinds alternate in pairs, so a change of the machine's background load hits both alike."""
    busy: list[list[float]] = []
    idle: list[list[float]] = []
    for _ in range(samples):
        await _lone(client, prompts, input_tokens, 4)  # the worker is busy right before
        busy.append(await _lone(client, prompts, input_tokens, output_tokens))
        await asyncio.sleep(idle_seconds)
        idle.append(await _lone(client, prompts, input_tokens, output_tokens))
    def median(runs: list[list[float]]) -> Lone:
        return Lone(*(statistics.median(r[k] for r in runs) for k in range(3)))
    return median(busy), median(idle)


async def colocated_decode(client: WorkerClient, prompts: Prompts, context_tokens: int, batch: int,
                           output_tokens: int) -> float:
    requests = [worker_pb2.GenerateRequest(request_id=_rid(), prompt_token_ids=prompts.make(context_tokens),
                                           sampling=_sampling(output_tokens)) for _ in range(batch)]
    return _tpot(await asyncio.gather(*(_arrivals(client.generate(r)) for r in requests)))


async def colocated_decode_span(client: WorkerClient, prompts: Prompts, context_tokens: int, batch: int,
                                output_tokens: int) -> float:
    """TPOT from completion times (module docstring): never below 1 µs (noise can invert the two)."""
    async def finished(max_tokens: int) -> float:
        requests = [worker_pb2.GenerateRequest(
            request_id=_rid(), prompt_token_ids=prompts.make(context_tokens), sampling=_sampling(max_tokens))
            for _ in range(batch)]
        started = time.perf_counter()
        streams = await asyncio.gather(*(_arrivals(client.generate(r)) for r in requests))
        assert all(len(s) == max_tokens for s in streams), "a sequence ended before max_tokens"
        return time.perf_counter() - started

    first_only = await finished(1)
    return max(1e-6, (await finished(output_tokens) - first_only) / (output_tokens - 1))


async def disaggregated_decode(prefill: WorkerClient, decode: WorkerClient, prompts: Prompts,
                               context_tokens: int, batch: int, output_tokens: int) -> float:
    """TPOT of `batch` sequences on the decode worker, their KV pulled from the prefill worker."""
    prompt_ids = [prompts.make(context_tokens) for _ in range(batch)]
    responses = await asyncio.gather(*(prefill.prefill(worker_pb2.PrefillRequest(
        request_id=_rid(), prompt_token_ids=p, sampling=_sampling(1))) for p in prompt_ids))
    requests = [worker_pb2.DecodeRequest(
        request_id=_rid(), prompt_token_ids=p, generated_token_ids=list(r.first.token_ids),
        sampling=_sampling(output_tokens + 1),
        kv_source=worker_pb2.KVSource(worker_address=prefill.address, block_hashes=list(r.block_hashes)))
        for p, r in zip(prompt_ids, responses, strict=True)]
    return _tpot(await asyncio.gather(*(_arrivals(decode.decode(r)) for r in requests)))


async def peer_transfer(prefill: WorkerClient, prompts: Prompts, tokens: int) -> tuple[int, float]:
    """(payload bytes, seconds) of pulling one fresh prompt's KV blocks with PullKV."""
    _, (response,) = await prefill_batch(prefill, prompts, tokens, 1)
    hashes = list(response.block_hashes)
    assert hashes, f"a prompt of {tokens} tokens left no full KV block on the prefill worker"
    started = time.perf_counter()
    num_bytes = 0
    async for block in prefill.pull_kv(hashes):
        num_bytes += len(block.payload)
    seconds = time.perf_counter() - started
    assert num_bytes > 0, "PullKV returned no block the prefill worker had just computed"
    return num_bytes, seconds


async def shared_transfer(prefill: WorkerClient, prompts: Prompts, tokens: int,
                          tier: RedisTier) -> tuple[int, float]:
    """(payload bytes, seconds) of reading one fresh prompt's KV blocks from the shared Redis tier,
    as a decode worker does after the prefill worker published them."""
    _, (response,) = await prefill_batch(prefill, prompts, tokens, 1, publish=True)
    hashes = [BlockHash(h) for h in response.block_hashes]
    started = time.perf_counter()
    blocks = await tier.get_many(hashes)
    seconds = time.perf_counter() - started
    found = [b for b in blocks if b is not None]
    assert len(found) == len(hashes), (
        f"{len(hashes) - len(found)} of {len(hashes)} published blocks missing from the shared tier; "
        "is the prefill worker's --shared-tier-url the profiler's Redis?")
    return sum(len(b) for b in found), seconds


async def warm_up(prefill: WorkerClient | None, decode: WorkerClient | None,
                  colocated: WorkerClient | None, prompts: Prompts) -> None:
    """One small request through every path first: a fresh worker's first calls are several times
    slower (lazy initialisation), and the fastest-of-`repeats` rule cannot drop them with one repeat."""
    if colocated is not None:
        await colocated_decode(colocated, prompts, 32, 1, 4)
    if prefill is None:
        return
    await prefill_batch(prefill, prompts, 32, 1)
    if decode is not None:
        await disaggregated_decode(prefill, decode, prompts, 32, 1, 4)


def shared_tier(url: str) -> RedisTier:
    return RedisTier(RedisTierConfig(url=url))
