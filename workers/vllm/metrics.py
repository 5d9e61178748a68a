"""vLLM's own Prometheus metrics (`vllm:*`) on the worker's /metrics.

vLLM registers its metrics on prometheus_client's process-global `REGISTRY` (the worker's metrics
live in a registry of their own, passed in: see workers/metrics.py). `VLLMMetricsCollector`, registered
on the worker's registry, yields the global registry's `vllm:` families at each scrape, so one
endpoint serves both. It reads, never writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

PREFIX = "vllm:"


class VLLMMetricsCollector:
    """A prometheus_client collector re-exporting `source`'s families named `vllm:*`."""

    def __init__(self, source: Any = None) -> None:
        if source is None:
            from prometheus_client import REGISTRY

            source = REGISTRY
        self._source = source

    def collect(self) -> Iterator[Any]:
        for family in self._source.collect():
            if family.name.startswith(PREFIX):
                yield family

    def describe(self) -> list[Any]:
        return []  # unknown until vLLM registered them: checked at each scrape, not at registration
