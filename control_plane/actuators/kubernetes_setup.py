"""Wiring the planner's Kubernetes side from the chart's `kubernetes.yaml` (ConfigMap `<release>-planner`).

The file has two sections: `actuator` (fields of `KubernetesActuatorConfig`) and, when leader election
is on, `lease` (fields of `LeaseConfig`). `heteroserve planner --actuator kubernetes
--kubernetes-config FILE` is expected to call `kubernetes_actuator_factory(FILE, token, registry)` and,
for Lease-based leadership, `lease_lock(FILE, holder_id)`. Drains go through the worker Drain RPC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from common.config import build, load_mapping
from common.errors import ConfigError, UnavailableError
from control_plane.actuators.base import DrainFn, DrainTarget
from control_plane.actuators.kubernetes import KubernetesActuator, KubernetesActuatorConfig
from control_plane.actuators.kubernetes import api_client_from_environment as _api_client
from control_plane.actuators.leader import KubernetesLeaseLock, LeaseConfig
from control_plane.actuators.metrics import ActuatorMetrics


@dataclass(frozen=True)
class KubernetesSettings:
    actuator: KubernetesActuatorConfig
    lease: LeaseConfig | None


def load_kubernetes_settings(path: str | Path) -> KubernetesSettings:
    """Parse the file; ConfigError names the file and field of anything wrong."""
    mapping = load_mapping(path)
    if "actuator" not in mapping:
        raise ConfigError("missing section", field="actuator", source=str(path))
    actuator = build(KubernetesActuatorConfig, mapping["actuator"], source=str(path), prefix="actuator")
    lease = mapping.get("lease")
    return KubernetesSettings(
        actuator=actuator,
        lease=build(LeaseConfig, lease, source=str(path), prefix="lease") if lease else None,
    )


def worker_drain_fn(cluster_token: str, *, timeout_seconds: float = 60.0) -> DrainFn:
    """A DrainFn sending the worker Drain RPC (cluster token auth); raises UnavailableError when the
    worker reports it could not finish its requests in time."""
    from workerrpc.client import WorkerClient

    async def drain(target: DrainTarget) -> None:
        assert target.address is not None, "the actuator never drains a worker without an address"
        async with WorkerClient(target.address, cluster_token, timeout_seconds=timeout_seconds) as client:
            reply = await client.drain(timeout_seconds=timeout_seconds)
        if not reply.drained:
            raise UnavailableError(f"worker {target.name} still had {reply.remaining} request(s) running")

    return drain


def kubernetes_actuator_factory(
    path: str | Path, cluster_token: str, registry: CollectorRegistry
) -> Callable[[], KubernetesActuator]:
    """A factory for the planner process: reads `path` now (errors surface at start-up), connects on call.
    Uses the pod's service account in a cluster, else ~/.kube/config."""
    settings = load_kubernetes_settings(path)
    drain = worker_drain_fn(cluster_token, timeout_seconds=settings.actuator.drain_timeout_seconds)
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
