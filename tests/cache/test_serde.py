from __future__ import annotations

import numpy as np
import pytest
import torch

from cache.hashing import BlockHash
from cache.serde import SerdeOptions, decode_block, encode_block, stored_hash, verify
from common.errors import CorruptDataError

H = BlockHash(bytes(range(16)))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_numpy_round_trip_is_exact_and_zero_copy(dtype: type) -> None:
    kv = np.arange(2 * 2 * 2 * 16 * 8, dtype=dtype).reshape(2, 2, 2, 16, 8)
    data = encode_block(H, list(range(16)), kv, "m1")
    block = decode_block(data, expected_hash=H, model_id="m1")
    assert block.token_ids == tuple(range(16))
    assert block.shape == (2, 2, 2, 16, 8) and block.model_id == "m1"
    np.testing.assert_array_equal(block.array, kv)
    assert not block.array.flags.owndata  # a view into `data`
    assert stored_hash(data) == H


def test_torch_bfloat16_round_trip() -> None:
    kv = torch.randn(2, 2, 2, 16, 8, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    block = decode_block(encode_block(H, [1] * 16, kv, "m"))
    assert block.dtype == "bfloat16"
    out = block.to_torch()
    assert out.dtype == torch.bfloat16 and torch.equal(out, kv)


def test_zlib_is_lossless_and_int8_is_bounded() -> None:
    kv = np.random.default_rng(1).standard_normal((2, 2, 2, 16, 8)).astype(np.float32)
    z = decode_block(encode_block(H, [0] * 16, kv, "m", SerdeOptions(zlib_level=6)))
    np.testing.assert_array_equal(z.array, kv)
    q = decode_block(encode_block(H, [0] * 16, kv, "m", SerdeOptions(int8=True)))
    scale = np.abs(kv).max(axis=-1, keepdims=True) / 127
    assert np.all(np.abs(q.array - kv) <= scale / 2 + 1e-6)
    assert q.array.dtype == np.float32


def test_every_flipped_byte_is_detected() -> None:
    data = bytearray(encode_block(H, list(range(16)), np.ones((1, 2, 1, 16, 4), np.float32), "m"))
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x41
        with pytest.raises(CorruptDataError):
            verify(bytes(bad), expected_hash=H)
    with pytest.raises(CorruptDataError):
        verify(bytes(data[:-1]))


def test_wrong_hash_or_model_is_rejected() -> None:
    data = encode_block(H, [0] * 16, np.zeros((1, 2, 1, 16, 4), np.float32), "m")
    with pytest.raises(CorruptDataError, match="hash"):
        decode_block(data, expected_hash=BlockHash(bytes(16)))
    with pytest.raises(CorruptDataError, match="model"):
        decode_block(data, model_id="other")
