"""`DriveConfig`: the emulated drive's figures, one frozen dataclass validated at construction.

Real-hardware figures (what a real drive would report) are stored as such; the emulation divides every
rate by `time_scale` and multiplies every latency by it (`scaled_*`), because this machine computes
about 100x slower than the A6000 host of InstInfer's setup: scaling the drive by the same factor keeps
the ratios host compute : link : flash of the modelled system. docs/csd.md states the sources.

A drive directory may hold `drive.json` (keys = field names) to override the defaults; it is read once,
when the drive is opened (the process edge), and an unknown key or a bad value is a ConfigError naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from common.errors import ConfigError

AttentionSite = Literal["drive", "host"]
ATTENTION_SITES: tuple[AttentionSite, ...] = ("drive", "host")
DRIVE_CONFIG_FILE = "drive.json"
GB = 1e9


@dataclass(frozen=True)
class DriveConfig:
    """One computational storage drive and its host link (rates in bytes/s, latencies in seconds,
    real-hardware values; see module docstring for the scaling).

    - `link_bytes_per_s`: host link, each direction (PCIe 3.0 x4: 3.94 GB/s raw, ~3.5 GB/s of payload).
    - `link_latency_s`: one-way latency of one message on the link (an NVMe command + DMA, ~10 us).
    - `flash_read_bytes_per_s`: the drive's internal flash read bandwidth, all channels together
      (16 channels x 1.2 GB/s ONFI 4 = 19.2 GB/s): what in-storage attention reads at.
    - `flash_write_bytes_per_s`: internal program bandwidth (NAND programs ~3x slower than it reads).
    - `drive_threads`: torch threads of the drive process, standing for the drive's compute cores.
    - `capacity_bytes`: flash capacity; a KV pool larger than this does not fit ("drive full").
    - `attention_site`: "drive" = in-storage decode attention (InstInfer); "host" = host-offload
      (FlexGen-style: every decode step reads the KV over the link and attends on the host).
    - `reply_timeout_s`: wall-clock seconds the host waits for one reply before declaring the drive hung.
    """

    link_bytes_per_s: float = 3.5 * GB
    link_latency_s: float = 10e-6
    flash_read_bytes_per_s: float = 19.2 * GB
    flash_write_bytes_per_s: float = 6.4 * GB
    drive_threads: int = 1
    capacity_bytes: int = 64 * 2**30
    time_scale: float = 100.0
    attention_site: AttentionSite = "drive"
    reply_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("link_bytes_per_s", "flash_read_bytes_per_s", "flash_write_bytes_per_s", "time_scale",
                     "reply_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name}: must be a number > 0, got {value!r}")
        if not isinstance(self.link_latency_s, (int, float)) or self.link_latency_s < 0:
            raise ValueError(f"link_latency_s: must be a number >= 0, got {self.link_latency_s!r}")
        for name in ("drive_threads", "capacity_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if self.attention_site not in ATTENTION_SITES:
            raise ValueError(f"attention_site: must be one of {ATTENTION_SITES}, got {self.attention_site!r}")

    # ---- the emulated (scaled) figures ---------------------------------------------------------
    @property
    def scaled_link_bytes_per_s(self) -> float:
        return self.link_bytes_per_s / self.time_scale

    @property
    def scaled_link_latency_s(self) -> float:
        return self.link_latency_s * self.time_scale

    @property
    def scaled_flash_read_bytes_per_s(self) -> float:
        return self.flash_read_bytes_per_s / self.time_scale

    @property
    def scaled_flash_write_bytes_per_s(self) -> float:
        return self.flash_write_bytes_per_s / self.time_scale

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "") -> DriveConfig:
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown drive setting; known: {', '.join(sorted(known))}",
                                  field=key, source=source or None)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc), source=source or None) from exc

    @classmethod
    def load(cls, drive_dir: Path) -> DriveConfig:
        """`drive_dir/drive.json` over the defaults (the defaults alone when there is no such file)."""
        path = drive_dir / DRIVE_CONFIG_FILE
        if not path.is_file():
            return cls()
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not valid JSON: {exc}", source=str(path)) from exc
        if not isinstance(values, dict):
            raise ConfigError("must be a JSON object of drive settings", source=str(path))
        return cls.from_dict(values, source=str(path))

    def save(self, drive_dir: Path) -> Path:
        """Write these settings as `drive_dir/drive.json` (e.g. for a bench or a test). Returns the path."""
        drive_dir.mkdir(parents=True, exist_ok=True)
        path = drive_dir / DRIVE_CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path
