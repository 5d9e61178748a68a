"""Redis restarts (empty) under a running stream: the stream finishes, every token once, and the
cluster serves on. Found by `bench chaos`: the gateway closed the channels of workers missing from the
freshly emptied registry, which cancelled the streams they carried."""

from __future__ import annotations

from pathlib import Path

import pytest

import heteroserve
from common.localredis import LocalRedis, RedisServerConfig
from tests.control_plane.gateway.gateway_procs import (
    API_KEY,
    start_gateway,
    start_worker,
    wait_for_workers,
    write_api_keys,
)

pytestmark = pytest.mark.slow
PROMPT = " ".join(f"line {i} of a prompt that spans several KV blocks" for i in range(6))


def test_stream_survives_redis_restart(tiny_model_dir: Path, tmp_path: Path) -> None:
    redis = LocalRedis(RedisServerConfig(data_dir=tmp_path / "redis")).start()
    worker = start_worker(tiny_model_dir, redis.url, "rr-0")
    gateway = start_gateway(tiny_model_dir, redis.url, write_api_keys(tmp_path / "keys.yaml"),
                            "--refresh-seconds", "0.2")
    try:
        wait_for_workers(gateway, 1)
        max_tokens = 600
        with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc",
                                timeout_seconds=90) as client:
            reference = client.complete(PROMPT, model="tiny", max_tokens=max_tokens, ignore_eos=True)
            streamed: list[int] = []
            restarted = False
            for chunk in client.stream(PROMPT, model="tiny", max_tokens=max_tokens, ignore_eos=True):
                streamed += chunk.token_ids
                if len(streamed) >= 8 and not restarted:
                    redis.stop()
                    redis.start()  # same port, empty: every worker record is gone until its next beat
                    restarted = True
            after = client.complete(PROMPT, model="tiny", max_tokens=8)
        assert streamed == list(reference.token_ids)
        assert list(after.token_ids) == list(reference.token_ids[:8])
    finally:
        gateway.stop()
        worker.stop()
        redis.stop()
