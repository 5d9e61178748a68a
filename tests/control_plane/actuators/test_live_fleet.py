"""The planner's inventory from the live Node list, and a plan that opens a pool on a new node type.

Nodes come from the RECORDING HTTP ENDPOINT (recording_apiserver.py), read by the real `kubernetes`
client; the solver is the real placement ILP; the pool the plan opens is created by the real actuator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from control_plane.actuators import ActuatorMetrics, DrainTarget, PoolTarget
from control_plane.actuators.kubernetes import KubernetesActuator
from control_plane.actuators.kubernetes_setup import live_fleet_solver, load_kubernetes_settings
from control_plane.planner.profile_solver import ProfiledClass, ProfiledPool, ProfileSpec
from control_plane.planner.types import DemandClass
from tests.control_plane.actuators.recording_apiserver import Fault, RecordingApiServer
from tests.control_plane.actuators.test_kubernetes_actuator import node
from tests.control_plane.actuators.test_template_pools import CUDA_POD, validate

H100_POD: dict[str, Any] = {**CUDA_POD, "containers": [{
    **CUDA_POD["containers"][0], "resources": {"limits": {"nvidia.com/gpu": 2, "memory": "64Gi"}}}]}
SETTINGS = {
    "actuator": {
        "namespace": "serving", "instance": "hs", "deployment_prefix": "hs-heteroserve-worker-",
        "pools": ["cpu-colocated"],
        "templates": {
            "node_types": {"h100": {"device": "cuda", "pod_spec": H100_POD, "roles": ["prefill"],
                                    "price_per_hour": 9.0, "rate_per_worker": {"chat": 4.0}}},
            "devices": {"cuda": {"device": "cuda", "pod_spec": CUDA_POD, "roles": ["colocated"],
                                 "price_per_hour": 0.5, "rate_per_worker": {"chat": 10.0}}},
        },
        "retry": {"attempts": 2, "initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.01},
    },
    "inventory": {"max_workers": {"cpu": 8, "h100": 2}, "default_max_workers": 6},
}
BASE = ProfileSpec(
    model="tiny",
    pools=(ProfiledPool(name="cpu-colocated", node_type="cpu", role="colocated", device="cpu",
                        price_per_hour=1.0, rate_per_worker={"chat": 1.0}),),
    classes=(ProfiledClass(name="chat", max_input_tokens=1024, max_output_tokens=256),),
    inventory={"cpu": 8},
)


def cluster_nodes() -> list[dict[str, Any]]:
    a10g = {"heteroserve.io/node-type": "a10g"}  # a node type the values never mention
    h100 = {"nvidia.com/gpu.product": "h100"}
    cpu = {"heteroserve.io/node-type": "cpu"}
    return [
        node("a10g-1", a10g, gpus=4), node("a10g-2", a10g, gpus=4),
        node("h100-1", h100, gpus=8), node("h100-2", h100, gpus=8),
        node("cpu-1", cpu), node("cpu-2", cpu), node("cpu-3", cpu, unschedulable=True),
    ]


def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "kubernetes.yaml"
    path.write_text(yaml.safe_dump(SETTINGS))
    return path


def api_client(server: RecordingApiServer) -> k8s.ApiClient:
    configuration = k8s.Configuration(host=server.url)
    configuration.retries = 0
    return k8s.ApiClient(configuration)


def test_inventory_and_pools_come_from_the_node_list(server: RecordingApiServer, tmp_path: Path) -> None:
    server.nodes = cluster_nodes()
    solver = live_fleet_solver(settings_file(tmp_path), BASE, api_client(server))
    spec = solver.refresh()
    assert [(p.name, p.node_type, p.role, p.device) for p in spec.pools] == [
        ("cpu-colocated", "cpu", "colocated", "cpu"),
        ("a10g-colocated", "a10g", "colocated", "cuda"),
        ("h100-prefill", "h100", "prefill", "cuda"),
    ]
    # a10g: per node min(4 GPUs / 1, 32 cpu / 4, 128Gi / 16Gi) = 4, two nodes = 8, default cap 6.
    # h100: per node min(8 GPUs / 2, 128Gi / 64Gi) = 2, two nodes = 4, capped by values at 2.
    # cpu: no template for cpu nodes: one worker per schedulable node (the cordoned one not counted).
    assert spec.inventory == {"a10g": 6, "cpu": 2, "h100": 2}
    assert [c.path for c in server.calls] == ["/api/v1/nodes"]

    server.faults = [Fault("GET", "/api/v1/nodes", 503)]
    server.nodes = []
    assert solver.refresh() == spec, "an unreachable API server: plan over the last fleet seen"


async def test_a_plan_opens_a_pool_on_a_node_type_values_never_declared(
    server: RecordingApiServer, tmp_path: Path
) -> None:
    server.nodes = cluster_nodes()
    path = settings_file(tmp_path)
    solver = live_fleet_solver(path, BASE, api_client(server))
    plan = solver([DemandClass(name="chat", rate_per_s=25.0, mean_input_tokens=200, mean_output_tokens=50)],
                  None)
    counts = {p.name: p.count for p in plan.pools if p.count}
    assert counts == {"a10g-colocated": 3}, "the cheapest way: 3 x $0.50/h at 10 req/s each"

    async def drain(target: DrainTarget) -> None:
        raise AssertionError("nothing to drain")

    actuator = KubernetesActuator(load_kubernetes_settings(path).actuator, api_client(server), drain,
                                  ActuatorMetrics(CollectorRegistry()))
    targets = [PoolTarget(pool=p.name, node_type=p.node_type, role=p.role, device=p.device, model="tiny",
                          replicas=p.count) for p in plan.pools if p.name != "cpu-colocated"]
    server.events.clear()
    try:
        result = await actuator.apply(targets)
    finally:
        await actuator.close()
    assert result.created == ("a10g-colocated", "h100-prefill") and result.complete
    created = server.deployments["hs-heteroserve-worker-a10g-colocated"]
    assert created["spec"]["replicas"] == 3
    assert created["spec"]["template"]["spec"]["nodeSelector"] == {"heteroserve.io/node-type": "a10g"}
    assert server.deployments["hs-heteroserve-worker-h100-prefill"]["spec"]["replicas"] == 0
    for call in server.calls:
        if call.method == "POST":
            validate(call.body)
