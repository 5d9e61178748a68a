"""Messages between the host engine and the drive process over a `multiprocessing` pipe.

One message = a small pickled header `(op, meta, specs)` (`meta` holds ints, floats, short lists;
`specs` the dtype and shape of each array) followed by every array's raw bytes in its own `send_bytes`,
so tensors cross as flat buffers, never pickled. `bfloat16` travels as its raw 2-byte words. Sizes in
bytes are returned so the drive can count every byte on the link.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch

_RAW = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.uint16,
        torch.int64: np.int64, torch.int32: np.int32}
_BY_NAME = {str(dtype): dtype for dtype in _RAW}

Message = tuple[str, dict[str, Any], list[torch.Tensor]]


def _as_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().contiguous().view(-1)
    if tensor.dtype == torch.bfloat16:
        flat = flat.view(torch.int16)
    return memoryview(flat.numpy().data).cast("B")


def send(conn: Connection, op: str, meta: dict[str, Any] | None = None,
         arrays: list[torch.Tensor] | None = None,
         before_send: Callable[[int], object] | None = None) -> int:
    """Send one message; returns its size in bytes (header + array payloads). `before_send(size)` runs
    before the first byte goes out (the drive charges its outbound link there)."""
    arrays = arrays or []
    specs = [(str(a.dtype), tuple(a.shape)) for a in arrays]
    header = pickle.dumps((op, meta or {}, specs), protocol=pickle.HIGHEST_PROTOCOL)
    payloads = [_as_bytes(array) for array in arrays]
    size = len(header) + sum(p.nbytes for p in payloads)
    if before_send is not None:
        before_send(size)
    conn.send_bytes(header)
    for payload in payloads:
        conn.send_bytes(payload)
    return size


def recv(conn: Connection) -> tuple[Message, int]:
    """Receive one message and its size in bytes. Raises EOFError when the other end is gone."""
    header = conn.recv_bytes()
    op, meta, specs = pickle.loads(header)
    size = len(header)
    arrays = []
    for dtype_name, shape in specs:
        raw = conn.recv_bytes()
        size += len(raw)
        dtype = _BY_NAME[dtype_name]
        flat = torch.from_numpy(np.frombuffer(bytearray(raw), dtype=_RAW[dtype]))
        if dtype == torch.bfloat16:
            flat = flat.view(torch.bfloat16)
        arrays.append(flat.view(shape))
    return (op, meta, arrays), size
