"""`heteroserve bench cache --quick --json` runs end to end (real Redis, two worker processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_cache_quick_json() -> None:
    proc = subprocess.run([sys.executable, "-m", "heteroserve.cli", "bench", "cache", "--quick", "--json",
                           "--repeats", "3", "--trials", "1", "--blocks", "16", "--threads", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.stdout, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("cross_worker_ttft_ratio", "redis_tier_efficiency", "disk_tier_efficiency",
                "redis_get_gbps", "disk_get_gbps", "block_bytes", "hit_rate"):
        assert isinstance(result[key], (int, float)) and result[key] > 0, key
    assert result["cross_worker_tokens_equal"] is True
    assert result["cached_prompt_tokens"] == 256
    assert proc.returncode in (0, 1)  # 1 = a target missed; quick figures are not comparable
