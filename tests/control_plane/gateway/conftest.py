"""Fixtures of the gateway end-to-end tests: a private Redis, two colocated tiny-model workers and one
gateway process (REST + gRPC), shared by a module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.localredis import LocalRedis, RedisServerConfig
from tests.control_plane.gateway.gateway_procs import (
    Gateway,
    Worker,
    start_gateway,
    start_worker,
    wait_for_workers,
    write_api_keys,
)


@pytest.fixture(scope="module")
def gw_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(RedisServerConfig(data_dir=tmp_path_factory.mktemp("gw-redis"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_api_keys(tmp_path_factory.mktemp("keys") / "keys.yaml")


@pytest.fixture(scope="module")
def two_workers(tiny_model_dir: Path, gw_redis: LocalRedis) -> Iterator[list[Worker]]:
    workers = [start_worker(tiny_model_dir, gw_redis.url, f"co-{i}") for i in range(2)]
    yield workers
    for w in workers:
        w.stop()


@pytest.fixture(scope="module")
def gateway(tiny_model_dir: Path, gw_redis: LocalRedis, keys_file: Path,
            two_workers: list[Worker]) -> Iterator[Gateway]:
    gw = start_gateway(tiny_model_dir, gw_redis.url, keys_file, "--balance-abs-threshold", "2")
    wait_for_workers(gw, 2)
    yield gw
    assert gw.stop() == 0, gw.stderr[-2000:]
