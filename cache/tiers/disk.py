"""Disk tier: one file per block under `root/<namespace>/<hh>/<hash hex>.kv`, size-capped, LRU.

Writes are atomic: bytes go to `<name>.tmp.<pid>` in the same directory, then `os.replace`. A crash
leaves at most a stray .tmp file (deleted by the next rescan), never a partial block under its real name.
No fsync: this is a cache, and a block damaged by a power loss fails its checksum in the store.

Bookkeeping (sizes, LRU order) lives on the event loop thread; only file I/O runs in
`asyncio.to_thread`, one thread call per batch. On open, the directory is rescanned and blocks are
ordered by modification time, which reads refresh (`os.utime`, at most once per block per
`touch_interval_seconds`, to keep metadata writes off the read path), so LRU order survives a restart
to within that interval.

Verification: with `verify` (default) each block is checked (`cache.serde.verify`: header, checksum,
hash) in the read thread right after its read, while its bytes are hot in the CPU cache; a block that
fails is deleted, counted in `heteroserve_cache_checksum_failures_total{tier="disk"}` and returned as a
miss. The store's role for this tier can then skip its own check (`TierRole(verify=False)`).

Disk full or any OSError on write: evict `enospc_evict_fraction` of the stored bytes and retry once;
if it still fails the block is dropped and counted in `heteroserve_cache_errors_total{tier="disk"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cache import serde
from cache.hashing import BlockHash
from cache.metrics import CacheMetrics
from cache.tiers.base import BlockTier, Evicted, PutResult
from cache.tiers.policies import LocalIndex, make_policy
from common.errors import CorruptDataError

_SUFFIX = ".kv"


@dataclass(frozen=True)
class DiskTierConfig:
    root: Path | str  # normalised to Path at construction (config files give strings)
    namespace: str = "default"
    capacity_bytes: int = 10 << 30
    policy: str = "lru"
    enospc_evict_fraction: float = 0.1
    touch_interval_seconds: float = 60.0
    verify: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if self.capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {self.capacity_bytes}")
        if not self.namespace or "/" in self.namespace or self.namespace.startswith("."):
            raise ValueError(f"namespace must be a plain directory name, got {self.namespace!r}")
        if not 0 < self.enospc_evict_fraction <= 1:
            raise ValueError(f"enospc_evict_fraction must be in (0, 1], got {self.enospc_evict_fraction}")
        make_policy(self.policy)


def _scan(directory: Path) -> list[tuple[float, BlockHash, int]]:
    """(mtime, hash, size) of every block file, oldest first; deletes stray temp files."""
    found: list[tuple[float, BlockHash, int]] = []
    for path in directory.glob("*/*"):
        if _SUFFIX + ".tmp" in path.name:
            path.unlink(missing_ok=True)
            continue
        if not path.name.endswith(_SUFFIX):
            continue
        try:
            st = path.stat()
            found.append((st.st_mtime, BlockHash(bytes.fromhex(path.name[: -len(_SUFFIX)])), st.st_size))
        except (OSError, ValueError):
            continue
    found.sort()
    return found


class DiskTier(BlockTier):
    """Blocks as files. Create with `await DiskTier.open(config)` (rescans the directory)."""

    name = "disk"

    def __init__(self, config: DiskTierConfig, metrics: CacheMetrics | None = None) -> None:
        self.config = config
        self.directory = Path(config.root) / config.namespace
        self._directory = str(self.directory)
        self._index = LocalIndex(make_policy(config.policy), config.capacity_bytes)
        self._metrics = metrics
        self._touched: dict[BlockHash, float] = {}  # key -> monotonic time of its last os.utime

    @classmethod
    async def open(cls, config: DiskTierConfig, metrics: CacheMetrics | None = None) -> DiskTier:
        tier = cls(config, metrics)
        tier.directory.mkdir(parents=True, exist_ok=True)
        found = await asyncio.to_thread(_scan, tier.directory)
        stale: list[BlockHash] = []
        for _, key, size in found:
            stale += tier._index.victims_for(size)
            tier._index.add(key, size)
        if stale:
            await asyncio.to_thread(tier._unlink_all, stale)
        tier._report()
        return tier

    @property
    def total_bytes(self) -> int:
        return self._index.total_bytes

    def path(self, key: BlockHash) -> Path:
        return Path(self._path(key))

    def _path(self, key: BlockHash) -> str:
        name = key.hex()  # plain strings: pathlib costs more than a 128 KiB read per block here
        return f"{self._directory}/{name[:2]}/{name}{_SUFFIX}"

    def _report(self) -> None:
        if self._metrics:
            self._metrics.stored_bytes.labels(self.name).set(self._index.total_bytes)

    def _forget_touches(self, keys: Sequence[BlockHash]) -> None:
        for key in keys:
            self._touched.pop(key, None)

    def _unlink_all(self, keys: Sequence[BlockHash]) -> None:
        for key in keys:
            with contextlib.suppress(OSError):
                self.path(key).unlink()

    async def contains_many(self, keys: Sequence[BlockHash]) -> list[bool]:
        return [k in self._index for k in keys]

    def _read_all(self, keys: Sequence[BlockHash],
                  touch: Sequence[BlockHash]) -> tuple[list[bytes | None], list[BlockHash]]:
        """(bytes or None per key, keys whose block failed verification and was deleted)."""
        out: list[bytes | None] = []
        corrupt: list[BlockHash] = []
        for key in keys:
            try:
                fd = os.open(self._path(key), os.O_RDONLY)
            except OSError:
                out.append(None)
                continue
            try:
                size = os.fstat(fd).st_size
                data = os.read(fd, size)
                out.append(data if len(data) == size else None)  # short read: treat as a miss
            except OSError:
                out.append(None)
            finally:
                os.close(fd)
            if self.config.verify and out[-1] is not None:
                try:
                    serde.verify(out[-1], expected_hash=key)
                except CorruptDataError:
                    out[-1] = None
                    corrupt.append(key)
        for key in touch:
            with contextlib.suppress(OSError):
                os.utime(self._path(key))
        self._unlink_all(corrupt)
        return out, corrupt

    async def get_many(self, keys: Sequence[BlockHash]) -> list[bytes | None]:
        start = time.perf_counter()
        present = [k for k in keys if k in self._index]
        now = time.monotonic()
        interval = self.config.touch_interval_seconds
        touch = [k for k in present if now - self._touched.get(k, -1e18) >= interval]
        self._touched.update((k, now) for k in touch)
        read, corrupt = await asyncio.to_thread(self._read_all, present, touch) if present else ([], [])
        by_key = dict(zip(present, read, strict=True))
        out = [by_key.get(k) for k in keys]
        for key in present:
            if by_key[key] is None:
                self._index.remove(key)  # vanished or unreadable: forget it
                self._touched.pop(key, None)
            else:
                self._index.touch(key)
        if self._metrics:
            if corrupt:
                self._metrics.checksum_failures.labels(self.name).inc(len(corrupt))
            hits = [v for v in out if v is not None]
            self._metrics.record_get(self.name, len(hits), len(out) - len(hits), sum(map(len, hits)),
                                     time.perf_counter() - start)
            self._report()
        return out

    def _write(self, key: BlockHash, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def _write_all(self, items: Sequence[tuple[BlockHash, bytes]],
                   victims: Sequence[BlockHash]) -> list[BlockHash]:
        """Unlink victims, write items; returns the keys whose write failed."""
        self._unlink_all(victims)
        failed: list[BlockHash] = []
        for key, data in items:
            try:
                self._write(key, data)
            except OSError:
                failed.append(key)
        return failed

    async def put_many(self, items: Sequence[tuple[BlockHash, bytes]]) -> PutResult:
        start = time.perf_counter()
        items = [(k, d) for k, d in items if len(d) <= self.config.capacity_bytes]
        victims: list[BlockHash] = []
        for key, data in items:
            self._index.remove(key)
            victims += self._index.victims_for(len(data))
            self._index.add(key, len(data))
        batch = {k for k, _ in items}
        items = [(k, d) for k, d in items if k in self._index]  # drop items evicted by later ones
        to_unlink = [v for v in victims if v not in self._index]
        victims = [v for v in to_unlink if v not in batch]
        now = time.monotonic()
        self._forget_touches(to_unlink)
        self._touched.update((k, now) for k, _ in items)  # a write sets the mtime
        failed = await asyncio.to_thread(self._write_all, items, to_unlink) if items or to_unlink else []
        if failed:
            victims += await self._recover_from_write_failure(items, failed)
        if self._metrics:
            written = sum(len(d) for k, d in items if k not in failed)
            self._metrics.record_put(self.name, written, time.perf_counter() - start)
            self._metrics.evictions.labels(self.name).inc(len(victims))
            self._report()
        stored = [k for k, _ in items if k in self._index]
        return PutResult(stored, [Evicted(v, None) for v in victims])

    async def _recover_from_write_failure(self, items: Sequence[tuple[BlockHash, bytes]],
                                          failed: list[BlockHash]) -> list[BlockHash]:
        """Disk full (or another OSError): free a fraction of the tier and retry the failed writes once.
        Returns the extra victims."""
        for key in failed:
            self._index.remove(key)
        room = max(1, int(self._index.total_bytes * self.config.enospc_evict_fraction))
        extra = self._index.victims_for(self._index.capacity_bytes - self._index.total_bytes + room)
        self._forget_touches(extra)
        retry = [(k, d) for k, d in items if k in set(failed)]
        still_failed = await asyncio.to_thread(self._write_all, retry, extra)
        for key, data in retry:
            if key not in still_failed:
                self._index.add(key, len(data))
        if self._metrics and still_failed:
            self._metrics.errors.labels(self.name).inc(len(still_failed))
        return extra

    async def remove_many(self, keys: Sequence[BlockHash]) -> int:
        present = [k for k in keys if self._index.remove(k) is not None]
        self._forget_touches(present)
        if present:
            await asyncio.to_thread(self._unlink_all, present)
        self._report()
        return len(present)
