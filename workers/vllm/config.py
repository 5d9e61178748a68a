"""`VLLMEngineConfig`: the one frozen configuration of a hosted vLLM engine.

Built at the process edge (`heteroserve worker --engine vllm` flags) and never mutated. Two block
sizes meet here: `block_size` is vLLM's own KV page (its CPU attention needs a multiple of 32), and
`hash_block_size` is the cluster's block-hash granularity (the gateways' `orchestrator.block_size`,
default 16). One vLLM block is announced as `block_size // hash_block_size` cluster blocks, so the
first must be a multiple of the second; anything else is refused here, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cache.config import CacheConfig
from cache.hashing import DEFAULT_BLOCK_SIZE, kv_layout
from common.vocab import DEVICES, Device

# vLLM runs on CPUs and GPUs; a CSD's in-storage attention is the native engine's (workers/devices/csd).
VLLM_DEVICES: tuple[Device, ...] = tuple(d for d in DEVICES if d != "csd")

# vLLM's CPU attention backend (CPU_ATTN) accepts only multiples of 32 tokens per page.
CPU_BLOCK_SIZE = 32
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class VLLMEngineConfig:
    """One vLLM engine. Every invalid value raises `ValueError` naming the field.

    `memory_fraction` is vLLM's `gpu_memory_utilization`: on CPU the share of host memory the engine
    takes for weights and KV (keep it small when several engines share a machine); `kv_cache_bytes`, when
set, sizes the KV cache exactly instead (vLLM's `kv_cache_memory_bytes`). `max_model_len`
    None takes the model's `max_position_embeddings`. `kv_events_endpoint` is the ZMQ address vLLM
    publishes its KV-cache events on (None = no events); `kv_events_replay_endpoint` the ROUTER
    address that replays missed batches. `cache` configures the KV tiers below vLLM (memory, Redis,
    disk), reached through the heteroserve KV connector (workers/vllm/connector.py); None = none.
    """

    model_dir: Path
    device: str = "cpu"
    dtype: str = "float32"
    block_size: int = CPU_BLOCK_SIZE
    hash_block_size: int = DEFAULT_BLOCK_SIZE
    memory_fraction: float = 0.1
    kv_cache_bytes: int | None = None
    max_model_len: int | None = None
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    model_id: str | None = None
    kv_events_endpoint: str | None = None
    kv_events_replay_endpoint: str | None = None
    cache: CacheConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        if self.device not in VLLM_DEVICES:
            raise ValueError(f"device must be cpu or cuda for the vllm engine, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("block_size", "hash_block_size", "max_num_seqs", "max_num_batched_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.block_size % self.hash_block_size:
            raise ValueError(
                f"block_size must be a multiple of hash_block_size={self.hash_block_size} (the cluster's "
                f"block-hash size), got {self.block_size}: cluster hashes could not name vLLM's blocks")
        if self.device == "cpu" and self.block_size % CPU_BLOCK_SIZE:
            raise ValueError(f"block_size must be a multiple of {CPU_BLOCK_SIZE} on cpu (vLLM's CPU "
                             f"attention), got {self.block_size}")
        if not 0.0 < self.memory_fraction <= 1.0:
            raise ValueError(f"memory_fraction must be in (0, 1], got {self.memory_fraction}")
        if self.kv_cache_bytes is not None and self.kv_cache_bytes <= 0:
            raise ValueError(f"kv_cache_bytes must be positive, got {self.kv_cache_bytes}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if self.kv_events_replay_endpoint is not None and self.kv_events_endpoint is None:
            raise ValueError("kv_events_replay_endpoint needs kv_events_endpoint")

    @property
    def resolved_model_id(self) -> str:
        """The model id in every block hash: as the native engine and the gateway name it."""
        return self.model_id or self.model_dir.resolve().name

    def kv_layout(self) -> str:
        """The `layout` hash key of this engine's blocks: dtype, the cluster block size and the model's
        KV shape, read from config.json as the native engine reads it (so both name blocks alike)."""
        from workers.engine.loader import read_args

        args = read_args(self.model_dir)
        return kv_layout(self.dtype, self.hash_block_size, args.num_layers, args.num_kv_heads, args.head_dim)

    @property
    def hashes_per_block(self) -> int:
        """Cluster block hashes per vLLM block."""
        return self.block_size // self.hash_block_size
