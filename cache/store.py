"""TieredStore: several tiers, fastest first, behaving as one verified block store.

- Read-through: a batched get asks each tier in order for the keys still missing. Every value found is
  checked (header + checksum + block hash, `cache.serde.verify`); a block that fails is counted in
  `heteroserve_cache_checksum_failures_total{tier}`, removed from that tier and treated as a miss, so
  corrupt data is never returned. Hits in a lower tier are promoted into the tiers above whose role has
  `promote=True`.
- Writes: `put_many` writes to every tier whose role is `write="through"`. Blocks a tier evicts with
  their bytes still in hand (the memory tier) are written back into the next tier below whose role is
  `write="back"` (cascading). Worker-pool evictions arrive here as ordinary puts.
- Prefix: `get_prefix(hashes)` returns the bytes of the longest run of leading hashes that some tier
  holds and that verify; it first asks `contains_many` of each tier (cheap) to find the run, then reads
  only that run.
- Events: every store / removal per tier is reported to an optional `EventSink` (the KV event
  publisher), which enqueues it without blocking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from cache import serde
from cache.hashing import BlockHash
from cache.metrics import CacheMetrics
from cache.serde import SerdeOptions
from cache.tiers.base import BlockTier, Evicted
from common.errors import CorruptDataError

log = logging.getLogger(__name__)

EventKind = Literal["stored", "removed"]


class EventSink(Protocol):
    def publish(self, kind: EventKind, tier: str, hashes: Sequence[BlockHash]) -> None:
        """Record that `hashes` were stored in / removed from `tier`. Must not block."""


@dataclass(frozen=True)
class TierRole:
    """How the store uses one tier: `write` "through" (every put) or "back" (only blocks evicted from a
    tier above); `promote` = copy hits from lower tiers into this one; `verify` = check reads;
    `encoding` = re-encode what is written here (e.g. zlib, or lossy int8 for a cold tier; off by
    default — int8 changes the KV and so may change generated tokens)."""

    write: Literal["through", "back"] = "through"
    promote: bool = True
    verify: bool = True
    encoding: SerdeOptions | None = None  # re-encode blocks written here (zlib / int8); None = as given

    def __post_init__(self) -> None:
        if self.write not in ("through", "back"):
            raise ValueError(f"write must be 'through' or 'back', got {self.write!r}")


class StoreTier(NamedTuple):
    tier: BlockTier
    role: TierRole


class TieredStore:
    """Owns its tiers (closes them in `close()`). Not thread-safe: use from one event loop."""

    def __init__(self, tiers: Sequence[StoreTier], metrics: CacheMetrics | None = None,
                 events: EventSink | None = None) -> None:
        names = [t.tier.name for t in tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique, got {names}")
        self.tiers = list(tiers)
        self._metrics = metrics
        self.events = events

    def tier(self, name: str) -> BlockTier:
        for t in self.tiers:
            if t.tier.name == name:
                return t.tier
        raise KeyError(f"no tier named {name!r}; tiers: {[t.tier.name for t in self.tiers]}")

    def _emit(self, kind: EventKind, tier: BlockTier, hashes: Sequence[BlockHash]) -> None:
        if self.events is not None and hashes:
            self.events.publish(kind, tier.name, list(hashes))

    async def contains_many(self, hashes: Sequence[BlockHash]) -> list[str | None]:
        """Name of the first tier holding each hash (unverified), or None."""
        where: list[str | None] = [None] * len(hashes)
        for st in self.tiers:
            missing = [i for i, w in enumerate(where) if w is None]
            if not missing:
                break
            present = await st.tier.contains_many([hashes[i] for i in missing])
            for i, ok in zip(missing, present, strict=True):
                if ok:
                    where[i] = st.tier.name
        return where

    async def get_many(self, hashes: Sequence[BlockHash]) -> list[bytes | None]:
        """Verified bytes of each hash (None = miss everywhere); promotes lower-tier hits upwards."""
        result: list[bytes | None] = [None] * len(hashes)
        missing = list(range(len(hashes)))
        for level, st in enumerate(self.tiers):
            if not missing:
                break
            values = await st.tier.get_many([hashes[i] for i in missing])
            corrupt: list[BlockHash] = []
            still: list[int] = []
            found: list[int] = []
            for i, value in zip(missing, values, strict=True):
                if value is not None and st.role.verify and not self._valid(value, hashes[i]):
                    corrupt.append(hashes[i])
                    value = None
                if value is None:
                    still.append(i)
                else:
                    result[i] = value
                    found.append(i)
            if corrupt:
                await self._drop_corrupt(st.tier, corrupt)
            if found and level > 0:
                await self._promote(level, [(hashes[i], result[i]) for i in found])  # type: ignore[misc]
            missing = still
        return result

    @staticmethod
    def _valid(value: bytes, expected: BlockHash) -> bool:
        try:
            serde.verify(value, expected_hash=expected)
        except CorruptDataError:
            return False
        return True

    async def _drop_corrupt(self, tier: BlockTier, hashes: list[BlockHash]) -> None:
        log.warning("dropping %d corrupt block(s) from tier %s", len(hashes), tier.name)
        if self._metrics:
            self._metrics.checksum_failures.labels(tier.name).inc(len(hashes))
        await tier.remove_many(hashes)
        self._emit("removed", tier, hashes)

    async def _promote(self, level: int, items: list[tuple[BlockHash, bytes]]) -> None:
        for upper in range(level):
            if self.tiers[upper].role.promote:
                await self._put_into(upper, items)

    async def get_prefix(self, hashes: Sequence[BlockHash]) -> list[bytes]:
        """Verified bytes of the longest run of leading `hashes` found in any tier (possibly empty)."""
        where = await self.contains_many(hashes)
        run = next((i for i, w in enumerate(where) if w is None), len(hashes))
        if run == 0:
            return []
        values = await self.get_many(hashes[:run])
        out: list[bytes] = []
        for value in values:
            if value is None:
                break
            out.append(value)
        return out

    async def put_many(self, items: Sequence[tuple[BlockHash, bytes]],
                       only: Collection[str] | None = None) -> None:
        """Write to every write-through tier (or only to the tiers named in `only`, whatever their role);
        evictions cascade to write-back tiers. Never raises for a tier that is down or full (the tier
        counts it)."""
        if not items:
            return
        for level, st in enumerate(self.tiers):
            wanted = st.role.write == "through" if only is None else st.tier.name in only
            if wanted:
                await self._put_into(level, items)

    async def _put_into(self, level: int, items: Sequence[tuple[BlockHash, bytes]]) -> None:
        tier, encoding = self.tiers[level].tier, self.tiers[level].role.encoding
        if encoding is not None:
            items = await asyncio.to_thread(_recode_all, items, encoding)
        result = await tier.put_many(items)
        self._emit("stored", tier, result.stored)
        if result.evicted:
            self._emit("removed", tier, [e.block_hash for e in result.evicted])
            await self._write_back(level, result.evicted)

    async def _write_back(self, level: int, evicted: list[Evicted]) -> None:
        items = [(e.block_hash, e.data) for e in evicted if e.data is not None]
        target = next((j for j in range(level + 1, len(self.tiers))
                       if self.tiers[j].role.write == "back"), None)
        if items and target is not None:
            await self._put_into(target, items)

    async def remove_many(self, hashes: Sequence[BlockHash]) -> None:
        """Remove the hashes from every tier."""
        for st in self.tiers:
            await st.tier.remove_many(hashes)
            self._emit("removed", st.tier, hashes)

    async def close(self) -> None:
        for st in self.tiers:
            await st.tier.close()


def _recode_all(items: Sequence[tuple[BlockHash, bytes]],
                encoding: SerdeOptions) -> list[tuple[BlockHash, bytes]]:
    """Items re-encoded with `encoding`; blocks that fail verification are left out (never stored)."""
    out: list[tuple[BlockHash, bytes]] = []
    for block_hash, data in items:
        try:
            out.append((block_hash, serde.recode(data, encoding)))
        except CorruptDataError:
            log.warning("not storing a corrupt block %s", block_hash.hex())
    return out
