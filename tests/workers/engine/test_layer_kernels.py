"""The fused per-layer ops of the compiled library (layer_kernels.py) against the torch ops they replace:
RoPE + KV write bit-identical, residual add + RMSNorm within float32 rounding of the mean, on one thread
and split over two; and a whole model step fused vs unfused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from heteroserve.modelgen import create_model
from workers.engine import paged_kernel
from workers.engine.attention import AttentionMetadata, PrefillChunk
from workers.engine.kv_pool import KVPool
from workers.engine.layers import add_rms_norm, apply_rope, rms_norm, rope_tables, rope_write_kv
from workers.engine.loader import load_weights, read_args
from workers.engine.model import LlamaModel


@pytest.fixture
def kernel() -> paged_kernel.PagedKernel:
    loaded = paged_kernel.load()
    assert loaded is not None, "the compiled library did not build (see the warning logged)"
    return loaded


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """Torch threads for the call: with 2, calls over >= 2^16 elements split their rows."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        torch.set_num_threads(before)


# (rows, heads, kv heads, head dim): a decode batch, an odd head dim's generic loop, a prefill chunk that
# splits over threads (512 x 12 x 64 elements), head dim 128
@pytest.mark.parametrize("rows,heads,kv_heads,dim", [(32, 8, 2, 64), (5, 4, 4, 16), (512, 8, 2, 64),
                                                     (7, 8, 1, 128)])
def test_rope_write_kv_is_bit_identical(kernel: paged_kernel.PagedKernel, threads: int, rows: int, heads: int,
                                        kv_heads: int, dim: int) -> None:
    gen = torch.Generator().manual_seed(rows + dim)
    cos, sin = rope_tables(dim, 10000.0, 2048, torch.device("cpu"))
    positions = torch.randint(0, 2048, (rows,), generator=gen)
    blocks, block = 64, 16
    slots = torch.randperm(blocks * block, generator=gen)[:rows]
    qkv = torch.randn(rows, (heads + 2 * kv_heads) * dim, generator=gen)
    heads_view = qkv.view(rows, -1, dim)
    want_qk = apply_rope(heads_view[:, : heads + kv_heads], cos[positions][:, None], sin[positions][:, None])
    want_v = heads_view[:, heads + kv_heads :].clone()
    want_pool = KVPool(torch.randn(1, 2, kv_heads, blocks, block, dim, generator=gen), block)
    got_pool = KVPool(want_pool.storage.clone(), block)
    want_pool.write(0, slots, want_qk[:, heads:], want_v)
    rope_write_kv(kernel, qkv, heads, kv_heads, positions, cos, sin, *got_pool.layer_rows(0), slots)
    assert torch.equal(heads_view[:, : heads + kv_heads], want_qk)
    assert torch.equal(heads_view[:, heads + kv_heads :], want_v)
    assert torch.equal(got_pool.storage, want_pool.storage)


@pytest.mark.parametrize("rows,hidden", [(32, 512), (3, 100), (512, 512)])
@pytest.mark.parametrize("with_delta", [True, False])
def test_add_rms_norm_matches_torch(kernel: paged_kernel.PagedKernel, threads: int, rows: int, hidden: int,
                                    with_delta: bool) -> None:
    gen = torch.Generator().manual_seed(rows * hidden)
    x = torch.randn(rows, hidden, generator=gen) * 3
    weight = torch.randn(hidden, generator=gen)
    delta = torch.randn(rows, 2 * hidden, generator=gen)[:, :hidden] if with_delta else None  # strided rows
    want_x = x + delta if delta is not None else x.clone()
    want = rms_norm(want_x, weight, 1e-6)
    got = add_rms_norm(kernel, x, delta, weight, 1e-6, torch.empty(rows, hidden))
    assert torch.equal(x, want_x)  # the residual add is the same single rounding
    # only the sum of squares is ordered differently: a few float32 ulps (measured <= 3.5e-7 relative)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_model_step_fused_equals_torch_step(kernel: paged_kernel.PagedKernel, tmp_path: Path) -> None:
    """A prefill chunk and a later chunk through the whole tiny model: the fused path's hidden states
    and KV equal the torch path's within float32 rounding (its greedy tokens are the HF tests' job)."""
    model_dir = create_model(tmp_path / "tiny", preset="tiny", seed=3)
    args = read_args(model_dir)
    model = LlamaModel(args, load_weights(model_dir, args, torch.float32, torch.device("cpu")),
                       torch.device("cpu"))
    assert model.kernel is not None
    block, blocks = 16, 8
    shape = (args.num_layers, 2, args.num_kv_heads, blocks, block, args.head_dim)
    pools = [KVPool(torch.zeros(shape), block) for _ in range(2)]
    ids = torch.randint(4, args.vocab_size, (40,), generator=torch.Generator().manual_seed(0))
    meta = AttentionMetadata(torch.arange(40) + 16, (), (PrefillChunk(0, 40, 0, None, None),))
    with torch.inference_mode():
        fused = model._forward_fused(kernel, ids, torch.arange(40), pools[0], meta)
        plain = model._forward_torch(ids, torch.arange(40), pools[1], meta)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pools[0].storage, pools[1].storage, rtol=1e-5, atol=1e-5)
