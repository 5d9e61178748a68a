"""Fixtures of the worker-service tests: module-wide worker processes A (prefill) and B (decode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_procs import WorkerProcess, start_worker


@pytest.fixture(scope="module")
def worker_a(tiny_model_dir: Path) -> Iterator[WorkerProcess]:
    worker = start_worker(tiny_model_dir, role="prefill", worker_id="worker-a")
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def worker_b(tiny_model_dir: Path) -> Iterator[WorkerProcess]:
    worker = start_worker(tiny_model_dir, role="decode", worker_id="worker-b")
    yield worker
    worker.stop()
