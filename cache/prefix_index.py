"""PrefixIndex: which workers (and tiers) hold which blocks, built from KV events.

Contract. Blocks in a shared tier (`shared_tiers`, default `common.vocab.SHARED_TIERS`) are recorded
under the pseudo-worker `SHARED` whoever published them, because every worker can load them.
`longest_prefix(hashes)` walks the leading hashes once and answers a `PrefixRun` per holder. A worker's
run is the number of leading blocks it holds itself or that the shared tier holds; `tier` is the slowest
tier used along that run (rank: `common.vocab.TIERS` order, device < memory < redis < disk), i.e. what
the load will be limited by. Workers holding one of the blocks of their run themselves are listed; every
other worker's run is the `SHARED` entry's. `longest_prefix_per_tier` gives each exact (worker, tier)'s
run of leading blocks.

Data structure (sized for ~10 M blocks at ≤ 128 bytes each, see docs/benchmarks.md "scale"):
- each (owner, tier) pair is interned once as a small int, its *holder id*;
- `cache._block_table.BlockTable`: one open-addressing hash table in numpy arrays, linear probing,
  keyed by the full 128-bit hash (two uint64 words, so there are no false hits) and slotted by
  Fibonacci hashing of the low word. A slot stores up to two holder ids inline; a block with three or
  more holders keeps its holder set in a small side dict (rare: a hot system prompt). 24 bytes per
  slot, load ≤ 0.7 (live + deleted), grown ×2 by a vectorised rehash: ~35–70 bytes per block.
- no reverse map: a per-holder block count, and `remove_worker` / `cleared` find the holder's slots
  with one vectorised scan of the table (O(capacity) numpy work, ~10 ms per 10 M slots; both are rare:
  a worker leaving or restarting).

Bounds. `apply(stored|removed)`: O(hashes) expected probes. `longest_prefix` and
`longest_prefix_per_tier`: one probe per leading block until the first block nobody holds, plus
O(holders of each walked block): O(blocks + holders), never O(workers × blocks).

Pure data structure: no I/O, not thread-safe (one event loop). `cache.index_sync` feeds it from Redis.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from cache._block_table import BlockTable, split_hash
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


class PrefixIndex:
    def __init__(self, shared_tiers: Iterable[str] = SHARED_TIERS) -> None:
        self.shared_tiers = frozenset(shared_tiers)
        self._table = BlockTable()
        self._ids: dict[tuple[str, str], int] = {}  # (owner, tier) -> holder id
        self._pairs: list[tuple[str, str]] = []  # holder id -> (owner, tier)
        self._ranks: list[int] = []  # holder id -> tier rank
        self._counts: list[int] = []  # holder id -> blocks it holds

    def __len__(self) -> int:
        return self._table.num_blocks

    def _owner(self, worker_id: str, tier: str) -> str:
        return SHARED if tier in self.shared_tiers else worker_id

    def _holder_id(self, owner: str, tier: str) -> int:
        hid = self._ids.get((owner, tier))
        if hid is None:
            hid = self._ids[(owner, tier)] = len(self._pairs)
            self._pairs.append((owner, tier))
            self._ranks.append(TIER_RANK.get(tier, _UNKNOWN_RANK))
            self._counts.append(0)
        return hid

    def apply(self, event: KVEvent) -> None:
        """Apply one event (idempotent for stored/removed). Raises ValueError for a hash that is not
        16 bytes."""
        owner = self._owner(event.worker_id, event.tier)
        if event.kind == "stored":
            hid = self._holder_id(owner, event.tier)
            add = self._table.add
            self._counts[hid] += sum(add(*split_hash(h), hid) for h in event.hashes)
        elif event.kind == "removed":
            hid_or_none = self._ids.get((owner, event.tier))
            if hid_or_none is not None:
                discard = self._table.discard
                self._counts[hid_or_none] -= sum(discard(*split_hash(h), hid_or_none) for h in event.hashes)
        elif event.kind == "cleared":
            hid_or_none = self._ids.get((owner, event.tier))
            if hid_or_none is not None:
                self._drop([hid_or_none])

    def _drop(self, hids: list[int]) -> int:
        held = [h for h in hids if self._counts[h]]
        if held:
            self._table.drop_holders(held)
        dropped = sum(self._counts[h] for h in held)
        for h in held:
            self._counts[h] = 0
        return dropped

    def remove_worker(self, worker_id: str) -> int:
        """Forget everything `worker_id` holds (it left the registry). Returns the entries dropped."""
        return self._drop([hid for hid, (owner, _) in enumerate(self._pairs) if owner == worker_id])

    def workers(self) -> list[str]:
        return sorted({self._pairs[hid][0] for hid, n in enumerate(self._counts) if n})

    def longest_prefix(self, hashes: Sequence[BlockHash]) -> dict[str, PrefixRun]:
        """Each worker's run (see the module docstring). A worker not in the result has the `SHARED`
        entry's run (loadable from the shared tier), or none if there is no `SHARED` entry."""
        result: dict[str, PrefixRun] = {}
        alive: dict[str, int] = {}  # worker whose run reaches the current block -> worst rank so far
        seen: set[str] = set()
        shared_worst, shared_on, n = -1, True, 0  # shared_on: SHARED holds every block so far
        pairs, ranks, absent = self._pairs, self._ranks, _UNKNOWN_RANK + 1
        for i, holders in enumerate(self._table.leading_holders(hashes)):
            best: dict[str, int] = {}
            for hid in holders:
                owner, r = pairs[hid][0], ranks[hid]
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
        runs: dict[int, int] = {}
        alive: set[int] = set()  # holders of every block so far; a holder's run is set when it drops out
        n = 0
        for i, holders in enumerate(self._table.leading_holders(hashes)):
            still = set(holders) if i == 0 else alive.intersection(holders)
            if len(still) < len(alive):
                runs.update((hid, i) for hid in alive - still)
            alive, n = still, i + 1
            if not alive:
                break
        runs.update((hid, n) for hid in alive)
        return {self._pairs[hid]: n for hid, n in runs.items()}

    def state(self) -> dict[BlockHash, frozenset[tuple[str, str]]]:
        """A comparable copy of the whole index (tests, snapshots)."""
        pairs = self._pairs
        return {BlockHash(h): frozenset(pairs[hid] for hid in hids) for h, hids in self._table.items()}

    def check_integrity(self) -> None:
        """Re-derive the table's invariants and the per-holder counts; raises AssertionError naming the
        first difference."""
        derived = self._table.check_integrity(len(self._pairs))
        for hid, n in enumerate(self._counts):
            assert derived[hid] == n, (f"holder {self._pairs[hid]} counted {n} blocks, table has "
                                       f"{derived[hid]} (apply/remove_worker bug)")

    def to_bytes(self) -> bytes:
        """Serialise: per (owner, tier) group: lengths, names, count, hashes (sorted)."""
        groups = self._table.blocks_by_holder(len(self._pairs))
        parts = [struct.pack("<I", len(groups))]
        for hid, records in sorted(groups.items(), key=lambda item: self._pairs[item[0]]):
            o, t = (name.encode() for name in self._pairs[hid])
            parts.append(struct.pack("<HH", len(o), len(t)) + o + t + struct.pack("<I", len(records)))
            parts.append(records.tobytes())
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
                hid = index._holder_id(owner, tier)
                words = np.frombuffer(raw, dtype="<u8").reshape(-1, 2)
                index._counts[hid] += index._table.add_many(words, hid)
        except (struct.error, UnicodeDecodeError) as exc:
            raise ValueError(f"malformed index snapshot: {exc}") from None
        return index


def _tier_name(rank: int) -> str:
    return next((name for name, r in TIER_RANK.items() if r == rank), "unknown")
