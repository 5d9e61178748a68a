"""Cluster KV blocks in and out of vLLM's paged KV cache tensors (the connector's worker side).

A cluster block is `n` tokens (the cluster's hash block size) at token `offset` inside vLLM page
`page`; as a tensor it has the native engine's `KVBlock.kv` layout `[layers, 2, kv_heads, n, head_dim]`
(2 = key, value), so native and vLLM workers of the same model and dtype read each other's blocks.

vLLM's per-layer cache layouts handled here (the tensors `register_kv_caches` receives):
- CPU attention (`CPU_ATTN`): `[pages, kv_heads, page_size, 2 * head_dim]`, each (page, head) holding
  the page's keys in its first `page_size` rows of `head_dim` and its values in the next ones;
- the CUDA backends' `[2, pages, page_size, kv_heads, head_dim]` (FlashAttention and alike): the same
  code on a GPU, not exercised on this CPU-only machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def read_block(layers: list[torch.Tensor], page: int, offset: int, n: int) -> torch.Tensor:
    """The KV of tokens `[offset, offset + n)` of `page` in every layer, `[layers, 2, heads, n, dim]`,
    as a new CPU tensor."""
    import torch

    return torch.stack([_read_layer(layer, page, offset, n) for layer in layers]).cpu()


def write_block(layers: list[torch.Tensor], page: int, offset: int, kv: torch.Tensor) -> None:
    """Write `kv` (`[layers, 2, heads, n, dim]`) into tokens `[offset, offset + n)` of `page`."""
    if kv.shape[0] != len(layers):
        raise ValueError(f"block has {kv.shape[0]} layers, the model {len(layers)}")
    for layer, block in zip(layers, kv, strict=True):
        _write_layer(layer, page, offset, block.to(layer.device, layer.dtype))


def _read_layer(layer: torch.Tensor, page: int, offset: int, n: int) -> torch.Tensor:
    import torch

    if layer.dim() == 4:  # CPU: [pages, heads, page_size, 2 * dim]
        size = layer.shape[2]
        rows = layer[page].view(layer.shape[1], 2 * size, -1)
        return torch.stack([rows[:, offset:offset + n], rows[:, size + offset:size + offset + n]])
    assert layer.dim() == 5 and layer.shape[0] == 2, f"unknown vLLM KV cache layout {tuple(layer.shape)}"
    return layer[:, page, offset:offset + n].permute(0, 2, 1, 3)  # [2, n, heads, dim] -> [2, heads, n, dim]


def _write_layer(layer: torch.Tensor, page: int, offset: int, block: torch.Tensor) -> None:
    n = block.shape[2]
    if layer.dim() == 4:
        size = layer.shape[2]
        rows = layer[page].view(layer.shape[1], 2 * size, -1)
        rows[:, offset:offset + n] = block[0]
        rows[:, size + offset:size + offset + n] = block[1]
        return
    assert layer.dim() == 5 and layer.shape[0] == 2, f"unknown vLLM KV cache layout {tuple(layer.shape)}"
    layer[:, page, offset:offset + n] = block.permute(0, 2, 1, 3)
