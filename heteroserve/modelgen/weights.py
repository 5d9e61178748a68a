"""Deterministic random weights for a preset, as numpy arrays named like Hugging Face Llama.

Linear weights are normal with std 1/sqrt(fan_in), so activations keep unit scale through the layers
and attention scores vary; lm_head uses std 2/sqrt(hidden) so logits have a spread of about 2 and greedy
decoding is not stuck on one token. Embeddings are standard normal. Norm weights are 1 + N(0, 0.1) so
that a loader that ignores them produces different tokens (tests catch it). All draws come from one
`numpy.random.default_rng(seed)` in a fixed order, so the same seed gives the same bytes.
"""

from __future__ import annotations

import numpy as np

from heteroserve.modelgen.presets import Preset


def _linear(rng: np.random.Generator, out_features: int, in_features: int, scale: float = 1.0) -> np.ndarray:
    std = scale / np.sqrt(in_features)
    return (rng.standard_normal((out_features, in_features), dtype=np.float32) * np.float32(std))


def _norm(rng: np.random.Generator, size: int) -> np.ndarray:
    return (1.0 + 0.1 * rng.standard_normal(size, dtype=np.float32)).astype(np.float32)


def make_weights(preset: Preset, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, kv = preset.hidden_size, preset.num_kv_heads * preset.head_dim
    inter = preset.intermediate_size
    tensors: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": rng.standard_normal((preset.vocab_size, h), dtype=np.float32),
    }
    for i in range(preset.num_layers):
        p = f"model.layers.{i}."
        tensors[p + "input_layernorm.weight"] = _norm(rng, h)
        tensors[p + "self_attn.q_proj.weight"] = _linear(rng, h, h)
        tensors[p + "self_attn.k_proj.weight"] = _linear(rng, kv, h)
        tensors[p + "self_attn.v_proj.weight"] = _linear(rng, kv, h)
        tensors[p + "self_attn.o_proj.weight"] = _linear(rng, h, h)
        tensors[p + "post_attention_layernorm.weight"] = _norm(rng, h)
        tensors[p + "mlp.gate_proj.weight"] = _linear(rng, inter, h)
        tensors[p + "mlp.up_proj.weight"] = _linear(rng, inter, h)
        tensors[p + "mlp.down_proj.weight"] = _linear(rng, h, inter)
    tensors["model.norm.weight"] = _norm(rng, h)
    tensors["lm_head.weight"] = _linear(rng, preset.vocab_size, h, scale=2.0)
    return tensors
