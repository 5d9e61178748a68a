"""The paged KV pool: fixed-size blocks of K and V for every layer, in one tensor.

Layout [num_layers, 2, num_kv_heads, num_blocks, block_size, head_dim] (2 = key, value). Heads come
before blocks so a gather of a sequence's blocks for one layer yields [heads, tokens, head_dim] slices
that are contiguous per head, which batched attention consumes without another copy. A token's slot
is `block_id * block_size + offset`. The storage tensor comes from `workers.devices` (RAM or GPU
memory). `KVStore` is the interface the engine uses; a csd engine's pool lives on the drive instead
(`workers.devices.csd.DrivePool`) and implements the same calls as messages to the drive process.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Protocol

import torch

_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14  # linux/mman.h


def zeros_in_huge_pages(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A zeroed CPU tensor whose memory is advised for transparent huge pages before its first touch.

    Why: decode attention reads each sequence's blocks, scattered over a pool of up to gigabytes; with
    4 KiB pages nearly every block read is a TLB miss. Measured on the `bench` preset's shapes (1 GiB
    pool, 32 rows x 500 tokens, blocks in random order, one thread): 22.8 -> 17.9 ms for eight layers'
    decode attention. Machines whose THP setting is `madvise` (Debian's default) need the advice;
    elsewhere (or when it fails) this is plain `torch.zeros`.
    """
    storage = torch.empty(shape, dtype=dtype)
    if sys.platform == "linux":
        start = storage.data_ptr()
        end = start + storage.numel() * storage.element_size()
        first, last = -(-start // _HUGE_PAGE) * _HUGE_PAGE, end // _HUGE_PAGE * _HUGE_PAGE
        if last > first:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            libc.madvise(first, last - first, _MADV_HUGEPAGE)  # advice only: a failure changes nothing
    return storage.zero_()


class KVStore(Protocol):
    """What the engine needs of a KV pool (shape attributes as in `KVPool`)."""

    block_size: int
    num_blocks: int
    num_layers: int
    num_kv_heads: int
    head_dim: int

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def block_shape(self) -> tuple[int, int, int, int, int]: ...

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None: ...

    def gather(self, layer: int, block_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def read_block(self, block_id: int) -> torch.Tensor: ...

    def write_block(self, block_id: int, kv: torch.Tensor) -> None: ...


class KVPool:
    """Owns the storage; knows nothing of which sequence holds which block (that is the block manager)."""

    def __init__(self, storage: torch.Tensor, block_size: int) -> None:
        assert storage.dim() == 6 and storage.shape[1] == 2 and storage.shape[4] == block_size, \
            f"KV storage shape {tuple(storage.shape)} does not match the pool layout"
        self.storage = storage
        self.block_size = block_size
        self.num_layers, _, self.num_kv_heads, self.num_blocks, _, self.head_dim = storage.shape
        self._flat = storage.view(self.num_layers, 2, self.num_kv_heads, self.num_blocks * block_size,
                                  self.head_dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.storage.dtype

    @property
    def block_shape(self) -> tuple[int, int, int, int, int]:
        """Shape of one exported block: [layers, 2, kv_heads, block_size, head_dim]."""
        return (self.num_layers, 2, self.num_kv_heads, self.block_size, self.head_dim)

    @staticmethod
    def bytes_per_block(num_layers: int, num_kv_heads: int, block_size: int, head_dim: int,
                        element_size: int) -> int:
        return num_layers * 2 * num_kv_heads * block_size * head_dim * element_size

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store K and V ([tokens, kv_heads, head_dim]) of `layer` at `slots` ([tokens])."""
        self._flat[layer, 0].index_copy_(1, slots, k.transpose(0, 1))
        self._flat[layer, 1].index_copy_(1, slots, v.transpose(0, 1))

    def gather(self, layer: int, block_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of `layer` for `block_ids` ([n]) as [kv_heads, n * block_size, head_dim] copies."""
        k = self.storage[layer, 0].index_select(1, block_ids)
        v = self.storage[layer, 1].index_select(1, block_ids)
        shape = (self.num_kv_heads, -1, self.head_dim)
        return k.view(shape), v.view(shape)

    def gather_keys(self, layer: int, block_ids: torch.Tensor) -> torch.Tensor:
        """K of `layer` for `block_ids` ([n]) as a [kv_heads, n * block_size, head_dim] copy."""
        return self.storage[layer, 0].index_select(1, block_ids).view(self.num_kv_heads, -1, self.head_dim)

    def layer_rows(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of `layer` as [kv_heads, num_blocks * block_size, head_dim] views (no copy); a
        token's row is its slot."""
        return self._flat[layer, 0], self._flat[layer, 1]

    def value_rows(self, layer: int) -> torch.Tensor:
        """V of `layer` as a [kv_heads * num_blocks * block_size, head_dim] view: row
        `kv_head * num_blocks * block_size + slot` (no copy)."""
        return self._flat[layer, 1].view(-1, self.head_dim)

    def read_block(self, block_id: int) -> torch.Tensor:
        """A CPU copy of one block, shaped `block_shape`."""
        return self.storage[:, :, :, block_id].to("cpu", copy=True)

    def write_block(self, block_id: int, kv: torch.Tensor) -> None:
        """Overwrite one block with `kv` shaped `block_shape` (any device; converted to the pool's)."""
        self.storage[:, :, :, block_id] = kv.to(device=self.storage.device, dtype=self.storage.dtype)
