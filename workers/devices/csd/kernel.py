"""In-storage decode attention: the drive's kernel over the pages it reads from flash.

The same arithmetic as the host's `workers.engine.attention._decode`, so greedy tokens are the same:
per group of decode rows, the keys and values of each row's blocks are laid out as a padded
[kv_heads, rows, max_blocks * block_size, head_dim] tensor, grouped-query heads are folded into the
query axis (no K/V repetition), padding is masked with -inf, softmax in float32, one matmul with V.
Each distinct page is read from flash once per call, however many rows use it. Padding points at the
first page read (any finite values do: the mask zeroes their weight, as block 0 does on the host), and
when the rows' pages come off flash already in table order the re-indexing copy is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

ReadPages = Callable[[torch.Tensor], torch.Tensor]  # block ids [n] -> pages [n, 2, kvh, bs, dim]


def decode_attention(read_pages: ReadPages, q: torch.Tensor, lengths: Sequence[int],
                     row_blocks: Sequence[Sequence[int]], groups: Sequence[tuple[int, int]],
                     block_size: int, scale: float) -> torch.Tensor:
    """q [rows, heads, head_dim]; `lengths[i]` tokens of context for row i (its new token included) in
    blocks `row_blocks[i]`; `groups` = (start, end) row ranges padded together -> [rows, heads, head_dim]."""
    unique = sorted({b for blocks in row_blocks for b in blocks})
    index = {block: i for i, block in enumerate(unique)}
    pages = read_pages(torch.tensor(unique, dtype=torch.long))
    outputs = [_group(pages, index, q[start:end], lengths[start:end], row_blocks[start:end], block_size,
                      scale) for start, end in groups]
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _group(pages: torch.Tensor, index: dict[int, int], q: torch.Tensor, lengths: Sequence[int],
           row_blocks: Sequence[Sequence[int]], block_size: int, scale: float) -> torch.Tensor:
    n, heads, dim = q.shape
    kv_heads = pages.shape[2]
    max_blocks = -(-max(lengths) // block_size)
    rows = [[index[b] for b in blocks[:max_blocks]] for blocks in row_blocks]
    table = torch.tensor([row + [0] * (max_blocks - len(row)) for row in rows], dtype=torch.long).view(-1)
    if len(table) == pages.shape[0] and torch.equal(table, torch.arange(len(table))):
        picked = pages  # already in table order: no copy
    else:
        picked = pages.index_select(0, table)  # [n * max_blocks, 2, kvh, bs, dim]
    picked = picked.view(n, max_blocks, 2, kv_heads, block_size, dim).permute(2, 3, 0, 1, 4, 5)
    keys = picked[0].reshape(kv_heads, n, max_blocks * block_size, dim)
    values = picked[1].reshape(kv_heads, n, max_blocks * block_size, dim)
    columns = torch.arange(max_blocks * block_size)
    valid = columns[None, :] < torch.tensor(list(lengths))[:, None]
    mask = torch.zeros(valid.shape, dtype=q.dtype).masked_fill_(~valid, float("-inf"))[:, None, :]
    qg = q.view(n, kv_heads, heads // kv_heads, dim).permute(1, 0, 2, 3)  # [kvh, n, group, dim]
    scores = torch.matmul(qg, keys.transpose(-1, -2)) * scale
    scores = scores + mask
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    out = torch.matmul(probs, values)
    return out.permute(1, 0, 2, 3).reshape(n, heads, dim)
