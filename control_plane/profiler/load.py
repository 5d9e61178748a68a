"""Open-loop load against one worker, and the latencies it produced.

`run_load(client, rate, lengths, duration)` sends requests with Poisson arrivals at `rate` req/s for
`duration_seconds` (and at least `min_requests`), each a prompt of `input_tokens` random token ids
(seeded, so no two prompts share a cached prefix) and `output_tokens` generated tokens with EOS
ignored, so every request does exactly the work of its bucket. Open loop, because a closed loop hides
queueing: a saturated worker would simply slow the clients down and still "meet" its rate.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass

from common.stats import percentile
from heteroserve.v1 import common_pb2, worker_pb2
from workerrpc.client import WorkerClient

FIRST_TOKEN_ID = 10  # keeps clear of the special tokens of small vocabularies


@dataclass(frozen=True)
class LoadSpec:
    rate: float
    input_tokens: int
    output_tokens: int
    duration_seconds: float
    min_requests: int = 4
    vocab_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rate", "duration_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("input_tokens", "output_tokens", "min_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.vocab_size <= FIRST_TOKEN_ID:
            raise ValueError(f"vocab_size must be > {FIRST_TOKEN_ID}, got {self.vocab_size}")


@dataclass(frozen=True)
class LoadResult:
    """Per-request latencies in seconds; `failed` counts requests that raised."""

    ttft_seconds: tuple[float, ...]
    tpot_seconds: tuple[float, ...]
    failed: int
    wall_seconds: float

    def percentile(self, which: str, q: float) -> float:
        """`common.stats.percentile` (q in [0, 1]) of the TTFTs or TPOTs; inf when there are none, so
        a run that measured nothing never meets an SLO."""
        values = self.ttft_seconds if which == "ttft" else self.tpot_seconds
        value = percentile(values, q)
        return float("inf") if value is None else value


async def _one(client: WorkerClient, spec: LoadSpec, rng: random.Random) -> tuple[float, float]:
    prompt = [rng.randrange(FIRST_TOKEN_ID, spec.vocab_size) for _ in range(spec.input_tokens)]
    request = worker_pb2.GenerateRequest(
        request_id=f"profile-{uuid.uuid4().hex[:12]}", prompt_token_ids=prompt,
        sampling=common_pb2.SamplingParams(max_tokens=spec.output_tokens, ignore_eos=True),
    )
    start = time.perf_counter()
    first = last = None
    tokens = 0
    async for chunk in client.generate(request):
        now = time.perf_counter()
        if chunk.token_ids:
            first = now if first is None else first
            tokens += len(chunk.token_ids)
            last = now
    assert first is not None and last is not None, "worker finished a request without any token"
    tpot = (last - first) / (tokens - 1) if tokens > 1 else 0.0
    return first - start, tpot


async def run_load(client: WorkerClient, spec: LoadSpec) -> LoadResult:
    """Send the load, wait for every request, return the latencies."""
    rng = random.Random(spec.seed)
    arrivals = random.Random(spec.seed + 1)
    tasks: list[asyncio.Task[tuple[float, float]]] = []
    start = time.perf_counter()
    next_at = 0.0
    while next_at < spec.duration_seconds or len(tasks) < spec.min_requests:
        delay = start + next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_one(client, spec, random.Random(rng.random()))))
        next_at += arrivals.expovariate(spec.rate)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    ok = [r for r in results if isinstance(r, tuple)]
    return LoadResult(
        ttft_seconds=tuple(r[0] for r in ok), tpot_seconds=tuple(r[1] for r in ok),
        failed=len(results) - len(ok), wall_seconds=time.perf_counter() - start,
    )
