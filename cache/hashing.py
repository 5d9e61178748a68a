"""Chained block hashes: the one function that names a KV block anywhere in the cluster.

A prompt is cut into fixed-size blocks of token ids (default 16). Block i's hash is

    H_i = xxh3_128( H_{i-1} || len(tokens) || tokens as little-endian uint32 || extra keys )

with H_{-1} = xxh3_128("heteroserve-kv-v1" || extra keys). Extra keys (model id, adapter, tenant salt,
KV layout) are part of every hash, so two models, two adapters or two tenants can never share a block.

The digest must be identical across processes and machines, so no Python `hash()` (salted per process)
and no pickling: only explicit byte encodings and a fixed-seed xxh3. Workers, the gateway and the cache
tiers all call this module; nothing else computes block hashes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NewType

import numpy as np
import xxhash

BlockHash = NewType("BlockHash", bytes)
"""16-byte digest naming one block of tokens together with its whole prefix."""

DEFAULT_BLOCK_SIZE = 16
_DOMAIN = b"heteroserve-kv-v1"


@dataclass(frozen=True)
class HashKeys:
    """What, besides the tokens, makes two blocks different.

    `model_id` names the weights, `adapter` a LoRA adapter or "" for none, `tenant_salt` keeps tenants
    apart ("" = shared), `layout` the KV layout (dtype, block size, heads) so incompatible tensors never
    share a name.
    """

    model_id: str
    adapter: str = ""
    tenant_salt: str = ""
    layout: str = ""

    def encode(self) -> bytes:
        parts = (self.model_id, self.adapter, self.tenant_salt, self.layout)
        return b"".join(struct.pack("<I", len(p.encode())) + p.encode() for p in parts)


def kv_layout(dtype: str, block_size: int, num_layers: int, num_kv_heads: int, head_dim: int) -> str:
    """The `layout` hash key of a KV pool: blocks of different dtype, size or shape never share a name.
    Workers (engine) and the gateway (which hashes prompts to route them) both build it here."""
    return f"{dtype}:b{block_size}:l{num_layers}:h{num_kv_heads}:d{head_dim}"


def root_hash(keys: HashKeys) -> BlockHash:
    """The parent hash of a sequence's first block."""
    return BlockHash(xxhash.xxh3_128_digest(_DOMAIN + keys.encode()))


def hash_block_tokens(parent: BlockHash, token_ids: Sequence[int], keys: HashKeys) -> BlockHash:
    """Hash one block of token ids chained to its parent's hash. Pure and deterministic."""
    tokens = np.asarray(token_ids, dtype="<u4").tobytes()
    return _chain(parent, len(token_ids), tokens, keys.encode())


def _chain(parent: BlockHash, num_tokens: int, tokens: bytes, extra: bytes) -> BlockHash:
    return BlockHash(xxhash.xxh3_128_digest(parent + struct.pack("<I", num_tokens) + tokens + extra))


def hash_prompt_blocks(
    token_ids: Sequence[int], keys: HashKeys, block_size: int = DEFAULT_BLOCK_SIZE
) -> list[BlockHash]:
    """Hashes of every *full* block of `token_ids`, in order. A trailing partial block has none."""
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    hashes: list[BlockHash] = []
    num_full = len(token_ids) // block_size * block_size
    if not num_full:
        return hashes
    # The same bytes as `hash_block_tokens` per block, with the keys and the prompt encoded once.
    extra = keys.encode()
    tokens = np.asarray(token_ids[:num_full], dtype="<u4").tobytes()
    step = 4 * block_size
    parent = root_hash(keys)
    for start in range(0, len(tokens), step):
        parent = _chain(parent, block_size, tokens[start : start + step], extra)
        hashes.append(parent)
    return hashes
