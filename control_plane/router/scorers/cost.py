"""Cost model: the prefill work a request adds on each worker plus the work it queues behind, in tokens.

After NVIDIA Dynamo's KV router (cost = prefill blocks to compute + active load, argmin), measured in
prompt-token equivalents from what the gateway knows:

    uncached(w) = P − B · max over tiers t of credit[t] · blocks(w, t)
    queued(w)   = pending_prefill(w) + request_cost_tokens · load(w)
    cost(w)     = uncached(w) + queue_weight · queued(w)            (the picker takes the minimum)

- P = max(request.num_prompt_tokens, B · prefix.num_blocks), B = `block_size` tokens per KV block.
- blocks(w, t) and credit[t] are the prefix scorer's (scorers/prefix.py): a block in the worker's own
  memory saves its whole recompute (credit 1), one in Redis half (a network read instead), one on disk a
  quarter. So B · max_t credit·blocks = B · num_blocks · prefix score(w): the tokens a hit saves.
- pending_prefill(w): prompt tokens this gateway routed to w that have not produced their first token
  (`InflightTracker.pending_prefill`), i.e. prefill already queued or running there; 0 without a tracker.
- load(w) = running + waiting + routed-but-unreported requests (the load scorer's input): each in-flight
  request also costs w every engine step (its decode token, its per-sequence step overhead, its share of
  a single-threaded worker), counted as `request_cost_tokens` prompt tokens each.

So a hot prefix stays on its holder while the tokens its cache saves exceed the extra work queued
there, and spreads once the holder's queue costs more than recomputing the prefix elsewhere. Units:
tokens throughout. Cost: O(candidates) numpy + O(workers with pending prefill) Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from control_plane.router.table import Candidates
from control_plane.router.types import PrefixHoldings, RouteRequest


@dataclass(frozen=True)
class Costs:
    """Per candidate, candidates' order: `uncached` prompt tokens to compute there and total `cost`."""

    uncached: np.ndarray
    cost: np.ndarray


@dataclass(frozen=True)
class CostModel:
    """Parameters as in `RouterConfig` (validated there): tokens per block, the queue's weight and the
    prompt-token equivalent of one in-flight request."""

    block_size: int
    queue_weight: float
    request_cost_tokens: float

    def costs(self, request: RouteRequest, candidates: Candidates, prefix: PrefixHoldings,
              prefix_score: np.ndarray, pending: Mapping[str, int]) -> Costs:
        """`prefix_score` is the prefix scorer's output for the same candidates; `pending` maps worker
        id to its pending prefill tokens (absent = 0)."""
        nb = max(prefix.num_blocks, 0)
        prompt = float(max(request.num_prompt_tokens, self.block_size * nb))
        uncached = prompt - (self.block_size * nb) * prefix_score
        queued = self.request_cost_tokens * candidates.load.astype(np.float64)
        if pending:
            workers, at = candidates.where(pending)
            if workers:
                queued[at] += [pending[w] for w in workers]
        return Costs(uncached=uncached, cost=uncached + self.queue_weight * queued)
