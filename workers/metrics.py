"""Prometheus metrics of one worker process. This module owns every `heteroserve_worker_*` name.

Gauges and token counters are driven from the engine's cumulative `EngineStats`, sampled about once a
second (`observe_engine_stats`); counters advance by the difference to the previous sample, so rates
come from PromQL (`rate(heteroserve_worker_decode_tokens_total[1m])`). Request outcomes and KV transfers
are recorded by the service as they happen. Labels are few and bounded: `status` (ok, invalid, error,
unavailable, cancelled, ...) and `tier`, a `common.vocab.TransferPath` (`peer` = another worker's
PullKV stream, `shared` = the cache tiers below the pool). Pool, node type and role are target labels
set by the scraper, not metric labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common.vocab import TRANSFER_PATHS, TransferPath

if TYPE_CHECKING:
    from workers.engine.types import EngineStats

_TRANSFER_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerMetrics:
    """All metrics of a worker, created on `registry` (never the global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.running_requests = Gauge(
            "heteroserve_worker_running_requests", "Requests being prefilled or decoded.", registry=registry)
        self.waiting_requests = Gauge(
            "heteroserve_worker_waiting_requests", "Requests queued in the scheduler.", registry=registry)
        self.kv_blocks_used = Gauge(
            "heteroserve_worker_kv_blocks_used", "KV pool blocks in use or cached.", registry=registry)
        self.kv_blocks_free = Gauge(
            "heteroserve_worker_kv_blocks_free", "KV pool blocks free.", registry=registry)
        self.draining = Gauge(
            "heteroserve_worker_draining", "1 while the worker drains (takes no new work).",
            registry=registry)
        self.prefill_tokens = Counter(
            "heteroserve_worker_prefill_tokens_total", "Prompt tokens computed (cache hits excluded).",
            registry=registry)
        self.cached_prompt_tokens = Counter(
            "heteroserve_worker_cached_prompt_tokens_total", "Prompt tokens served from the KV cache.",
            registry=registry)
        self.decode_tokens = Counter(
            "heteroserve_worker_decode_tokens_total", "Output tokens generated.", registry=registry)
        self.held_admissions = Counter(
            "heteroserve_worker_held_admissions_total",
            "Requests the scheduler held back until a prefix another request was still prefilling was "
            "cached.", registry=registry)
        self.requests = Counter(
            "heteroserve_worker_requests_total", "Finished RPCs by method and status.",
            ["method", "status"], registry=registry)
        self.kv_transfer_bytes = Counter(
            "heteroserve_worker_kv_transfer_bytes_total",
            "KV tensor bytes received by decode imports (the same measure for every tier).",
            ["tier"], registry=registry)
        self.kv_transfer_seconds = Histogram(
            "heteroserve_worker_kv_transfer_seconds", "Duration of one KV import (fetch + import).",
            ["tier"], buckets=_TRANSFER_BUCKETS, registry=registry)
        self.kv_transfer_failures = Counter(
            "heteroserve_worker_kv_transfer_failures_total",
            "KV imports that failed (the request was prefilled locally instead).", ["tier"],
            registry=registry)
        self.kv_blocks_exported = Counter(
            "heteroserve_worker_kv_blocks_exported_total", "KV blocks sent to other workers over PullKV.",
            registry=registry)
        self.role_refusals = Counter(
            "heteroserve_worker_role_refusals_total",
            "RPCs refused because this worker's role does not serve them (PERMISSION_DENIED); any "
            "increase means a caller routes by a wrong role.", ["method"], registry=registry)
        for tier in TRANSFER_PATHS:  # export zero series up front so dashboards see them
            self.kv_transfer_bytes.labels(tier=tier)
            self.kv_transfer_failures.labels(tier=tier)
        self._last: EngineStats | None = None

    def observe_engine_stats(self, stats: EngineStats) -> None:
        """Set the gauges from `stats` and advance the token counters by the change since the last call."""
        self.running_requests.set(stats.num_running)
        self.waiting_requests.set(stats.num_waiting)
        self.kv_blocks_free.set(stats.kv_blocks_free)
        self.kv_blocks_used.set(stats.kv_blocks_total - stats.kv_blocks_free)
        last = self._last
        prompt_before = last.prompt_tokens_total if last else 0
        cached_before = last.cached_tokens_total if last else 0
        generated_before = last.generated_tokens_total if last else 0
        held_before = last.held_admissions_total if last else 0
        # The engine's prompt_tokens_total counts prompt tokens it computed (cache hits are not computed).
        self.prefill_tokens.inc(max(0, stats.prompt_tokens_total - prompt_before))
        self.cached_prompt_tokens.inc(max(0, stats.cached_tokens_total - cached_before))
        self.decode_tokens.inc(max(0, stats.generated_tokens_total - generated_before))
        self.held_admissions.inc(max(0, stats.held_admissions_total - held_before))
        self._last = stats

    def record_request(self, method: str, status: str) -> None:
        self.requests.labels(method=method, status=status).inc()

    def record_role_refusal(self, method: str) -> None:
        self.role_refusals.labels(method=method).inc()

    def record_kv_transfer(self, tier: TransferPath, num_bytes: int, seconds: float) -> None:
        self.kv_transfer_bytes.labels(tier=tier).inc(num_bytes)
        self.kv_transfer_seconds.labels(tier=tier).observe(seconds)

    def record_kv_transfer_failure(self, tier: TransferPath) -> None:
        self.kv_transfer_failures.labels(tier=tier).inc()
