"""Prometheus metrics of one emulated drive. This module owns every `heteroserve_csd_*` name.

Driven from the drive's cumulative `DriveStats`, sampled by the worker beside its engine stats
(`observe(pool.stats())`, e.g. once a second); counters advance by the difference to the previous
sample. Created on the worker's registry, never the global one. Labels: `direction` (`to_drive`,
`to_host`) on the link counter only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from workers.devices.csd.stats import DriveStats


class DriveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.link_bytes = Counter(
            "heteroserve_csd_link_bytes_total", "Bytes over the host link (every message, headers included).",
            ["direction"], registry=registry)
        self.flash_read_bytes = Counter(
            "heteroserve_csd_flash_read_bytes_total", "Bytes read from the drive's flash (whole pages).",
            registry=registry)
        self.flash_written_bytes = Counter(
            "heteroserve_csd_flash_written_bytes_total", "KV bytes written to the drive's flash.",
            registry=registry)
        self.checksum_failures = Counter(
            "heteroserve_csd_checksum_failures_total", "Flash pages that failed their checksum (never used).",
            registry=registry)
        self.wait_seconds = Counter(
            "heteroserve_csd_modelled_wait_seconds_total",
            "Seconds the drive slept to honour its modelled link and flash rates.", ["channel"],
            registry=registry)
        for direction in ("to_drive", "to_host"):  # zero series up front so dashboards see them
            self.link_bytes.labels(direction=direction)
        self._last = DriveStats()

    def observe(self, stats: DriveStats) -> None:
        """Advance the counters to `stats` (a later snapshot of the same drive)."""
        d = stats.minus(self._last)
        self._last = stats
        self.link_bytes.labels(direction="to_drive").inc(max(d.link_bytes_to_drive, 0))
        self.link_bytes.labels(direction="to_host").inc(max(d.link_bytes_to_host, 0))
        self.flash_read_bytes.inc(max(d.flash_bytes_read, 0))
        self.flash_written_bytes.inc(max(d.flash_bytes_written, 0))
        self.checksum_failures.inc(max(d.checksum_failures, 0))
        self.wait_seconds.labels(channel="link").inc(max(d.link_wait_seconds, 0.0))
        self.wait_seconds.labels(channel="flash").inc(max(d.flash_wait_seconds, 0.0))
