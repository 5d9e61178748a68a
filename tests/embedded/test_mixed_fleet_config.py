"""Mixed fleets in the embedded config: `workers.engines` gives each node type its engine (native by
default), validated with errors naming the field; the profiler's view of each node type (device,
engine, roles measured, cache key) and the planner's spec both read the shipped `mixed.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import build
from common.errors import ConfigError
from control_plane.planner.spec import load_planner_spec
from control_plane.profiler.grid import FIRST_START_GRID
from heteroserve.embedded.config import ROOT, EmbeddedConfig, load_embedded_config
from heteroserve.embedded.profiling import LocalNodeType, cache_path, expected_steps, local_node_types

MIXED = ROOT / "deploy" / "examples" / "mixed.yaml"


def mixed_mapping() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MIXED.read_text())
    return data


def test_the_mixed_example_runs_vllm_on_its_own_node_type_and_native_elsewhere() -> None:
    config = load_embedded_config(MIXED)
    nodes = {n.name: n for n in local_node_types(config)}
    assert nodes == {"cpu-local": LocalNodeType("cpu-local", "cpu", "native"),
                     "csd-local": LocalNodeType("csd-local", "csd", "native"),
                     "cpu-vllm": LocalNodeType("cpu-vllm", "cpu", "vllm")}
    assert config.workers.engine_of("cpu-local") == "native"
    assert 0 < config.workers.vllm_memory_fraction <= 0.1  # a shared machine: small vLLM engines
    # the planner reads the same file (the engines live in the section it skips) and plans all three
    spec = load_planner_spec(MIXED)
    assert set(spec.fleet) == {"cpu-local", "csd-local", "cpu-vllm"}


def test_the_default_config_is_all_native() -> None:
    assert {n.engine for n in local_node_types(load_embedded_config())} == {"native"}


@pytest.mark.parametrize(("engines", "field", "reason"), [
    ({"cpu-vllm": "sglang"}, "workers.engines.cpu-vllm", "must be one of 'native', 'vllm'"),
    ({"gpu-big": "vllm"}, "workers.engines.gpu-big", "not a node type of the fleet"),
    ({"csd-local": "vllm"}, "workers.engines.csd-local", "runs on cpu or gpu node types"),
])
def test_a_bad_engine_entry_names_its_field(engines: dict[str, str], field: str, reason: str) -> None:
    data = mixed_mapping()
    data["workers"]["engines"] = engines
    with pytest.raises(ConfigError) as raised:
        build(EmbeddedConfig, data, source="mixed.yaml")
    assert field in str(raised.value) and reason in str(raised.value), str(raised.value)


def test_vllm_memory_fraction_is_a_share() -> None:
    data = mixed_mapping()
    data["workers"]["vllm_memory_fraction"] = 1.5
    with pytest.raises(ConfigError, match="vllm_memory_fraction"):
        build(EmbeddedConfig, data, source="mixed.yaml")


def test_the_cluster_wide_profiling_engine_is_gone() -> None:
    data = mixed_mapping()
    data["profiling"]["engine"] = "vllm"
    with pytest.raises(ConfigError, match=r"profiling\.engine"):
        build(EmbeddedConfig, data, source="mixed.yaml")


def test_a_vllm_node_type_is_profiled_colocated_only_under_its_own_key(tiny_model_dir: Path,
                                                                      tmp_path: Path) -> None:
    vllm, native = LocalNodeType("cpu-vllm", "cpu", "vllm"), LocalNodeType("cpu-vllm", "cpu", "native")
    assert vllm.roles == ("colocated",) and native.roles == ("colocated", "prefill", "decode")
    # 4 prefill + 4 decode points of the colocated worker, no transfer (a vLLM worker serves no PullKV)
    assert expected_steps(FIRST_START_GRID, vllm) == 8
    assert cache_path(tmp_path, tiny_model_dir, vllm) != cache_path(tmp_path, tiny_model_dir, native)
    assert cache_path(tmp_path, tiny_model_dir, vllm).name.endswith("-vllm-cpu-vllm.json")
