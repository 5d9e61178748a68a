"""KubernetesActuator against the RECORDING HTTP ENDPOINT (recording_apiserver.py), not an API server.

The real `kubernetes` client talks HTTP to 127.0.0.1; the tests assert the exact API calls made.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from common.errors import ConfigError, NotFoundError, PermissionDeniedError, UnavailableError
from control_plane.actuators import ActuatorMetrics, DrainTarget, NodeGroup, PoolChange, PoolTarget
from control_plane.actuators.inventory import InventoryLabels
from control_plane.actuators.kubernetes import KubernetesActuator, KubernetesActuatorConfig
from tests.control_plane.actuators.recording_apiserver import Call, RecordingApiServer

NS = "serving"
PREFIX = "hs-heteroserve-worker-"
DEPLOY_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/"
MERGE = "application/merge-patch+json"


def owned_labels(pool: str, role: str = "decode", node_type: str = "l4") -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": "heteroserve",
        "app.kubernetes.io/instance": "hs",
        "heteroserve.io/pool": pool,
        "heteroserve.io/role": role,
        "heteroserve.io/node-type": node_type,
    }


def deployment(pool: str, replicas: int, ready: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": PREFIX + pool, "namespace": NS, "labels": labels or owned_labels(pool)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"heteroserve.io/pool": pool}},
            "template": {"metadata": {}, "spec": {"containers": []}},
        },
        "status": {"replicas": replicas, "readyReplicas": ready},
    }


def pod(name: str, pool: str, ip: str | None, ready: bool, created: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": owned_labels(pool),
            "creationTimestamp": created,
        },
        "spec": {"containers": [{"name": "worker", "ports": [{"name": "grpc", "containerPort": 7070}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def node(
    name: str, labels: dict[str, str], gpus: int = 0, ready: bool = True, unschedulable: bool = False
) -> dict[str, Any]:
    allocatable = {"cpu": "32", "memory": "128Gi"} | ({"nvidia.com/gpu": str(gpus)} if gpus else {})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"unschedulable": unschedulable},
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def make_actuator(
    server: RecordingApiServer, registry: CollectorRegistry, **overrides: Any
) -> KubernetesActuator:
    async def drain(target: DrainTarget) -> None:
        server.events.append(("drain", target.name, target.address))
        if target.name.endswith("-broken"):
            raise UnavailableError("worker unreachable")

    configuration = k8s.Configuration(host=server.url)
    settings = {"namespace": NS, "instance": "hs", "deployment_prefix": PREFIX, "pools": ("l4-decode",)}
    config = KubernetesActuatorConfig(**(settings | overrides))
    return KubernetesActuator(config, k8s.ApiClient(configuration), drain, ActuatorMetrics(registry))


def target(pool: str, replicas: int, role: str = "decode", node_type: str = "l4") -> PoolTarget:
    return PoolTarget(
        pool=pool, node_type=node_type, role=role, device="cuda", model="tiny", replicas=replicas
    )


def summary(calls: list[Call]) -> list[tuple[str, str]]:
    return [(c.method, c.path) for c in calls]


async def test_scale_up_patches_the_scale_subresource(
    server: RecordingApiServer, registry: CollectorRegistry
):
    server.deployments[PREFIX + "l4-decode"] = deployment("l4-decode", replicas=1, ready=1)
    actuator = make_actuator(server, registry)
    try:
        result = await actuator.apply([target("l4-decode", 3)])
    finally:
        await actuator.close()
    assert summary(server.calls) == [
        ("GET", DEPLOY_PATH + PREFIX + "l4-decode"),
        ("PATCH", DEPLOY_PATH + PREFIX + "l4-decode/scale"),
    ]
    patch = server.calls[1]
    assert patch.content_type == MERGE
    assert patch.body == {"spec": {"replicas": 3}}
    assert result.changes == (PoolChange("l4-decode", 1, 3),)
    assert result.drained == ()
    labels = {"pool": "l4-decode", "node_type": "l4", "role": "decode"}
    assert registry.get_sample_value("heteroserve_pool_desired_replicas", labels) == 3.0


async def test_scale_down_drains_chosen_pods_before_the_scale_patch(
    server: RecordingApiServer, registry: CollectorRegistry
):
    server.deployments[PREFIX + "l4-decode"] = deployment("l4-decode", replicas=4, ready=4)
    server.pods = [
        pod("w-old", "l4-decode", "10.0.0.1", True, "2026-11-01T00:00:00Z"),
        pod("w-new", "l4-decode", "10.0.0.2", True, "2026-11-20T00:00:00Z"),
        pod("w-mid", "l4-decode", "10.0.0.3", True, "2026-11-10T00:00:00Z"),
        pod("w-pending", "l4-decode", None, False, "2026-11-02T00:00:00Z"),
    ]
    actuator = make_actuator(server, registry)
    try:
        result = await actuator.apply([target("l4-decode", 2)])
    finally:
        await actuator.close()
    # The pending pod (no IP) goes first, then the newest one; only the one with an address is drained.
    assert summary(server.calls) == [
        ("GET", DEPLOY_PATH + PREFIX + "l4-decode"),
        ("GET", f"/api/v1/namespaces/{NS}/pods"),
        ("PATCH", f"/api/v1/namespaces/{NS}/pods/w-pending"),
        ("PATCH", f"/api/v1/namespaces/{NS}/pods/w-new"),
        ("PATCH", DEPLOY_PATH + PREFIX + "l4-decode/scale"),
    ]
    selector = server.calls[1].query["labelSelector"]
    assert (
        selector
        == "app.kubernetes.io/instance=hs,app.kubernetes.io/part-of=heteroserve,heteroserve.io/pool=l4-decode"
    )
    assert server.calls[2].body == {
        "metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-1000"}}
    }
    assert server.calls[2].content_type == MERGE
    drain_at = server.events.index(("drain", "w-new", "10.0.0.2:7070"))
    scale_at = server.events.index(server.calls[-1])
    assert drain_at < scale_at, "the drain must finish before the replica count drops"
    assert server.calls[-1].body == {"spec": {"replicas": 2}}
    assert [e for e in server.events if isinstance(e, tuple)] == [("drain", "w-new", "10.0.0.2:7070")]
    assert result.changes == (PoolChange("l4-decode", 4, 2),)
    assert [t.name for t in result.drained] == ["w-pending", "w-new"]
    assert result.drain_failures == ()


async def test_failed_drain_is_reported_and_scale_down_proceeds(
    server: RecordingApiServer, registry: CollectorRegistry
):
    server.deployments[PREFIX + "l4-decode"] = deployment("l4-decode", replicas=2, ready=2)
    server.pods = [
        pod("w-a", "l4-decode", "10.0.0.1", True, "2026-11-01T00:00:00Z"),
        pod("w-broken", "l4-decode", "10.0.0.2", True, "2026-11-05T00:00:00Z"),
    ]
    actuator = make_actuator(server, registry)
    try:
        result = await actuator.apply([target("l4-decode", 1)])
    finally:
        await actuator.close()
    assert [t.name for t in result.drain_failures] == ["w-broken"]
    assert server.calls[-1].body == {"spec": {"replicas": 1}}
    assert (
        registry.get_sample_value(
            "heteroserve_actuator_drains_total", {"pool": "l4-decode", "status": "failed"}
        )
        == 1
    )


async def test_ups_before_downs_and_unchanged_pools_untouched(
    server: RecordingApiServer, registry: CollectorRegistry
):
    server.deployments[PREFIX + "b-down"] = deployment(
        "b-down", replicas=1, ready=1, labels=owned_labels("b-down")
    )
    server.deployments[PREFIX + "c-up"] = deployment("c-up", replicas=0, ready=0, labels=owned_labels("c-up"))
    server.deployments[PREFIX + "a-same"] = deployment(
        "a-same", replicas=2, ready=2, labels=owned_labels("a-same")
    )
    server.pods = [pod("b-1", "b-down", "10.0.0.9", True, "2026-11-01T00:00:00Z")]
    actuator = make_actuator(server, registry, pools=("a-same", "b-down", "c-up"))
    try:
        result = await actuator.apply([target("b-down", 0), target("c-up", 2), target("a-same", 2)])
        again = await actuator.apply([target("b-down", 0), target("c-up", 2), target("a-same", 2)])
    finally:
        await actuator.close()
    patches = [c.path for c in server.calls if c.method == "PATCH" and c.path.endswith("/scale")]
    assert patches == [DEPLOY_PATH + PREFIX + "c-up/scale", DEPLOY_PATH + PREFIX + "b-down/scale"]
    assert result.changes == (PoolChange("c-up", 0, 2), PoolChange("b-down", 1, 0))
    assert again.changes == (), "applying the same targets twice changes nothing"


@pytest.mark.parametrize(
    "labels",
    [
        {"heteroserve.io/pool": "l4-decode"},  # someone else's Deployment with our name
        owned_labels("l4-decode") | {"app.kubernetes.io/instance": "other-release"},
        owned_labels("another-pool"),
    ],
)
async def test_refuses_objects_without_ownership_labels(
    server: RecordingApiServer, registry: CollectorRegistry, labels: dict[str, str]
):
    server.deployments[PREFIX + "l4-decode"] = deployment("l4-decode", replicas=1, ready=1, labels=labels)
    actuator = make_actuator(server, registry)
    try:
        with pytest.raises(PermissionDeniedError, match="ownership labels"):
            await actuator.apply([target("l4-decode", 5)])
    finally:
        await actuator.close()
    assert all(c.method == "GET" for c in server.calls), "nothing may be changed on a foreign object"


async def test_refuses_a_target_whose_role_contradicts_the_deployment(
    server: RecordingApiServer, registry: CollectorRegistry
):
    server.deployments[PREFIX + "l4-decode"] = deployment("l4-decode", replicas=1, ready=1)
    actuator = make_actuator(server, registry)
    try:
        with pytest.raises(ConfigError, match=r"heteroserve\.io/role=.decode."):
            await actuator.apply([target("l4-decode", 2, role="prefill")])
    finally:
        await actuator.close()
    assert [c.method for c in server.calls] == ["GET"]


async def test_export_only_sets_the_gauge_and_changes_nothing(
    server: RecordingApiServer, registry: CollectorRegistry
):
    server.deployments[PREFIX + "l4-decode"] = deployment("l4-decode", replicas=1, ready=1)
    actuator = make_actuator(server, registry, export_only=True)
    try:
        result = await actuator.apply([target("l4-decode", 7)])
    finally:
        await actuator.close()
    assert [c.method for c in server.calls] == ["GET"]
    assert result.changes == ()
    labels = {"pool": "l4-decode", "node_type": "l4", "role": "decode"}
    assert registry.get_sample_value("heteroserve_pool_desired_replicas", labels) == 7.0


async def test_current_reports_ready_replicas(server: RecordingApiServer, registry: CollectorRegistry):
    server.deployments[PREFIX + "l4-decode"] = deployment("l4-decode", replicas=3, ready=2)
    actuator = make_actuator(server, registry)
    try:
        assert await actuator.current() == {"l4-decode": 2}
    finally:
        await actuator.close()
    labels = {"pool": "l4-decode", "node_type": "l4", "role": "decode"}
    assert registry.get_sample_value("heteroserve_pool_actual_replicas", labels) == 2.0


async def test_missing_deployment_is_not_found(server: RecordingApiServer, registry: CollectorRegistry):
    actuator = make_actuator(server, registry)
    try:
        with pytest.raises(NotFoundError, match=f"get deployment {PREFIX}l4-decode: HTTP 404"):
            await actuator.apply([target("l4-decode", 1)])
    finally:
        await actuator.close()
    assert (
        registry.get_sample_value(
            "heteroserve_actuator_api_errors_total", {"operation": "get deployment"}
        )
        == 1
    )


async def test_inventory_from_node_labels(server: RecordingApiServer, registry: CollectorRegistry):
    h100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    server.nodes = [
        node("gpu-1", h100, gpus=8),
        node("gpu-2", h100, gpus=8),
        node("gpu-3", h100, gpus=8, unschedulable=True),  # cordoned: not counted
        node("l4-1", {"heteroserve.io/node-type": "l4", "nvidia.com/gpu.product": "NVIDIA-L4"}, gpus=4),
        node("l4-2", {"heteroserve.io/node-type": "l4"}, gpus=4, ready=False),  # NotReady: not counted
        node("cpu-1", {"node.kubernetes.io/instance-type": "c7i.8xlarge"}),
        node("csd-1", {"heteroserve.io/node-type": "csd-4x", "heteroserve.io/csd": "true"}),
        node("plain", {}),
    ]
    labels = InventoryLabels(gpu_product_aliases={"NVIDIA-H100-80GB-HBM3": "h100"})
    actuator = make_actuator(server, registry, labels=labels)
    try:
        groups = await actuator.inventory()
    finally:
        await actuator.close()
    assert groups == (
        NodeGroup("c7i.8xlarge", "cpu", 1, 0),
        NodeGroup("cpu", "cpu", 1, 0),
        NodeGroup("csd-4x", "csd", 1, 0),
        NodeGroup("h100", "cuda", 2, 16),
        NodeGroup("l4", "cuda", 1, 4),
    )
    assert summary(server.calls) == [("GET", "/api/v1/nodes")]


async def test_inventory_passes_the_node_label_selector(
    server: RecordingApiServer, registry: CollectorRegistry
):
    server.nodes = [node("a", {"pool": "serving"}, gpus=1), node("b", {"pool": "batch"}, gpus=1)]
    actuator = make_actuator(server, registry, node_label_selector="pool=serving")
    try:
        groups = await actuator.inventory()
    finally:
        await actuator.close()
    assert server.calls[0].query == {"labelSelector": "pool=serving"}
    assert [g.num_nodes for g in groups] == [1]


async def test_unreachable_api_server_is_unavailable(
    registry: CollectorRegistry, unreachable_api_client: k8s.ApiClient
):
    config = KubernetesActuatorConfig(namespace=NS, instance="hs", deployment_prefix=PREFIX)

    async def drain(target: DrainTarget) -> None:
        raise AssertionError("no drain expected")

    actuator = KubernetesActuator(config, unreachable_api_client, drain, ActuatorMetrics(registry))
    try:
        with pytest.raises(UnavailableError):
            await actuator.inventory()
    finally:
        await actuator.close()


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("pool", {"pool": "Bad_Pool"}),
        ("role", {"role": "both"}),
        ("device", {"device": "tpu"}),
        ("replicas", {"replicas": -1}),
    ],
)
def test_pool_target_validation_names_the_field(field: str, kwargs: dict[str, Any]):
    values = {"pool": "p", "node_type": "l4", "role": "decode", "device": "cuda", "model": "m", "replicas": 1}
    with pytest.raises(ValueError, match=rf"^{field}:"):
        PoolTarget(**(values | kwargs))


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"^pools\[1\]:"):
        KubernetesActuatorConfig(namespace=NS, instance="hs", deployment_prefix=PREFIX, pools=("ok", "NO"))
    with pytest.raises(ValueError, match=r"^drain_timeout_seconds:"):
        KubernetesActuatorConfig(
            namespace=NS, instance="hs", deployment_prefix=PREFIX, drain_timeout_seconds=0
        )


async def test_refuses_a_pool_the_chart_does_not_define(
    server: RecordingApiServer, registry: CollectorRegistry
):
    actuator = make_actuator(server, registry)  # the chart's pools: ("l4-decode",)
    try:
        with pytest.raises(ConfigError, match=r"pools \['h100-prefill'\] are not among the chart's pools"):
            await actuator.apply([target("l4-decode", 1), target("h100-prefill", 1, role="prefill")])
    finally:
        await actuator.close()
    assert server.calls == [], "nothing is read or changed when the targets name an unknown pool"


async def test_refuses_a_target_whose_device_contradicts_the_deployment(
    server: RecordingApiServer, registry: CollectorRegistry
):
    labels = owned_labels("l4-decode") | {"heteroserve.io/device": "cpu"}
    server.deployments[PREFIX + "l4-decode"] = deployment("l4-decode", replicas=1, ready=1, labels=labels)
    actuator = make_actuator(server, registry)
    try:
        with pytest.raises(ConfigError, match=r"heteroserve\.io/device='cpu'"):
            await actuator.apply([target("l4-decode", 2)])  # the target says cuda
    finally:
        await actuator.close()
    assert [c.method for c in server.calls] == ["GET"]
