"""A csd worker's drive process dies mid-stream behind a real gateway: the request is not lost. The worker
fails it UNAVAILABLE (retryable), the gateway migrates it to a cpu worker, and the client sees every token
exactly once, the same tokens the cpu worker gives for the whole request."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import heteroserve
from common.localredis import LocalRedis, free_port
from tests.control_plane.gateway.gateway_procs import (
    API_KEY,
    BIN,
    Gateway,
    Worker,
    _start,
    healthy_ids,
    start_gateway,
    start_worker,
    wait_for_workers,
)
from workers.devices.csd import DriveConfig

pytestmark = pytest.mark.slow
PROMPT = " ".join(f"line {i} of a prompt that spans several KV blocks" for i in range(6))
MAX_TOKENS = 2000


def start_csd_worker(model_dir: Path, redis_url: str, worker_id: str, drive_dir: Path) -> Worker:
    # 10 ms per link message: a decode step takes tens of ms, so the stream is still running when killed
    DriveConfig(time_scale=1000.0).save(drive_dir)
    args = [BIN, "worker", "--model", str(model_dir), "--port", str(free_port()), "--worker-id", worker_id,
            "--redis-url", redis_url, "--device", "csd", "--csd-path", str(drive_dir),
            "--drain-grace-seconds", "2"]
    p = _start(args, " ready on ")
    return Worker(p.proc, p.ready_line, p.stderr_lines, worker_id, p.ready_line.rsplit(" ", 1)[-1])


def drive_pid(worker: Worker) -> int:
    children = psutil.Process(worker.proc.pid).children(recursive=True)
    drives = [c.pid for c in children if "workers.devices.csd.drive" in " ".join(c.cmdline())]
    assert len(drives) == 1, f"expected one drive process under the worker, found {drives}"
    return drives[0]


@pytest.fixture
def csd_cluster(tiny_model_dir: Path, gw_redis: LocalRedis, keys_file: Path,
                tmp_path: Path) -> Iterator[tuple[Gateway, dict[str, Worker]]]:
    import redis

    redis.Redis.from_url(gw_redis.url).flushall()
    workers = {"csd-0": start_csd_worker(tiny_model_dir, gw_redis.url, "csd-0", tmp_path / "drive")}
    gateway = start_gateway(tiny_model_dir, gw_redis.url, keys_file)
    try:
        wait_for_workers(gateway, 1)
        yield gateway, workers
    finally:
        gateway.stop()
        for w in workers.values():
            w.stop()


def test_drive_death_mid_stream_loses_no_request(tiny_model_dir: Path, gw_redis: LocalRedis,
                                                 csd_cluster: tuple[Gateway, dict[str, Worker]]) -> None:
    gateway, workers = csd_cluster
    chunks = []
    with heteroserve.Client(gateway.grpc_target, api_key=API_KEY, transport="grpc") as client:
        for chunk in client.stream(PROMPT, model="tiny", max_tokens=MAX_TOKENS, ignore_eos=True):
            chunks.append(chunk)
            if len(chunks) == 8:  # on the only worker, the csd one: a cpu worker comes up, the drive dies
                workers["cpu-0"] = start_worker(tiny_model_dir, gw_redis.url, "cpu-0")
                wait_for_workers(gateway, 2)
                os.kill(drive_pid(workers["csd-0"]), signal.SIGKILL)
        reference = client.complete(PROMPT, model="tiny", max_tokens=MAX_TOKENS, ignore_eos=True)
    final = chunks[-1]
    assert final.route is not None and final.route.migrations == 1, final.route
    assert final.route.worker_id == "cpu-0" == reference.route.worker_id
    streamed = [t for c in chunks for t in c.token_ids]
    assert final.usage is not None and len(streamed) == MAX_TOKENS == final.usage.completion_tokens
    assert streamed == list(reference.token_ids)
    # Without its drive the worker leaves the cluster and exits 1, to be replaced by its supervisor.
    assert workers["csd-0"].proc.wait(timeout=30) == 1
    assert "device failed" in workers["csd-0"].stderr
    deadline = time.monotonic() + 30
    while healthy_ids(gateway) != {"cpu-0"}:
        assert time.monotonic() < deadline, f"healthy: {healthy_ids(gateway)}, wanted only cpu-0"
        time.sleep(0.2)
