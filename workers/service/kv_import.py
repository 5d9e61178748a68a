"""Decode-side KV import: fetch a prompt's missing KV blocks from a peer or the shared tier.

Algorithm for one decode request:
1. Hash the prompt's full blocks (`cache.hashing`, the engine's hash keys). When the source lists
   hashes, only the leading run that equals ours is wanted (a mismatch means other keys or tokens).
2. Skip the leading blocks the local pool already holds (`engine.match_prefix`).
3. Fetch the rest, in order, from `kv_source.worker_address` (its PullKV stream) or, when
   `kv_source.shared_tier` is set and a tier is configured, from the shared tier.
4. Keep the longest valid leading run: each block must arrive in order, pass its checksum, and carry
   exactly the prompt's tokens for its position. Import that run (`engine.import_blocks`).

Any failure (peer down, timeout, corrupt or missing block, unavailable tier) is logged, counted in
`heteroserve_worker_kv_transfer_failures_total`, and never raised: the engine then computes whatever is
missing, so the client receives the same tokens either way, only later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from cache.hashing import BlockHash, hash_prompt_blocks
from common.errors import CorruptDataError, KVTransferError
from heteroserve.v1 import common_pb2, worker_pb2
from workerrpc.client import WorkerClient
from workers.engine.types import KVBlock
from workers.service.kv_wire import decode_block

if TYPE_CHECKING:
    from workers.engine.async_engine import AsyncEngine
    from workers.metrics import WorkerMetrics

log = logging.getLogger(__name__)


class SharedKVTier(Protocol):
    """The shared cache tier as a decode worker reads it (`workers.service.kv_cache.WorkerKVCache`)."""

    async def get_blocks(self, hashes: Sequence[BlockHash]) -> list[KVBlock]:
        """The verified leading run of `hashes` the tier holds, in order (may be empty)."""
        ...


class KVImporter:
    """Fetches and imports KV for decode requests. Owns no connections between calls."""

    def __init__(self, engine: AsyncEngine, metrics: WorkerMetrics, cluster_token: str, *,
                 shared_tier: SharedKVTier | None = None, timeout_seconds: float = 10.0) -> None:
        self._engine = engine
        self._metrics = metrics
        self._token = cluster_token
        self._shared = shared_tier
        self._timeout = timeout_seconds

    async def import_prefix(self, source: worker_pb2.KVSource, prompt: Sequence[int],
                            cache_keys: common_pb2.CacheKeys) -> int:
        """Import the prompt's missing leading blocks from `source`; returns how many were imported."""
        tier = "peer" if source.worker_address else ("shared" if source.shared_tier else None)
        if tier is None:
            return 0
        keys = self._engine.hash_keys(cache_keys.adapter, cache_keys.tenant_salt)
        hashes = hash_prompt_blocks(prompt, keys, self._engine.block_size)
        wanted = _leading_common(hashes, list(source.block_hashes)) if source.block_hashes else hashes
        if source.block_hashes and not wanted and hashes:
            self._metrics.record_kv_transfer_failure(tier)
            log.warning("KV source names other blocks than this prompt's (model, adapter or tenant differ?); "
                        "prefilling locally")
            return 0
        first_missing = self._engine.match_prefix(wanted)
        missing = wanted[first_missing:]
        if not missing:
            return 0
        size = self._engine.block_size
        expected_tokens = [tuple(prompt[i * size : (i + 1) * size])
                           for i in range(first_missing, first_missing + len(missing))]
        started = time.monotonic()
        try:
            blocks = await self._fetch(tier, source.worker_address, missing, expected_tokens, cache_keys)
            imported = await self._engine.import_blocks(blocks) if blocks else 0
        except Exception as exc:  # every transfer failure falls back to local prefill
            self._metrics.record_kv_transfer_failure(tier)
            log.warning("KV import from %s failed (%s); prefilling locally", source.worker_address or tier,
                        exc)
            return 0
        # Tensor bytes of the blocks received, whichever tier: the peer stream adds a small header per
        # block and the shared tier reads the same encoding, so both count what the KV itself weighs.
        num_bytes = sum(int(b.kv.numel() * b.kv.element_size()) for b in blocks)
        self._metrics.record_kv_transfer(tier, num_bytes, time.monotonic() - started)
        if imported < len(missing):
            self._metrics.record_kv_transfer_failure(tier)
            log.warning("KV import from %s got %d of %d blocks; prefilling the rest locally",
                        source.worker_address or tier, imported, len(missing))
        return imported

    async def _fetch(self, tier: str, address: str, hashes: list[BlockHash],
                     expected_tokens: list[tuple[int, ...]],
                     cache_keys: common_pb2.CacheKeys) -> list[KVBlock]:
        if tier == "peer":
            return await self._fetch_peer(address, hashes, expected_tokens, cache_keys)
        if self._shared is None:
            raise KVTransferError("no shared tier is configured on this worker")
        return _valid_run(await self._shared.get_blocks(hashes), hashes, expected_tokens)

    async def _fetch_peer(self, address: str, hashes: list[BlockHash], expected_tokens: list[tuple[int, ...]],
                          cache_keys: common_pb2.CacheKeys) -> list[KVBlock]:
        blocks: list[KVBlock] = []
        model_id = self._engine.model_id
        async with WorkerClient(address, self._token, timeout_seconds=self._timeout) as peer:
            async for data in peer.pull_kv(hashes, cache_keys, timeout_seconds=self._timeout):
                i = len(blocks)
                if i >= len(hashes) or data.block_hash != hashes[i]:
                    break  # out of order or a gap: the chain past this point cannot be used
                try:
                    block = await asyncio.to_thread(decode_block, data.payload, hashes[i], model_id)
                except CorruptDataError as exc:
                    log.warning("dropping KV block %s from %s: %s", hashes[i].hex()[:12], address, exc)
                    break
                if block.token_ids != expected_tokens[i]:
                    log.warning("KV block %s from %s holds other tokens; dropped", hashes[i].hex()[:12],
                                address)
                    break
                blocks.append(block)
        return blocks


def _leading_common(ours: list[BlockHash], theirs: list[bytes]) -> list[BlockHash]:
    n = 0
    while n < min(len(ours), len(theirs)) and ours[n] == theirs[n]:
        n += 1
    return ours[:n]


def _valid_run(blocks: Sequence[KVBlock], hashes: list[BlockHash],
               expected_tokens: list[tuple[int, ...]]) -> list[KVBlock]:
    run: list[KVBlock] = []
    for block, block_hash, tokens in zip(blocks, hashes, expected_tokens, strict=False):
        if block.block_hash != block_hash or block.token_ids != tokens:
            break
        run.append(block)
    return run
