"""`DrivePool`: the engine's KV pool when it lives on an emulated drive (the host side of the link).

It has the KV pool's interface (`write`, `gather`, `read_block`, `write_block`, the shape attributes), so
the engine's block manager, scheduler, prefill, KV export and import work unchanged, and every call is
a message to the drive process. In addition it offers `write_and_attend`, the in-storage decode
attention of one layer and step (one round trip: the step's new K/V and the decodes' queries go in, the
attention outputs come out), which the engine's attention uses while `attention_site == "drive"`.

Failure contract: any failure to reach the drive (its process died, the pipe broke, no reply within
`reply_timeout_s`) raises `UnavailableError` and marks the pool dead (every later call raises it at once);
a corrupt flash page raises `ChecksumError` (a `CorruptDataError`) and the drive keeps serving; the
engine then recomputes what used the page and erases its blocks (`discard`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing as mp
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TextIO

import torch

from common.errors import ConfigError, InvalidRequestError, UnavailableError
from workers.devices.csd import wire
from workers.devices.csd.config import AttentionSite, DriveConfig
from workers.devices.csd.flash import ChecksumError, DriveFullError, PoolSpec
from workers.devices.csd.stats import DriveStats
from workers.engine.attention import DecodeGroup

MAX_DRIVE_SLOTS = 64
_POLL_SECONDS = 0.5  # how often a waiting host checks that the drive process is still alive
_START_TIMEOUT_S = 120.0


class DrivePool:
    """Host handle of one drive process. Used by the engine's thread; `stats()` may also be called from
    another thread (a metrics sampler): each round trip holds a lock, so messages never interleave.
    `attention_site` may be changed between steps (the csd bench runs both sites over the same KV)."""

    def __init__(self, directory: Path, spec: PoolSpec, config: DriveConfig) -> None:
        self.spec, self.config = spec, config
        self.block_size, self.num_blocks = spec.block_size, spec.num_blocks
        self.num_layers, self.num_kv_heads, self.head_dim = spec.num_layers, spec.num_kv_heads, spec.head_dim
        self.dtype = spec.torch_dtype
        self.attention_site: AttentionSite = config.attention_site
        self.dead_reason: str | None = None
        self._step_decodes: Sequence[DecodeGroup] | None = None  # whose block tables the drive holds
        self._lock = threading.Lock()
        # The same link bytes as the drive's counters, seen from the host: readable without a round trip.
        self.link_bytes_sent = 0
        self.link_bytes_received = 0
        self.full_refusals = 0  # requests refused at admission: their KV cannot fit on the drive
        # A fresh interpreter (`python -m workers.devices.csd.drive`), not a fork: forking a process that
        # runs torch threads is unsafe, and multiprocessing's spawn would re-import the caller's __main__.
        self._conn, child = mp.Pipe(duplex=True)
        argv = [sys.executable, "-m", "workers.devices.csd.drive", str(child.fileno()), str(directory),
                json.dumps(asdict(spec)), json.dumps(config.to_dict())]
        self.process = subprocess.Popen(argv, pass_fds=(child.fileno(),))
        child.close()  # only the drive holds its end, so its death is EOF here
        self._finalizer = weakref.finalize(self, _shutdown, self.process, self._conn)
        self._await_ready()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def block_shape(self) -> tuple[int, int, int, int, int]:
        return (self.num_layers, 2, self.num_kv_heads, self.block_size, self.head_dim)

    # ---- the KV pool interface -------------------------------------------------------------------
    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store K and V ([tokens, kv_heads, head_dim]) of `layer` at `slots` on the drive."""
        self._call("write", {"layer": layer}, [slots, k, v])

    def gather(self, layer: int, block_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of `layer` for `block_ids` as [kv_heads, n * block_size, head_dim], read over the link
        (host-offload). Each distinct block crosses the link once per call."""
        unique, inverse = torch.unique(block_ids, return_inverse=True)
        _, (pages,) = self._call("gather", {"layer": layer}, [unique])
        pages = pages.index_select(0, inverse).permute(1, 2, 0, 3, 4)  # [2, kvh, n, bs, dim]
        shape = (self.num_kv_heads, -1, self.head_dim)
        return pages[0].reshape(shape), pages[1].reshape(shape)

    def read_block(self, block_id: int) -> torch.Tensor:
        """A copy of one block from the drive, shaped `block_shape`."""
        return self._call("read_block", {"block_id": block_id}, [])[1][0]

    def write_block(self, block_id: int, kv: torch.Tensor) -> None:
        """Overwrite one block on the drive (a KV import lands straight on flash)."""
        self._call("write_block", {"block_id": block_id}, [kv.to("cpu", self.dtype)])

    # ---- in-storage attention ---------------------------------------------------------------------
    def write_and_attend(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         q: torch.Tensor, decodes: Sequence[DecodeGroup], scale: float) -> torch.Tensor:
        """Write the step's K/V of `layer` (all its tokens) and return the decode rows' attention outputs
        [rows, heads, head_dim], computed on the drive. `q` holds the decode rows' queries only. The
        block tables and lengths go over with the step's first layer only (the same `decodes` object is
        passed for every layer of a step); the drive keeps them for the step's other layers."""
        meta: dict[str, Any] = {"layer": layer, "scale": scale}
        arrays = [slots, k, v, q]
        if decodes is not self._step_decodes:  # the step's first layer: its block tables go over once
            lengths: list[int] = []
            counts: list[int] = []
            blocks: list[torch.Tensor] = []
            for group in decodes:
                table = group.block_table.view(group.end - group.start, -1)
                for row, length in enumerate(group.lengths):
                    count = -(-length // self.block_size)
                    lengths.append(length)
                    counts.append(count)
                    blocks.append(table[row, :count])
            meta.update(lengths=lengths, row_block_counts=counts, groups=[(g.start, g.end) for g in decodes])
            arrays.append(torch.cat(blocks).to(torch.int32))
            self._step_decodes = None  # until the drive has the new tables
        _, (out,) = self._call("attend", meta, arrays)
        self._step_decodes = decodes  # held, so its id cannot be reused by a later step's tuple
        return out

    def discard(self, block_ids: Sequence[int]) -> None:
        """Erase blocks on the drive (a TRIM): for corrupt blocks whose KV nothing refers to any more, so
        that they can be written again (a corrupt page refuses read-modify-writes until erased)."""
        self._call("discard", {"block_ids": [int(b) for b in block_ids]}, [])

    def refuse_too_large(self, blocks_needed: int) -> InvalidRequestError:
        """The admission error for a request whose KV needs `blocks_needed` blocks, more than the drive
        holds (counted in `full_refusals`). Nothing running is touched."""
        self.full_refusals += 1
        return InvalidRequestError(
            f"drive full: the prompt needs {blocks_needed} KV blocks, the drive holds {self.num_blocks} "
            f"({self.spec.total_bytes} bytes of flash); send it to a worker with a larger KV pool",
            field="prompt")

    # ---- drive management --------------------------------------------------------------------------
    def stats(self) -> DriveStats:
        """The drive's counters (cumulative). Costs one small round trip, itself counted."""
        return DriveStats(**self._call("stats", {}, [])[0])

    def close(self) -> None:
        """Stop the drive process (idempotent). The flash file stays; the next start recreates it."""
        self._finalizer()
        self.dead_reason = self.dead_reason or "drive closed"

    def _await_ready(self) -> None:
        op, meta = self._receive(_START_TIMEOUT_S)[:2]
        if op == "error" and meta.get("kind") == "full":
            self.close()
            raise DriveFullError(meta["message"], field="kv_cache_bytes")
        if op != "ready":
            self.close()
            raise UnavailableError(f"drive process failed to start: {meta}")

    def _call(self, op: str, meta: dict[str, Any], arrays: list[torch.Tensor]
              ) -> tuple[dict[str, Any], list[torch.Tensor]]:
        with self._lock:
            return self._round_trip(op, meta, arrays)

    def failure(self) -> str | None:
        """Why the drive is gone, or None while it lives: also notices a drive that died between calls
        (the worker polls this to leave the cluster, `workers/service/server.py`)."""
        if self.dead_reason is None and self.process.poll() is not None:
            self.dead_reason = f"drive process (pid {self.pid}) exited with code {self.process.returncode}"
        return self.dead_reason

    def _round_trip(self, op: str, meta: dict[str, Any], arrays: list[torch.Tensor]
                    ) -> tuple[dict[str, Any], list[torch.Tensor]]:
        if self.dead_reason is not None:
            raise UnavailableError(f"csd drive unavailable: {self.dead_reason}")
        try:
            self.link_bytes_sent += wire.send(self._conn, op, meta, [a.detach().to("cpu") for a in arrays])
        except OSError as exc:
            self._die(f"link to drive process (pid {self.pid}) broke: {exc!r}")
        reply, reply_meta, reply_arrays = self._receive(self.config.reply_timeout_s)
        if reply == "error":
            if reply_meta["kind"] == "checksum":
                raise ChecksumError(reply_meta["message"], pages=[tuple(p) for p in reply_meta["pages"]])
            raise UnavailableError(f"csd drive failed on {op!r}: {reply_meta['message']}")
        return reply_meta, reply_arrays

    def _receive(self, timeout_s: float) -> tuple[str, dict[str, Any], list[torch.Tensor]]:
        deadline = time.monotonic() + timeout_s
        try:
            while not self._conn.poll(_POLL_SECONDS):
                if self.process.poll() is not None:
                    self._die(f"drive process (pid {self.pid}) died with exit code {self.process.returncode}")
                if time.monotonic() > deadline:
                    self._die(f"drive process (pid {self.pid}) sent no reply within {timeout_s} s")
            (op, meta, arrays), size = wire.recv(self._conn)
            self.link_bytes_received += size
        except (EOFError, OSError) as exc:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(1.0)
            code = self.process.returncode
            self._die(f"drive process (pid {self.pid}) is gone (exit code {code}): {exc!r}")
        return op, meta, arrays

    def _die(self, reason: str) -> None:
        self.dead_reason = reason
        self._finalizer()
        raise UnavailableError(f"csd drive unavailable: {reason}")


def drive_failure(pool: object) -> Callable[[], str | None]:
    """A check of `pool`'s drive (`DrivePool.failure`); for any other KV pool, one that never fails."""
    return pool.failure if isinstance(pool, DrivePool) else lambda: None


def _shutdown(process: subprocess.Popen[bytes], conn: Connection) -> None:
    with contextlib.suppress(OSError):
        if process.poll() is None:
            wire.send(conn, "close")
    conn.close()
    try:
        process.wait(5.0)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5.0)


