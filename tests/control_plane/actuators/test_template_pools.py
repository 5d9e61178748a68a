"""Template pools: the actuator creates, scales and deletes a pool for a node type the values never named.

Against the RECORDING HTTP ENDPOINT (recording_apiserver.py), not an API server: the real `kubernetes`
client makes the calls, the tests assert them exactly, and every object the actuator creates is
validated against the Kubernetes OpenAPI schemas of the versions the chart supports.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from common.errors import PermissionDeniedError
from control_plane.actuators import ActuatorMetrics, DrainTarget, PoolChange, PoolTarget
from control_plane.actuators.kube_calls import RetryPolicy
from control_plane.actuators.kubernetes import KubernetesActuator, KubernetesActuatorConfig
from control_plane.actuators.templates import PoolTemplate, TemplateSet, template_pool_name
from tests.control_plane.actuators.recording_apiserver import Fault, RecordingApiServer
from tests.control_plane.actuators.test_kubernetes_actuator import pod

NS = "serving"
PREFIX = "hs-heteroserve-worker-"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
PDBS = f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets"
# The chart's supported Kubernetes versions (Chart.yaml kubeVersion >= 1.27): oldest and newest.
K8S_VERSIONS = ("1.27.0", "1.35.0")
MANAGED = "app.kubernetes.io/instance=hs,app.kubernetes.io/managed-by=heteroserve-planner," \
          "app.kubernetes.io/part-of=heteroserve"
POD_LABELS = {"app.kubernetes.io/name": "heteroserve", "app.kubernetes.io/instance": "hs",
              "app.kubernetes.io/part-of": "heteroserve", "app.kubernetes.io/component": "worker"}

CUDA_POD: dict[str, Any] = {
    "serviceAccountName": "hs-heteroserve-worker",
    "automountServiceAccountToken": False,
    "terminationGracePeriodSeconds": 120,
    "containers": [{
        "name": "worker",
        "image": "registry.example.com/heteroserve:0.1.0-cuda",
        "command": ["heteroserve", "worker"],
        "args": ["--model=/models/tiny", "--device=cuda", "--host=0.0.0.0", "--port=50051"],
        "ports": [{"name": "grpc", "containerPort": 50051, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1},
                      "limits": {"memory": "32Gi", "nvidia.com/gpu": 1}},
    }],
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def make_actuator(server: RecordingApiServer, registry: CollectorRegistry, *,
                  attempts: int = 3) -> KubernetesActuator:
    async def drain(target: DrainTarget) -> None:
        server.events.append(("drain", target.name, target.address))

    configuration = k8s.Configuration(host=server.url)
    configuration.retries = 0  # retries are the actuator's (exact call counts in these tests)
    templates = TemplateSet(devices={"cuda": PoolTemplate(device="cuda", pod_spec=CUDA_POD,
                                                          roles=("prefill", "decode"))})
    config = KubernetesActuatorConfig(
        namespace=NS, instance="hs", deployment_prefix=PREFIX, pools=("cpu-colocated",), templates=templates,
        worker_pod_labels=POD_LABELS,
        retry=RetryPolicy(attempts=attempts, initial_backoff_seconds=0.01, max_backoff_seconds=0.02))
    return KubernetesActuator(config, k8s.ApiClient(configuration), drain, ActuatorMetrics(registry))


def target(pool: str, replicas: int, node_type: str = "a10g", role: str = "decode") -> PoolTarget:
    return PoolTarget(pool=pool, node_type=node_type, role=role, device="cuda", model="tiny",  # type: ignore[arg-type]
                      replicas=replicas)


def calls(server: RecordingApiServer) -> list[tuple[str, str]]:
    return [(c.method, c.path) for c in server.calls]


def validate(obj: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)  # raises ValidationError


async def test_opens_scales_and_deletes_a_pool_for_an_undeclared_node_type(
    server: RecordingApiServer, registry: CollectorRegistry
) -> None:
    name = PREFIX + "a10g-decode"
    actuator = make_actuator(server, registry)
    try:
        opened = await actuator.apply([target("a10g-decode", 2)])
        assert calls(server) == [("GET", DEPLOYMENTS), ("GET", f"{DEPLOYMENTS}/{name}"), ("POST", PDBS),
                                 ("POST", DEPLOYMENTS)]
        assert server.calls[0].query == {"labelSelector": MANAGED}
        assert (opened.created, opened.changes) == (("a10g-decode",), (PoolChange("a10g-decode", 0, 2),))
        deployment, pdb = server.deployments[name], server.pdbs[name]
        validate(server.calls[3].body)
        validate(server.calls[2].body)
        labels = deployment["metadata"]["labels"]
        assert labels == {"app.kubernetes.io/part-of": "heteroserve", "app.kubernetes.io/instance": "hs",
                          "app.kubernetes.io/managed-by": "heteroserve-planner",
                          "heteroserve.io/pool": "a10g-decode", "heteroserve.io/node-type": "a10g",
                          "heteroserve.io/role": "decode", "heteroserve.io/device": "cuda"}
        assert pdb["metadata"]["labels"] == labels and pdb["spec"]["maxUnavailable"] == 1
        assert deployment["spec"]["replicas"] == 2
        pod_spec = deployment["spec"]["template"]["spec"]
        assert pod_spec["containers"][0]["args"][-3:] == ["--role=decode", "--node-type=a10g",
                                                          "--pool=a10g-decode"]
        assert pod_spec["nodeSelector"] == {"heteroserve.io/node-type": "a10g"}
        assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert deployment["spec"]["template"]["metadata"]["labels"] == {**POD_LABELS, **labels}
        assert CUDA_POD["containers"][0]["args"][-1] == "--port=50051", "the template is not mutated"

        server.events.clear()
        scaled = await actuator.apply([target("a10g-decode", 3)])
        assert calls(server) == [("GET", DEPLOYMENTS), ("PATCH", f"{DEPLOYMENTS}/{name}/scale")]
        assert scaled.changes == (PoolChange("a10g-decode", 2, 3),) and scaled.created == ()

        server.pods = [pod(f"w-{i}", "a10g-decode", f"10.0.0.{i}", True, f"2026-11-0{i}T00:00:00Z")
                       for i in (1, 2, 3)]
        server.events.clear()
        dropped = await actuator.apply([])
        assert calls(server) == [
            ("GET", DEPLOYMENTS), ("GET", f"/api/v1/namespaces/{NS}/pods"),
            *[("PATCH", f"/api/v1/namespaces/{NS}/pods/w-{i}") for i in (3, 2, 1)],
            ("DELETE", f"{DEPLOYMENTS}/{name}"), ("DELETE", f"{PDBS}/{name}"),
        ]
        drains = [e for e in server.events if isinstance(e, tuple)]
        assert len(drains) == 3
        assert server.events.index(drains[-1]) < server.events.index(server.calls[-2]), "drain before delete"
        assert (dropped.deleted, dropped.changes) == (("a10g-decode",), (PoolChange("a10g-decode", 3, 0),))
        assert server.deployments == {} and server.pdbs == {}
    finally:
        await actuator.close()
    assert registry.get_sample_value("heteroserve_actuator_pool_lifecycle_total", {"event": "created"}) == 1
    assert registry.get_sample_value("heteroserve_actuator_pool_lifecycle_total", {"event": "deleted"}) == 1


async def test_never_touches_objects_without_the_planner_labels(
    server: RecordingApiServer, registry: CollectorRegistry
) -> None:
    # Someone else's Deployment with the name the pool would get, and another release's planner pool.
    server.deployments[PREFIX + "a10g-decode"] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": PREFIX + "a10g-decode", "namespace": NS, "labels": {"team": "other"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "template": {}},
    }
    other_release = {"app.kubernetes.io/part-of": "heteroserve", "app.kubernetes.io/instance": "other",
                     "app.kubernetes.io/managed-by": "heteroserve-planner",
                     "heteroserve.io/pool": "l4-decode"}
    server.deployments["other-worker-l4-decode"] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "other-worker-l4-decode", "namespace": NS, "labels": other_release},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "template": {}},
    }
    actuator = make_actuator(server, registry)
    try:
        assert (await actuator.apply([])).changes == (), "another release's pool is not ours to delete"
        with pytest.raises(PermissionDeniedError, match="without the labels of this release's planner"):
            await actuator.apply([target("a10g-decode", 1)])
    finally:
        await actuator.close()
    assert all(c.method == "GET" for c in server.calls), "nothing may be created, changed or deleted"


async def test_conflicts_and_outages_are_retried(
    server: RecordingApiServer, registry: CollectorRegistry
) -> None:
    actuator = make_actuator(server, registry)
    try:
        await actuator.apply([target("a10g-decode", 1)])
        server.events.clear()
        server.faults = [Fault("GET", "/deployments", 503), Fault("PATCH", "/scale", 409),
                         Fault("PATCH", "/scale", 0)]  # 0: the connection drops without an answer
        result = await actuator.apply([target("a10g-decode", 2)])
    finally:
        await actuator.close()
    scale = ("PATCH", f"{DEPLOYMENTS}/{PREFIX}a10g-decode/scale")
    assert calls(server) == [("GET", DEPLOYMENTS)] * 2 + [scale] * 3
    assert result.changes == (PoolChange("a10g-decode", 1, 2),) and result.complete
    assert server.deployments[PREFIX + "a10g-decode"]["spec"]["replicas"] == 2
    errors = {op: registry.get_sample_value("heteroserve_actuator_api_errors_total", {"operation": op})
              for op in ("list deployments", "scale deployment")}
    assert errors == {"list deployments": 1.0, "scale deployment": 2.0}
    assert registry.get_sample_value("heteroserve_actuator_pools_not_applied") == 0


async def test_an_outage_mid_apply_is_reported_not_silent(
    server: RecordingApiServer, registry: CollectorRegistry
) -> None:
    actuator = make_actuator(server, registry)
    try:
        await actuator.apply([target("a10g-decode", 1), target("h200-prefill", 1, "h200", "prefill")])
        # The API server goes down after the first scale: every later write fails through the retries.
        server.faults = [Fault("PATCH", f"{PREFIX}h200-prefill/scale", 503, times=99),
                         Fault("POST", "/poddisruptionbudgets", 503, times=99)]
        result = await actuator.apply([target("a10g-decode", 2), target("h200-prefill", 2, "h200", "prefill"),
                                       target("t4-decode", 1, "t4")])
    finally:
        await actuator.close()
    assert result.changes == (PoolChange("a10g-decode", 1, 2),)
    assert result.not_applied == ("t4-decode", "h200-prefill") and not result.complete
    assert PREFIX + "t4-decode" not in server.deployments
    assert server.deployments[PREFIX + "h200-prefill"]["spec"]["replicas"] == 1
    assert registry.get_sample_value("heteroserve_actuator_pools_not_applied") == 2
    assert registry.get_sample_value("heteroserve_actuator_incomplete_applies_total") == 1
    scale_attempts = [c for c in server.calls if c.path.endswith(f"{PREFIX}h200-prefill/scale")]
    assert len(scale_attempts) == 3, "three attempts (the policy), then reported"


def test_template_pool_names_are_dns_labels() -> None:
    assert template_pool_name("NVIDIA-H100-80GB-HBM3", "prefill") == "nvidia-h100-80gb-hbm3-prefill"
    assert template_pool_name("c7i.8xlarge", "colocated") == "c7i-8xlarge-colocated"
    assert len(template_pool_name("x" * 80, "colocated")) == 40


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"device": "tpu"}, "device"), ({"roles": ()}, "roles"), ({"roles": ("both",)}, r"roles\[0\]"),
    ({"pod_spec": {}}, "pod_spec"), ({"price_per_hour": -1.0}, "price_per_hour"),
    ({"max_workers": -1}, "max_workers"),
])
def test_template_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        PoolTemplate(**({"device": "cuda", "pod_spec": CUDA_POD} | kwargs))
