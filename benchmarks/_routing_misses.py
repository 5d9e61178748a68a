"""Why a replay missed part of its window's oracle: the oracle tokens not served from cache, split by
whether the prefix was already computed somewhere when the request arrived.

The oracle (benchmarks/_routing_workload.py) assumes instant prefills: a prefix counts as reusable from
the moment an earlier request carrying it arrives. A real worker registers a prompt's blocks only once
they are computed, observable at the client as that request's first token. So per request, in arrival
order: its leading blocks whose prefix some earlier request had already received its first token for
(arrival + TTFT ≤ this request's arrival) are `ready`; the rest of its oracle blocks had a holder still
queued or prefilling (`in flight`). Missed tokens = oracle − cached (never below 0), of which
`holder_ready` = what was ready and not served (a routing or eviction loss) and `holder_in_flight` the
rest (lost only to a router that could not follow a prefix still being computed, or to a worker that
admitted the request before the holder's blocks were registered). Requests that failed are skipped
(their cached count is unknown) and never make a prefix ready.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks._routing_workload import TOKENS_PER_BLOCK, TraceRequest


def miss_causes(requests: Sequence[TraceRequest], results: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Missed oracle tokens of one replay: {"holder_ready": n, "holder_in_flight": m} (see module doc).
    `results[i]` is request i's replay result (`ttft` s from sending, `cached_tokens`, `error`)."""
    if len(requests) != len(results):
        raise ValueError(f"results: one per request, got {len(results)} for {len(requests)}")
    ready_at: dict[tuple[int, ...], float] = {}  # prefix → earliest first-token time (s from the start)
    out = {"holder_ready": 0, "holder_in_flight": 0}
    for i in sorted(range(len(requests)), key=lambda k: requests[k].arrival_s):
        request, result = requests[i], results[i]
        blocks = request.block_ids
        if result["error"] is None:
            ready = 0
            while ready < len(blocks) and ready_at.get(blocks[:ready + 1], float("inf")) <= request.arrival_s:
                ready += 1
            cached = min(result["cached_tokens"] or 0, request.oracle_tokens)
            ready_tokens = min(ready * TOKENS_PER_BLOCK, request.oracle_tokens)
            out["holder_ready"] += max(0, ready_tokens - cached)
            out["holder_in_flight"] += request.oracle_tokens - max(ready_tokens, cached)
        if result["error"] is None and result["ttft"] is not None:
            first = request.arrival_s + result["ttft"]
            for n in range(1, len(blocks) + 1):
                if ready_at.get(blocks[:n], float("inf")) > first:
                    ready_at[blocks[:n]] = first
    return out
