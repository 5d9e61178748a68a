"""The embedded cluster's profile cache: keyed by model hash, machine fingerprint, engine and node
type; a cached profile is used as it is (no worker starts), a changed model misses."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from control_plane.profiler.grid import FIRST_START_GRID
from control_plane.profiler.machine import fingerprint, machine_info
from heteroserve.embedded.profiling import (
    LocalNodeType,
    cache_path,
    ensure_profiles,
    expected_steps,
    model_hash,
)
from placement.profile_file import load_node_profile, save_node_profile
from tests.control_plane.planner.fleet import cpu_profile


def test_a_cached_profile_is_used_without_measuring(tiny_model_dir: Path, tmp_path: Path) -> None:
    node = LocalNodeType("cpu-local", "cpu")
    path = cache_path(tmp_path, tiny_model_dir, node)
    assert path.name == f"{model_hash(tiny_model_dir)}-{fingerprint(machine_info())}-native-cpu-local.json"
    profile = dataclasses.replace(cpu_profile(), model="tiny")
    save_node_profile(path, profile)
    before = path.stat().st_mtime_ns
    # a miss would start workers and measure (tens of seconds) and rewrite the file
    paths = ensure_profiles(tiny_model_dir, "tiny", (node,), FIRST_START_GRID, tmp_path)
    assert paths == [path] and path.stat().st_mtime_ns == before
    assert load_node_profile(path) == profile


def test_the_key_changes_with_the_model_and_the_engine(tiny_model_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "model"
    shutil.copytree(tiny_model_dir, other)
    weights = next(other.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    node = LocalNodeType("cpu-local", "cpu")
    assert cache_path(tmp_path, other, node) != cache_path(tmp_path, tiny_model_dir, node)
    vllm = LocalNodeType("cpu-local", "cpu", "vllm")
    assert cache_path(tmp_path, tiny_model_dir, vllm).name.endswith("-vllm-cpu-local.json")


def test_a_csd_node_type_measures_only_decode() -> None:
    assert LocalNodeType("csd-local", "csd").roles == ("decode",)
    # 4 colocated prefill + 4 colocated decode + 4 prefill + 4 decode points, 2 transfers
    assert expected_steps(FIRST_START_GRID, LocalNodeType("cpu-local", "cpu")) == 18
    assert expected_steps(FIRST_START_GRID, LocalNodeType("csd-local", "csd")) == 6
