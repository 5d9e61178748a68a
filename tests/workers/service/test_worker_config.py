"""WorkerConfig validation names the field; WorkerMetrics exports the design's names on its own registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from workers.config import WorkerConfig
from workers.engine.types import EngineStats
from workers.metrics import WorkerMetrics


def config(**overrides: object) -> WorkerConfig:
    fields: dict[str, object] = dict(worker_id="w1", model_dir=Path("/m"), cluster_token="secret-token")
    fields.update(overrides)
    return WorkerConfig(**fields)  # type: ignore[arg-type]


def test_defaults_are_valid_and_token_is_not_in_repr() -> None:
    cfg = config()
    assert cfg.role == "colocated" and cfg.device == "cpu" and cfg.port == 0
    assert "secret-token" not in repr(cfg)


@pytest.mark.parametrize(("overrides", "field"), [
    ({"worker_id": "a b"}, "worker_id"), ({"cluster_token": ""}, "cluster_token"),
    ({"device": "tpu"}, "device"), ({"role": "both"}, "role"), ({"device": "csd"}, "csd_path"),
    ({"port": 70000}, "port"), ({"metrics_port": -1}, "metrics_port"), ({"kv_cache_mb": 0}, "kv_cache_mb"),
    ({"heartbeat_seconds": 2.0}, "registration_ttl_seconds"), ({"drain_grace_seconds": -1}, "drain_grace"),
    ({"node_type": ""}, "^node_type"), ({"pool": ""}, "^pool"), ({"redis_url": "http://x"}, "redis_url"),
])
def test_invalid_values_name_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        config(**overrides)


def stats(prompt: int, cached: int, generated: int, free: int = 90) -> EngineStats:
    return EngineStats(num_running=2, num_waiting=1, kv_blocks_total=100, kv_blocks_free=free,
                       kv_blocks_cached=5, block_size=16, prompt_tokens_total=prompt,
                       generated_tokens_total=generated, cached_tokens_total=cached, preemptions_total=0)


def test_metrics_follow_engine_stats_by_difference() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.observe_engine_stats(stats(prompt=100, cached=32, generated=10))
    metrics.observe_engine_stats(stats(prompt=150, cached=48, generated=25, free=70))
    value = registry.get_sample_value
    assert value("heteroserve_worker_prefill_tokens_total") == 150
    assert value("heteroserve_worker_cached_prompt_tokens_total") == 48
    assert value("heteroserve_worker_decode_tokens_total") == 25
    assert value("heteroserve_worker_kv_blocks_used") == 30
    assert value("heteroserve_worker_kv_blocks_free") == 70
    assert value("heteroserve_worker_running_requests") == 2
    metrics.record_kv_transfer("peer", 4096, 0.01)
    metrics.record_kv_transfer_failure("shared")
    metrics.record_request("Generate", "invalid_argument")
    assert value("heteroserve_worker_kv_transfer_bytes_total", {"tier": "peer"}) == 4096
    assert value("heteroserve_worker_kv_transfer_failures_total", {"tier": "shared"}) == 1
    assert value("heteroserve_worker_kv_transfer_failures_total", {"tier": "peer"}) == 0
    assert value("heteroserve_worker_requests_total",
                 {"method": "Generate", "status": "invalid_argument"}) == 1


def test_metric_names_follow_conventions() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    names = {m.name for m in registry.collect()}
    assert names >= {"heteroserve_worker_running_requests", "heteroserve_worker_waiting_requests",
                     "heteroserve_worker_kv_blocks_used", "heteroserve_worker_kv_blocks_free",
                     "heteroserve_worker_prefill_tokens", "heteroserve_worker_decode_tokens",
                     "heteroserve_worker_kv_transfer_bytes", "heteroserve_worker_kv_transfer_seconds",
                     "heteroserve_worker_kv_transfer_failures", "heteroserve_worker_requests"}
    assert all(n.startswith("heteroserve_worker_") for n in names)
