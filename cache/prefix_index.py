"""PrefixIndex: which workers (and tiers) hold which blocks, built from KV events.

State: `hash -> {(worker_id, tier)}` plus the reverse `worker_id -> {hash}` so a vanished worker is
dropped in O(its blocks). Blocks in a shared tier (`shared_tiers`, default `common.vocab.SHARED_TIERS`)
are recorded under the pseudo-worker `SHARED` whoever published them, because every worker can load them.

`longest_prefix(hashes)` walks the leading hashes once and answers a `PrefixRun` per holder. A worker's
run is the number of leading blocks it holds itself or that the shared tier holds; `tier` is the slowest
tier used along that run (rank: `common.vocab.TIERS` order, device < memory < redis < disk), i.e. what
the load will be limited by. Workers holding one of the blocks of their run themselves are listed; every
other worker's run is the `SHARED` entry's.
Cost: O(sum of the runs) dict operations.

Pure data structure: no I/O, not thread-safe (one event loop). `cache.index_sync` feeds it from Redis.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from cache.events import KVEvent
from cache.hashing import BlockHash
from common.vocab import SHARED_TIERS, TIERS

SHARED = "*"
TIER_RANK: dict[str, int] = {name: rank for rank, name in enumerate(TIERS)}  # fastest first
_UNKNOWN_RANK = 9


class PrefixRun(NamedTuple):
    """One holder's run of leading prompt blocks."""

    num_blocks: int
    tier: str  # slowest tier along the matched run


def _rank(tier: str) -> int:
    return TIER_RANK.get(tier, _UNKNOWN_RANK)


