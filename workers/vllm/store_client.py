"""A synchronous face on `cache.store.TieredStore` for code that vLLM calls synchronously.

vLLM's KV-connector hooks are plain functions run in its engine-core and worker processes; the tiered
store is asyncio. `StoreClient` owns a private event loop in a daemon thread with the store on it, and
runs each call there with a timeout. Failures never raise to vLLM: a read that fails or times out is a
miss (the engine computes the KV), a write that fails is logged (the KV is simply not shared).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cache.hashing import BlockHash

if TYPE_CHECKING:
    from cache.config import CacheConfig
    from cache.store import TieredStore

log = logging.getLogger(__name__)


class StoreClient:
    """The store of `config`, reachable from any thread. `close()` stops the loop thread."""

    def __init__(self, config: CacheConfig, timeout_seconds: float = 10.0) -> None:
        self._timeout = timeout_seconds
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hs-kv-store", daemon=True)
        self._thread.start()
        self._store: TieredStore = self._run_raising(self._build(config))  # type: ignore[assignment]

    @staticmethod
    async def _build(config: CacheConfig) -> TieredStore:
        from cache.config import build_store

        return await build_store(config)

    def _run_raising(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout)  # type: ignore[arg-type]

    def get_prefix(self, hashes: Sequence[BlockHash]) -> list[bytes]:
        """Verified bytes of the leading run of `hashes` in any tier; [] when the store fails."""
        if not hashes:
            return []
        try:
            return list(self._run_raising(self._store.get_prefix(hashes)))  # type: ignore[call-overload]
        except Exception as exc:  # a tier down or slow: a miss, the engine recomputes
            log.warning("KV store read failed, recomputing: %s: %s", type(exc).__name__, exc)
            return []

    def put_many(self, items: Sequence[tuple[BlockHash, bytes]]) -> bool:
        """Write `items` to the store's write-through tiers; False when that failed."""
        try:
            self._run_raising(self._store.put_many(items))
        except Exception as exc:
            log.warning("KV store write of %d block(s) failed: %s: %s", len(items), type(exc).__name__, exc)
            return False
        return True

    def close(self) -> None:
        try:
            self._run_raising(self._store.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
