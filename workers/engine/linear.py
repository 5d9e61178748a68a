"""Linear layers of the model: one weight matrix, packed once for the CPU's GEMM kernel when that pays.

On CPU the weight is reordered once at load into oneDNN's blocked layout
(`torch.ops.mkldnn._reorder_linear_weight`) and every call runs oneDNN's GEMM on it
(`torch.ops.mkldnn._linear_pointwise`), as vLLM's CPU build does. Measured on the `bench` preset at one
thread (docs/benchmarks.md, issue 18): 15-25% less GEMM time than `F.linear` (MKL, which re-packs the
weight on every call) for 32 and 512 rows, and the lm_head at one row in a third of the time. The
packed weight gives the same results as `F.linear` up to float32 summation order (~1e-6 relative);
the engine's HF-equality tests check greedy tokens stay identical. Elsewhere (CUDA, or a torch built
without oneDNN) it is plain `F.linear`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_PACKABLE = (torch.float32, torch.bfloat16)


def packing_available(device: torch.device, dtype: torch.dtype) -> bool:
    """True when weights of `dtype` on `device` can be packed for oneDNN."""
    return device.type == "cpu" and dtype in _PACKABLE and torch.backends.mkldnn.is_available()


class Linear:
    """y = x @ weight.T (+ bias). `weight` [out, in], `bias` [out] or None; `x` [..., in]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *, pack: bool) -> None:
        self.out_features, self.in_features = weight.shape
        self.bias = bias
        self.packed = pack
        # The hint-free packing (no batch size) measured as fast as a per-size one at 1, 32 and 512 rows.
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight) if pack else weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)
