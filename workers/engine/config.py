"""The engine's one frozen configuration, validated at construction (errors name the field)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.vocab import DEVICES, Device

DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class EngineConfig:
    """How one engine runs one model.

    `num_kv_blocks` None derives the pool size from `kv_cache_bytes` (on `csd` that is bytes of the
    drive, not of RAM). `max_num_batched_tokens` is the per-step token budget shared by decodes and
    prefill chunks. `model_id` defaults to the model directory's name and is part of every block hash.
    """

    model_dir: Path
    device: Device = "cpu"
    dtype: str = "float32"
    block_size: int = 16
    num_kv_blocks: int | None = None
    kv_cache_bytes: int = 256 * 2**20
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 512
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = True
    csd_path: Path | None = None
    model_id: str | None = None
    num_threads: int | None = None  # torch intra-op threads on cpu/csd; None = leave torch's default

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        if self.csd_path is not None:
            object.__setattr__(self, "csd_path", Path(self.csd_path))
        if self.device not in DEVICES:
            raise ValueError(f"device: must be one of {DEVICES}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: must be one of {DTYPES}, got {self.dtype!r}")
        for name in ("block_size", "kv_cache_bytes", "max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 2:
            raise ValueError(f"num_kv_blocks: must be >= 2 or None, got {self.num_kv_blocks!r}")
        if self.device == "csd" and self.csd_path is None:
            raise ValueError("csd_path: required when device == 'csd'")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads: must be >= 1 or None, got {self.num_threads!r}")

    @property
    def resolved_model_id(self) -> str:
        return self.model_id or self.model_dir.name
