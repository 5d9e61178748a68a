"""Wiring the planner's Kubernetes side from the chart's `kubernetes.yaml` (ConfigMap `<release>-planner`).

The file has up to three sections: `actuator` (fields of `KubernetesActuatorConfig`, with the pool
templates under `actuator.templates`), `inventory` (fields of `live_fleet.InventoryCaps`: the planner's
inventory comes from the live Node list, capped by these) and, when leader election is on, `lease`
(fields of `LeaseConfig`). `heteroserve planner --actuator kubernetes --kubernetes-config FILE` calls
`kubernetes_actuator_factory(FILE, token, registry)`, `live_fleet_solver(FILE, spec)` for its solver
and, for Lease-based leadership, `lease_lock(FILE, holder_id)`. Drains go through the worker Drain RPC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client as k8s
from prometheus_client import CollectorRegistry
from urllib3.exceptions import HTTPError as TransportError

from common.config import build, load_mapping
from common.errors import ConfigError, UnavailableError
from common.tls import TLSFiles
from control_plane.actuators.base import DrainFn, DrainTarget
from control_plane.actuators.kubernetes import KubernetesActuator, KubernetesActuatorConfig
from control_plane.actuators.kubernetes import api_client_from_environment as _api_client
from control_plane.actuators.leader import KubernetesLeaseLock, LeaseConfig
from control_plane.actuators.live_fleet import InventoryCaps, LiveFleetSolver
from control_plane.actuators.metrics import ActuatorMetrics
from control_plane.planner.solver import PlacementSolver


@dataclass(frozen=True)
class KubernetesSettings:
    actuator: KubernetesActuatorConfig
    lease: LeaseConfig | None
    inventory: InventoryCaps = field(default_factory=InventoryCaps)


def load_kubernetes_settings(path: str | Path) -> KubernetesSettings:
    """Parse the file; ConfigError names the file and field of anything wrong."""
    mapping = load_mapping(path)
    if "actuator" not in mapping:
        raise ConfigError("missing section", field="actuator", source=str(path))
    actuator = build(KubernetesActuatorConfig, mapping["actuator"], source=str(path), prefix="actuator")
    lease = mapping.get("lease")
    inventory = mapping.get("inventory")
    return KubernetesSettings(
        actuator=actuator,
        lease=build(LeaseConfig, lease, source=str(path), prefix="lease") if lease else None,
        inventory=build(InventoryCaps, inventory, source=str(path), prefix="inventory")
        if inventory else InventoryCaps(),
    )


def worker_drain_fn(cluster_token: str, *, timeout_seconds: float = 60.0,
                    tls: TLSFiles | None = None) -> DrainFn:
    """A DrainFn sending the worker Drain RPC (cluster token auth; mutual TLS with the planner's
    certificate `tls`); raises UnavailableError when the worker reports it could not finish its
    requests in time."""
    from common.tls import ClientTLS
    from workerrpc.client import WorkerClient

    client_tls = ClientTLS(tls) if tls is not None else None

    async def drain(target: DrainTarget) -> None:
        assert target.address is not None, "the actuator never drains a worker without an address"
        async with WorkerClient(target.address, cluster_token, timeout_seconds=timeout_seconds,
                                tls=client_tls) as client:
            reply = await client.drain(timeout_seconds=timeout_seconds)
        if not reply.drained:
            raise UnavailableError(f"worker {target.name} still had {reply.remaining} request(s) running")

    return drain


def kubernetes_actuator_factory(
    path: str | Path, cluster_token: str, registry: CollectorRegistry, tls: TLSFiles | None = None
) -> Callable[[], KubernetesActuator]:
    """A factory for the planner process: reads `path` now (errors surface at start-up), connects on call.
    Uses the pod's service account in a cluster, else ~/.kube/config."""
    settings = load_kubernetes_settings(path)
    drain = worker_drain_fn(cluster_token, timeout_seconds=settings.actuator.drain_timeout_seconds, tls=tls)
    metrics = ActuatorMetrics(registry)

    def factory() -> KubernetesActuator:
        return KubernetesActuator(settings.actuator, _api_client(), drain, metrics)

    return factory


def lease_lock(path: str | Path, holder_id: str) -> KubernetesLeaseLock:
    """The Lease lock of the file's `lease` section (ConfigError when leader election is off there)."""
    settings = load_kubernetes_settings(path)
    if settings.lease is None:
        raise ConfigError("no `lease` section: leader election through a Lease is off", source=str(path))
    return KubernetesLeaseLock(settings.lease, _api_client(), holder_id)


def live_fleet_solver(path: str | Path, base: PlacementSolver,
                      api_client: k8s.ApiClient | None = None) -> LiveFleetSolver:
    """The planner's solver over the live Node list (`live_fleet.py`) of the file's cluster: the
    planner's solver `base` over the workers the node types present hold, capped by `inventory`."""
    settings = load_kubernetes_settings(path)
    core = k8s.CoreV1Api(api_client or _api_client())
    selector = settings.actuator.node_label_selector or None

    def list_nodes() -> list[object]:
        try:
            return list(core.list_node(label_selector=selector).items)
        except (k8s.ApiException, TransportError) as exc:
            raise UnavailableError(f"Kubernetes API list nodes: {exc}") from exc

    return LiveFleetSolver(base, list_nodes, settings.actuator.labels, settings.actuator.templates,
                           settings.inventory)
