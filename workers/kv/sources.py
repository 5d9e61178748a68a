"""Where a worker's missing KV blocks come from: another worker (PullKV) or the cache tiers below the pool.

A `BlockSource` has one method, `fetch(hashes, model_id)`: the leading run of `hashes` it can deliver,
in order, each block decoded and verified (checksum, hash, model id). It stops at the first gap, block
out of order or corrupt block (the chain past it cannot be used); it may raise for a transport failure
(peer down, timeout), which `fetch_prefix` turns into a local prefill. A source holds no state between
calls and changes nothing in the engine.

- `PeerSource(address, ...)`: a prefill worker's PullKV stream; path `peer`.
- `StoreSource(store)`: the worker's `cache.store.TieredStore` (its shared Redis tier and any private
  memory / disk tiers, in the store's order); path `shared`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from cache.hashing import BlockHash
from cache.store import TieredStore
from common.errors import CorruptDataError
from common.tls import ClientTLS
from common.vocab import TransferPath
from heteroserve.v1 import common_pb2
from workerrpc.client import WorkerClient
from workers.engine.types import KVBlock
from workers.kv.wire import decode_block, decode_blocks

log = logging.getLogger(__name__)


class BlockSource(Protocol):
    """A place to read KV blocks from; `path` names it in metrics and logs."""

    @property
    def path(self) -> TransferPath: ...

    @property
    def name(self) -> str: ...

    async def fetch(self, hashes: Sequence[BlockHash], model_id: str) -> list[KVBlock]:
        """The verified leading run of `hashes` this source holds, in order (may be empty)."""
        ...


class PeerSource:
    """Another worker's blocks over its PullKV stream. Opens one connection per `fetch`."""

    def __init__(self, address: str, cluster_token: str, cache_keys: common_pb2.CacheKeys, *,
                 timeout_seconds: float = 10.0, tls: ClientTLS | None = None) -> None:
        if not address:
            raise ValueError("address: must name the peer as host:port")
        self._address = address
        self._token = cluster_token
        self._tls = tls
        self._cache_keys = cache_keys
        self._timeout = timeout_seconds

    @property
    def path(self) -> TransferPath:
        return "peer"

    @property
    def name(self) -> str:
        return self._address

    async def fetch(self, hashes: Sequence[BlockHash], model_id: str) -> list[KVBlock]:
        blocks: list[KVBlock] = []
        async with WorkerClient(self._address, self._token, timeout_seconds=self._timeout,
                                tls=self._tls) as peer:
            async for data in peer.pull_kv(list(hashes), self._cache_keys, timeout_seconds=self._timeout):
                i = len(blocks)
                if i >= len(hashes) or data.block_hash != hashes[i]:
                    break  # out of order or a gap: the chain past this point cannot be used
                try:
                    block = await asyncio.to_thread(decode_block, data.payload, hashes[i], model_id)
                except CorruptDataError as exc:
                    log.warning("dropping KV block %s from %s: %s", hashes[i].hex()[:12], self._address, exc)
                    break
                blocks.append(block)
        return blocks


class StoreSource:
    """The tiered store below the pool. Does not own `store` (the worker's `WorkerKVCache` closes it)."""

    def __init__(self, store: TieredStore) -> None:
        self._store = store

    @property
    def path(self) -> TransferPath:
        return "shared"

    @property
    def name(self) -> str:
        return "the tiered store"

    async def fetch(self, hashes: Sequence[BlockHash], model_id: str) -> list[KVBlock]:
        payloads = await self._store.get_prefix(list(hashes))
        if not payloads:
            return []
        return await asyncio.to_thread(decode_blocks, payloads, list(hashes), model_id)
