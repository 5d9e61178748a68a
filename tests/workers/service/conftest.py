"""Fixtures of the worker-service tests: module-wide worker processes A (prefill) and B (decode), both
with the session's Redis as their shared KV tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.localredis import LocalRedis
from tests.workers.service.worker_procs import WorkerProcess, start_worker


@pytest.fixture(scope="module")
def worker_a(tiny_model_dir: Path, redis_server: LocalRedis) -> Iterator[WorkerProcess]:
    worker = start_worker(tiny_model_dir, role="prefill", worker_id="worker-a",
                          extra=("--shared-tier-url", redis_server.url))
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def worker_b(tiny_model_dir: Path, redis_server: LocalRedis) -> Iterator[WorkerProcess]:
    worker = start_worker(tiny_model_dir, role="decode", worker_id="worker-b",
                          extra=("--shared-tier-url", redis_server.url))
    yield worker
    worker.stop()
