"""The drive process: the emulated drive's controller, a separate OS process.

It owns the flash (`FlashStore`), two link limiters (one per direction, PCIe being full duplex) and a
flash read and a flash write limiter, and runs with `drive_threads` torch threads (its compute budget).
It serves one host over a pipe, one message at a time, in order:

| op          | in (arrays)                   | out (arrays)                                       |
|-------------|-------------------------------|----------------------------------------------------|
| write       | slots, k, v                   | -  (prefill KV, or each decode's new KV in host mode) |
| attend      | slots, k, v, q (+ tables)     | attention outputs [rows, heads, head_dim]          |
| gather      | block ids (distinct)          | pages [n, 2, kv_heads, block_size, head_dim]       |
| read_block  | -                             | one block [layers, 2, kv_heads, block_size, dim]   |
| write_block | one block                     | -                                                  |
| discard     | -  (block ids in meta)        | -  (the blocks erased: zeros, valid checksums)     |
| stats       | -                             | - (`DriveStats` fields in the reply's meta)        |

Every message is charged to the link (size / rate + latency) and every flash access to the flash
limiters; the drive sleeps the modelled time not already spent working. The same messages are also
priced by `DriveCost` (load-independent modelled time, `DriveStats.modelled_seconds`). A failed op
replies `error` with a `kind` (`checksum`, `internal`) and the drive keeps serving. EOF on the pipe
(the host is gone) or `close` ends the process.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from workers.devices.csd import wire
from workers.devices.csd.config import DriveConfig
from workers.devices.csd.cost import DriveCost
from workers.devices.csd.flash import ChecksumError, DriveFullError, FlashStore, PoolSpec
from workers.devices.csd.kernel import decode_attention
from workers.devices.csd.ratelimit import RateLimiter
from workers.devices.csd.stats import DriveStats

_STREAMED = ("gather", "read_block")


@dataclass(frozen=True)
class _StepTables:
    """The decode rows of the current step: context lengths, block ids per row, padded groups."""

    lengths: list[int]
    row_blocks: list[list[int]]
    groups: list[tuple[int, int]]


class Drive:
    """The controller's state and its ops; `serve` is the loop."""

    def __init__(self, flash: FlashStore, config: DriveConfig) -> None:
        self.flash = flash
        self.spec = flash.spec
        self.link_in = RateLimiter(config.scaled_link_bytes_per_s, config.scaled_link_latency_s)
        self.link_out = RateLimiter(config.scaled_link_bytes_per_s, config.scaled_link_latency_s)
        self.flash_read = RateLimiter(config.scaled_flash_read_bytes_per_s)
        self.flash_write = RateLimiter(config.scaled_flash_write_bytes_per_s)
        self.cost = DriveCost(config)
        self.messages = 0
        self.attention_calls = 0
        self.compute_seconds = 0.0
        self._streamed_read_bytes: int | None = None  # set by an op whose reply streams a flash read
        self.step: _StepTables | None = None

    def serve(self, conn: Connection) -> None:
        while True:
            try:
                (op, meta, arrays), size = wire.recv(conn)
            except (EOFError, OSError):
                return
            self.messages += 1
            self.link_in.charge(size)
            if op == "close":
                return
            priced = op != "stats"  # management traffic is counted on the link but not priced
            if priced:
                self.cost.receive(size)
            self._streamed_read_bytes = None
            # A read streams to the host as it comes off flash (the link overlaps the flash read); any
            # other reply exists only once the op is done.
            reply_started = time.perf_counter() if op in _STREAMED else None
            try:
                reply_meta, reply = self.handle(op, meta, arrays)
            except ChecksumError as exc:
                reply_meta, reply = {"kind": "checksum", "message": str(exc), "pages": exc.pages}, []
                op = "error"
            except Exception as exc:  # reported to the host, which raises; the drive keeps serving
                reply_meta = {"kind": "internal", "message": f"{exc!r}\n{traceback.format_exc()}"}
                reply, op = [], "error"
            self.messages += 1
            wire.send(conn, op if op == "error" else "ok", reply_meta, reply,
                      before_send=functools.partial(self._charge_reply, started=reply_started, priced=priced))

    def _charge_reply(self, size: int, started: float | None, priced: bool) -> None:
        if priced:
            self.cost.reply(size, self._streamed_read_bytes)
        self.link_out.charge(size, started=started)

    def handle(self, op: str, meta: dict[str, Any], arrays: list[torch.Tensor]
               ) -> tuple[dict[str, Any], list[torch.Tensor]]:
        match op:
            case "write":
                self._write(meta["layer"], *arrays)
                return {}, []
            case "attend":
                return {}, [self._attend(meta, *arrays)]
            case "gather":
                return {}, [self._read(meta["layer"], arrays[0])]
            case "read_block":
                started = time.perf_counter()
                block = self.flash.read_block(meta["block_id"])
                self._streamed_read_bytes = block.numel() * block.element_size()
                self.flash_read.charge(self._streamed_read_bytes, started)
                return {}, [block]
            case "write_block":
                started = time.perf_counter()
                self.flash.write_block(meta["block_id"], arrays[0])
                num_bytes = arrays[0].numel() * arrays[0].element_size()
                self.cost.write(num_bytes)
                self.flash_write.charge(num_bytes, started)
                return {}, []
            case "discard":
                self.flash.discard(meta["block_ids"])
                return {}, []
            case "stats":
                return self.stats().to_dict(), []
            case _:
                raise ValueError(f"unknown drive op {op!r}")

    def _write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        started = time.perf_counter()
        self.flash.write_tokens(layer, slots, k, v)
        num_bytes = (k.numel() + v.numel()) * k.element_size()
        self.cost.write(num_bytes)
        self.flash_write.charge(num_bytes, started)

    def _read(self, layer: int, block_ids: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        pages = self.flash.read_pages(layer, block_ids)
        self._streamed_read_bytes = len(block_ids) * self.spec.page_bytes
        self.flash_read.charge(self._streamed_read_bytes, started)
        return pages

    def _attend(self, meta: dict[str, Any], slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                q: torch.Tensor, *tables: torch.Tensor) -> torch.Tensor:
        layer = meta["layer"]
        self._write(layer, slots, k, v)
        self.attention_calls += 1
        started, cpu_started = time.perf_counter(), time.process_time()
        if tables:  # a step's first layer: new block tables (kept for the step's other layers)
            flat = tables[0].tolist()
            row_blocks, offset = [], 0
            for count in meta["row_block_counts"]:
                row_blocks.append(flat[offset : offset + count])
                offset += count
            self.step = _StepTables(meta["lengths"], row_blocks, meta["groups"])
        if self.step is None:
            raise ValueError("attend without block tables: the host sent none this step")
        read_bytes = 0

        def read(block_ids: torch.Tensor) -> torch.Tensor:
            nonlocal read_bytes
            read_bytes += len(block_ids) * self.spec.page_bytes
            return self.flash.read_pages(layer, block_ids)

        out = decode_attention(read, q, self.step.lengths, self.step.row_blocks, self.step.groups,
                               self.spec.block_size, meta["scale"])
        self.compute_seconds += time.perf_counter() - started
        self.cost.attend(read_bytes, time.process_time() - cpu_started)
        # The attention unit consumes pages as they stream off the flash channels (InstInfer's in-storage
        # engine is pipelined): the op takes max(modelled flash time, real read + compute).
        self.flash_read.charge(read_bytes, started)
        return out

    def stats(self) -> DriveStats:
        return DriveStats(
            link_bytes_to_drive=self.link_in.num_bytes, link_bytes_to_host=self.link_out.num_bytes,
            link_messages=self.messages, flash_bytes_read=self.flash.bytes_read,
            flash_bytes_written=self.flash.bytes_written, flash_pages_read=self.flash.pages_read,
            checksum_failures=self.flash.checksum_failures, attention_calls=self.attention_calls,
            link_wait_seconds=self.link_in.waited_seconds + self.link_out.waited_seconds,
            flash_wait_seconds=self.flash_read.waited_seconds + self.flash_write.waited_seconds,
            compute_seconds=self.compute_seconds, modelled_seconds=self.cost.seconds)


def drive_main(conn: Connection, directory: str, spec: PoolSpec, config: DriveConfig) -> None:
    """Body of the drive process: open the flash, report `ready` (or `error` kind `full`), serve."""
    torch.set_num_threads(config.drive_threads)
    try:
        flash = FlashStore(Path(directory), spec, config.capacity_bytes)
    except DriveFullError as exc:
        wire.send(conn, "error", {"kind": "full", "message": exc.message})
        return
    wire.send(conn, "ready", {})
    with torch.inference_mode():
        Drive(flash, config).serve(conn)


def main(argv: list[str]) -> None:
    """`python -m workers.devices.csd.drive FD DIRECTORY SPEC_JSON CONFIG_JSON` (started by `DrivePool`):
    FD is this process's end of the host's pipe."""
    fd, directory, spec_json, config_json = argv
    conn = Connection(int(fd))
    drive_main(conn, directory, PoolSpec(**json.loads(spec_json)), DriveConfig(**json.loads(config_json)))


if __name__ == "__main__":
    main(sys.argv[1:])
