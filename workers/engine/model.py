"""The Llama-family decoder (Llama, Mistral, Qwen2) as plain tensor code over the paged KV pool.

Weights are held in a dict of tensors as loaded; q/k/v (and gate/up) are fused into one matrix each at
load time so a layer does three large matmuls instead of seven, and every matrix becomes a `Linear`
(packed for oneDNN on CPU, linear.py). `forward` takes one step's flat batch
and returns hidden states; `logits` applies the final norm and lm_head only to the rows to sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workers.engine.attention import AttentionMetadata, paged_attention
from workers.engine.kv_pool import KVStore
from workers.engine.layers import apply_rope, rms_norm, rope_tables, swiglu_mlp
from workers.engine.linear import Linear, packing_available
from workers.engine.loader import ModelArgs


@dataclass(frozen=True)
class LayerWeights:
    in_norm: torch.Tensor
    qkv: Linear  # [q + 2 * kv, hidden], with Qwen2's bias
    o: Linear
    post_norm: torch.Tensor
    gate_up: Linear  # [2 * intermediate, hidden]
    down: Linear


class LlamaModel:
    def __init__(self, args: ModelArgs, weights: dict[str, torch.Tensor], device: torch.device) -> None:
        self.args = args
        self.embed = weights["model.embed_tokens.weight"]
        self.norm = weights["model.norm.weight"]
        self.pack = packing_available(device, self.embed.dtype)
        self.lm_head = Linear(weights.get("lm_head.weight", self.embed), pack=self.pack)
        self.layers = [self._fuse(weights, i) for i in range(args.num_layers)]
        self.cos, self.sin = rope_tables(args.head_dim, args.rope_theta, args.max_position_embeddings, device)
        self.scale = 1.0 / math.sqrt(args.head_dim)

    def _fuse(self, w: dict[str, torch.Tensor], i: int) -> LayerWeights:
        p = f"model.layers.{i}."
        qkv = [w[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]
        bias = None
        if self.args.qkv_bias:
            bias = torch.cat([w[p + f"self_attn.{n}_proj.bias"] for n in "qkv"])
        gate_up = torch.cat([w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"]])
        return LayerWeights(
            in_norm=w[p + "input_layernorm.weight"],
            qkv=Linear(torch.cat(qkv).contiguous(), bias, pack=self.pack),
            o=Linear(w[p + "self_attn.o_proj.weight"], pack=self.pack),
            post_norm=w[p + "post_attention_layernorm.weight"],
            gate_up=Linear(gate_up.contiguous(), pack=self.pack),
            down=Linear(w[p + "mlp.down_proj.weight"], pack=self.pack),
        )

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, pool: KVStore,
                meta: AttentionMetadata) -> torch.Tensor:
        """input_ids, positions [tokens] -> hidden states [tokens, hidden]. Writes the step's KV."""
        args = self.args
        x = F.embedding(input_ids, self.embed)
        cos = self.cos[positions][:, None, :].to(x.dtype)
        sin = self.sin[positions][:, None, :].to(x.dtype)
        n = input_ids.shape[0]
        qk_heads = args.num_heads + args.num_kv_heads
        for index, layer in enumerate(self.layers):
            h = rms_norm(x, layer.in_norm, args.rms_norm_eps)
            qkv = layer.qkv(h).view(n, qk_heads + args.num_kv_heads, args.head_dim)
            qk = apply_rope(qkv[:, :qk_heads], cos, sin)
            q, k = qk[:, : args.num_heads], qk[:, args.num_heads :]
            v = qkv[:, qk_heads:]
            attn = paged_attention(pool, index, q, k, v, meta, self.scale)
            x.add_(layer.o(attn))  # residual adds in place: x is this step's own tensor (F.embedding's)
            h = rms_norm(x, layer.post_norm, args.rms_norm_eps)
            x.add_(swiglu_mlp(h, layer.gate_up, layer.down))
        return x

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [rows, hidden] -> float32 logits [rows, vocab]."""
        return self.lm_head(rms_norm(hidden, self.norm, self.args.rms_norm_eps)).float()
