"""Replay a window's arrivals on the live gateway, open loop, and measure what the simulator predicts.

Each row (arrival s, input tokens, output tokens) becomes one streamed greedy completion over the
gateway's gRPC API, sent at `start + arrival` whatever happened to earlier ones (open loop: a slow
cluster does not slow the arrivals down), with `ignore_eos` so it generates exactly its output tokens.
Prompts are `input tokens` of the model's own corpus, each from its own seeded offset and opening with a
marker unique to its seed and number, so no two requests share a cached prefix (the simulator models no
prefix cache; `Prompts`).

Per request: TTFT = first token − scheduled arrival (a late send counts against the system, as a
queue would), TPOT = (last token − first token) / (tokens − 1), the SLO met when TTFT ≤ ttft and
TPOT ≤ tpot of its class (a failed request misses). `measure()` reduces them to the simulator's
figures (`common.stats.percentile`, as `placement.simulator` does).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.stats import percentile
from heteroserve.client import AsyncClient, RetryPolicy


@dataclass
class Served:
    arrival: float
    output_tokens: int
    ttft_seconds: float | None = None
    tpot_seconds: float | None = None
    pool: str = ""
    disaggregated: bool = False
    worker: str = ""  # the (decode) worker the gateway chose
    error: str = ""


class Prompts:
    """Prompts of a given token count (as the model's tokenizer counts them) from its corpus, each
    opening with a marker unique to this maker's seed and the prompt's number, so that no two prompts
    share a KV block (block hashes chain from the first block). Why (since session 7): the generated
    models' corpus is 1,354 tokens, so prompts cut at random offsets repeated: 325 prompts of 344
    tokens had 272 distinct first blocks, prefix hits the simulator does not model; and the mean plan
    replayed the peak plan's very prompts on a worker and a shared Redis tier that held their KV."""

    def __init__(self, model_dir: Path, seed: int = 0) -> None:
        from tokenizers import Tokenizer

        from heteroserve.modelgen.tokenizer import corpus_text

        self._tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._ids = self._tok.encode(corpus_text()).ids
        self._rng = random.Random(seed)
        self._seed = seed
        self._made = 0

    def make(self, tokens: int) -> str:
        marker = self._tok.encode(f"{self._seed}.{self._made} ", add_special_tokens=False).ids
        self._made += 1
        body = max(0, tokens - len(marker))
        start = self._rng.randrange(0, max(1, len(self._ids) - body))
        ids = marker + (self._ids * (1 + body // max(1, len(self._ids))))[start:start + body]
        return str(self._tok.decode(ids[:tokens]))


async def _one(client: AsyncClient, model: str, prompt: str, row: tuple[float, int, int],
               start: float) -> Served:
    arrival, _, output_tokens = row
    out = Served(arrival, output_tokens)
    await asyncio.sleep(max(0.0, start + arrival - time.monotonic()))
    first = last = None
    tokens = 0
    try:
        async for chunk in client.stream(prompt, model=model, max_tokens=output_tokens, temperature=0.0,
                                         ignore_eos=True):
            if chunk.token_ids:
                last = time.monotonic()
                first = first or last
                tokens += len(chunk.token_ids)
            if chunk.route is not None and chunk.route.pool:
                out.pool, out.disaggregated = chunk.route.pool, chunk.route.disaggregated
                out.worker = chunk.route.worker_id
    except Exception as exc:  # a failed request is a measured miss, not a crash of the benchmark
        out.error = f"{type(exc).__name__}: {exc}"[:200]
        return out
    if first is not None and last is not None:
        out.ttft_seconds = first - (start + arrival)
        out.tpot_seconds = (last - first) / (tokens - 1) if tokens > 1 else None
    return out


async def replay(target: str, api_key: str, model: str, rows: Sequence[tuple[float, int, int]],
                 prompts: Sequence[str]) -> list[Served]:
    """Serve every row at its arrival time (module docstring); one result per row, in order."""
    async with AsyncClient(target, api_key=api_key, transport="grpc", timeout_seconds=300.0,
                           retry=RetryPolicy()) as client:
        start = time.monotonic() + 0.5  # every task is scheduled before the first arrival is due
        return list(await asyncio.gather(*(_one(client, model, p, r, start)
                                           for p, r in zip(prompts, rows, strict=True))))


def measure(served: Sequence[Served], ttft_slo: float, tpot_slo: float, seconds: float) -> dict[str, Any]:
    """TTFT p50/p90, TPOT p50, SLO attainment, failures and per-pool throughput (req/s over `seconds`)."""
    ttfts = [s.ttft_seconds for s in served if s.ttft_seconds is not None]
    tpots = [s.tpot_seconds for s in served if s.tpot_seconds is not None]
    met = sum(1 for s in served if not s.error and s.ttft_seconds is not None and s.ttft_seconds <= ttft_slo
              and (s.tpot_seconds is None or s.tpot_seconds <= tpot_slo))
    pools: dict[str, int] = {}
    for s in served:
        if not s.error:
            pools[s.pool or "?"] = pools.get(s.pool or "?", 0) + 1
    return {"ttft_p50": percentile(ttfts, 0.5), "ttft_p90": percentile(ttfts, 0.9),
            "tpot_p50": percentile(tpots, 0.5), "slo_attainment": met / len(served) if served else None,
            "failed": sum(1 for s in served if s.error),
            "disaggregated_fraction": sum(s.disaggregated for s in served) / len(served) if served else 0.0,
            "throughput": {p: n / seconds for p, n in sorted(pools.items())}}


def share_deviation(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[float | None, list[Any]]:
    """max |served − planned| share over (class, route) of the requests between two /admin/routing
    snapshots of the same plan (classes without requests in between are left out), and the rows."""
    def counts(routing: Mapping[str, Any]) -> tuple[dict[tuple[str, str], tuple[float, int]], dict[str, int]]:
        routes = {(c["request_class"], c["route"]): (float(c["planned_share"]),
                                                     round((c["served_share"] or 0.0) * c["requests"]))
                  for c in routing["classes"]}
        return routes, {c["request_class"]: int(c["requests"]) for c in routing["classes"]}

    (r0, t0), (r1, t1) = counts(before), counts(after)
    rows = []
    for key, (planned, sent) in r1.items():
        n = t1[key[0]] - t0.get(key[0], 0)
        if n > 0:
            served = (sent - r0.get(key, (0.0, 0))[1]) / n
            rows.append((key[0], key[1], planned, round(served, 4), n))
    return (max(abs(s - p) for _, _, p, s, _ in rows) if rows else None), rows
