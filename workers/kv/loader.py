"""`PrefixLoader`: before a request runs, hash its prompt once and make its cached prefix resident.

The worker service calls two methods per request, in this order:
1. `with_block_hashes(request)`: the request carrying the chained hashes of its full prompt blocks
   (`EngineRequest.block_hashes`), computed here with the engine's hash keys, once per request.
   Everything after it (the transfer, the read-through, the engine's prefix cache, Prefill's reply and
   publish) uses those hashes; nothing hashes the same tokens again.
2. `load(request, transfer)`: every way a prefix enters the pool, each through `fetch_prefix`:
   a. with a `KVTransfer` (a P/D Decode): the blocks of the original prompt from the peer's PullKV
      stream (`peer`) or the tiered store (`shared`). When the source lists its hashes, only the
      leading run equal to ours is wanted (a mismatch means other keys or tokens: counted as a
      failure). Recorded in the worker's `kv_transfer_*{tier=path}` metrics: bytes and seconds when
      blocks moved; a failure when the fetch failed or came back short.
   b. then, with a store configured, the read-through: whatever the pool still lacks of the whole
      prompt, from the store (memory, Redis, disk). A short read-through is normal (not a failure).
Nothing here raises for a transfer failure: the engine computes what is missing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cache.hashing import BlockHash, HashKeys, hash_prompt_blocks
from cache.store import TieredStore
from common.errors import KVTransferError
from common.tls import ClientTLS
from common.vocab import TransferPath
from heteroserve.v1 import common_pb2
from workers.engine.types import EngineRequest, KVBlock
from workers.kv.bridge import KVEngine
from workers.kv.fetch import PrefixFetch, fetch_prefix
from workers.kv.sources import BlockSource, PeerSource, StoreSource

log = logging.getLogger(__name__)

PromptHasher = Callable[[Sequence[int], HashKeys, int], list[BlockHash]]
"""(token ids, hash keys, block size) -> hashes of the full blocks; `cache.hashing.hash_prompt_blocks`."""


class TransferMetrics(Protocol):
    """Where P/D transfers are counted (`workers.metrics.WorkerMetrics`)."""

    def record_kv_transfer(self, tier: TransferPath, num_bytes: int, seconds: float) -> None: ...

    def record_kv_transfer_failure(self, tier: TransferPath) -> None: ...


@dataclass(frozen=True)
class KVTransfer:
    """Where a Decode's prompt KV waits. `worker_address` is the peer's host:port (path `peer`);
    `block_hashes` the blocks the source says it holds (empty = not said); `num_prompt_tokens` the
    original prompt's length (tokens generated since were never computed at the source)."""

    path: TransferPath
    num_prompt_tokens: int
    worker_address: str = ""
    block_hashes: tuple[BlockHash, ...] = ()

    def __post_init__(self) -> None:
        if (self.path == "peer") != bool(self.worker_address):
            raise ValueError(f"worker_address: required for path 'peer' only, got {self.worker_address!r} "
                             f"for {self.path!r}")


class PrefixLoader:
    """See the module docstring. Owns no connections between calls; does not own `store`."""

    def __init__(self, engine: KVEngine, metrics: TransferMetrics, cluster_token: str, *,
                 store: TieredStore | None = None, hash_prompt: PromptHasher = hash_prompt_blocks,
                 timeout_seconds: float = 10.0, tls: ClientTLS | None = None) -> None:
        self._engine = engine
        self._metrics = metrics
        self._token = cluster_token
        self._tls = tls  # the worker's certificate for PullKV from peers (None: plaintext)
        self._store = StoreSource(store) if store is not None else None
        self._hash_prompt = hash_prompt
        self._timeout = timeout_seconds

    def with_block_hashes(self, request: EngineRequest) -> EngineRequest:
        """`request` with `block_hashes` set (unchanged if it has them or has no full block)."""
        size = self._engine.block_size
        if request.block_hashes or len(request.prompt_token_ids) < size:
            return request
        keys = self._engine.hash_keys(request.adapter, request.tenant_salt)
        hashes = self._hash_prompt(request.prompt_token_ids, keys, size)
        return dataclasses.replace(request, block_hashes=tuple(hashes))

    async def load(self, request: EngineRequest, transfer: KVTransfer | None = None) -> list[PrefixFetch]:
        """Make `request`'s cached prefix resident (module docstring); returns each fetch made."""
        fetches: list[PrefixFetch] = []
        if transfer is not None:
            fetch = await self._transfer(request, transfer)
            fetches += [fetch] if fetch is not None else []
        if self._store is not None and request.block_hashes:
            fetches.append(await fetch_prefix(self._engine, self._store, request.block_hashes,
                                              request.prompt_token_ids))
        return fetches

    async def _transfer(self, request: EngineRequest, transfer: KVTransfer) -> PrefixFetch | None:
        ours = request.block_hashes[: transfer.num_prompt_tokens // self._engine.block_size]
        wanted = _leading_common(ours, transfer.block_hashes) if transfer.block_hashes else ours
        if transfer.block_hashes and not wanted and ours:
            self._metrics.record_kv_transfer_failure(transfer.path)
            log.warning("KV source names other blocks than this prompt's (model, adapter or tenant differ?); "
                        "prefilling locally")
            return None
        fetch = await fetch_prefix(self._engine, self._source(request, transfer), wanted,
                                   request.prompt_token_ids)
        if not fetch.attempted:
            return fetch
        if fetch.error is None:
            self._metrics.record_kv_transfer(fetch.path, fetch.num_bytes, fetch.seconds)
        if not fetch.complete:
            self._metrics.record_kv_transfer_failure(fetch.path)
            if fetch.error is None:
                log.warning("KV transfer (%s) got %d of %d blocks; prefilling the rest locally", fetch.path,
                            fetch.num_blocks_imported, fetch.num_blocks_missing)
        return fetch

    def _source(self, request: EngineRequest, transfer: KVTransfer) -> BlockSource:
        if transfer.path == "peer":
            keys = common_pb2.CacheKeys(adapter=request.adapter, tenant_salt=request.tenant_salt)
            return PeerSource(transfer.worker_address, self._token, keys, timeout_seconds=self._timeout,
                              tls=self._tls)
        return self._store if self._store is not None else _NoStore()


class _NoStore:
    """The shared path on a worker without a store: every fetch fails (counted, then local prefill)."""

    @property
    def path(self) -> TransferPath:
        return "shared"

    @property
    def name(self) -> str:
        return "the shared tier"

    async def fetch(self, hashes: Sequence[BlockHash], model_id: str) -> list[KVBlock]:
        raise KVTransferError("no shared tier is configured on this worker")


def _leading_common(ours: Sequence[BlockHash], theirs: Sequence[BlockHash]) -> list[BlockHash]:
    n = 0
    while n < min(len(ours), len(theirs)) and ours[n] == theirs[n]:
        n += 1
    return list(ours[:n])
