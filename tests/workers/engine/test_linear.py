"""`Linear`: oneDNN-packed weights give F.linear's results; the CPU engine packs, CUDA would not."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from workers.engine.linear import Linear, packing_available


@pytest.mark.parametrize("rows", [1, 7, 64])
@pytest.mark.parametrize("with_bias", [False, True])
def test_packed_linear_matches_f_linear(rows: int, with_bias: bool) -> None:
    if not packing_available(torch.device("cpu"), torch.float32):
        pytest.skip("torch built without oneDNN")
    gen = torch.Generator().manual_seed(rows)
    weight = torch.randn(96, 80, generator=gen)
    bias = torch.randn(96, generator=gen) if with_bias else None
    x = torch.randn(rows, 80, generator=gen)
    packed = Linear(weight, bias, pack=True)
    assert packed.packed and (packed.out_features, packed.in_features) == (96, 80)
    torch.testing.assert_close(packed(x), F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)
    assert torch.equal(Linear(weight, bias, pack=False)(x), F.linear(x, weight, bias))


def test_packing_only_where_onednn_runs() -> None:
    assert not packing_available(torch.device("cuda"), torch.float32)
    assert not packing_available(torch.device("cpu"), torch.float16)


def test_cpu_engine_packs_every_matrix(make_engine: Any) -> None:
    model = make_engine().model
    expected = torch.backends.mkldnn.is_available()
    names = ("qkv", "o", "gate_up", "down")
    linears = [model.lm_head] + [getattr(layer, n) for layer in model.layers for n in names]
    assert [lin.packed for lin in linears] == [expected] * len(linears)
