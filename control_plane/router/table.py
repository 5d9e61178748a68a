"""WorkerTable: one cluster snapshot as arrays, built once, read by every decision on that snapshot.

A decision at 1,000 workers must not loop over workers in Python. `WorkerTable.build(workers)` does
that loop once per snapshot (O(workers)): states sorted by id, and numpy arrays of load, admission
capacity and pool code, plus the positions of the live (healthy, not draining) workers of each
(model, role). A decision then works on `Candidates`: an int array of table positions (sorted, so
position order is worker-id order) and the few per-request arrays derived from it with numpy (O(workers)
numpy work, no Python loop); a worker named by the prefix match or the session is found through the
`position` dict and `searchsorted` (O(holders · log workers)).

`Router.route` accepts a table directly, or a sequence of `WorkerState`s, which it turns into a table;
it keeps the last table built from a *tuple* and reuses it while it is handed that same tuple (a tuple
of frozen states cannot change; a list can, so a list is always rebuilt).

Who changes what: the membership (states, pools, live groups) is fixed at build. `load` is the one
array its owner may update in place between decisions (`add_load`, `set_load`): the gateway's
`ClusterView` keeps one table per membership and moves loads as stats reports and routed/finished
requests arrive, so a decision never rebuilds it. The states' own load fields are as of the build.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from control_plane.router.types import WorkerState

MAX_POOL_MASKS = 256  # distinct pool sets memoized per table (a plan names a handful)


@dataclass(frozen=True, eq=False)
class WorkerTable:
    """Immutable snapshot. Arrays are indexed by position in `states` (sorted by worker id)."""

    states: tuple[WorkerState, ...]
    position: dict[str, int]
    load: np.ndarray  # int64: running + waiting + unreported
    max_concurrency: np.ndarray  # int64, 0 = unbounded
    pool_code: np.ndarray  # int64 index into `pools`
    pools: tuple[str, ...]
    num_live: int  # healthy and not draining
    live_models: frozenset[str]
    live: dict[tuple[str, str], np.ndarray]  # (model, role) -> positions of its live workers
    serving: dict[str, dict[tuple[str, str], tuple[WorkerState, ...]]]  # model -> (pool, role) -> live
    # pools -> bool per position: in one of them. Memoized (membership is fixed at build; the pool sets
    # are the plan's routes, a handful), so a decision indexes one array instead of rebuilding it.
    _pool_masks: dict[frozenset[str], np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, workers: Iterable[WorkerState]) -> WorkerTable:
        states = tuple(sorted(workers, key=lambda w: w.worker_id))
        pools = tuple(sorted({w.pool for w in states}))
        code = {p: i for i, p in enumerate(pools)}
        groups: dict[tuple[str, str], list[int]] = {}
        serving: dict[str, dict[tuple[str, str], list[WorkerState]]] = {}
        for i, w in enumerate(states):
            if w.healthy and not w.draining:
                groups.setdefault((w.model, w.role), []).append(i)
                serving.setdefault(w.model, {}).setdefault((w.pool, w.role), []).append(w)
        return cls(states=states, position={w.worker_id: i for i, w in enumerate(states)},
                   load=np.fromiter((w.load for w in states), np.int64, len(states)),
                   max_concurrency=np.fromiter((w.max_concurrency for w in states), np.int64, len(states)),
                   pool_code=np.fromiter((code[w.pool] for w in states), np.int64, len(states)),
                   pools=pools, num_live=sum(len(g) for g in groups.values()),
                   live_models=frozenset(m for m, _ in groups),
                   live={k: np.asarray(v, dtype=np.int64) for k, v in groups.items()},
                   serving={m: {k: tuple(v) for k, v in by.items()} for m, by in serving.items()})

    def set_load(self, worker_id: str, load: int) -> None:
        """Set one worker's load in place (a no-op for a worker not in the table)."""
        i = self.position.get(worker_id)
        if i is not None:
            self.load[i] = load

    def add_load(self, worker_id: str, delta: int) -> None:
        """Move one worker's load by `delta` in place (a no-op for a worker not in the table)."""
        i = self.position.get(worker_id)
        if i is not None:
            self.load[i] += delta

    def in_pools(self, pools: frozenset[str]) -> np.ndarray:
        """A bool array over positions: the worker's pool is one of `pools` (memoized per set)."""
        mask = self._pool_masks.get(pools)
        if mask is None:
            if len(self._pool_masks) >= MAX_POOL_MASKS:
                self._pool_masks.clear()
            mask = (self.pool_values((pool, 1.0) for pool in pools) > 0)[self.pool_code]
            self._pool_masks[pools] = mask
        return mask

    def pool_values(self, values: dict[str, float] | Iterable[tuple[str, float]]) -> np.ndarray:
        """A float64 array over pool codes (pools not named get 0)."""
        out = np.zeros(len(self.pools), dtype=np.float64)
        for pool, value in (values.items() if isinstance(values, dict) else values):
            i = self.pools.index(pool) if pool in self.pools else None
            if i is not None:
                out[i] = value
        return out


@dataclass(frozen=True, eq=False)
class Candidates:
    """The workers still in the running for one request: `idx` = sorted table positions. `load_view`,
    when set, is the load the scorers and the guard read instead of the table's (per candidate, same
    order; the router's `load_signal = "dispatch"`, see pipeline.py)."""

    table: WorkerTable
    idx: np.ndarray
    load_view: np.ndarray | None = None

    @classmethod
    def of(cls, workers: Sequence[WorkerState]) -> Candidates:
        """Every worker of `workers` (tests and direct scorer use)."""
        table = WorkerTable.build(workers)
        return cls(table, np.arange(len(table.states), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.idx)

    @property
    def load(self) -> np.ndarray:
        return self.table.load[self.idx] if self.load_view is None else self.load_view

    def with_load(self, load: np.ndarray) -> Candidates:
        """The same candidates, read with `load` (one value per candidate) as their load."""
        return Candidates(self.table, self.idx, load)

    @property
    def pool_code(self) -> np.ndarray:
        return self.table.pool_code[self.idx]

    def state(self, i: int) -> WorkerState:
        return self.table.states[int(self.idx[i])]

    def states(self) -> list[WorkerState]:
        return [self.table.states[i] for i in self.idx.tolist()]

    def where(self, worker_ids: Iterable[str]) -> tuple[list[str], np.ndarray]:
        """The named workers that are candidates, and their indices into `idx` (same order)."""
        known = [(w, p) for w in worker_ids if (p := self.table.position.get(w)) is not None]
        if not known or not len(self.idx):
            return [], np.zeros(0, dtype=np.int64)
        pos = np.asarray([p for _, p in known], dtype=np.int64)
        at = np.minimum(np.searchsorted(self.idx, pos), len(self.idx) - 1)
        hit = self.idx[at] == pos
        return [w for (w, _), h in zip(known, hit.tolist(), strict=True) if h], at[hit]