def _claim_slot(drive_dir: Path) -> tuple[Path, TextIO]:
    """The first `slot-N` directory of `drive_dir` whose lock this process can take: replicas on one node
    may share a drive directory, each with its own flash file. The lock lives as long as the pool."""
    drive_dir.mkdir(parents=True, exist_ok=True)
    for slot in range(MAX_DRIVE_SLOTS):
        lock = open(drive_dir / f"slot-{slot}.lock", "w")  # noqa: SIM115 (held while the pool lives)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return drive_dir / f"slot-{slot}", lock
        except BlockingIOError:
            lock.close()
    raise ConfigError(f"all {MAX_DRIVE_SLOTS} drive slots in {drive_dir} are in use", field="csd_path")


def open_drive_pool(drive_dir: Path, shape: tuple[int, ...], dtype: torch.dtype) -> DrivePool:
    """Start a drive process for a KV pool of `shape` ([layers, 2, kv_heads, blocks, block_size, head_dim],
    the engine pool's) on `drive_dir`, with the settings of `drive_dir/drive.json` (defaults otherwise).
    Raises DriveFullError when the pool does not fit on the drive, ConfigError for bad settings."""
    config = DriveConfig.load(drive_dir)
    layers, _, kv_heads, blocks, block_size, head_dim = shape
    name = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype]
    spec = PoolSpec(layers, kv_heads, blocks, block_size, head_dim, name)
    slot_dir, lock = _claim_slot(drive_dir)
    pool = DrivePool(slot_dir, spec, config)
    weakref.finalize(pool, lock.close)
    return pool
