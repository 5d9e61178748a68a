"""`DriveStats`: the drive's counters, cumulative since it started (bytes, counts, seconds)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class DriveStats:
    """`link_bytes_to_drive` / `link_bytes_to_host`: every byte of every message on the host link, each
    direction (headers included). `flash_bytes_read` / `flash_bytes_written`: bytes read from / written
    to the flash files (whole pages on read: a partly filled block is read in full). `*_wait_seconds`:
    time the drive slept to honour the modelled rates and latencies. `compute_seconds`: real time of
    in-storage attention (page reads, checksums, kernel). `checksum_failures`: flash pages whose
    checksum did not match (never used). `attention_calls`: in-storage attention ops (one per layer and
    decode step). `modelled_seconds`: the drive's time under its cost model (`cost.py`: counted bytes
    at the modelled rates, compute at its CPU time), independent of the machine's load."""

    link_bytes_to_drive: int = 0
    link_bytes_to_host: int = 0
    link_messages: int = 0
    flash_bytes_read: int = 0
    flash_bytes_written: int = 0
    flash_pages_read: int = 0
    checksum_failures: int = 0
    attention_calls: int = 0
    link_wait_seconds: float = 0.0
    flash_wait_seconds: float = 0.0
    compute_seconds: float = 0.0
    modelled_seconds: float = 0.0

    @property
    def link_bytes(self) -> int:
        return self.link_bytes_to_drive + self.link_bytes_to_host

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def minus(self, earlier: DriveStats) -> DriveStats:
        """The counters accumulated since `earlier` (a snapshot of the same drive)."""
        return DriveStats(**{f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)})
