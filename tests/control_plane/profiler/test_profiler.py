"""The profiler: its grid validation and transfer fit, and a real run against real worker processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.profiler.grid import ProfileGrid
from control_plane.profiler.run import fit_transfer
from placement.perf.steps import MeasuredSteps
from placement.profile_file import load_node_profile


def test_grid_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="prefill_batches"):
        ProfileGrid(prefill_batches=())
    with pytest.raises(ValueError, match="output_tokens"):
        ProfileGrid(output_tokens=1)
    with pytest.raises(ValueError, match="transfer_tokens"):
        ProfileGrid(transfer_tokens=(8, 64))
    with pytest.raises(ValueError, match="wake_"):
        ProfileGrid(wake_idle_seconds=0.0)


def test_transfer_fit_separates_latency_and_bandwidth() -> None:
    row = fit_transfer("peer", (1_000_000, 0.012), (9_000_000, 0.092))
    assert row.bytes_per_second == pytest.approx(1e8) and row.latency_seconds == pytest.approx(0.002)
    flat = fit_transfer("shared", (1_000, 0.01), (8_000, 0.009))  # noise: larger but not slower
    assert flat.latency_seconds == 0.0 and flat.bytes_per_second == pytest.approx(8_000 / 0.009, rel=1e-3)


@pytest.mark.slow
def test_profile_real_workers_in_every_role(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cpu-test.json"
    argv = [sys.executable, "-m", "heteroserve.cli", "profile", "--model", str(tiny_model_dir),
            "--model-name", "tiny", "--node-type", "cpu-test", "--input-tokens", "32,128",
            "--prefill-batches", "1,2", "--context-tokens", "64", "--decode-batches", "1,2",
            "--repeats", "1", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    profile = load_node_profile(out)
    identity = (profile.model, profile.node_type, profile.engine, profile.device)
    assert identity == ("tiny", "cpu-test", "native", "cpu")
    assert set(profile.roles) == {"colocated", "prefill", "decode"}
    assert len(profile.roles["colocated"].prefill) == 4 and len(profile.roles["colocated"].decode) == 2
    assert len(profile.roles["prefill"].prefill) == 4 and not profile.roles["prefill"].decode
    assert len(profile.roles["decode"].decode) == 2 and not profile.roles["decode"].prefill
    assert {t.path for t in profile.transfer} == {"peer", "shared"}
    assert all(t.bytes_per_second > 1e5 for t in profile.transfer)  # loopback moves > 100 kB/s
    assert profile.kv_capacity_tokens > 0 and profile.kv_bytes_per_token > 0
    assert len(profile.fingerprint) == 16 and profile.machine["cores"] >= 1
    for role in ("colocated", "prefill", "decode"):
        assert MeasuredSteps.fit(profile, role) is not None
    assert profile.idle is not None and profile.idle.idle_seconds > 0 and profile.idle.seconds >= 0