class PrefixIndex:
    def __init__(self, shared_tiers: Iterable[str] = SHARED_TIERS) -> None:
        self.shared_tiers = frozenset(shared_tiers)
        self._holders: dict[BlockHash, set[tuple[str, str]]] = {}
        self._by_worker: dict[str, set[tuple[BlockHash, str]]] = {}

    def __len__(self) -> int:
        return len(self._holders)

    def _owner(self, worker_id: str, tier: str) -> str:
        return SHARED if tier in self.shared_tiers else worker_id

    def apply(self, event: KVEvent) -> None:
        """Apply one event (idempotent for stored/removed)."""
        owner = self._owner(event.worker_id, event.tier)
        if event.kind == "stored":
            for h in event.hashes:
                self._holders.setdefault(h, set()).add((owner, event.tier))
                self._by_worker.setdefault(owner, set()).add((h, event.tier))
        elif event.kind == "removed":
            for h in event.hashes:
                self._discard(owner, h, event.tier)
        elif event.kind == "cleared":
            for h, tier in list(self._by_worker.get(owner, ())):
                if tier == event.tier:
                    self._discard(owner, h, tier)

    def _discard(self, owner: str, h: BlockHash, tier: str) -> None:
        holders = self._holders.get(h)
        if holders is not None:
            holders.discard((owner, tier))
            if not holders:
                del self._holders[h]
        mine = self._by_worker.get(owner)
        if mine is not None:
            mine.discard((h, tier))
            if not mine:
                del self._by_worker[owner]

    def remove_worker(self, worker_id: str) -> int:
        """Forget everything `worker_id` holds (it left the registry). Returns the entries dropped."""
        entries = self._by_worker.pop(worker_id, set())
        for h, tier in entries:
            holders = self._holders.get(h)
            if holders is not None:
                holders.discard((worker_id, tier))
                if not holders:
                    del self._holders[h]
        return len(entries)

    def workers(self) -> list[str]:
        return sorted(self._by_worker)

    def longest_prefix(self, hashes: Sequence[BlockHash]) -> dict[str, PrefixRun]:
        """Each worker's run (see the module docstring). A worker not in the result has the `SHARED`
        entry's run (loadable from the shared tier), or none if there is no `SHARED` entry."""
        result: dict[str, PrefixRun] = {}
        alive: dict[str, int] = {}  # worker whose run reaches the current block -> worst rank so far
        seen: set[str] = set()
        shared_worst, shared_on, n = -1, True, 0  # shared_on: SHARED holds every block so far
        rank_of, holders_of, absent = TIER_RANK.get, self._holders.get, _UNKNOWN_RANK + 1
        for i, h in enumerate(hashes):
            holders = holders_of(h)
            if not holders:
                break
            best: dict[str, int] = {}
            for owner, tier in holders:
                r = rank_of(tier, _UNKNOWN_RANK)
                if r < best.get(owner, absent):
                    best[owner] = r
            s = best.get(SHARED)
            s_rank = absent if s is None else s
            ended = []
            for w, worst in alive.items():
                r = best.get(w, absent)
                r = s_rank if s_rank < r else r
                if r == absent:
                    ended.append(w)
                elif r > worst:
                    alive[w] = r
            for w in ended:
                result[w] = PrefixRun(i, _tier_name(alive.pop(w)))
            for w, r in best.items():
                if w != SHARED and w not in seen:
                    seen.add(w)
                    if shared_on:  # it reaches back to block 0 through the shared tier
                        alive[w] = max(shared_worst, r if s is None else min(r, s))
            if shared_on and s is None:
                shared_on = False
                if i:
                    result[SHARED] = PrefixRun(i, _tier_name(shared_worst))
            elif shared_on and s is not None:
                shared_worst = max(shared_worst, s)
            n = i + 1
        for w, worst in alive.items():
            result[w] = PrefixRun(n, _tier_name(worst))
        if shared_on and n:
            result[SHARED] = PrefixRun(n, _tier_name(shared_worst))
        return result

    def longest_prefix_per_tier(self, hashes: Sequence[BlockHash]) -> dict[tuple[str, str], int]:
        """(worker_id, tier) -> number of leading blocks that exact (worker, tier) holds."""
        result: dict[tuple[str, str], int] = {}
        alive: set[tuple[str, str]] | None = None
        for i, h in enumerate(hashes):
            holders = self._holders.get(h, set())
            alive = set(holders) if alive is None else alive & holders
            if not alive:
                break
            for key in alive:
                result[key] = i + 1
        return result

    def state(self) -> dict[BlockHash, frozenset[tuple[str, str]]]:
        """A comparable copy of the whole index (tests, snapshots)."""
        return {h: frozenset(v) for h, v in self._holders.items()}

    def check_integrity(self) -> None:
        """Re-derive the reverse map and compare; raises AssertionError naming the first difference."""
        derived: dict[str, set[tuple[BlockHash, str]]] = {}
        for h, holders in self._holders.items():
            assert holders, f"empty holder set left for {h.hex()} (a _discard path forgot to delete)"
            for owner, tier in holders:
                derived.setdefault(owner, set()).add((h, tier))
        assert derived == self._by_worker, "reverse map differs from holders (apply/remove_worker bug)"

    def to_bytes(self) -> bytes:
        """Serialise: per (owner, tier) group: lengths, names, count, hashes."""
        groups: dict[tuple[str, str], list[BlockHash]] = {}
        for owner, entries in self._by_worker.items():
            for h, tier in entries:
                groups.setdefault((owner, tier), []).append(h)
        parts = [struct.pack("<I", len(groups))]
        for (owner, tier), hashes in sorted(groups.items()):
            o, t = owner.encode(), tier.encode()
            parts.append(struct.pack("<HH", len(o), len(t)) + o + t + struct.pack("<I", len(hashes)))
            parts.append(b"".join(sorted(hashes)))
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, shared_tiers: Iterable[str] = SHARED_TIERS) -> PrefixIndex:
        """Inverse of `to_bytes`. Raises ValueError on malformed data."""
        index = cls(shared_tiers)
        try:
            (num_groups,) = struct.unpack_from("<I", data, 0)
            offset = 4
            for _ in range(num_groups):
                lo, lt = struct.unpack_from("<HH", data, offset)
                offset += 4
                owner = data[offset:offset + lo].decode()
                tier = data[offset + lo:offset + lo + lt].decode()
                offset += lo + lt
                (count,) = struct.unpack_from("<I", data, offset)
                offset += 4
                raw = data[offset:offset + 16 * count]
                offset += 16 * count
                if len(raw) != 16 * count:
                    raise ValueError("truncated hash list")
                for i in range(count):
                    h = BlockHash(raw[16 * i:16 * (i + 1)])
                    index._holders.setdefault(h, set()).add((owner, tier))
                    index._by_worker.setdefault(owner, set()).add((h, tier))
        except (struct.error, UnicodeDecodeError) as exc:
            raise ValueError(f"malformed index snapshot: {exc}") from None
        return index


def _tier_name(rank: int) -> str:
    return next((name for name, r in TIER_RANK.items() if r == rank), "unknown")
