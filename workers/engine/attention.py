"""Paged attention over the KV pool, for one step's flat batch: decodes first, then prefill chunks.

Per layer: the new tokens' K/V are written to their slots, then
- decodes (one query each) are batched in groups of similar length (the runner sorts them by length
  and starts a new group when a sequence has more than 1.5x the blocks of the group's first one and
  the group has at least 4 members, which bounds padding): each group's KV is gathered from the pool
  into a padded [kv_heads, seqs, max_len, head_dim] tensor (one index_select per K and V), scores are
  one batched matmul with grouped-query heads folded into the query axis (no K/V repetition), padding
  is masked with -inf, softmax, one matmul with V. On a host pool (`KVPool`) V is not gathered: the
  output is one `embedding_bag` over the pool's V rows, weighted by the probabilities (`ValueBags`,
  built once per step and shared by all layers), which reads each V row in place instead of copying
  it first (measured on the `bench` preset: about a fifth less decode-attention time);
- each prefill chunk attends causally to itself and to its sequence's earlier tokens. A chunk that
  starts at position 0 uses the fresh K/V directly (SDPA with `is_causal`); a later chunk (chunked
  prefill, prefix-cache hit) gathers its context from the pool and uses an explicit offset-causal mask.
No Python loop runs per token; there is one small loop per prefill chunk.

On a float32 host pool with the compiled kernel (paged_kernel.py) the decodes skip all of the above:
the runner puts every decode row in one `InPlaceDecodes` and each layer makes two kernel calls that
read K and V in the pool through the block tables (scores, then the probability-weighted V sum) with
torch's softmax between them. Nothing is gathered and no padding is attended.

In-storage attention (csd): when the pool is a drive that attends in storage (`InStorageAttention` with
`attention_site == "drive"`), the step's new K/V and the decodes' queries go to the drive in one message
per layer and the decodes' outputs come back; prefill chunks still attend on the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from workers.engine.kv_pool import KVPool, KVStore
from workers.engine.paged_kernel import PagedKernel


@dataclass(frozen=True)
class PrefillChunk:
    """Tokens [start, end) of the flat batch: a chunk of one sequence beginning at position `ctx_start`.
    `block_ids` ([blocks]) and `mask` ([chunk, context]) are set only when ctx_start > 0."""

    start: int
    end: int
    ctx_start: int
    block_ids: torch.Tensor | None
    mask: torch.Tensor | None


@dataclass(frozen=True)
class ValueBags:
    """`F.embedding_bag` arguments that sum a decode group's V rows in the pool, one bag per
    (kv head, row, query head of that kv head) in that order, each bag the row's padded context
    (`max_blocks * block_size` slots; padding has probability 0). `index` holds
    `kv_head * pool_slots + slot`, `offsets` each bag's first entry."""

    index: torch.Tensor
    offsets: torch.Tensor


def value_bags(block_table: torch.Tensor, rows: int, heads_per_kv: int, pool: KVPool) -> ValueBags:
    """The bags of a decode group whose padded block table is `block_table` [rows * max_blocks]."""
    size = pool.block_size
    offsets_in_block = torch.arange(size, device=block_table.device)
    slots = (block_table.view(rows, 1, -1, 1) * size + offsets_in_block).view(1, rows, 1, -1)
    heads = torch.arange(pool.num_kv_heads, device=block_table.device).view(-1, 1, 1, 1)
    index = (heads * (pool.num_blocks * size) + slots).expand(-1, -1, heads_per_kv, -1)
    length = slots.shape[-1]
    offsets = torch.arange(0, index.numel(), length, device=block_table.device)
    return ValueBags(index.reshape(-1), offsets)


@dataclass(frozen=True)
class DecodeGroup:
    """Decode rows [start, end) of the batch, whose KV is gathered together.
    `block_table` [rows * max_blocks] is padded with block 0; `mask` [rows, 1, max_blocks * block_size]
    is additive (0 / -inf); `lengths[i]` = context tokens of row i, its new token included;
    `value_bags` is set when the pool is a `KVPool` (V is then read in place)."""

    start: int
    end: int
    block_table: torch.Tensor
    mask: torch.Tensor
    lengths: tuple[int, ...] = ()
    value_bags: ValueBags | None = None


@dataclass(frozen=True)
class InPlaceDecodes:
    """All decode rows [0, rows) of a step, for the compiled kernel over a float32 `KVPool`.
    `block_table` [rows, max_blocks] int64 (entries past a row's length are never read), `lengths`
    [rows] int64 context tokens of each row, its new token included; `max_len` = max(lengths);
    `scores` a [rows, heads, max_len] float32 buffer the layers reuse (one step runs one layer at a time)."""

    kernel: PagedKernel
    rows: int
    block_table: torch.Tensor
    lengths: torch.Tensor
    max_len: int
    scores: torch.Tensor


@dataclass(frozen=True)
class AttentionMetadata:
    """Everything attention needs for one step, built once by the runner and shared by all layers.
    The decode rows come either as `decodes` (groups, pure torch / drive) or as `in_place` (kernel)."""

    slots: torch.Tensor  # [tokens] pool slot of every token of the batch
    decodes: tuple[DecodeGroup, ...]  # the batch starts with the decode rows, group after group
    prefills: tuple[PrefillChunk, ...]
    in_place: InPlaceDecodes | None = None


@runtime_checkable
class InStorageAttention(Protocol):
    """A KV pool that can run decode attention where the KV lives (a computational storage drive)."""

    attention_site: str  # "drive": decodes attend in storage; "host": they gather the KV (host-offload)

    def write_and_attend(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         q: torch.Tensor, decodes: Sequence[DecodeGroup], scale: float) -> torch.Tensor:
        """Write k/v at slots, return the decode rows' outputs [rows, heads, head_dim]."""
        ...


