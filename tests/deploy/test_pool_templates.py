"""Pool templates end to end: values → rendered kubernetes.yaml → the actuator's created objects.

The chart is rendered by the real helm binary; the planner's settings are parsed from the rendered
ConfigMap by the planner's own loader; the actuator creates pools through the real `kubernetes` client
against the RECORDING HTTP ENDPOINT (tests/control_plane/actuators/recording_apiserver.py; no API server
can run here); every object it sends is validated against the Kubernetes OpenAPI schemas of the
oldest and newest version the chart supports, and the worker's command line is parsed by the real CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from common.errors import ConfigError
from control_plane.actuators import ActuatorMetrics, DrainTarget, PoolTarget
from control_plane.actuators.kubernetes import KubernetesActuator
from control_plane.actuators.kubernetes_setup import KubernetesSettings, load_kubernetes_settings
from heteroserve.cli import build_parser
from tests.control_plane.actuators.recording_apiserver import RecordingApiServer
from tests.deploy.helm_render import by_kind, helm, render
from tests.deploy.test_helm_chart import MIXED_FLEET

SUPPORTED_VERSIONS = ("1.27.0", "1.35.0")  # Chart.yaml: kubeVersion >= 1.27


def settings_of(values: dict[str, Any], tmp_path: Path) -> KubernetesSettings:
    config_map = by_kind(render(values, tmp_path), "ConfigMap")["hs-heteroserve-planner"]
    path = tmp_path / "kubernetes.yaml"
    path.write_text(config_map["data"]["kubernetes.yaml"])
    return load_kubernetes_settings(path)


def test_templates_and_inventory_caps_reach_the_planner(tmp_path: Path) -> None:
    settings = settings_of(MIXED_FLEET, tmp_path)
    templates = settings.actuator.templates
    assert sorted(templates.node_types) == ["a100"] and sorted(templates.devices) == ["cuda"]
    a100 = templates.node_types["a100"]
    assert (a100.device, a100.roles, a100.price_per_hour) == ("cuda", ("prefill", "decode"), 3.0)
    # capacities come from profiles or the roofline, never from values: a hand-typed rate is refused
    rendered = yaml.safe_load((tmp_path / "kubernetes.yaml").read_text())
    rendered["actuator"]["templates"]["node_types"]["a100"]["rate_per_worker"] = {"chat": 4.0}
    typed = tmp_path / "typed-rates.yaml"
    typed.write_text(yaml.safe_dump(rendered))
    with pytest.raises(ConfigError, match=r"templates\.node_types\.a100\.rate_per_worker: unknown field"):
        load_kubernetes_settings(typed)
    worker = a100.pod_spec["containers"][0]
    assert worker["image"] == "registry.example.com/heteroserve:0.1.0-cuda-vllm"  # the vllm extra's image
    assert worker["args"][-3:] == ["--engine=vllm", "--vllm-memory-fraction=0.85", "--vllm-block-size=32"]
    assert not any(a.startswith(("--role", "--pool", "--node-type")) for a in worker["args"])
    assert a100.requests() == {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"}
    assert "nodeSelector" not in a100.pod_spec, "the actuator sets it per node type"
    assert a100.pod_spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                             "effect": "NoSchedule"}]
    assert templates.devices["cuda"].requests() == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert settings.actuator.worker_pod_labels == {
        "app.kubernetes.io/name": "heteroserve", "app.kubernetes.io/instance": "hs",
        "app.kubernetes.io/part-of": "heteroserve", "app.kubernetes.io/component": "worker"}
    # Helm merges maps with the defaults: the default `cpu: 8` stays.
    assert settings.inventory.max_workers == {"h100": 2, "l4": 8, "c7i": 4, "csd": 2, "cpu": 8}
    assert settings.inventory.default_max_workers == 4


def test_default_values_have_no_templates(tmp_path: Path) -> None:
    settings = settings_of({}, tmp_path)
    assert not settings.actuator.templates
    assert (settings.inventory.max_workers, settings.inventory.default_max_workers) == ({"cpu": 8}, 8)


async def test_created_objects_validate_and_their_command_line_parses(tmp_path: Path) -> None:
    settings = settings_of(MIXED_FLEET, tmp_path)
    server = RecordingApiServer().start()

    async def drain(target: DrainTarget) -> None:
        raise AssertionError("nothing to drain")

    configuration = k8s.Configuration(host=server.url)
    configuration.retries = 0
    actuator = KubernetesActuator(settings.actuator, k8s.ApiClient(configuration), drain,
                                  ActuatorMetrics(CollectorRegistry()))
    targets = [PoolTarget(pool="a10g-decode", node_type="a10g", role="decode", device="cuda",
                          model="llama-8b", replicas=2),
               PoolTarget(pool="a100-prefill", node_type="a100", role="prefill", device="cuda",
                          model="llama-8b", replicas=1)]
    try:
        result = await actuator.apply(targets)
    finally:
        await actuator.close()
        server.stop()
    assert result.created == ("a100-prefill", "a10g-decode") and result.complete
    created = [c.body for c in server.calls if c.method == "POST"]
    assert sorted(o["kind"] for o in created) == ["Deployment"] * 2 + ["PodDisruptionBudget"] * 2
    for obj in created:
        for version in SUPPORTED_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    parser = build_parser()
    for obj in (o for o in created if o["kind"] == "Deployment"):
        worker = obj["spec"]["template"]["spec"]["containers"][0]
        args = parser.parse_args([*worker["command"][1:], *worker["args"]])
        pool = obj["metadata"]["labels"]["heteroserve.io/pool"]
        assert (args.pool, args.device) == (pool, "cuda")
    a10g = server.deployments["hs-heteroserve-worker-a10g-decode"]["spec"]["template"]["spec"]
    assert a10g["nodeSelector"] == {"heteroserve.io/node-type": "a10g"}
    assert a10g["containers"][0]["resources"]["limits"] == {"memory": "32Gi", "nvidia.com/gpu": "1"}


@pytest.mark.parametrize(("template", "expected"), [
    ({"device": "csd", "pricePerHour": 1.0}, "missing property 'csd'"),
    ({"device": "cuda", "gpus": 1, "roles": ["both"]}, "/planner/poolTemplates/nodeTypes/x/roles/0"),
    ({"device": "cuda", "gpus": 1, "replicas": 3}, "additional properties 'replicas' not allowed"),
    ({"gpus": 1}, "missing property 'device'"),
])
def test_bad_templates_are_refused_naming_the_field(template: dict[str, Any], expected: str,
                                                     tmp_path: Path) -> None:
    values = {"planner": {"poolTemplates": {"nodeTypes": {"x": template}, "devices": {}}}}
    result = helm("template", "hs", str(Path(__file__).resolve().parents[2] / "helm" / "heteroserve"),
                  values=values, tmp_path=tmp_path)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_a_chart_pool_can_host_vllm(tmp_path: Path) -> None:
    pools = [p | {"engine": "vllm"} if p["name"] == "l4-decode" else p for p in MIXED_FLEET["workerPools"]]
    deployments = by_kind(render(MIXED_FLEET | {"workerPools": pools}, tmp_path), "Deployment")
    worker = deployments["hs-heteroserve-worker-l4-decode"]["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args([*worker["command"][1:], *worker["args"]])
    assert args.engine == "vllm"
    other = deployments["hs-heteroserve-worker-h100-prefill"]["spec"]["template"]["spec"]["containers"][0]
    assert not any(a.startswith("--engine") for a in other["args"]), "native is the worker's default"
