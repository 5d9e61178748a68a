"""Model specs: architecture numbers → parameter count, weight bytes, KV bytes per token, FLOPs.

Formulas (decoder-only transformer, per layer): attention projections h·(h + 2·kv·d) + h·h, MLP
`ffn_matrices`·h·i (3 for SwiGLU, 2 for a plain MLP), plus embeddings and an untied LM head
(2·vocab·h). KV bytes per token = 2 (K and V) · layers · kv_heads · head_dim · bytes(kv dtype).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from common.config import build, load_mapping
from common.errors import ConfigError
from placement.catalog import CATALOG_DIR, DTYPE_BYTES

SHIPPED_MODELS = CATALOG_DIR / "models.yaml"


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one served model. `kv_dtype` defaults to `dtype`."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    dtype: str = "fp16"
    kv_dtype: str | None = None
    ffn_matrices: int = 3
    max_context_tokens: int = 32768

    def __post_init__(self) -> None:
        for name in (
            "num_layers",
            "hidden_size",
            "num_heads",
            "num_kv_heads",
            "intermediate_size",
            "vocab_size",
            "max_context_tokens",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"num_heads: must divide hidden_size {self.hidden_size}, got {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads: must divide num_heads {self.num_heads}, got {self.num_kv_heads}")
        for name in ("dtype", "kv_dtype"):
            value = getattr(self, name)
            if value is not None and value not in DTYPE_BYTES:
                raise ValueError(f"{name}: must be one of {', '.join(DTYPE_BYTES)}, got {value!r}")
        if self.ffn_matrices not in (2, 3):
            raise ValueError(f"ffn_matrices: must be 2 or 3, got {self.ffn_matrices}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def layer_params(self) -> int:
        h, kv = self.hidden_size, self.num_kv_heads * self.head_dim
        return h * h * 2 + 2 * h * kv + self.ffn_matrices * h * self.intermediate_size

    @property
    def num_params(self) -> int:
        return self.num_layers * self.layer_params + 2 * self.vocab_size * self.hidden_size

    @property
    def weight_bytes(self) -> float:
        return self.num_params * DTYPE_BYTES[self.dtype]

    @property
    def kv_bytes_per_token(self) -> float:
        kv_dtype = self.kv_dtype or self.dtype
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * DTYPE_BYTES[kv_dtype]

    @property
    def matmul_flops_per_token(self) -> float:
        """Dense-matmul FLOPs per token (2 per multiply-add), excluding attention over context."""
        return 2.0 * (self.num_layers * self.layer_params + self.vocab_size * self.hidden_size)

    def attention_flops(self, query_tokens: float, context_tokens: float) -> float:
        """FLOPs of QK^T and AV for `query_tokens` queries over `context_tokens` keys, all layers."""
        return 4.0 * self.num_layers * self.hidden_size * query_tokens * context_tokens


@dataclass(frozen=True)
class ModelCatalogFile:
    models: tuple[ModelSpec, ...]
    version: int = 1


def load_models(path: str | Path | None = None) -> dict[str, ModelSpec]:
    """Load a model catalog file (default: the shipped one) as name → ModelSpec."""
    source = str(path or SHIPPED_MODELS)
    parsed = build(ModelCatalogFile, load_mapping(source), source=source)
    return index_models(parsed.models, source=source)


def index_models(models: Iterable[ModelSpec], *, source: str | None = None) -> dict[str, ModelSpec]:
    out: dict[str, ModelSpec] = {}
    for i, m in enumerate(models):
        if m.name in out:
            raise ConfigError(f"duplicate model name {m.name!r}", field=f"models[{i}].name", source=source)
        out[m.name] = m
    return out


def lookup_model(models: Mapping[str, ModelSpec], name: str) -> ModelSpec:
    try:
        return models[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r} (known: {', '.join(sorted(models))})", field="model"
        ) from None


_HF_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def model_spec_from_hf(model_dir: str | Path, name: str) -> ModelSpec:
    """A ModelSpec from a Hugging Face-format directory's `config.json` (Llama-family keys);
    ConfigError naming the file when it is missing or lacks a key."""
    import json

    path = Path(model_dir) / "config.json"
    try:
        c = json.loads(path.read_text())
        return ModelSpec(
            name=name,
            num_layers=int(c["num_hidden_layers"]),
            hidden_size=int(c["hidden_size"]),
            num_heads=int(c["num_attention_heads"]),
            num_kv_heads=int(c.get("num_key_value_heads", c["num_attention_heads"])),
            intermediate_size=int(c["intermediate_size"]),
            vocab_size=int(c["vocab_size"]),
            dtype=_HF_DTYPES.get(str(c.get("torch_dtype", "float16")), "fp16"),
            max_context_tokens=int(c.get("max_position_embeddings", 32768)),
        )
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the model's config ({exc})", source=str(path)) from None
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"not a Llama-family config ({exc})", source=str(path)) from None
