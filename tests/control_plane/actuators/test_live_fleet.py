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
from control_plane.planner.solver import PlacementSolver, PlanningInputs
from control_plane.planner.types import DemandClass
from placement.catalog import Catalog, NodeType
from placement.ilp.problem import SolverOptions
from placement.models import ModelSpec
from placement.workload import Buckets, SLOClass
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
                                    "price_per_hour": 9.0}},
            "devices": {"cuda": {"device": "cuda", "pod_spec": CUDA_POD, "roles": ["colocated"],
                                 "price_per_hour": 0.5}},
        },
        "retry": {"attempts": 2, "initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.01},
    },
    "inventory": {"max_workers": {"cpu": 8, "h100": 2}, "default_max_workers": 6},
}
TINY = ModelSpec("tiny", num_layers=2, hidden_size=128, num_heads=4, num_kv_heads=2, intermediate_size=352,
                 vocab_size=2048, dtype="fp32")
FLEET = Catalog.of([
    NodeType("cpu", "cpu", 1, 32, 50, {"fp32": 1.0}, 10, 1.0),
    NodeType("a10g", "gpu", 1, 24, 600, {"fp16": 125, "fp32": 30}, 25, 0.5),
    NodeType("h100", "gpu", 2, 80, 3350, {"fp16": 989, "fp32": 60}, 200, 9.0),
    NodeType("l4", "gpu", 1, 24, 300, {"fp16": 121, "fp32": 30}, 25, 0.7),  # in no node of the cluster
])
BASE = PlacementSolver(PlanningInputs(
    fleet=FLEET, models={"tiny": TINY}, slos={"chat": SLOClass("chat", 2.0, 0.2)},
    buckets=Buckets((0, 256, 1024, 4096), (0, 64, 256, 1024)), inventory={"cpu": 8},
    solver_options=SolverOptions(time_limit_seconds=5), with_baselines=False))


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


def test_inventory_comes_from_the_node_list(server: RecordingApiServer, tmp_path: Path) -> None:
    server.nodes = cluster_nodes()
    solver = live_fleet_solver(settings_file(tmp_path), BASE, api_client(server))
    inventory = solver.refresh()
    # a10g: per node min(4 GPUs / 1, 32 cpu / 4, 128Gi / 16Gi) = 4, two nodes = 8, default cap 6.
    # h100: per node min(8 GPUs / 2, 128Gi / 64Gi) = 2, two nodes = 4, capped by values at 2.
    # cpu: no template for cpu nodes: one worker per schedulable node (the cordoned one not counted).
    # l4: in the planner's fleet, in no node: 0 (absent would mean unlimited).
    assert inventory == {"a10g": 6, "cpu": 2, "h100": 2, "l4": 0}
    assert [c.path for c in server.calls] == ["/api/v1/nodes"]

    server.faults = [Fault("GET", "/api/v1/nodes", 503)]
    server.nodes = []
    assert solver.refresh() == inventory, "an unreachable API server: plan over the last fleet seen"


async def test_a_plan_opens_a_pool_on_a_node_type_the_values_never_declared(
    server: RecordingApiServer, tmp_path: Path
) -> None:
    server.nodes = cluster_nodes()
    path = settings_file(tmp_path)
    solver = live_fleet_solver(path, BASE, api_client(server))
    plan = solver([DemandClass(name="tiny/chat/i0o0", rate_per_s=25.0, mean_input_tokens=200,
                               mean_output_tokens=50)], None)
    counts = {p.name: p.count for p in plan.pools if p.count}
    assert set(counts) == {"a10g-colocated"}, counts  # the cheapest node type present, colocated
    assert all(p.node_type != "l4" for p in plan.pools)

    async def drain(target: DrainTarget) -> None:
        raise AssertionError("nothing to drain")

    actuator = KubernetesActuator(load_kubernetes_settings(path).actuator, api_client(server), drain,
                                  ActuatorMetrics(CollectorRegistry()))
    targets = [PoolTarget(pool=p.name, node_type=p.node_type, role=p.role, device=p.device, model="tiny",
                          replicas=p.count) for p in plan.pools]
    server.events.clear()
    try:
        result = await actuator.apply(targets)
    finally:
        await actuator.close()
    assert result.created == ("a10g-colocated",) and result.complete
    created = server.deployments["hs-heteroserve-worker-a10g-colocated"]
    assert created["spec"]["replicas"] == counts["a10g-colocated"]
    assert created["spec"]["template"]["spec"]["nodeSelector"] == {"heteroserve.io/node-type": "a10g"}
    for call in server.calls:
        if call.method == "POST":
            validate(call.body)
