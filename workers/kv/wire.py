"""KV block <-> bytes: the one conversion between the worker's `KVBlock` and the cluster's block format.

Owns the tie between `workers.engine.types.KVBlock` and `cache/serde.py` (versioned header with hash,
model id, tokens, dtype and shape, and an xxh3-64 checksum), so the worker-to-worker PullKV stream
(`KVBlockData.payload`) and the cache tiers carry the same bytes. KV crosses into `cache` as bytes,
never as tensors, so `cache` does not need torch.

Contracts: `decode_block` raises `CorruptDataError` when a payload fails any check (magic, version,
lengths, checksum, expected hash, model id): a corrupt block is dropped, never imported.
`decode_blocks` never raises: it returns the leading run that verifies. Both are CPU-heavy for large
batches: call them in a thread (`asyncio.to_thread`) from the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cache import serde
from cache.hashing import BlockHash
from common.errors import CorruptDataError
from workers.engine.types import KVBlock

log = logging.getLogger(__name__)


def encode_block(block: KVBlock, model_id: str) -> bytes:
    """The wire bytes of `block` (raw payload, no compression: peers sit on fast links)."""
    return serde.encode_block(block.block_hash, block.token_ids, block.kv, model_id)


def decode_block(payload: bytes, expected_hash: BlockHash | None = None,
                 model_id: str | None = None) -> KVBlock:
    """The `KVBlock` in `payload` (a CPU tensor in the block's dtype)."""
    decoded = serde.decode_block(payload, expected_hash, model_id)
    return KVBlock(block_hash=decoded.block_hash, token_ids=decoded.token_ids, kv=decoded.to_torch())


def encode_blocks(blocks: Sequence[KVBlock], model_id: str) -> list[tuple[BlockHash, bytes]]:
    """(hash, encoded bytes) of each block, in order."""
    return [(b.block_hash, encode_block(b, model_id)) for b in blocks]


def decode_blocks(payloads: Sequence[bytes], hashes: Sequence[BlockHash], model_id: str) -> list[KVBlock]:
    """The leading run of `payloads` that decode and verify against `hashes` and `model_id`."""
    out: list[KVBlock] = []
    for data, block_hash in zip(payloads, hashes, strict=False):
        try:
            out.append(decode_block(data, expected_hash=block_hash, model_id=model_id))
        except CorruptDataError as exc:
            log.warning("stopping at a corrupt KV block: %s", exc)
            break
    return out


def tensor_bytes(blocks: Sequence[KVBlock]) -> int:
    """KV tensor bytes of `blocks`: the one measure of a transfer's size, whichever path carried it
    (the peer stream adds a small header per block; the shared tier reads the same encoding)."""
    return sum(int(b.kv.numel() * b.kv.element_size()) for b in blocks)
