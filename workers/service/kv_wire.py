"""KV block <-> bytes for the PullKV stream (`KVBlockData.payload`).

The one place that ties the worker's `KVBlock` to the cluster-wide block format of `cache/serde.py`
(versioned header with hash, model id, tokens, dtype and shape, and an xxh3-64 checksum), so the
worker-to-worker stream and the cache tiers carry the same bytes. `decode_block` raises
`CorruptDataError` when a payload fails any check (magic, version, lengths, checksum, expected hash,
model id): a corrupt block is dropped, never imported.
"""

from __future__ import annotations

from cache import serde
from cache.hashing import BlockHash
from workers.engine.types import KVBlock


def encode_block(block: KVBlock, model_id: str) -> bytes:
    """The wire bytes of `block` (raw payload, no compression: peers sit on fast links)."""
    return serde.encode_block(block.block_hash, block.token_ids, block.kv, model_id)


def decode_block(payload: bytes, expected_hash: BlockHash | None = None,
                 model_id: str | None = None) -> KVBlock:
    """The `KVBlock` in `payload` (a CPU tensor in the block's dtype)."""
    decoded = serde.decode_block(payload, expected_hash, model_id)
    return KVBlock(block_hash=decoded.block_hash, token_ids=decoded.token_ids, kv=decoded.to_torch())
