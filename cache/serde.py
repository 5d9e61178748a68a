"""KV block ⇄ bytes: a versioned header, the payload, and a checksum over both.

Layout of one encoded block (all integers little-endian):

    offset  size  field
    0       4     magic b"HSKV"
    4       2     format version (FORMAT_VERSION)
    6       2     flags (FLAG_ZLIB, FLAG_INT8)
    8       1     dtype code (see DTYPES)
    9       1     ndim
    10      2     model id length M
    12      4     number of tokens T
    16      8     payload length P (bytes as stored, after compression)
    24      16    block hash
    40      4*ndim  shape (uint32 each)
    ...     M     model id (utf-8)
    ...     4*T   token ids (uint32)
    ...     P     payload
    end-8   8     xxh3_64 of every byte before it

Decoding checks magic, version, lengths, the checksum, and (when given) the expected block hash and
model id; any mismatch raises `CorruptDataError`: the caller drops the block and recomputes.

The payload is the raw bytes of a C-contiguous array. bfloat16 (which numpy lacks) travels as its raw
16-bit words with dtype code "bfloat16"; `DecodedBlock.to_torch()` reinterprets them. Torch is imported
lazily, only when a torch tensor is passed in or asked for, so the cache works without torch.

Optional, off by default: zlib compression of the payload (FLAG_ZLIB) and int8 quantisation (FLAG_INT8:
one float32 scale per row of the last axis, symmetric, round-to-nearest, max error scale/2). Int8 is
lossy and meant for cold tiers; it is never used unless a tier is configured with it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

from cache.hashing import BlockHash
from common.errors import CorruptDataError

MAGIC = b"HSKV"
FORMAT_VERSION = 1
FLAG_ZLIB = 1
FLAG_INT8 = 2
_FIXED = struct.Struct("<4sHHBBHIQ16s")  # 40 bytes
_CHECKSUM = struct.Struct("<Q")
_HASH_BYTES = 16

DTYPES: dict[str, int] = {"float32": 1, "float16": 2, "bfloat16": 3, "float64": 4, "int8": 5, "uint8": 6}
_DTYPE_NAMES = {code: name for name, code in DTYPES.items()}
# numpy storage dtype per logical dtype (bfloat16 is stored as its raw 16-bit words).
_NUMPY_STORAGE = {"float32": "<f4", "float16": "<f2", "bfloat16": "<u2", "float64": "<f8",
                  "int8": "i1", "uint8": "u1"}


@dataclass(frozen=True)
class SerdeOptions:
    """Per-tier encoding options. `zlib_level` 0 = no compression; `int8` = lossy quantisation."""

    zlib_level: int = 0
    int8: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.zlib_level <= 9:
            raise ValueError(f"zlib_level must be in 0..9, got {self.zlib_level}")


@dataclass(frozen=True)
class DecodedBlock:
    """One decoded block. `array` is a read-only view into the encoded bytes when the payload was stored
    raw (no copy), in its storage dtype (bfloat16 as uint16); `dtype` is the logical dtype name."""

    block_hash: BlockHash
    model_id: str
    token_ids: tuple[int, ...]
    dtype: str
    shape: tuple[int, ...]
    array: np.ndarray

    def to_torch(self) -> Any:
        """The KV as a torch tensor (CPU) in the logical dtype. Copies once (torch needs writable memory)."""
        import torch

        tensor = torch.from_numpy(np.array(self.array, copy=True))
        if self.dtype == "bfloat16":
            return tensor.view(torch.bfloat16)
        return tensor


def _as_numpy(array: Any) -> tuple[np.ndarray, str]:
    """(C-contiguous numpy view, logical dtype name) of a numpy array or a CPU torch tensor."""
    if isinstance(array, np.ndarray):
        arr = np.ascontiguousarray(array)
        name = arr.dtype.name
        if name not in DTYPES:
            raise ValueError(f"unsupported dtype {name!r}; supported: {sorted(DTYPES)}")
        return arr, name
    import torch

    tensor = array.detach().to("cpu").contiguous()
    name = str(tensor.dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {name!r}; supported: {sorted(DTYPES)}")
    if name == "bfloat16":
        return tensor.view(torch.int16).numpy().view("<u2"), name
    return tensor.numpy(), name


def _quantize_int8(arr: np.ndarray) -> bytes:
    """float32 scales (one per row of the last axis) followed by the int8 values."""
    rows = arr.reshape(-1, arr.shape[-1]).astype(np.float32)
    scales = np.abs(rows).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    q = np.clip(np.rint(rows / scales[:, None]), -127, 127).astype(np.int8)
    return scales.astype("<f4").tobytes() + q.tobytes()


def _dequantize_int8(payload: bytes | memoryview, shape: tuple[int, ...], storage: str) -> np.ndarray:
    num_rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    scales = np.frombuffer(payload, dtype="<f4", count=num_rows)
    q = np.frombuffer(payload, dtype=np.int8, offset=4 * num_rows).reshape(num_rows, -1)
    values = (q.astype(np.float32) * scales[:, None]).reshape(shape)
    if storage == "<u2":  # bfloat16: keep the upper 16 bits of float32 (round to nearest even)
        bits = values.astype("<f4").view("<u4")
        rounded = bits + 0x7FFF + ((bits >> 16) & 1)
        return (rounded >> 16).astype("<u2")
    return values.astype(storage)


def encode_block(block_hash: BlockHash, token_ids: Any, array: Any, model_id: str,
                 options: SerdeOptions | None = None) -> bytes:
    """Encode one block's KV (numpy array or CPU torch tensor, any shape) with its header and checksum.

    Pure: does not modify `array`. One copy of the payload is made (into the returned bytes).
    """
    opts = options or SerdeOptions()
    arr, dtype = _as_numpy(array)
    if len(block_hash) != _HASH_BYTES:
        raise ValueError(f"block_hash must be {_HASH_BYTES} bytes, got {len(block_hash)}")
    flags = 0
    payload: bytes | memoryview = memoryview(arr).cast("B") if arr.size else b""  # type: ignore[arg-type]
    if opts.int8 and dtype in ("float32", "float16", "bfloat16", "float64"):
        source = arr.view("<u2") if dtype == "bfloat16" else arr
        if dtype == "bfloat16":
            source = (source.astype("<u4") << 16).view("<f4")
        payload, flags = _quantize_int8(source), flags | FLAG_INT8
    if opts.zlib_level:
        payload, flags = zlib.compress(payload, opts.zlib_level), flags | FLAG_ZLIB
    model = model_id.encode()
    tokens = np.asarray(token_ids, dtype="<u4").tobytes()
    header = b"".join((
        _FIXED.pack(MAGIC, FORMAT_VERSION, flags, DTYPES[dtype], arr.ndim, len(model),
                    len(tokens) // 4, len(payload), bytes(block_hash)),
        struct.pack(f"<{arr.ndim}I", *arr.shape), model, tokens,
    ))
    hasher = xxhash.xxh3_64(header)
    hasher.update(payload)
    return b"".join((header, payload, _CHECKSUM.pack(hasher.intdigest())))


def verify(data: bytes | memoryview, expected_hash: BlockHash | None = None,
           model_id: str | None = None) -> None:
    """Check header, lengths, checksum and (when given) hash and model id, without decoding the payload.

    Raises `CorruptDataError` on any mismatch.
    """
    _parse(memoryview(data), expected_hash, model_id)


def decode_block(data: bytes | memoryview, expected_hash: BlockHash | None = None,
                 model_id: str | None = None) -> DecodedBlock:
    """Decode and verify one block. Raises `CorruptDataError` if anything fails its check."""
    view = memoryview(data)
    meta, payload = _parse(view, expected_hash, model_id)
    block_hash, model, token_ids, dtype, shape, flags = meta
    storage = _NUMPY_STORAGE[dtype]
    try:
        if flags & FLAG_ZLIB:
            payload = memoryview(zlib.decompress(payload))
        if flags & FLAG_INT8:
            array = _dequantize_int8(payload, shape, storage)
        else:
            array = np.frombuffer(payload, dtype=storage).reshape(shape)
    except (zlib.error, ValueError) as exc:
        raise CorruptDataError(f"payload does not match its header: {exc}") from None
    return DecodedBlock(block_hash, model, token_ids, dtype, shape, array)


_Meta = tuple[BlockHash, str, tuple[int, ...], str, tuple[int, ...], int]


def _parse(view: memoryview, expected_hash: BlockHash | None,
           model_id: str | None) -> tuple[_Meta, memoryview]:
    if len(view) < _FIXED.size + _CHECKSUM.size:
        raise CorruptDataError(f"block too short ({len(view)} bytes)")
    magic, version, flags, dtype_code, ndim, model_len, num_tokens, payload_len, block_hash = (
        _FIXED.unpack_from(view, 0))
    if magic != MAGIC:
        raise CorruptDataError(f"bad magic {bytes(magic)!r}")
    if version != FORMAT_VERSION:
        raise CorruptDataError(f"unsupported format version {version} (this build reads {FORMAT_VERSION})")
    if dtype_code not in _DTYPE_NAMES:
        raise CorruptDataError(f"unknown dtype code {dtype_code}")
    offset = _FIXED.size
    header_len = offset + 4 * ndim + model_len + 4 * num_tokens
    if header_len + payload_len + _CHECKSUM.size != len(view):
        expected = header_len + payload_len + _CHECKSUM.size
        raise CorruptDataError(f"length mismatch: header says {expected}, got {len(view)}")
    body_end = header_len + payload_len
    (stored,) = _CHECKSUM.unpack_from(view, body_end)
    if xxhash.xxh3_64_intdigest(view[:body_end]) != stored:
        raise CorruptDataError("checksum mismatch")
    if expected_hash is not None and block_hash != expected_hash:
        raise CorruptDataError("block hash in header differs from the requested hash")
    shape = struct.unpack_from(f"<{ndim}I", view, offset)
    offset += 4 * ndim
    model = bytes(view[offset:offset + model_len]).decode("utf-8", errors="replace")
    if model_id is not None and model != model_id:
        raise CorruptDataError(f"block belongs to model {model!r}, expected {model_id!r}")
    offset += model_len
    tokens = tuple(np.frombuffer(view, dtype="<u4", count=num_tokens, offset=offset).tolist())
    meta = (BlockHash(bytes(block_hash)), model, tokens, _DTYPE_NAMES[dtype_code], tuple(shape), flags)
    return meta, view[header_len:body_end]


def recode(data: bytes, options: SerdeOptions) -> bytes:
    """`data` re-encoded with `options` (e.g. zlib or int8 for a cold tier). Raises CorruptDataError if
    `data` does not verify. Returns `data` itself when the options are the defaults and it is raw."""
    block = decode_block(data)
    if options == SerdeOptions() and not _FIXED.unpack_from(data, 0)[2]:
        return data
    return encode_block(block.block_hash, block.token_ids, _logical_array(block), block.model_id, options)


def _logical_array(block: DecodedBlock) -> np.ndarray:
    """The block's values in a dtype `encode_block` maps back to the block's logical dtype."""
    if block.dtype != "bfloat16":
        return block.array

    return block.to_torch()


def stored_hash(data: bytes | memoryview) -> BlockHash | None:
    """The block hash written in a block's header, or None if it is too short to have one (no checks)."""
    if len(data) < _FIXED.size:
        return None
    return BlockHash(bytes(memoryview(data)[24:40]))
