"""The streamed replay of one trace window on one system (`bench routing`, `bench system`).

Every request is a streamed text completion (`/v1/completions`, `stream_options.include_usage`, greedy,
`ignore_eos`) sent at its arrival time. Per request the client measures TTFT at the first chunk with a
choice and TPOT = (last chunk with a choice − first) / (completion tokens − 1) (None for one token),
and reads the cached prompt tokens from our gateway's `route` or, elsewhere, from
`usage.prompt_tokens_details.cached_tokens` (the worker's or vLLM's count).

The client has no connection-pool limit (a pool limit once made requests wait for a slot and time
out in the client, which looked like a stalled router) and a per-request deadline `REQUEST_TIMEOUT_S`:
a request a system holds longer fails with its own error instead of holding the run.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any, Protocol

import httpx

from benchmarks._routing_workload import TraceRequest
from common.stats import percentile

REQUEST_TIMEOUT_S = 300.0


class Target(Protocol):
    """Where a replay sends its requests: base URL, headers (auth), the model name to ask for."""

    url: str
    headers: dict[str, str]
    model: str


async def _one(client: httpx.AsyncClient, model: str, request: TraceRequest, start: float) -> dict[str, Any]:
    await asyncio.sleep(max(0.0, start + request.arrival_s - time.perf_counter()))
    sent = time.perf_counter()
    out: dict[str, Any] = {"ttft": None, "last": None, "prompt_tokens": None, "completion_tokens": None,
                           "cached_tokens": None, "worker": None, "error": None}
    body = {"model": model, "prompt": request.prompt, "max_tokens": request.max_tokens, "temperature": 0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            async with client.stream("POST", "/v1/completions", json=body) as reply:
                if reply.status_code != 200:
                    out["error"] = f"HTTP {reply.status_code}: {(await reply.aread())[:200]!r}"
                    return out
                async for line in reply.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        _read_event(json.loads(line[6:]), out, sent)
    except TimeoutError:
        out["error"] = f"no complete reply within {REQUEST_TIMEOUT_S:.0f} s"
    except httpx.HTTPError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    if out["error"] is None and (out["ttft"] is None or out["prompt_tokens"] is None):
        out["error"] = "stream ended without a token or without usage"
    out["tpot"] = _tpot(out)
    return out


def _tpot(out: dict[str, Any]) -> float | None:
    n = out["completion_tokens"]
    if out["error"] is not None or out["ttft"] is None or out["last"] is None or not n or n < 2:
        return None
    return float((out["last"] - out["ttft"]) / (n - 1))


def _read_event(data: dict[str, Any], out: dict[str, Any], sent: float) -> None:
    if data.get("choices"):
        now = time.perf_counter() - sent
        if out["ttft"] is None:
            out["ttft"] = now
        out["last"] = now
    if "route" in data:  # our gateway: the worker's counts, on the last chunk with a choice
        out["cached_tokens"] = data["route"]["cached_prompt_tokens"]
        out["worker"] = data["route"]["worker_id"]
    usage = data.get("usage")
    if usage:
        out["prompt_tokens"] = usage["prompt_tokens"]
        out["completion_tokens"] = usage.get("completion_tokens")
        details = usage.get("prompt_tokens_details") or {}
        if out["cached_tokens"] is None and details.get("cached_tokens") is not None:
            out["cached_tokens"] = details["cached_tokens"]


async def _replay(target: Target, requests: list[TraceRequest]) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=target.url, headers=target.headers, timeout=REQUEST_TIMEOUT_S,
                                 limits=limits) as client:
        start = time.perf_counter() + 0.5
        return list(await asyncio.gather(*(_one(client, target.model, r, start) for r in requests)))


def replay_requests(target: Target, requests: list[TraceRequest]) -> tuple[list[dict[str, Any]], float]:
    """Replay `requests` on `target` (arrivals in real time): per request its `ttft`, `tpot` (s),
    token counts, `cached_tokens`, `worker`, `error`; and the wall time (s)."""
    began = time.perf_counter()
    results = asyncio.run(_replay(target, requests))
    return results, time.perf_counter() - began


def summarize(results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """The replay's summary: errors, cached share, TTFT and TPOT mean / p50 / p99, per-worker counts."""
    ok = [r for r in results if r["error"] is None]
    errors = [r["error"] for r in results if r["error"] is not None]
    ttfts = [r["ttft"] for r in ok]
    tpots = [r["tpot"] for r in ok if r["tpot"] is not None]
    prompt = sum(r["prompt_tokens"] for r in ok)
    workers = [r["worker"] for r in ok if r["worker"] is not None]
    return {"requests": len(results), "errors": len(errors), "first_error": errors[0] if errors else None,
            "cached_share": sum(r["cached_tokens"] or 0 for r in ok) / max(1, prompt),
            "ttft_mean_s": statistics.fmean(ttfts) if ttfts else None,
            "ttft_p50_s": percentile(ttfts, 0.5), "ttft_p99_s": percentile(ttfts, 0.99),
            "tpot_p50_s": percentile(tpots, 0.5), "tpot_p99_s": percentile(tpots, 0.99), "wall_s": wall,
            "requests_per_worker": sorted(workers.count(w) for w in set(workers))}


def replay(target: Target, requests: list[TraceRequest]) -> dict[str, Any]:
    """Replay `requests` on `target`; returns the replay's summary (see `summarize`)."""
    return summarize(*replay_requests(target, requests))
