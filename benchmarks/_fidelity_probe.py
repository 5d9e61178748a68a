"""The probe of the co-located fleet for `bench fidelity`: what the profiles do not see, measured on the
running plan before its window is replayed.

`PROBE_REQUESTS` requests of the window's median lengths (fresh prompts: no cached prefix), one at a
time, each sent twice, back to back on warm connections:
1. through the gateway (its gRPC API, as the window is served), which names the worker it chose;
2. the same prompt's token ids straight to that worker's `Generate` RPC (another tenant salt, so the
   KV blocks of step 1 are not reused).
The calibration (`_fidelity_predict.calibration`) uses step 1 only: its median TTFT minus the
simulator's (the first-token overhead: the gateway hop plus the live worker's distance from its
fastest-of-repeats profile point) and its median TPOT over the simulator's (the decode factor). Step 2
splits the overhead: the median of the paired TTFT(1) − TTFT(2) is the gateway's own share
(`gateway_overhead`), TTFT(2) the worker's live first token (`direct_ttft_p50`). Requests the gateway
disaggregated (P/D) have no one worker to compare with and are left out of the pairs.

3. then, when the plan runs workers on more than one core, rounds of one request on every worker at
   once, straight on their RPCs, alternating with one request on one worker alone (`concurrent`): the
   co-located set busy together, as in the window's busy stretches. The median TPOT all busy over
   the one alone is the slowdown of an iteration while every core is busy
   (`SimOptions.core_slowdown`): the cores are not independent devices, since the gateway, the load
   generator, Redis and whatever else runs here take a core no worker uses while one is free, and the
   workers' cores once none is (and caches and memory bandwidth are shared).

4. (a diagnostic since session 7, not used by the calibration) `batched`: on one worker straight on
   its RPC, rounds of `BATCH` requests at once alternating with one alone; the decode-only stretch of
   each (tokens after the first `SKIP_TOKENS`, when every prompt of the round is prefilled) gives the
   step time at batch `BATCH` and at batch 1. Over the profile's step times at those batches, two
   equal ratios mean the live worker is uniformly slower (the calibration's multiplicative decode
   factor is right); a ratio at batch `BATCH` near 1 while batch 1's is high means a fixed cost per
   step, which batching amortises (the factor then over-states a loaded worker; docs/benchmarks.md).

Why warm, back-to-back requests and not lone ones a second apart (the first version): measured on
2026-12-07 (docs/benchmarks.md, fidelity section), a gateway idle for 1 s between requests adds about
3.5 ms to the next one's first token (17.8 ms at 1 s gaps vs 14.3 ms at 0.3 s), while the worker
straight on its RPC shows no such gap effect (11.6-12.0 ms at 1 s, 9.7-11.0 ms back to back). The window
at its mean rate keeps the gateway warm, so lone probes over-predicted its TTFT (ttft_p50_error 0.24).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._fidelity_replay import Prompts, Served, _one
from common.stats import percentile

PROBE_REQUESTS = 15
CONCURRENT_REQUESTS = 15  # rounds of step 3 (one request on every worker at once, one alone)
BATCH, BATCH_ROUNDS, SKIP_TOKENS = 4, 6, 3  # step 4: requests at once, rounds, tokens before the stretch
BATCH_OUTPUT_TOKENS = 24  # step 4's outputs, fixed: a window's median (4 on the code trace) leaves no stretch
DIRECT_SALT = "bench-fidelity-direct"


async def _direct(client: Any, prompt_ids: Sequence[int], output_tokens: int, n: int) -> float | None:
    """TTFT (s) of one greedy completion straight on a worker's RPC."""
    from heteroserve.v1 import common_pb2, worker_pb2

    request = worker_pb2.GenerateRequest(
        request_id=f"fidelity-direct-{n}-{time.monotonic_ns()}", prompt_token_ids=list(prompt_ids),
        sampling=common_pb2.SamplingParams(max_tokens=output_tokens, temperature=0.0, ignore_eos=True),
        cache_keys=common_pb2.CacheKeys(tenant_salt=DIRECT_SALT))
    start = time.monotonic()
    async for chunk in client.generate(request):
        if chunk.token_ids:
            return time.monotonic() - start
    return None


async def probe(target: str, api_key: str, model: str, model_dir: Path, addresses: dict[str, str],
                cluster_token: str, input_tokens: int, output_tokens: int, seed: int = 1) -> dict[str, Any]:
    """The probe of the module docstring. Returns the medians (s) of the gateway's TTFT and TPOT, of the
    direct TTFT and of the paired difference (`gateway_overhead`), the raw pairs and the failures."""
    from tokenizers import Tokenizer

    from heteroserve.client import AsyncClient, RetryPolicy
    from workerrpc.client import WorkerClient

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    maker = Prompts(model_dir, seed=seed)  # not the window's prompts: no prefix is shared with them
    workers = {wid: WorkerClient(address, cluster_token) for wid, address in addresses.items()}
    served: list[Served] = []
    pairs: list[tuple[float, float]] = []
    try:
        async with AsyncClient(target, api_key=api_key, transport="grpc", timeout_seconds=60.0,
                               retry=RetryPolicy()) as gateway:
            for n in range(PROBE_REQUESTS):
                prompt = maker.make(input_tokens)
                s = await _one(gateway, model, prompt, (0.0, input_tokens, output_tokens), time.monotonic())
                served.append(s)
                if s.ttft_seconds is None or s.disaggregated or s.worker not in workers:
                    continue
                direct = await _direct(workers[s.worker], tok.encode(prompt).ids, output_tokens, n)
                if direct is not None:
                    pairs.append((s.ttft_seconds, direct))
    finally:
        for client in workers.values():
            await client.close()
    return {"ttft_p50": percentile([s.ttft_seconds for s in served if s.ttft_seconds is not None], 0.5),
            "tpot_p50": percentile([s.tpot_seconds for s in served if s.tpot_seconds is not None], 0.5),
            "direct_ttft_p50": percentile([d for _, d in pairs], 0.5),
            "gateway_overhead": percentile([g - d for g, d in pairs], 0.5),
            "pairs": [(round(g, 5), round(d, 5)) for g, d in pairs],
            "failed": sum(1 for s in served if s.error)}