def paged_attention(pool: KVStore, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    meta: AttentionMetadata, scale: float, kv_written: bool = False) -> torch.Tensor:
    """q [tokens, heads, head_dim], k/v [tokens, kv_heads, head_dim] -> [tokens, heads * head_dim].
    Side effect: writes k/v into the pool at `meta.slots`, unless `kv_written` (the caller's fused
    RoPE + KV write has stored them already; host pools only)."""
    if meta.decodes and isinstance(pool, InStorageAttention) and pool.attention_site == "drive":
        assert not kv_written, "KV written on the host for a pool that attends in storage"
        rows = meta.decodes[-1].end
        outputs = [pool.write_and_attend(layer, meta.slots, k, v, q[:rows], meta.decodes, scale)]
    else:
        if not kv_written:
            pool.write(layer, meta.slots, k, v)
        outputs = [_decode(pool, layer, q[group.start : group.end], group, scale) for group in meta.decodes]
        if meta.in_place is not None:
            assert isinstance(pool, KVPool), "in-place decode metadata for a pool that is not a KVPool"
            outputs.append(_decode_in_place(pool, layer, q[: meta.in_place.rows], meta.in_place, scale))
    for chunk in meta.prefills:
        outputs.append(_prefill(pool, layer, q, k, v, chunk, scale))
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)
    return out.reshape(q.shape[0], -1)


def _decode(pool: KVStore, layer: int, q: torch.Tensor, group: DecodeGroup, scale: float) -> torch.Tensor:
    n, heads, dim = q.shape
    kv_heads = pool.num_kv_heads
    if group.value_bags is not None and isinstance(pool, KVPool):
        probs = _probs(pool.gather_keys(layer, group.block_table), q, group, scale)
        bags = group.value_bags
        out = F.embedding_bag(bags.index, pool.value_rows(layer), bags.offsets, mode="sum",
                              per_sample_weights=probs.reshape(-1)).view(kv_heads, n, -1, dim)
    else:
        keys, values = pool.gather(layer, group.block_table)
        probs = _probs(keys, q, group, scale)
        out = torch.matmul(probs, values.view(kv_heads, n, -1, dim))  # [kvh, n, group, dim]
    return out.permute(1, 0, 2, 3).reshape(n, heads, dim)


def _decode_in_place(pool: KVPool, layer: int, q: torch.Tensor, d: InPlaceDecodes,
                     scale: float) -> torch.Tensor:
    """q [rows, heads, head_dim] -> [rows, heads, head_dim], K and V read in the pool by the kernel."""
    n, heads, dim = q.shape
    if q.stride(2) != 1 or q.stride(1) != dim:
        q = q.contiguous()
    keys, values = pool.layer_rows(layer)
    kv_heads, group, max_blocks = pool.num_kv_heads, heads // pool.num_kv_heads, d.block_table.shape[1]
    d.kernel.scores(q.data_ptr(), q.stride(0), keys.data_ptr(), keys.stride(0), d.block_table.data_ptr(),
                    max_blocks, d.lengths.data_ptr(), n, kv_heads, group, dim, pool.block_size, scale,
                    d.scores.data_ptr(), d.max_len)
    probs = torch.softmax(d.scores, dim=-1)
    out = torch.empty(n, heads, dim, dtype=q.dtype)
    d.kernel.values(probs.data_ptr(), values.data_ptr(), values.stride(0), d.block_table.data_ptr(),
                    max_blocks, d.lengths.data_ptr(), n, kv_heads, group, dim, pool.block_size, d.max_len,
                    out.data_ptr())
    return out


def _probs(keys: torch.Tensor, q: torch.Tensor, group: DecodeGroup, scale: float) -> torch.Tensor:
    """keys [kv_heads, n * len, dim], q [n, heads, dim] -> probabilities [kv_heads, n, group, len]."""
    n, heads, dim = q.shape
    kv_heads = keys.shape[0]
    qg = q.view(n, kv_heads, heads // kv_heads, dim).permute(1, 0, 2, 3)  # [kvh, n, group, dim]
    scores = torch.matmul(qg, keys.view(kv_heads, n, -1, dim).transpose(-1, -2))
    scores.mul_(scale).add_(group.mask)  # in place: same arithmetic, two fewer temporaries
    return torch.softmax(scores.float(), dim=-1).to(q.dtype)


def _prefill(pool: KVStore, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             chunk: PrefillChunk, scale: float) -> torch.Tensor:
    qc = q[chunk.start : chunk.end].transpose(0, 1).unsqueeze(0)  # [1, heads, chunk, dim]
    if chunk.block_ids is None:
        kc = k[chunk.start : chunk.end].transpose(0, 1).unsqueeze(0)
        vc = v[chunk.start : chunk.end].transpose(0, 1).unsqueeze(0)
        out = F.scaled_dot_product_attention(qc, kc, vc, is_causal=True, scale=scale, enable_gqa=True)
    else:
        assert chunk.mask is not None, "prefill chunk with context but no mask"
        context = chunk.mask.shape[1]
        keys, values = pool.gather(layer, chunk.block_ids)
        kc = keys[:, :context].unsqueeze(0)
        vc = values[:, :context].unsqueeze(0)
        out = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=chunk.mask, scale=scale, enable_gqa=True)
    return out[0].transpose(0, 1)  # [chunk, heads, dim]
