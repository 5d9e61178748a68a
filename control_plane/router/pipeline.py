"""The router: filters → scorers → picker, or a baseline policy, over one snapshot of the cluster.

`Router.route(request, workers, prefix)` is synchronous and pure apart from reading the attached
`InflightTracker` (`Router.inflight`, set by whoever owns the tracker): its requests in flight per worker
(the load under `load_signal = "dispatch"`, the default; None = the table's reported load) and its
pending prefill tokens (the `cost` scoring's queue term; None = no pending term), and four pieces of
routing state the router owns: the round-robin cursor, the seeded random generator of the `random`
policy, a bounded session → worker map for affinity, and the last `WorkerTable` it built (reused while it is
handed the same tuple of states; see table.py). It never performs I/O.

Cost per decision, given the snapshot's table: O(workers) numpy work (masks and scores over candidate
arrays) + O(prefix holders + excluded workers + route pools) Python; building a table is one
O(workers) Python pass per snapshot.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from common.errors import UnavailableError
from control_plane.router.config import RouterConfig
from control_plane.router.filters import HARD_FILTERS, SOFT_FILTERS, live_of_role
from control_plane.router.inflight import InflightTracker
from control_plane.router.picker import pick, weighted_totals
from control_plane.router.scorers import Scorer
from control_plane.router.scorers.affinity import AffinityScorer
from control_plane.router.scorers.cost import CostModel
from control_plane.router.scorers.load import LoadScorer
from control_plane.router.scorers.prefix import PrefixScorer
from control_plane.router.table import Candidates, WorkerTable
from control_plane.router.types import PrefixHoldings, RouteDecision, RouteRequest, WorkerState

Workers = Sequence[WorkerState] | WorkerTable
LOAD_POLICIES = ("least_load", "prefix_aware")  # the policies that read a load (config.load_signal)


class Router:
    def __init__(self, config: RouterConfig | None = None, inflight: InflightTracker | None = None) -> None:
        self.config = config or RouterConfig()
        self.inflight = inflight
        self._prefix_scorer = PrefixScorer(dict(self.config.tier_credits))
        self._scorers: tuple[Scorer, ...] = (self._prefix_scorer, LoadScorer(), AffinityScorer())
        self._cost = CostModel(self.config.block_size, self.config.queue_weight,
                               self.config.request_cost_tokens)
        self._cursor = 0
        self._rng = random.Random(self.config.seed)
        self._sessions: OrderedDict[str, str] = OrderedDict()
        self._last: tuple[tuple[WorkerState, ...], WorkerTable] | None = None

    def table(self, workers: Workers) -> WorkerTable:
        """The table of `workers`: itself, the cached one for the same tuple, or a new one."""
        if isinstance(workers, WorkerTable):
            return workers
        if isinstance(workers, tuple):
            if self._last is not None and self._last[0] is workers:
                return self._last[1]
            table = WorkerTable.build(workers)
            self._last = (workers, table)
            return table
        return WorkerTable.build(workers)

    def candidates(self, request: RouteRequest, workers: Workers) -> list[WorkerState]:
        """Workers that may take `request`, by id. Raises `UnavailableError` naming the filter that left
        none."""
        return self._candidates(request, self.table(workers)).states()

    def _candidates(self, request: RouteRequest, table: WorkerTable) -> Candidates:
        name, idx = live_of_role(request, table)
        for filter_name, keep in HARD_FILTERS:
            if not len(idx):
                break
            name, idx = filter_name, keep(request, table, idx)
        if not len(idx):
            raise UnavailableError(f"no {request.role} worker for model {request.model!r} "
                                   f"(none left after the {name!r} filter)")
        for _, keep in SOFT_FILTERS:
            idx = keep(request, table, idx)
        return Candidates(table, idx)

    def route(self, request: RouteRequest, workers: Workers,
              prefix: PrefixHoldings | None = None) -> RouteDecision:
        """Choose one worker for `request`. Remembers the session's worker for affinity."""
        prefix = prefix or PrefixHoldings()
        if request.session_id and not request.affinity_worker:
            remembered = self._sessions.get(request.session_id, "")
            if remembered:
                request = _with_affinity(request, remembered)
        candidates = self._candidates(request, self.table(workers))
        decision = self._decide(request, candidates, prefix)
        if request.session_id:
            self._remember(request.session_id, decision.worker.worker_id)
        return decision

    def _decide(self, request: RouteRequest, candidates: Candidates,
                prefix: PrefixHoldings) -> RouteDecision:
        policy = self.config.policy
        n = len(candidates)
        if policy in LOAD_POLICIES and self.config.load_signal == "dispatch" and self.inflight is not None:
            candidates = candidates.with_load(self._dispatch_load(candidates))
        if policy == "round_robin":
            chosen, reason, score = candidates.state(self._cursor % n), "round_robin", 0.0
            self._cursor += 1
        elif policy == "random":
            chosen, reason, score = candidates.state(self._rng.randrange(n)), "random", 0.0
        elif policy == "least_load":
            chosen = candidates.state(int(np.argmin(candidates.load)))  # first = lowest id of equals
            reason, score = "least_load", 0.0
        elif self.config.scoring == "cost":
            chosen, reason, score = self._cost_and_pick(request, candidates, prefix)
        else:
            chosen, reason, score = self._score_and_pick(request, candidates, prefix)
        cached = prefix.best_blocks_for(chosen.worker_id)
        pending = self._prefill_tokens(request, prefix, chosen) if self.config.scoring == "cost" else 0
        return RouteDecision(worker=chosen, policy=policy, reason=reason, score=score, cached_blocks=cached,
                             num_candidates=n, prefill_tokens=pending)

    def _dispatch_load(self, candidates: Candidates) -> np.ndarray:
        """Per candidate, the requests this gateway has in flight there now (`load_signal` dispatch):
        O(workers) numpy + O(busy workers) Python (two fromiter passes, no per-worker loop)."""
        assert self.inflight is not None
        busy = self.inflight.busy()
        if not busy:
            return np.zeros(len(candidates), dtype=np.int64)
        table = candidates.table
        pos = np.fromiter((table.position.get(w, -1) for w in busy), np.int64, len(busy))
        count = np.fromiter(busy.values(), np.int64, len(busy))
        known = pos >= 0
        full = np.zeros(len(table.states), dtype=np.int64)
        full[pos[known]] = count[known]
        return full[candidates.idx]

    def _prefill_tokens(self, request: RouteRequest, prefix: PrefixHoldings, worker: WorkerState) -> int:
        """Prompt tokens `worker` must compute for `request` by the cost model's estimate (uncached(w))."""
        nb, bs = max(prefix.num_blocks, 0), self.config.block_size
        if nb == 0:
            return request.num_prompt_tokens
        saved = bs * self._prefix_scorer.score_one(worker.worker_id, prefix) * nb
        return max(0, round(max(request.num_prompt_tokens, bs * nb) - saved))

    def _cost_and_pick(self, request: RouteRequest, candidates: Candidates,
                       prefix: PrefixHoldings) -> tuple[WorkerState, str, float]:
        """Least estimated cost in tokens (scorers/cost.py), then the imbalance guard; score = −cost."""
        if len(candidates) == 1:
            return candidates.state(0), "only_candidate", 0.0
        pending = self.inflight.pending_prefill() if self.inflight is not None else {}
        costs = self._cost.costs(request, candidates, prefix,
                                 self._prefix_scorer.score(request, candidates, prefix), pending)
        return self._pick(request, candidates, prefix, -costs.cost)

    def _score_and_pick(self, request: RouteRequest, candidates: Candidates,
                        prefix: PrefixHoldings) -> tuple[WorkerState, str, float]:
        if len(candidates) == 1:
            return candidates.state(0), "only_candidate", 0.0
        scores = {s.name: s.score(request, candidates, prefix) for s in self._scorers}
        return self._pick(request, candidates, prefix,
                          weighted_totals(scores, self.config.scorer_weights, len(candidates)))

    def _pick(self, request: RouteRequest, candidates: Candidates, prefix: PrefixHoldings,
              totals: np.ndarray) -> tuple[WorkerState, str, float]:
        """The best total (ties: lower load, then id) unless the imbalance guard fires; and why."""
        chosen = pick(candidates.load, totals, balance_abs_threshold=self.config.balance_abs_threshold,
                      balance_rel_threshold=self.config.balance_rel_threshold)
        worker = candidates.state(chosen.index)
        if chosen.guarded:
            reason = "imbalance_guard"
        elif prefix.worker_blocks.get(worker.worker_id, 0) > 0:
            reason = "prefix_hit"
        elif request.affinity_worker == worker.worker_id:
            reason = "session_affinity"
        else:
            reason = "load"
        return worker, reason, chosen.score

    def _remember(self, session_id: str, worker_id: str) -> None:
        self._sessions[session_id] = worker_id
        self._sessions.move_to_end(session_id)
        while len(self._sessions) > self.config.session_capacity:
            self._sessions.popitem(last=False)


def _with_affinity(request: RouteRequest, worker_id: str) -> RouteRequest:
    return replace(request, affinity_worker=worker_id)
