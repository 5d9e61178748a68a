"""`RateLimiter`: one emulated channel (the host link in one direction, or the flash array).

A virtual clock: the channel is busy until `busy_until`. A transfer of `n` bytes that started (its real
work began) at `started` occupies the channel from `max(started, busy_until)` for `n / rate` seconds; its
last byte arrives `latency` seconds after the later of that end and the moment `charge` is called (a
byte cannot arrive before it exists). `charge` sleeps until then. Real work done since `started` (reading
the file, checksums, copying) therefore overlaps the modelled transfer time instead of adding to it (a
streamed read: flash and link work at once), and transfers queue behind each other as on one channel.
Not thread-safe (one drive thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, bytes_per_s: float, latency_s: float = 0.0,
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not bytes_per_s > 0:
            raise ValueError(f"bytes_per_s: must be > 0, got {bytes_per_s!r}")
        if latency_s < 0:
            raise ValueError(f"latency_s: must be >= 0, got {latency_s!r}")
        self.bytes_per_s = bytes_per_s
        self.latency_s = latency_s
        self._clock = clock
        self._sleep = sleep
        self.busy_until = 0.0
        self.num_bytes = 0  # every byte charged, ever
        self.waited_seconds = 0.0  # time slept to honour the rate and latency

    def charge(self, num_bytes: int, started: float | None = None) -> float:
        """Account `num_bytes` that began moving at `started` (default: now); sleep until the modelled
        transfer is over. Returns the seconds slept."""
        now = self._clock()
        begin = max(now if started is None else started, self.busy_until)
        self.busy_until = begin + num_bytes / self.bytes_per_s
        self.num_bytes += num_bytes
        delay = max(self.busy_until - now, 0.0) + self.latency_s
        if delay <= 0:
            return 0.0
        self._sleep(delay)
        self.waited_seconds += delay
        return delay
