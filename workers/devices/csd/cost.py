"""`DriveCost`: the emulated drive's modelled time per message, independent of how loaded the machine is.

The rate limiters (`ratelimit.py`) make the drive *take* its modelled time in wall-clock, overlapping
real work; on a shared machine that real work stretches with load. This model prices the same messages
from counted quantities only, so the figure is the same however busy the machine is:

- a message on the link: `bytes / link rate + link latency` (each direction);
- a flash access: `bytes / flash read (or write) rate`;
- drive compute: the CPU seconds the drive's thread spent on it (read, checksum, kernel), divided by
  `drive_threads`: CPU time, unlike wall time, does not grow while the process waits for a core;
- in-storage attention is pipelined (InstInfer's engine consumes pages as they stream off flash): the
  op costs `flash write + max(flash read, compute)`;
- a streamed read reply (`gather`, `read_block`) overlaps flash and link: `max(flash read, link) +
  latency` instead of their sum.

All rates and latencies are the scaled ones (`DriveConfig.scaled_*`), so modelled and wall-clock seconds
are in the same units. Drive management (`stats`) is not priced: it is monitoring, not work.
"""

from __future__ import annotations

from workers.devices.csd.config import DriveConfig


class DriveCost:
    """Accumulates `seconds`, the modelled time of every priced message so far. One drive thread."""

    def __init__(self, config: DriveConfig) -> None:
        self.link_bytes_per_s = config.scaled_link_bytes_per_s
        self.link_latency_s = config.scaled_link_latency_s
        self.read_bytes_per_s = config.scaled_flash_read_bytes_per_s
        self.write_bytes_per_s = config.scaled_flash_write_bytes_per_s
        self.drive_threads = config.drive_threads
        self.seconds = 0.0

    def receive(self, num_bytes: int) -> None:
        """A message of `num_bytes` arrived from the host."""
        self.seconds += num_bytes / self.link_bytes_per_s + self.link_latency_s

    def write(self, num_bytes: int) -> None:
        """`num_bytes` programmed to flash."""
        self.seconds += num_bytes / self.write_bytes_per_s

    def attend(self, read_bytes: int, cpu_seconds: float) -> None:
        """In-storage attention over `read_bytes` of pages that took `cpu_seconds` of drive CPU."""
        self.seconds += max(read_bytes / self.read_bytes_per_s, cpu_seconds / self.drive_threads)

    def reply(self, num_bytes: int, streamed_read_bytes: int | None = None) -> None:
        """A reply of `num_bytes` to the host; `streamed_read_bytes` when it streams a flash read of that
        many bytes (the link overlaps the read)."""
        link = num_bytes / self.link_bytes_per_s
        if streamed_read_bytes is not None:
            link = max(link, streamed_read_bytes / self.read_bytes_per_s)
        self.seconds += link + self.link_latency_s
