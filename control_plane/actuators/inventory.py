"""Node inventory from Kubernetes node objects: how many schedulable nodes of each type there are.

Rules, applied to each node in order:
1. Skipped when cordoned (`spec.unschedulable`) or when its `Ready` condition is not `True`.
2. Node type: the chart-defined label (`heteroserve.io/node-type`) if present, else the NVIDIA GPU
   feature-discovery label `nvidia.com/gpu.product` (e.g. `NVIDIA-H100-80GB-HBM3`) mapped through
   `gpu_product_aliases` when listed there, else the well-known `node.kubernetes.io/instance-type`,
   else `cpu`.
3. Device kind: `csd` when the CSD label (`heteroserve.io/csd`) is `"true"`; `cuda` when the node has
   allocatable `nvidia.com/gpu` > 0; `cpu` otherwise.
4. Nodes are grouped by (node type, device); each group counts nodes and allocatable GPUs.
The result is sorted by (node type, device) so that the same cluster always gives the same inventory.

Worker capacity (`worker_capacity`, the planner's inventory: node type -> most workers): per node, the
workers that fit its allocatable resources, i.e. the minimum over the template's requested resources of
floor(allocatable / request) (1 when the template requests nothing); without a template, a `cuda` node
holds one worker per allocatable GPU and any other node one worker. Summed per node type, then capped
by the values' count for that node type (else the default cap) and by the template's `max_workers`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.utils import parse_quantity

from common.vocab import Device
from control_plane.actuators.base import NodeGroup
from control_plane.actuators.templates import TemplateSet

GPU_RESOURCE = "nvidia.com/gpu"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


@dataclass(frozen=True)
class InventoryLabels:
    """Which node labels carry the node type, the GPU product and the CSD marker."""

    node_type_label: str = "heteroserve.io/node-type"
    gpu_product_label: str = "nvidia.com/gpu.product"
    csd_label: str = "heteroserve.io/csd"
    gpu_product_aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("node_type_label", "gpu_product_label", "csd_label"):
            if not getattr(self, name):
                raise ValueError(f"{name}: must not be empty")


def _is_schedulable(node: Any) -> bool:
    if node.spec is not None and node.spec.unschedulable:
        return False
    conditions = (node.status.conditions if node.status is not None else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _allocatable_gpus(node: Any) -> int:
    allocatable = (node.status.allocatable if node.status is not None else None) or {}
    raw = str(allocatable.get(GPU_RESOURCE, "0"))
    return int(raw) if raw.isdigit() else 0


def classify_node(node: Any, labels: InventoryLabels) -> tuple[str, Device, int]:
    """(node type, device kind, allocatable GPUs) of one node object, by the rules above."""
    node_labels: Mapping[str, str] = (node.metadata.labels if node.metadata is not None else None) or {}
    gpus = _allocatable_gpus(node)
    device: Device
    if node_labels.get(labels.csd_label) == "true":
        device = "csd"
    elif gpus > 0:
        device = "cuda"
    else:
        device = "cpu"
    if labels.node_type_label in node_labels:
        node_type = node_labels[labels.node_type_label]
    elif labels.gpu_product_label in node_labels:
        product = node_labels[labels.gpu_product_label]
        node_type = labels.gpu_product_aliases.get(product, product)
    else:
        node_type = node_labels.get(INSTANCE_TYPE_LABEL, "cpu")
    return node_type, device, gpus


def inventory_from_nodes(nodes: Iterable[Any], labels: InventoryLabels) -> tuple[NodeGroup, ...]:
    """Group schedulable `V1Node` objects into `NodeGroup`s (sorted by node type, then device)."""
    counts: dict[tuple[str, Device], list[int]] = {}
    for node in nodes:
        if not _is_schedulable(node):
            continue
        node_type, device, gpus = classify_node(node, labels)
        entry = counts.setdefault((node_type, device), [0, 0])
        entry[0] += 1
        entry[1] += gpus
    return tuple(
        NodeGroup(node_type=node_type, device=device, num_nodes=n, num_gpus=g)
        for (node_type, device), (n, g) in sorted(counts.items())
    )


def workers_that_fit(node: Any, requests: Mapping[str, str]) -> int:
    """Workers with these resource requests that fit the node's allocatable resources."""
    allocatable = (node.status.allocatable if node.status is not None else None) or {}
    fits = [int(parse_quantity(allocatable.get(name, "0")) // parse_quantity(need))
            for name, need in requests.items() if parse_quantity(need) > 0]
    return min(fits) if fits else 1


def worker_capacity(nodes: Iterable[Any], labels: InventoryLabels, templates: TemplateSet,
                    caps: Mapping[str, int], default_cap: int) -> dict[str, int]:
    """node type -> the most workers the plan may run there (rules in the module docstring)."""
    capacity: dict[str, int] = {}
    limits: dict[str, int] = {}
    for node in nodes:
        if not _is_schedulable(node):
            continue
        node_type, device, gpus = classify_node(node, labels)
        template = templates.find(node_type, device)
        if template is not None:
            fit = workers_that_fit(node, template.requests())
            if template.max_workers:
                limits[node_type] = template.max_workers
        else:
            fit = gpus if device == "cuda" else 1
        capacity[node_type] = capacity.get(node_type, 0) + fit
    return {t: min(n, caps.get(t, default_cap), limits.get(t, n)) for t, n in sorted(capacity.items())}
