"""Prometheus metrics of one emulated drive. This module owns every `heteroserve_csd_*` name.

`DriveCollector` is a custom collector registered on the worker's registry (never the global one) by
`register_drive_metrics`: each scrape reads the drive's cumulative `DriveStats` (one small round trip
on the link, counted there like any message, taken between the engine's messages: it never interleaves
with them) and the host's own counts, and exports them as counters as they are, so nothing needs a
sampling loop. When the drive is gone the last counts it gave are exported with
`heteroserve_csd_drive_up 0`. Labels: `direction` (`to_drive`, `to_host`) on the link counter,
`channel` (`link`, `flash`) on the modelled wait counter.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from common.errors import UnavailableError
from workers.devices.csd.pool import DrivePool
from workers.devices.csd.stats import DriveStats


class DriveCollector(Collector):
    """Exports one drive's counters at scrape time (a scrape runs on the metrics server's thread; the
    pool's lock keeps its round trip apart from the engine's)."""

    def __init__(self, pool: DrivePool) -> None:
        self.pool = pool
        self._last = DriveStats()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        up = 1.0
        try:
            self._last = self.pool.stats()
        except UnavailableError:
            up = 0.0
        s = self._last
        yield GaugeMetricFamily("heteroserve_csd_drive_up",
                                "1 while the drive process answers, 0 once it is gone.", value=up)
        link = CounterMetricFamily("heteroserve_csd_link_bytes", "Bytes over the host link (every message, "
                                   "headers included).", labels=["direction"])
        link.add_metric(["to_drive"], s.link_bytes_to_drive)
        link.add_metric(["to_host"], s.link_bytes_to_host)
        yield link
        yield _counter("flash_read_bytes", "Bytes read from the drive's flash (whole pages).",
                       s.flash_bytes_read)
        yield _counter("flash_written_bytes", "KV bytes written to the drive's flash.", s.flash_bytes_written)
        yield _counter("attention_calls", "In-storage decode attention ops (one per layer and step).",
                       s.attention_calls)
        yield _counter("checksum_failures", "Flash pages that failed their checksum (never used; their "
                       "sequences were recomputed).", s.checksum_failures)
        yield _counter("full_refusals", "Requests refused at admission because their KV cannot fit on the "
                       "drive.", self.pool.full_refusals)
        yield _counter("modelled_seconds", "The drive's time under its load-independent cost model.",
                       s.modelled_seconds)
        waits = CounterMetricFamily("heteroserve_csd_modelled_wait_seconds", "Seconds the drive slept to "
                                    "honour its modelled link and flash rates.", labels=["channel"])
        waits.add_metric(["link"], s.link_wait_seconds)
        waits.add_metric(["flash"], s.flash_wait_seconds)
        yield waits


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"heteroserve_csd_{name}", documentation, value=value)


def register_drive_metrics(pool: object, registry: CollectorRegistry) -> bool:
    """Register `pool`'s drive metrics on `registry` when it is a drive; False (nothing registered) for
    any other KV pool."""
    if not isinstance(pool, DrivePool):
        return False
    registry.register(DriveCollector(pool))
    return True
