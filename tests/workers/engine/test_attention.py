"""Decode attention reading V in place (`ValueBags`), or K and V in place (the compiled kernel), over a
`KVPool` equals the gathered path."""

from __future__ import annotations

import pytest
import torch

from workers.engine import paged_kernel
from workers.engine.attention import (
    AttentionMetadata,
    DecodeGroup,
    InPlaceDecodes,
    paged_attention,
    value_bags,
)
from workers.engine.kv_pool import KVPool

KV_HEADS, HEADS, DIM, BLOCK, BLOCKS = 2, 8, 16, 4, 32


def _group(pool: KVPool, lengths: list[int], tables: list[list[int]], bags: bool) -> DecodeGroup:
    max_blocks = max(len(t) for t in tables)
    padded = torch.tensor([t + [0] * (max_blocks - len(t)) for t in tables]).view(-1)
    valid = torch.arange(max_blocks * BLOCK)[None, :] < torch.tensor(lengths)[:, None]
    mask = torch.zeros(valid.shape).masked_fill_(~valid, float("-inf"))[:, None, :]
    value = value_bags(padded, len(lengths), HEADS // KV_HEADS, pool) if bags else None
    return DecodeGroup(0, len(lengths), padded, mask, tuple(lengths), value)


def test_in_place_values_equal_gathered_values() -> None:
    gen = torch.Generator().manual_seed(0)
    pool = KVPool(torch.randn(2, 2, KV_HEADS, BLOCKS, BLOCK, DIM, generator=gen), BLOCK)
    lengths = [3, 9, 16, 5]  # the new token's slot is the last of each row's context
    tables = [[7], [2, 30, 11], [4, 5, 6, 9], [20, 1]]
    last = [n - 1 for n in lengths]
    slots = torch.tensor([t[p // BLOCK] * BLOCK + p % BLOCK for t, p in zip(tables, last, strict=True)])
    q = torch.randn(4, HEADS, DIM, generator=gen)
    k, v = torch.randn(2, 4, KV_HEADS, DIM, generator=gen)
    outputs = []
    for bags in (False, True):
        meta = AttentionMetadata(slots, (_group(pool, lengths, tables, bags),), ())
        outputs.append(paged_attention(pool, 1, q, k, v, meta, DIM**-0.5))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    # against plain attention over each row's own tokens
    keys, values = pool.storage[1, 0], pool.storage[1, 1]  # [kv_heads, blocks, block, dim]
    for row, (table, n) in enumerate(zip(tables, lengths, strict=True)):
        kr = keys[:, table].reshape(KV_HEADS, -1, DIM)[:, :n].repeat_interleave(HEADS // KV_HEADS, 0)
        vr = values[:, table].reshape(KV_HEADS, -1, DIM)[:, :n].repeat_interleave(HEADS // KV_HEADS, 0)
        probs = torch.softmax(q[row, :, None, :] @ kr.transpose(-1, -2) * DIM**-0.5, dim=-1)
        torch.testing.assert_close(outputs[1][row].view(HEADS, DIM), (probs @ vr)[:, 0], rtol=1e-5, atol=1e-6)


def _reference(pool: KVPool, layer: int, q: torch.Tensor, lengths: list[int], tables: list[list[int]]
               ) -> torch.Tensor:
    """Plain attention of each row over its own tokens, K and V taken block by block from the pool."""
    kv_heads, dim = pool.num_kv_heads, pool.head_dim
    group = q.shape[1] // kv_heads
    rows = []
    for row, (table, n) in enumerate(zip(tables, lengths, strict=True)):
        kr = pool.storage[layer, 0][:, table].reshape(kv_heads, -1, dim)[:, :n].repeat_interleave(group, 0)
        vr = pool.storage[layer, 1][:, table].reshape(kv_heads, -1, dim)[:, :n].repeat_interleave(group, 0)
        probs = torch.softmax(q[row, :, None, :] @ kr.transpose(-1, -2) * dim**-0.5, dim=-1)
        rows.append((probs @ vr)[:, 0])
    return torch.stack(rows).reshape(len(lengths), -1)


# (kv heads, heads, head dim): the kernel's generic loops, its 4-heads-at-once path (group 4 or 8 with
# a head dim of 64 or 128, AVX-512 when the CPU has it) and a group of 1
@pytest.mark.parametrize("kv_heads,heads,dim", [(2, 8, 16), (2, 8, 64), (1, 8, 128), (4, 4, 64), (2, 6, 32)])
def test_kernel_reads_paged_kv_in_place(kv_heads: int, heads: int, dim: int) -> None:
    kernel = paged_kernel.load()
    assert kernel is not None, "the paged-attention kernel did not build (see the warning logged)"
    gen = torch.Generator().manual_seed(dim + heads)
    pool = KVPool(torch.randn(2, 2, kv_heads, BLOCKS, BLOCK, dim, generator=gen), BLOCK)
    lengths = [3, 9, 16, 5, 1, 17]  # the new token's slot is the last of each row's context
    tables = [[7], [2, 30, 11], [4, 5, 6, 9], [20, 1], [13], [8, 9, 10, 12, 3]]
    last = [n - 1 for n in lengths]
    slots = torch.tensor([t[p // BLOCK] * BLOCK + p % BLOCK for t, p in zip(tables, last, strict=True)])
    # q strided as the model's (a slice of the fused qkv output)
    q = torch.randn(len(lengths), heads + 2 * kv_heads, dim, generator=gen)[:, :heads]
    k, v = torch.randn(2, len(lengths), kv_heads, dim, generator=gen)
    max_blocks = max(len(t) for t in tables)
    table = torch.tensor([t + [0] * (max_blocks - len(t)) for t in tables])
    scores = torch.empty(len(lengths), heads, max(lengths))
    in_place = InPlaceDecodes(kernel, len(lengths), table, torch.tensor(lengths), max(lengths), scores)
    got = paged_attention(pool, 1, q, k, v, AttentionMetadata(slots, (), (), in_place), dim**-0.5)
    torch.testing.assert_close(got, _reference(pool, 1, q, lengths, tables), rtol=1e-5, atol=1e-5)


def test_kernel_splits_a_large_call_over_threads() -> None:
    """Enough rows and context that the kernel runs on two threads (strided rows): same results."""
    kernel = paged_kernel.load()
    assert kernel is not None, "the paged-attention kernel did not build (see the warning logged)"
    gen = torch.Generator().manual_seed(7)
    blocks = 1024
    pool = KVPool(torch.randn(1, 2, 2, blocks, BLOCK, 64, generator=gen), BLOCK)
    lengths = sorted(int(n) for n in torch.randint(1, 200, (24,), generator=gen))  # the runner sorts
    order = torch.randperm(blocks, generator=gen).tolist()
    tables, used = [], 0
    for n in lengths:
        count = -(-n // BLOCK)
        tables.append(order[used : used + count])
        used += count
    last = [n - 1 for n in lengths]
    slots = torch.tensor([t[p // BLOCK] * BLOCK + p % BLOCK for t, p in zip(tables, last, strict=True)])
    q = torch.randn(len(lengths), 8, 64, generator=gen)
    k, v = torch.randn(2, len(lengths), 2, 64, generator=gen)
    max_blocks = max(len(t) for t in tables)
    table = torch.tensor([t + [0] * (max_blocks - len(t)) for t in tables])
    in_place = InPlaceDecodes(kernel, len(lengths), table, torch.tensor(lengths), max(lengths),
                              torch.empty(len(lengths), 8, max(lengths)))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = paged_attention(pool, 0, q, k, v, AttentionMetadata(slots, (), (), in_place), 64**-0.5)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(got, _reference(pool, 0, q, lengths, tables), rtol=1e-5, atol=1e-5)
