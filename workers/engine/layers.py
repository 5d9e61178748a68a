"""Llama building blocks as functions on flat token batches ([tokens, features]).

They follow Hugging Face's Llama arithmetic step for step (RMSNorm in float32, rotate-half RoPE with
cos/sin computed in float32) so greedy tokens match `transformers` exactly in float32. `add_rms_norm`
and `rope_write_kv` are the fused forms the model uses on a float32 host pool when the compiled library
loads (residual add + RMSNorm; RoPE + KV write).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from workers.engine.paged_kernel import PagedKernel


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    if x.dtype == torch.float32:
        # torch's one-call RMSNorm: bit-identical to HF's float32 formula (checked on the bench preset's
        # shapes, 1-512 rows), and ~2.5 us less dispatch per call than its five ops
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    x32 = x.to(torch.float32)
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def rope_tables(head_dim: int, theta: float, max_positions: int, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin tables [max_positions, head_dim] in float32 (HF's default rope). The sin
    table's first half is negated: HF's rotate_half negates x's second half before multiplying by sin,
    and (-a) * s == a * (-s) exactly, so folding the sign into the table saves a negation per layer."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    positions = torch.arange(max_positions, dtype=torch.float32)
    freqs = positions[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    sin = emb.sin()
    sin[:, : head_dim // 2].neg_()
    return emb.cos().to(device), sin.to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x [tokens, heads, head_dim]; cos/signed_sin [tokens, 1, head_dim] from `rope_tables`, gathered by
    position, in x's dtype. The model rotates q and k heads in one call (adjacent in the fused qkv
    output). Bit-identical to HF's `x * cos + rotate_half(x) * sin` (IEEE addition commutes, negation
    is exact) with two torch temporaries instead of five: fewer small single-threaded ops per layer."""
    half = x.shape[-1] // 2
    out = torch.cat((x[..., half:], x[..., :half]), dim=-1).mul_(signed_sin)
    return out.add_(x * cos)


def swiglu_mlp(x: torch.Tensor, gate_up: Callable[[torch.Tensor], torch.Tensor],
               down: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """down(silu(gate(x)) * up(x)) with gate and up fused into one [2 * inter, hidden] linear layer."""
    gate, up = gate_up(x).chunk(2, dim=-1)
    return down(F.silu(gate).mul_(up))  # in place on silu's fresh output: same arithmetic, one alloc less


# ---- the fused forms, through the compiled library (paged_kernel.py, source in layer_kernels.py) --------
def add_rms_norm(kernel: PagedKernel, x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor,
                 eps: float, out: torch.Tensor) -> torch.Tensor:
    """x += delta (in place; skipped when None), then out = rms_norm(x, weight, eps); returns out.
    x, delta, out [tokens, hidden] float32 CPU with unit column stride (out contiguous), weight [hidden].
    Equal to `x.add_(delta)` + `rms_norm` up to the last bit of the mean (test_layer_kernels.py)."""
    rows, hidden = x.shape
    assert x.stride(1) == 1 and out.is_contiguous() and weight.is_contiguous(), "fused RMSNorm: strided input"
    if delta is None:
        kernel.add_rms_norm(x.data_ptr(), x.stride(0), None, 0, weight.data_ptr(), out.data_ptr(), rows,
                            hidden, eps)
    else:
        assert delta.stride(1) == 1 and delta.shape == x.shape, "fused RMSNorm: delta shape or stride"
        kernel.add_rms_norm(x.data_ptr(), x.stride(0), delta.data_ptr(), delta.stride(0), weight.data_ptr(),
                            out.data_ptr(), rows, hidden, eps)
    return out


def rope_write_kv(kernel: PagedKernel, qkv: torch.Tensor, heads: int, kv_heads: int, positions: torch.Tensor,
                  cos: torch.Tensor, signed_sin: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                  slots: torch.Tensor) -> None:
    """Rotate the q and k heads of `qkv` [tokens, (heads + 2 * kv_heads) * head_dim] in place (bit-identical
    to `apply_rope`) and store each token's k and v at its slot of `keys`/`values` ([kv_heads, pool slots,
    head_dim] views of one layer, `KVPool.layer_rows`). positions/slots [tokens] int64; cos/signed_sin
    the full `rope_tables` [max_positions, head_dim]. All float32 CPU; positions must be in the tables and
    slots in the pool (not checked per call: the runner builds both from the block manager's tables)."""
    rows = qkv.shape[0]
    dim = keys.shape[-1]
    assert qkv.stride(1) == 1 and qkv.shape[1] == (heads + 2 * kv_heads) * dim, "fused RoPE: qkv layout"
    assert dim <= 512 and keys.stride(1) == dim and keys.stride() == values.stride(), \
        "fused RoPE: pool layout"
    assert positions.dtype == slots.dtype == torch.int64, "fused RoPE: positions/slots must be int64"
    kernel.rope_write_kv(qkv.data_ptr(), qkv.stride(0), rows, heads, kv_heads, dim, positions.data_ptr(),
                         cos.data_ptr(), signed_sin.data_ptr(), keys.data_ptr(), values.data_ptr(),
                         keys.stride(0), slots.data_ptr())
