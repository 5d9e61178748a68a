"""Which worker pods leave a pool on scale-down, and how to reach them.

Choice (deterministic for the same pod list): pods already terminating are ignored (the ReplicaSet no
longer counts them); then, first to go: pods without an IP, then pods not Ready, then the most recently
created, ties broken by name in reverse order. Newest-first keeps the long-lived workers whose memory
tier holds the warmest prefix cache. The chosen pods get the `controller.kubernetes.io/pod-deletion-cost`
annotation `DELETION_COST` so the ReplicaSet controller removes exactly those pods when the replica
count drops, not others of its own choosing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from control_plane.actuators.base import DrainTarget

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
DELETION_COST = "-1000"
GRPC_PORT_NAME = "grpc"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _is_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions if pod.status is not None else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _pod_ip(pod: Any) -> str | None:
    return (pod.status.pod_ip if pod.status is not None else None) or None


def _removal_key(pod: Any) -> tuple[int, int, float]:
    created = pod.metadata.creation_timestamp or _EPOCH
    # Sorted ascending; the first pods in this order go first.
    return (0 if _pod_ip(pod) is None else 1, 0 if not _is_ready(pod) else 1, -created.timestamp())


def live_pods(pods: Sequence[Any]) -> list[Any]:
    """Pods not already being deleted."""
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def choose_pods_to_remove(pods: Sequence[Any], count: int) -> list[Any]:
    """The `count` pods (V1Pod) to remove from `pods`, in removal order; fewer if there are fewer."""
    if count < 0:
        raise ValueError(f"count: {count} must be >= 0")
    by_name_desc = sorted(live_pods(pods), key=lambda p: p.metadata.name, reverse=True)
    return sorted(by_name_desc, key=_removal_key)[:count]  # stable: name order breaks ties


def grpc_port(pod: Any, default_port: int) -> int:
    """The container port named `grpc` in the pod spec, else `default_port`."""
    for container in (pod.spec.containers if pod.spec is not None else None) or []:
        for port in container.ports or []:
            if port.name == GRPC_PORT_NAME:
                return int(port.container_port)
    return default_port


def drain_target(pool: str, pod: Any, default_port: int) -> DrainTarget:
    """The DrainTarget of a pod: its name and `ip:grpc-port` (None while it has no IP)."""
    ip = _pod_ip(pod)
    address = f"{ip}:{grpc_port(pod, default_port)}" if ip else None
    return DrainTarget(pool=pool, name=pod.metadata.name, address=address)
