"""`FlashStore`: the drive's KV cache in a file on disk (the "flash"), one checksummed page per
(layer, block).

Layout of `flash.bin`: [num_layers, num_blocks, 2, num_kv_heads, block_size, head_dim] (2 = key, value)
in the pool's dtype. A block is the engine pool's block (same block_size, same slot numbering
`block_id * block_size + offset`, same per-block tensor [layers, 2, kv_heads, block_size, head_dim]); on
flash each layer's share of a block is one contiguous page so that it can be read, and checked, alone.

Every page has a CRC-32 kept by the controller (a real drive keeps ECC beside the page). A read verifies
the page it returns; a write verifies the page it modifies first (read-modify-write), so a corrupted page
is never used nor silently re-checksummed: both raise `ChecksumError` naming the pages. The file is
reserved in full when the drive starts (`posix_fallocate`), so a full disk is found at start
(`DriveFullError`), never in the middle of a decode step.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.errors import ConfigError, CorruptDataError

FLASH_FILE = "flash.bin"


class DriveFullError(ConfigError):
    """The KV pool does not fit on the drive (its capacity, or the disk under the emulation)."""


class ChecksumError(CorruptDataError):
    """A flash page read back does not match its checksum; `pages` lists (layer, block) pairs."""

    def __init__(self, message: str, pages: list[tuple[int, int]]) -> None:
        self.pages = pages
        super().__init__(message)

    @property
    def block_ids(self) -> list[int]:
        """The distinct blocks with a corrupt page, ascending."""
        return sorted({block for _, block in self.pages})


@dataclass(frozen=True)
class PoolSpec:
    """Shape of the KV pool a drive holds (the engine's pool shape) and its dtype name."""

    num_layers: int
    num_kv_heads: int
    num_blocks: int
    block_size: int
    head_dim: int
    dtype: str  # "float32" | "float16" | "bfloat16"

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[self.dtype]

    @property
    def page_shape(self) -> tuple[int, int, int, int]:
        return (2, self.num_kv_heads, self.block_size, self.head_dim)

    @property
    def page_bytes(self) -> int:
        return 2 * self.num_kv_heads * self.block_size * self.head_dim * self.torch_dtype.itemsize

    @property
    def total_bytes(self) -> int:
        return self.num_layers * self.num_blocks * self.page_bytes


def _crc_rows(pages: torch.Tensor) -> np.ndarray:
    """CRC-32 of each page of a contiguous [n, ...] tensor."""
    raw = pages.contiguous().view(pages.shape[0], -1).view(torch.uint8).numpy()
    return np.fromiter((zlib.crc32(row) for row in raw), dtype=np.uint32, count=raw.shape[0])


class FlashStore:
    """Owns `flash.bin` and the page checksums. Single-threaded (the drive's controller loop)."""

    def __init__(self, directory: Path, spec: PoolSpec, capacity_bytes: int) -> None:
        if spec.total_bytes > capacity_bytes:
            raise DriveFullError(f"drive full: the KV pool needs {spec.total_bytes} bytes, the drive holds "
                                 f"{capacity_bytes}", field="kv_cache_bytes")
        self.spec = spec
        self.path = directory / FLASH_FILE
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.posix_fallocate(fd, 0, spec.total_bytes)
        except OSError as exc:
            raise DriveFullError(f"drive full: cannot reserve {spec.total_bytes} bytes in {self.path}: "
                                 f"{exc.strerror}", field="kv_cache_bytes") from exc
        finally:
            os.close(fd)
        numel = spec.total_bytes // spec.torch_dtype.itemsize
        flat = torch.from_file(str(self.path), shared=True, size=numel, dtype=spec.torch_dtype)
        self.pages = flat.view(spec.num_layers, spec.num_blocks, *spec.page_shape)
        zero_crc = zlib.crc32(bytes(spec.page_bytes))
        self.crc = np.full((spec.num_layers, spec.num_blocks), zero_crc, dtype=np.uint32)
        self.bytes_read = 0
        self.bytes_written = 0
        self.pages_read = 0
        self.checksum_failures = 0

    def read_pages(self, layer: int, block_ids: torch.Tensor) -> torch.Tensor:
        """Copies of `layer`'s pages for `block_ids` ([n], distinct) as [n, 2, kv_heads, block_size,
        head_dim], verified. Raises ChecksumError (nothing returned) when any page is corrupt."""
        pages = self.pages[layer].index_select(0, block_ids)
        self._verify(layer, block_ids, pages)
        self.pages_read += len(block_ids)
        self.bytes_read += len(block_ids) * self.spec.page_bytes
        return pages

    def write_tokens(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store K and V ([tokens, kv_heads, head_dim]) of `layer` at `slots` ([tokens]); read-modify-write
        of each touched page, verified before and re-checksummed after."""
        size = self.spec.block_size
        blocks, offsets = slots // size, slots % size
        touched = torch.unique(blocks)
        self._verify(layer, touched, self.pages[layer].index_select(0, touched))
        page = self.pages[layer]
        page[blocks, 0, :, offsets] = k.to(self.spec.torch_dtype)
        page[blocks, 1, :, offsets] = v.to(self.spec.torch_dtype)
        self.crc[layer, touched.numpy()] = _crc_rows(page.index_select(0, touched))
        self.bytes_written += (k.numel() + v.numel()) * self.spec.torch_dtype.itemsize

    def read_block(self, block_id: int) -> torch.Tensor:
        """One whole block, all layers, verified: [layers, 2, kv_heads, block_size, head_dim]."""
        ids = torch.tensor([block_id])
        return torch.stack([self.read_pages(layer, ids)[0] for layer in range(self.spec.num_layers)])

    def write_block(self, block_id: int, kv: torch.Tensor) -> None:
        """Overwrite one whole block (all layers) with `kv` [layers, 2, kv_heads, block_size, head_dim]."""
        self.pages[:, block_id] = kv.to(self.spec.torch_dtype)
        self.crc[:, block_id] = _crc_rows(self.pages[:, block_id])
        self.bytes_written += kv.numel() * self.spec.torch_dtype.itemsize

    def discard(self, block_ids: list[int]) -> None:
        """Erase whole blocks (all layers: zeros under a valid checksum), as a TRIM does. The host calls it
        for corrupt blocks once nothing refers to their KV any more, so that they can be reused; until
        then a corrupt page keeps failing every read and write."""
        ids = torch.tensor(block_ids, dtype=torch.long)
        self.pages[:, ids] = 0
        self.crc[:, ids.numpy()] = zlib.crc32(bytes(self.spec.page_bytes))

    def _verify(self, layer: int, block_ids: torch.Tensor, pages: torch.Tensor) -> None:
        bad = np.nonzero(_crc_rows(pages) != self.crc[layer, block_ids.numpy()])[0]
        if len(bad):
            self.checksum_failures += len(bad)
            where = [(layer, int(block_ids[i])) for i in bad]
            raise ChecksumError(f"flash page checksum mismatch at (layer, block) {where}: the KV there is "
                                "corrupt and was not used", pages=where)
