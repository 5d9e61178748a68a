"""Pool templates: how to run workers of a node type the planner may open a pool for.

The chart renders one template per entry of `planner.poolTemplates.nodeTypes` (a node type by name)
and of `planner.poolTemplates.devices` (any node type of that device kind that `nodeTypes` does not
list), into the planner's `kubernetes.yaml`. A template holds the worker's whole PodSpec as the chart
renders it (image, engine, resources such as `nvidia.com/gpu`, tolerations, volumes, probes, extra
args), minus what depends on the pool: the `--role`, `--node-type` and `--pool` arguments and, unless
the template sets one, the node selector `<node type label>: <node type>`; `manifests.py` adds those.

Lookup (`TemplateSet.find`): the node type's own template, else its device kind's, else None (the
planner opens no pool there). A template pool is named `<node type>-<role>` (`template_pool_name`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from common.vocab import DEVICES, ROLES, Device, Role
from control_plane.actuators.base import check_pool_name

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class PoolTemplate:
    """One template. `pod_spec` is a Kubernetes PodSpec (API field names) whose first container is the
    worker; `roles` are the roles a pool from it may take; `price_per_hour` is what the planner pays
    per worker-hour; `max_workers` caps the workers of one node type (0: no cap of its own). No rates:
    capacities come from measured profiles or the roofline."""

    device: Device
    pod_spec: dict[str, Any]
    roles: tuple[Role, ...] = ("colocated",)
    price_per_hour: float = 0.0
    max_workers: int = 0

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device: {self.device!r} is not one of {', '.join(DEVICES)}")
        if not self.roles:
            raise ValueError("roles: must list at least one role")
        for i, role in enumerate(self.roles):
            if role not in ROLES:
                raise ValueError(f"roles[{i}]: {role!r} is not one of {', '.join(ROLES)}")
        containers = self.pod_spec.get("containers")
        if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
            raise ValueError("pod_spec: must hold a `containers` list whose first entry is the worker")
        if self.price_per_hour < 0:
            raise ValueError(f"price_per_hour: {self.price_per_hour} must be >= 0")
        if self.max_workers < 0:
            raise ValueError(f"max_workers: {self.max_workers} must be >= 0")

    def requests(self) -> dict[str, str]:
        """The worker container's resource requests (limits where a request is missing), as strings."""
        resources = self.pod_spec["containers"][0].get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {name: str(value) for name, value in merged.items()}


@dataclass(frozen=True)
class TemplateSet:
    """The templates by node type name and by device kind."""

    node_types: dict[str, PoolTemplate] = field(default_factory=dict)
    devices: dict[str, PoolTemplate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, template in self.devices.items():
            if kind not in DEVICES:
                raise ValueError(f"devices.{kind}: not a device kind (one of {', '.join(DEVICES)})")
            if template.device != kind:
                raise ValueError(f"devices.{kind}.device: {template.device!r} must be {kind!r}")

    def find(self, node_type: str, device: str) -> PoolTemplate | None:
        """The template for a node type of this device kind; None when there is none."""
        own = self.node_types.get(node_type)
        if own is not None:
            return own if own.device == device else None
        return self.devices.get(device)

    def __bool__(self) -> bool:
        return bool(self.node_types or self.devices)


def template_pool_name(node_type: str, role: str) -> str:
    """`<node type>-<role>` as a DNS label: lowercased, other characters as '-', the node type cut so
    the name fits 40 characters (`NVIDIA-H100-80GB-HBM3`, `prefill` → `nvidia-h100-80gb-hbm3-prefill`)."""
    base = _NOT_DNS.sub("-", node_type.lower()).strip("-")[: 39 - len(role)].rstrip("-") or "node"
    name = f"{base}-{role}"
    check_pool_name(name, field=f"pool name of node type {node_type!r}")
    return name
