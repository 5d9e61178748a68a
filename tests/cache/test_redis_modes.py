"""The Redis tier against Redis with AUTH, and against a (one-node) Redis Cluster via RedisCluster."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cache.tiers import RedisTier, RedisTierConfig
from common.localredis import LocalRedis, RedisServerConfig, free_port
from tests.cache.conftest import make_blocks


async def test_auth_by_url_and_by_password_field(tmp_path: Path) -> None:
    with LocalRedis(RedisServerConfig(data_dir=tmp_path, password="s3cret-pw")) as server:
        blocks = make_blocks(2)
        by_url = RedisTier(RedisTierConfig(url=server.url, namespace="auth"))
        by_field = RedisTier(RedisTierConfig(url=f"redis://127.0.0.1:{server.port}/0", password="s3cret-pw",
                                             namespace="auth"))
        no_auth = RedisTier(RedisTierConfig(url=f"redis://127.0.0.1:{server.port}/0", namespace="auth"))
        try:
            assert (await by_url.put_many(blocks)).stored == [h for h, _ in blocks]
            assert await by_field.get_many([h for h, _ in blocks]) == [d for _, d in blocks]
            assert await no_auth.get(blocks[0][0]) is None  # NOAUTH: served as a miss, never raised
        finally:
            for tier in (by_url, by_field, no_auth):
                await tier.close()


@pytest.fixture
def cluster_node(tmp_path: Path) -> Iterator[int]:
    """One redis-server in cluster mode owning all 16384 slots."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server not on PATH"
    port = free_port()
    while port > 55000:  # the cluster bus listens on port + 10000
        port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                             "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "cluster node did not start"
                time.sleep(0.05)
        client = redis.Redis(port=port)
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        while client.execute_command("CLUSTER", "INFO").decode().find("cluster_state:ok") < 0:
            assert time.monotonic() < deadline, "cluster did not become ok"
            time.sleep(0.05)
        client.close()
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_redis_cluster_round_trip(cluster_node: int) -> None:
    tier = RedisTier(RedisTierConfig(url=f"redis://127.0.0.1:{cluster_node}", namespace="cl", cluster=True))
    try:
        blocks = make_blocks(6)  # keys spread over many hash slots
        keys = [h for h, _ in blocks]
        assert (await tier.put_many(blocks)).stored == keys
        assert await tier.get_many(keys) == [d for _, d in blocks]
        assert await tier.remove_many(keys[:2]) == 2
        assert await tier.contains_many(keys) == [False, False, True, True, True, True]
    finally:
        await tier.close()
