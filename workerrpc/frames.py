"""Length-prefixed frames on a byte stream: the wire of the worker's plain session port.

Each frame is a 4-byte big-endian length, then that many bytes (a serialized protobuf `SessionRequest`
or `SessionEvents`, or a handshake line). Hand-written rather than a library's: the framing is these
few lines, and what the session port is for is to avoid a protocol stack's per-message work (why not
gRPC or ZeroMQ: workerrpc/stream_session.py). Both ends use `FrameReader` inside an asyncio
`Protocol.data_received`, so a frame is handed on in the same loop turn its last byte arrived.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("!I")
MAX_FRAME_BYTES = 64 * 1024 * 1024  # as gRPC's worker channel (workerrpc.client.MAX_MESSAGE_BYTES)
MAX_HELLO_BYTES = 4096  # the first frame, before the token is checked: no stranger makes a worker buffer MBs
HELLO = b"heteroserve-session/1 "  # the client's first frame: HELLO + cluster token
ACCEPTED = b"ok"  # the worker's first frame when the token matched; anything else is a refusal
SESSION_PORT_KEY = "x-heteroserve-session-port"  # gRPC Session initial metadata: the plain port


class FrameError(ValueError):
    """The peer sent a frame larger than `MAX_FRAME_BYTES`: the stream cannot be trusted further."""


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


class FrameReader:
    """Bytes in, whole frames out (`feed`), however the stream was cut into reads."""

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self.max_bytes = max_bytes  # the largest frame accepted from now on

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        end = len(buffer)
        while end - start >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer, start)
            if size > self.max_bytes:
                raise FrameError(f"frame of {size} bytes exceeds {self.max_bytes}")
            if end - start - HEADER.size < size:
                break
            body = start + HEADER.size
            frames.append(bytes(buffer[body:body + size]))
            start = body + size
        if start:
            del buffer[:start]
        return frames
