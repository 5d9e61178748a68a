"""Eviction policies of the local tiers, and the bookkeeping that applies them.

A policy is a one-method class: `sort_key(entry)` returns a tuple, and the entry with the *smallest* key
is evicted first (as SGLang's `evict_policy.py`). Time is a logical clock (one tick per insert or access)
so eviction order is exact and reproducible in tests.

`LocalIndex` keeps each entry's size and stats and a lazy min-heap of (sort key, tick, key): an access
pushes a fresh heap item and leaves the old one stale; stale items are skipped when popped and the heap is
rebuilt when it grows past 2x the live entries. Eviction is O(log n) amortised.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from cache.hashing import BlockHash


@dataclass
class EntryStats:
    """What a policy may look at. Owned and updated by `LocalIndex`; policies must not modify it."""

    size_bytes: int
    inserted_at: int
    last_access: int
    hits: int = 0


class EvictionPolicy(Protocol):
    def sort_key(self, entry: EntryStats) -> tuple[int, ...]: ...


class LRUPolicy:
    """Least recently used (inserted or read) first."""

    def sort_key(self, entry: EntryStats) -> tuple[int, ...]:
        return (entry.last_access,)


class FIFOPolicy:
    """Oldest insert first; reads do not matter."""

    def sort_key(self, entry: EntryStats) -> tuple[int, ...]:
        return (entry.inserted_at,)


class LFUPolicy:
    """Fewest hits first; ties broken by least recent access."""

    def sort_key(self, entry: EntryStats) -> tuple[int, ...]:
        return (entry.hits, entry.last_access)


def make_policy(name: str) -> EvictionPolicy:
    match name:
        case "lru":
            return LRUPolicy()
        case "fifo":
            return FIFOPolicy()
        case "lfu":
            return LFUPolicy()
        case _:
            raise ValueError(f"eviction policy must be one of lru, fifo, lfu; got {name!r}")


class LocalIndex:
    """Sizes, stats and eviction order of the entries of one local tier (not thread-safe: use from one
    thread, the event loop)."""

    def __init__(self, policy: EvictionPolicy, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        self.policy = policy
        self.capacity_bytes = capacity_bytes
        self.total_bytes = 0
        self._entries: dict[BlockHash, EntryStats] = {}
        self._heap: list[tuple[tuple[int, ...], int, BlockHash]] = []
        self._clock = 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[BlockHash]:
        return iter(self._entries)

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _push(self, key: BlockHash, entry: EntryStats) -> None:
        heapq.heappush(self._heap, (self.policy.sort_key(entry), entry.last_access, key))
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._heap = [(self.policy.sort_key(e), e.last_access, k) for k, e in self._entries.items()]
            heapq.heapify(self._heap)

    def add(self, key: BlockHash, size_bytes: int) -> None:
        """Insert (or replace) `key`. Does not evict: call `victims_for` first."""
        self.remove(key)
        now = self._tick()
        entry = EntryStats(size_bytes, inserted_at=now, last_access=now)
        self._entries[key] = entry
        self.total_bytes += size_bytes
        self._push(key, entry)

    def touch(self, key: BlockHash) -> None:
        """Record a read of `key` (no-op if absent)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.last_access = self._tick()
            entry.hits += 1
            self._push(key, entry)

    def remove(self, key: BlockHash) -> int | None:
        """Forget `key`; returns its size, or None if absent."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self.total_bytes -= entry.size_bytes
        return entry.size_bytes

    def victims_for(self, incoming_bytes: int) -> list[BlockHash]:
        """Remove and return, in eviction order, the entries that must go so `incoming_bytes` fit."""
        victims: list[BlockHash] = []
        while self._entries and self.total_bytes + incoming_bytes > self.capacity_bytes:
            victim = self._pop_min()
            if victim is None:
                break
            victims.append(victim)
        return victims

    def _pop_min(self) -> BlockHash | None:
        while self._heap:
            key_tuple, tick, key = heapq.heappop(self._heap)
            entry = self._entries.get(key)
            if entry is not None and entry.last_access == tick and self.policy.sort_key(entry) == key_tuple:
                self.remove(key)
                return key
        return None
