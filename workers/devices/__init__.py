"""Device backends of the engine: where the model runs and where its KV pool lives.

| kind | compute        | KV pool storage                                                               |
|------|----------------|-------------------------------------------------------------------------------|
| cpu  | torch on CPU   | one tensor in RAM (`allocate_kv_storage`)                                     |
| cuda | torch on CUDA  | one tensor in GPU memory (`allocate_kv_storage`)                              |
| csd  | torch on CPU   | an emulated computational storage drive: a separate drive process holding the |
|      | (+ the drive)  | KV in checksummed flash files, decode attention in storage (`csd/`)           |

The engine asks `allocate_kv_storage` for cpu and cuda, and `csd.open_drive_pool` for csd.
"""

from __future__ import annotations

import torch

from common.errors import ConfigError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_RUNNABLE = {"cpu": ("float32", "bfloat16"), "csd": ("float32", "bfloat16"),
             "cuda": ("float32", "float16", "bfloat16")}


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


def allocate_kv_storage(kind: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
                        ) -> torch.Tensor:
    """A zeroed tensor of `shape` for the KV pool, in RAM (cpu) or GPU memory (cuda). A csd pool is not
    a tensor of this process: see `workers.devices.csd.open_drive_pool`."""
    if kind == "csd":
        raise ConfigError("a csd KV pool lives on the drive: use workers.devices.csd.open_drive_pool",
                          field="device")
    return torch.zeros(shape, dtype=dtype, device=device)
