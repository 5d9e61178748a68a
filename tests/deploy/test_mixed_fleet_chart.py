"""`engine: vllm` on a chart pool, with the real helm binary: the rendered worker runs vLLM (its args
parse with the real CLI into a vLLM worker's settings), from the image built with the vllm extra, with
worker.vllm's settings under the pool's own; pool templates get the same; the schema and the template
refuse what a vLLM worker cannot be, naming the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from heteroserve.cli import build_parser
from tests.deploy.helm_render import CHART, by_kind, helm, render, validate_all
from tests.deploy.test_helm_chart import MIXED_FLEET, PREFIX

VLLM_CPU_POOL = {"name": "cpu-vllm", "nodeType": "cpu", "role": "colocated", "device": "cpu", "model": "tiny",
                 "replicas": 1, "engine": "vllm", "kvCacheMb": 2048,
                 "vllm": {"memoryFraction": 0.05}}
VLLM_GPU_POOL = {"name": "l4-vllm", "nodeType": "l4", "role": "colocated", "device": "cuda", "model": "tiny",
                 "replicas": 1, "gpus": 1, "engine": "vllm"}


def worker_container(objects: list[dict[str, Any]], pool: str) -> dict[str, Any]:
    deployment = by_kind(objects, "Deployment")[PREFIX + pool]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def values_with(*pools: dict[str, Any]) -> dict[str, Any]:
    values = copy.deepcopy(MIXED_FLEET)
    values["workerPools"] = [*values["workerPools"], *pools]
    return values


def test_a_vllm_pool_renders_the_vllm_worker_its_image_and_settings(tmp_path: Path) -> None:
    objects = render(values_with(VLLM_CPU_POOL, VLLM_GPU_POOL), tmp_path)
    validate_all(objects)
    cpu = worker_container(objects, "cpu-vllm")
    assert cpu["image"] == "registry.example.com/heteroserve:0.1.0-vllm"
    args = build_parser().parse_args([*cpu["command"][1:], *cpu["args"]])
    assert (args.engine, args.device, args.role, args.node_type) == ("vllm", "cpu", "colocated", "cpu")
    assert args.vllm_memory_fraction == 0.05  # the pool's own value over worker.vllm's 0.9
    assert args.vllm_block_size == 32 and args.kv_cache_mb == 2048
    gpu = worker_container(objects, "l4-vllm")
    assert gpu["image"] == "registry.example.com/heteroserve:0.1.0-cuda-vllm"
    gpu_args = build_parser().parse_args([*gpu["command"][1:], *gpu["args"]])
    assert (gpu_args.engine, gpu_args.device, gpu_args.vllm_memory_fraction) == ("vllm", "cuda", 0.9)
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    # native pools of the same release: no vLLM flag, the native image
    native = worker_container(objects, "cpu-colocated")
    assert native["image"] == "registry.example.com/heteroserve:0.1.0"
    assert not any(a.startswith(("--engine", "--vllm")) for a in native["args"])


def test_worker_vllm_holds_the_defaults_of_every_vllm_pool(tmp_path: Path) -> None:
    values = values_with(VLLM_GPU_POOL, VLLM_CPU_POOL)
    values["worker"] = {"vllm": {"memoryFraction": 0.8, "blockSize": 64, "imageSuffix": "-vllm-0.32"}}
    objects = render(values, tmp_path)
    gpu = worker_container(objects, "l4-vllm")
    assert gpu["image"] == "registry.example.com/heteroserve:0.1.0-cuda-vllm-0.32"
    assert {"--vllm-memory-fraction=0.8", "--vllm-block-size=64"} <= set(gpu["args"])
    cpu = worker_container(objects, "cpu-vllm")
    assert cpu["image"] == "registry.example.com/heteroserve:0.1.0-vllm-0.32"
    assert {"--vllm-memory-fraction=0.05", "--vllm-block-size=64"} <= set(cpu["args"])  # its own share


def test_a_vllm_pool_template_reaches_the_planner(tmp_path: Path) -> None:
    values = copy.deepcopy(MIXED_FLEET)
    values["planner"]["poolTemplates"]["devices"]["cpu"] = {"engine": "vllm", "roles": ["colocated"],
                                                            "pricePerHour": 0.2}
    values["planner"]["poolTemplates"]["devices"]["cuda"] |= {
        "engine": "vllm", "image": "mirror.example.com/hs-vllm:custom"}
    config_map = by_kind(render(values, tmp_path), "ConfigMap")["hs-heteroserve-planner"]
    path = tmp_path / "kubernetes.yaml"
    path.write_text(config_map["data"]["kubernetes.yaml"])
    from control_plane.actuators.kubernetes_setup import load_kubernetes_settings

    templates = load_kubernetes_settings(path).actuator.templates.devices
    worker = templates["cpu"].pod_spec["containers"][0]
    assert worker["image"] == "registry.example.com/heteroserve:0.1.0-vllm"
    assert worker["args"][-3:] == ["--engine=vllm", "--vllm-memory-fraction=0.9", "--vllm-block-size=32"]
    gpu = templates["cuda"].pod_spec["containers"][0]
    assert gpu["image"] == "mirror.example.com/hs-vllm:custom"  # a template's own image wins
    assert "--engine=vllm" in gpu["args"]


@pytest.mark.parametrize(("pool", "expected"), [
    (VLLM_CPU_POOL | {"vllm": {"memoryFraction": 1.5}}, "memoryFraction"),
    (VLLM_CPU_POOL | {"vllm": {"blockSize": 24}}, "blockSize"),
    (VLLM_CPU_POOL | {"vllm": {"swapSpace": 4}}, "swapSpace"),
    (VLLM_CPU_POOL | {"engine": "sglang"}, "engine"),
    (VLLM_CPU_POOL | {"device": "csd", "role": "decode", "csd": {"drivePath": "/mnt/csd0"}},
     "engine: vllm runs on cpu or cuda pools, not on the csd pool cpu-vllm"),
])
def test_what_a_vllm_worker_cannot_be_is_refused_naming_the_field(pool: dict[str, Any], expected: str,
                                                                  tmp_path: Path) -> None:
    result = helm("template", "hs", str(CHART), values=values_with(pool), tmp_path=tmp_path)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_the_operations_guide_vllm_pool_renders_and_validates(tmp_path: Path) -> None:
    """The GPU vLLM pool values shown in docs/operations.md ("vLLM pools") stay valid."""
    guide = (CHART.parents[1] / "docs" / "operations.md").read_text()
    section = guide.split("## vLLM pools", 1)[1].split("**Chart values for a GPU vLLM pool.**", 1)[1]
    block: dict[str, Any] = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    objects = render(block, tmp_path)
    validate_all(objects)
    worker = worker_container(objects, "h100-vllm")
    assert worker["image"].endswith("-cuda-vllm")
    args = build_parser().parse_args([*worker["command"][1:], *worker["args"]])
    assert (args.engine, args.device) == ("vllm", "cuda")
    assert (args.vllm_memory_fraction, args.vllm_block_size) == (0.92, 32)
