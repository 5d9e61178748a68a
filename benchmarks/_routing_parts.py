"""What share of a request's TTFT a cache hit can remove: the long horizon's TTFT decomposed (issue 16).

A router changes TTFT in two ways: the prompt tokens a worker must compute (cache hits) and the wait
behind other requests (balance). This measures the first with the second taken away: the workload's
requests are sent **one at a time** (each after the previous one's reply ends; `max_tokens` 1) to a
system, so nothing queues, in two passes:

- `cold`: every request with blocks of its own (no prefix shared with any other request), so the
  worker computes the whole prompt; every `COLD_STRIDE`-th request of the workload (its prompts' length
  mix);
- `warm`: the workload's requests in order, with their trace prefix structure (a fresh salt), so a
  prefix-aware router serves the oracle's share from cache.

A least-squares line over both passes, TTFT = fixed + per_token · computed tokens (computed = prompt −
cached), splits an idle request's TTFT into what no cache can remove (`fixed`: HTTP, gateway, gRPC, one
engine step's overhead, the last token) and prefill compute. `decompose` then applies it to a replay of
the same workload: the prefill compute in round robin's TTFT, and the part of it that caching the
whole oracle would remove. If that removable part is a share s of round robin's TTFT, a router that
only raises cache hits gets at best a ratio of about 1 − s; the docs (docs/benchmarks.md, bench
routing) read the long-horizon target ≤ 0.7 against it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import replace
from typing import Any

import httpx
import numpy as np

from benchmarks._replay import REQUEST_TIMEOUT_S, Target
from benchmarks._routing_workload import TraceRequest, TraceRow, Window, build_requests

COLD_STRIDE = 2  # the cold pass sends every 2nd request (cold requests do not depend on each other)
COLD_BLOCK_BASE = 1 << 40  # cold block ids: far above any trace id, one run of ids per request


def cold_rows(rows: list[TraceRow], stride: int = COLD_STRIDE) -> list[TraceRow]:
    """Every `stride`-th row with block ids of its own (no two rows share one), same lengths."""
    return [replace(row, hash_ids=tuple(COLD_BLOCK_BASE + 64 * i + j for j in range(len(row.hash_ids))))
            for i, row in enumerate(rows[::stride])]


async def _sequential(target: Target, requests: list[TraceRequest]) -> list[dict[str, Any]]:
    out = []
    async with httpx.AsyncClient(base_url=target.url, headers=target.headers,
                                 timeout=REQUEST_TIMEOUT_S) as client:
        for request in requests:
            body = {"model": target.model, "prompt": request.prompt, "max_tokens": 1, "temperature": 0,
                    "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
            sent, ttft, cached, prompt = time.perf_counter(), None, None, None
            async with client.stream("POST", "/v1/completions", json=body) as reply:
                if reply.status_code != 200:
                    raise RuntimeError(f"HTTP {reply.status_code}: {(await reply.aread())[:200]!r}")
                async for line in reply.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    data = json.loads(line[6:])
                    if data.get("choices") and ttft is None:
                        ttft = time.perf_counter() - sent
                    if "route" in data:
                        cached = data["route"]["cached_prompt_tokens"]
                    if data.get("usage"):
                        prompt = data["usage"]["prompt_tokens"]
            if ttft is None or prompt is None:
                raise RuntimeError("stream ended without a token or without usage")
            out.append({"ttft": ttft, "prompt_tokens": prompt, "cached_tokens": cached or 0})
    return out


def sequential(target: Target, requests: list[TraceRequest]) -> list[dict[str, Any]]:
    """Send `requests` one after another (arrival times ignored): per request TTFT (s), prompt and
    cached tokens (our gateway's `route`)."""
    return asyncio.run(_sequential(target, requests))


def fit(samples: list[dict[str, Any]]) -> tuple[float, float]:
    """(fixed s, s per computed token): least squares of TTFT on computed tokens."""
    x = np.asarray([s["prompt_tokens"] - s["cached_tokens"] for s in samples], dtype=np.float64)
    y = np.asarray([s["ttft"] for s in samples], dtype=np.float64)
    per_token, fixed = np.polyfit(x, y, 1)
    return float(fixed), float(per_token)


def measure(target: Target, rows: list[TraceRow], *, words: list[str], salt: int,
            max_blocks: int) -> dict[str, Any]:
    """The two passes on `target` (a prefix-aware system, idle) and the line through them."""
    cold_part = cold_rows(rows)
    cold = sequential(target, build_requests(cold_part, Window(0, len(cold_part)), words=words, salt=salt,
                                             max_blocks=max_blocks, time_scale=1.0))
    warm_requests = build_requests(rows, Window(0, len(rows)), words=words, salt=salt + 1,
                                   max_blocks=max_blocks, time_scale=1.0)
    warm = sequential(target, warm_requests)
    fixed, per_token = fit(cold + warm)
    prompt = sum(s["prompt_tokens"] for s in warm)
    return {"requests_cold": len(cold), "requests_warm": len(warm),
            "idle_ttft_mean_cold_ms": round(1e3 * statistics.fmean(s["ttft"] for s in cold), 3),
            "idle_ttft_mean_warm_ms": round(1e3 * statistics.fmean(s["ttft"] for s in warm), 3),
            "idle_cached_share_warm": round(sum(s["cached_tokens"] for s in warm) / max(1, prompt), 4),
            "fixed_ms": round(1e3 * fixed, 3), "per_computed_token_us": round(1e6 * per_token, 4)}


def decompose(parts: dict[str, Any], *, mean_prompt_tokens: float, oracle_share: float,
              rr_cached_share: float, rr_ttft_mean_s: float) -> dict[str, Any]:
    """Apply the idle line to round robin's replay of the same workload: its prefill compute (ms per
    request, at idle speed), the part a router caching the whole oracle would remove, and both as
    shares of round robin's measured mean TTFT and of the idle TTFT of round robin's cached share."""
    per_token_ms = parts["per_computed_token_us"] / 1e3
    rr_computed = mean_prompt_tokens * (1.0 - rr_cached_share)
    oracle_computed = mean_prompt_tokens * (1.0 - oracle_share)
    prefill_ms = per_token_ms * rr_computed
    removable_ms = per_token_ms * max(0.0, rr_computed - oracle_computed)
    idle_rr_ms = parts["fixed_ms"] + prefill_ms
    rr_ms = 1e3 * rr_ttft_mean_s
    return {"rr_computed_tokens_mean": round(rr_computed, 1),
            "oracle_computed_tokens_mean": round(oracle_computed, 1),
            "rr_prefill_ms": round(prefill_ms, 3), "removable_by_cache_ms": round(removable_ms, 3),
            "rr_prefill_share_of_rr_ttft": round(prefill_ms / rr_ms, 4),
            "removable_share_of_rr_ttft": round(removable_ms / rr_ms, 4),
            "removable_share_of_idle_rr_ttft": round(removable_ms / idle_rr_ms, 4),
            "ratio_vs_rr_bound_same_queueing": round(1.0 - removable_ms / rr_ms, 4)}