async def _direct_stream(client: Any, prompt_ids: Sequence[int], output_tokens: int,
                         tag: str) -> float | None:
    """TPOT (s) of one greedy completion straight on a worker's RPC: (last − first token) / (n − 1)."""
    return decode_stretch(await _direct_times(client, prompt_ids, output_tokens, f"busy-{tag}"), skip=0)


async def concurrent(model_dir: Path, addresses: dict[str, str], cluster_token: str, input_tokens: int,
                     output_tokens: int, seed: int = 2) -> dict[str, Any]:
    """Step 3 of the module docstring, straight on the workers' RPCs so that every worker is busy for
    sure (the gateway's load-aware choice put both requests of a round on one worker in 14 of 15 rounds
    at 18:31 UTC on 2026-12-07): `CONCURRENT_REQUESTS` rounds, each one request on every worker at once
    and one request on each worker alone (alternating, so a change of the machine's load hits both).
    Returns the medians (s) of the TPOT all busy and alone, their ratio (`slowdown`, None when a median
    is missing), the number of workers and the failures."""
    import asyncio

    from tokenizers import Tokenizer

    from workerrpc.client import WorkerClient

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    maker = Prompts(model_dir, seed=seed)  # no prefix shared with the window or step 1
    clients = [WorkerClient(address, cluster_token) for _, address in sorted(addresses.items())]
    busy: list[float | None] = []
    alone: list[float | None] = []
    try:
        for n in range(CONCURRENT_REQUESTS):
            ids = [tok.encode(maker.make(input_tokens)).ids for _ in clients]
            busy += await asyncio.gather(*(_direct_stream(c, i, output_tokens, f"{n}") for c, i in zip(
                clients, ids, strict=True)))
            lone_ids = tok.encode(maker.make(input_tokens)).ids
            alone.append(await _direct_stream(clients[n % len(clients)], lone_ids, output_tokens, "a"))
    finally:
        for client in clients:
            await client.close()
    b, a = (percentile([t for t in x if t is not None], 0.5) for x in (busy, alone))
    return {"busy_tpot_p50": b, "alone_tpot_p50": a, "slowdown": b / a if a and b else None,
            "streams": len(clients), "failed": sum(t is None for t in busy + alone)}


async def _direct_times(client: Any, prompt_ids: Sequence[int], output_tokens: int, tag: str) -> list[float]:
    """The arrival times of every token of one greedy completion straight on a worker's RPC."""
    from heteroserve.v1 import common_pb2, worker_pb2

    request = worker_pb2.GenerateRequest(
        request_id=f"fidelity-{tag}-{time.monotonic_ns()}", prompt_token_ids=list(prompt_ids),
        sampling=common_pb2.SamplingParams(max_tokens=output_tokens, temperature=0.0, ignore_eos=True),
        cache_keys=common_pb2.CacheKeys(tenant_salt=DIRECT_SALT))
    times: list[float] = []
    async for chunk in client.generate(request):
        times += [time.monotonic()] * len(chunk.token_ids)
    return times


def decode_stretch(times: Sequence[float], skip: int = SKIP_TOKENS) -> float | None:
    """Seconds per token after the first `skip` tokens (None when fewer than two remain)."""
    tail = times[skip:]
    return (tail[-1] - tail[0]) / (len(tail) - 1) if len(tail) > 1 else None


async def batched(model_dir: Path, address: str, cluster_token: str, input_tokens: int,
                  output_tokens: int = BATCH_OUTPUT_TOKENS, seed: int = 3) -> dict[str, Any]:
    """Step 4 of the module docstring on the worker at `address`: the medians (s) of the decode
    stretch per token with `BATCH` requests at once and alone, and the failures."""
    import asyncio

    from tokenizers import Tokenizer

    from workerrpc.client import WorkerClient

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    maker = Prompts(model_dir, seed=seed)  # no prefix shared with the window or the other steps
    client = WorkerClient(address, cluster_token)
    together: list[float | None] = []
    alone: list[float | None] = []
    try:
        for n in range(BATCH_ROUNDS):
            ids = [tok.encode(maker.make(input_tokens)).ids for _ in range(BATCH)]
            runs = await asyncio.gather(*(_direct_times(client, i, output_tokens, f"batch-{n}-{k}")
                                          for k, i in enumerate(ids)))
            together += [decode_stretch(t) for t in runs]
            lone_ids = tok.encode(maker.make(input_tokens)).ids
            alone.append(decode_stretch(await _direct_times(client, lone_ids, output_tokens, f"lone-{n}")))
    finally:
        await client.close()
    return {"batch": BATCH, "batch_step_p50": percentile([t for t in together if t is not None], 0.5),
            "lone_step_p50": percentile([t for t in alone if t is not None], 0.5),
            "failed": sum(t is None for t in together + alone)}
