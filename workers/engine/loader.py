"""Read a Hugging Face model directory: `config.json` into `ModelArgs`, `*.safetensors` into tensors.

Supported architectures: Llama, Mistral, Qwen2 (`*ForCausalLM`). Every problem is a `ConfigError` that
names the file and field: missing file, unsupported architecture, rope_scaling (not implemented), a
tensor that is missing or has the wrong shape. Mistral's sliding window caps the context (so results
stay exact without implementing the window).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from common.errors import ConfigError

SUPPORTED = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}


@dataclass(frozen=True)
class ModelArgs:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]


def _eos_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (int(value),)


def read_args(model_dir: Path) -> ModelArgs:
    path = model_dir / "config.json"
    if not path.is_file():
        raise ConfigError("missing config.json", source=str(model_dir), field="model_dir")
    cfg = json.loads(path.read_text())
    src = str(path)
    archs = cfg.get("architectures") or []
    arch = next((a for a in archs if a in SUPPORTED), None)
    if arch is None:
        raise ConfigError(f"unsupported architecture {archs!r}; supported: {', '.join(SUPPORTED)}",
                          source=src, field="architectures")
    if cfg.get("rope_scaling"):
        raise ConfigError("rope_scaling is not supported by this engine", source=src, field="rope_scaling")
    heads = int(cfg["num_attention_heads"])
    max_pos = int(cfg.get("max_position_embeddings", 4096))
    window = cfg.get("sliding_window")
    if window and (SUPPORTED[arch] == "mistral" or cfg.get("use_sliding_window")):
        max_pos = min(max_pos, int(window))
    return ModelArgs(
        architecture=SUPPORTED[arch],
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["hidden_size"]),
        intermediate_size=int(cfg["intermediate_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or cfg["hidden_size"] // heads),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=float(cfg.get("rope_theta", 10000.0)),
        max_position_embeddings=max_pos,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        qkv_bias=SUPPORTED[arch] == "qwen2" or bool(cfg.get("attention_bias", False)),
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_ids=_eos_ids(cfg.get("eos_token_id")),
    )


def expected_shapes(args: ModelArgs) -> dict[str, tuple[int, ...]]:
    h, q, kv = args.hidden_size, args.num_heads * args.head_dim, args.num_kv_heads * args.head_dim
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (args.vocab_size, h),
                                          "model.norm.weight": (h,)}
    if not args.tie_word_embeddings:
        shapes["lm_head.weight"] = (args.vocab_size, h)
    for i in range(args.num_layers):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
            p + "mlp.gate_proj.weight": (args.intermediate_size, h),
            p + "mlp.up_proj.weight": (args.intermediate_size, h),
            p + "mlp.down_proj.weight": (h, args.intermediate_size),
        }
        if args.qkv_bias:
            shapes |= {p + "self_attn.q_proj.bias": (q,), p + "self_attn.k_proj.bias": (kv,),
                       p + "self_attn.v_proj.bias": (kv,)}
    return shapes


def load_weights(model_dir: Path, args: ModelArgs, dtype: torch.dtype, device: torch.device
                 ) -> dict[str, torch.Tensor]:
    """All tensors the model needs, checked against `args`, converted to `dtype` on `device`."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ConfigError("no *.safetensors file", source=str(model_dir), field="model_dir")
    shapes = expected_shapes(args)
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if name not in shapes:
                    continue
                tensor = handle.get_tensor(name)
                if tuple(tensor.shape) != shapes[name]:
                    got = tuple(tensor.shape)
                    raise ConfigError(f"shape {got} != {shapes[name]} expected from config.json",
                                      source=str(file), field=name)
                tensors[name] = tensor.to(device=device, dtype=dtype)
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        raise ConfigError(f"missing tensor(s) {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}",
                          source=str(model_dir), field=missing[0])
    return tensors
