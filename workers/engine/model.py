"""The Llama-family decoder (Llama, Mistral, Qwen2) as plain tensor code over the paged KV pool.

Weights are held in a dict of tensors as loaded; q/k/v (and gate/up) are fused into one matrix each at
load time so a layer does three large matmuls instead of seven, and every matrix becomes a `Linear`
(packed for oneDNN on CPU, linear.py). `forward` takes one step's flat batch
and returns hidden states; `logits` applies the final norm and lm_head only to the rows to sample.

On a float32 host pool (`KVPool` on CPU) with the compiled library (paged_kernel.py) the layer's small
ops are fused (`_forward_fused`): residual add + RMSNorm in one call, RoPE rotating q and k in place in
the qkv output and writing k and v to the pool in one call. Elsewhere (bfloat16, CUDA, a drive's pool,
`HETEROSERVE_PAGED_KERNEL=0`, no compiler) the plain torch ops run (`_forward_torch`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workers.engine import paged_kernel
from workers.engine.attention import AttentionMetadata, paged_attention
from workers.engine.kv_pool import KVPool, KVStore
from workers.engine.layers import add_rms_norm, apply_rope, rms_norm, rope_tables, rope_write_kv, swiglu_mlp
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
        fusable = device.type == "cpu" and self.embed.dtype == torch.float32
        self.kernel = paged_kernel.load() if fusable else None

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
        if (self.kernel is not None and isinstance(pool, KVPool) and pool.dtype == torch.float32
                and pool.storage.device.type == "cpu" and pool.storage.is_contiguous()):
            return self._forward_fused(self.kernel, input_ids, positions, pool, meta)
        return self._forward_torch(input_ids, positions, pool, meta)

    def _forward_fused(self, kernel: paged_kernel.PagedKernel, input_ids: torch.Tensor,
                       positions: torch.Tensor, pool: KVPool, meta: AttentionMetadata) -> torch.Tensor:
        """`_forward_torch` with the small ops fused (see the module docstring); same contract."""
        args, eps = self.args, self.args.rms_norm_eps
        heads, kv_heads, dim = args.num_heads, args.num_kv_heads, args.head_dim
        x = F.embedding(input_ids, self.embed)  # this step's own tensor: updated in place below
        n = input_ids.shape[0]
        h = add_rms_norm(kernel, x, None, self.layers[0].in_norm, eps, torch.empty_like(x))
        for index, layer in enumerate(self.layers):
            qkv = layer.qkv(h)  # a fresh [n, (heads + 2 * kv_heads) * dim] tensor: rotated in place
            keys, values = pool.layer_rows(index)
            rope_write_kv(kernel, qkv, heads, kv_heads, positions, self.cos, self.sin, keys, values,
                          meta.slots)
            q, k, v = qkv.view(n, heads + 2 * kv_heads, dim).split((heads, kv_heads, kv_heads), dim=1)
            attn = paged_attention(pool, index, q, k, v, meta, self.scale, kv_written=True)
            add_rms_norm(kernel, x, layer.o(attn), layer.post_norm, eps, h)  # h's last reader was qkv
            mlp = swiglu_mlp(h, layer.gate_up, layer.down)
            if index + 1 < len(self.layers):
                add_rms_norm(kernel, x, mlp, self.layers[index + 1].in_norm, eps, h)
            else:
                x.add_(mlp)
        return x

    def _forward_torch(self, input_ids: torch.Tensor, positions: torch.Tensor, pool: KVStore,
                       meta: AttentionMetadata) -> torch.Tensor:
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
