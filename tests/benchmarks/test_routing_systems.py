"""bench routing's systems as real processes: vllm-router (cache_aware) over two workers' OpenAI fronts
with the shared tier on, and our gateway (prefix_aware), replaying a small trace window whose later
requests repeat earlier prefixes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from benchmarks._replay import replay
from benchmarks._routing_systems import VLLM_ROUTER, start_ours, start_peer
from benchmarks._routing_workload import (
    TraceRequest,
    Window,
    build_requests,
    oracle_share,
    read_trace,
    single_token_words,
)

# Requests 0.6 s apart (time scale 1): each prefill ends before the next arrives, so a router that
# sends a prefix back to the worker holding it serves the whole oracle from cache.
ROWS = [(0, [1, 2, 3]), (600, [1, 2, 4]), (1200, [5, 6]), (1800, [1, 2, 3, 7]), (2400, [5, 6, 8])]


@pytest.fixture
def workload(tmp_path: Path, tiny_model_dir: Path) -> list[TraceRequest]:
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": 0, "output_length": 96,
                                        "hash_ids": ids}) + "\n" for t, ids in ROWS))
    words = single_token_words(Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json")))
    return build_requests(read_trace(path), Window(0, len(ROWS)), words=words, salt=1, max_blocks=32,
                          time_scale=1.0)


@pytest.mark.skipif(not shutil.which(VLLM_ROUTER), reason="vllm-router is not installed (dev extra)")
def test_vllm_router_over_worker_fronts(tmp_path: Path, tiny_model_dir: Path,
                                        workload: list[TraceRequest]) -> None:
    system = start_peer("cache_aware", tiny_model_dir, tmp_path, 2)
    try:
        summary = replay(system, workload)
    finally:
        system.cluster.stop()
    assert summary["errors"] == 0, summary["first_error"]
    assert summary["ttft_mean_s"] is not None and summary["ttft_mean_s"] > 0
    assert summary["cached_share"] == pytest.approx(oracle_share(workload))  # 5 / 13 of the blocks


def test_our_gateway_prefix_aware(tmp_path: Path, tiny_model_dir: Path, workload: list[TraceRequest]) -> None:
    system = start_ours("prefix_aware", tiny_model_dir, tmp_path, 2)
    try:
        summary = replay(system, workload)
    finally:
        system.cluster.stop()
    assert summary["errors"] == 0, summary["first_error"]
    assert summary["cached_share"] == pytest.approx(oracle_share(workload))
    assert sum(summary["requests_per_worker"]) == len(workload)
