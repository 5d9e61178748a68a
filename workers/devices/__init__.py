"""Device backends of the engine: where the model runs and where its KV pool lives.

| kind | compute        | KV pool storage                                                         |
|------|----------------|-------------------------------------------------------------------------|
| cpu  | torch on CPU   | one tensor in RAM                                                       |
| cuda | torch on CUDA  | one tensor in GPU memory                                                |
| csd  | torch on CPU   | a memory-mapped file on the drive (`csd_path`), shared mapping; decode  |
|      |                | attention reads K/V straight from the mapping ("next to the data")      |

`csd` emulates InstInfer-style in-storage attention: the pool's capacity is bytes of the drive (sparse
file, pages materialise when written), and attention over long contexts streams from the mapped pool
instead of RAM. A drive-resident kernel would implement the same three calls.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import TextIO

import torch

from common.errors import ConfigError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_RUNNABLE = {"cpu": ("float32", "bfloat16"), "csd": ("float32", "bfloat16"),
             "cuda": ("float32", "float16", "bfloat16")}
CSD_POOL_FILE = "kv_pool.bin"


def torch_device(kind: str) -> torch.device:
    match kind:
        case "cpu" | "csd":
            return torch.device("cpu")
        case "cuda":
            if not torch.cuda.is_available():
                raise ConfigError("device 'cuda' requested but no CUDA device is available", field="device")
            return torch.device("cuda")
        case _:
            raise ConfigError(f"unknown device kind {kind!r}; use cpu, cuda or csd", field="device")


def torch_dtype(kind: str, dtype: str) -> torch.dtype:
    """The torch dtype for `dtype`, or ConfigError when device `kind` cannot run it."""
    if dtype not in _RUNNABLE.get(kind, ()):
        raise ConfigError(f"device {kind!r} cannot run {dtype!r}; use one of {_RUNNABLE.get(kind)}",
                          field="dtype")
    return _DTYPES[dtype]


MAX_CSD_SLOTS = 64


def _claim_slot(csd_path: Path) -> tuple[int, TextIO]:
    for slot in range(MAX_CSD_SLOTS):
        lock = open(csd_path / f"kv_pool-{slot}.lock", "w")  # noqa: SIM115 (lives as long as the pool)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return slot, lock
        except BlockingIOError:
            lock.close()
    raise ConfigError(f"all {MAX_CSD_SLOTS} KV pool slots in {csd_path} are in use", field="csd_path")


def allocate_kv_storage(kind: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                        csd_path: Path | None = None) -> torch.Tensor:
    """A zeroed tensor of `shape` for the KV pool: in RAM / GPU memory, or (csd) mapped from a file
    `csd_path/kv_pool.bin` created (sparse) for the purpose. Several engines may share one drive
    directory (e.g. replicas on one node): each claims the first slot `kv_pool[-N].bin` whose lock file it
    can lock exclusively, and holds the lock as long as the tensor lives. The file is recreated on every
    start, so a slot left by a dead engine is reused."""
    if kind != "csd":
        return torch.zeros(shape, dtype=dtype, device=device)
    if csd_path is None:
        raise ConfigError("required when device == 'csd'", field="csd_path")
    csd_path.mkdir(parents=True, exist_ok=True)
    slot, lock = _claim_slot(csd_path)
    file = csd_path / (CSD_POOL_FILE if slot == 0 else CSD_POOL_FILE.replace(".bin", f"-{slot}.bin"))
    numel = 1
    for dim in shape:
        numel *= dim
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    with open(file, "wb") as handle:
        handle.truncate(nbytes)  # sparse: reads as zeros, uses drive space only where written
    flat = torch.from_file(str(file), shared=True, size=numel, dtype=dtype)
    flat._csd_lock = lock  # type: ignore[attr-defined]  # released when the pool is garbage-collected
    return flat.view(shape)
