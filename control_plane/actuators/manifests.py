"""The Deployment and PodDisruptionBudget of a pool the planner creates from a template.

Both carry the ownership labels (`ownership_labels`): the release's `app.kubernetes.io/part-of` and
`instance`, `app.kubernetes.io/managed-by: heteroserve-planner`, and the pool's `heteroserve.io/pool`,
`node-type`, `role`, `device`. The actuator lists, scales and deletes only objects that carry the
first four with this release's values (`MANAGED_BY`), so the chart's own pools (managed by Helm) and
anything else in the namespace are never touched by the create/delete path.

The Deployment's pod is the template's PodSpec plus what depends on the pool: the worker container
gets `--role`, `--node-type` and `--pool`, and the pod the node selector `<node type label>: <node
type>` unless the template has its own. Rolling updates surge one pod and keep all serving
(maxSurge 1, maxUnavailable 0), as the chart's pools do; the PDB lets one pod at a time be evicted.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from control_plane.actuators.base import PoolTarget
from control_plane.actuators.templates import PoolTemplate

PART_OF_LABEL = "app.kubernetes.io/part-of"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY = "heteroserve-planner"
POOL_LABEL = "heteroserve.io/pool"
ROLE_LABEL = "heteroserve.io/role"
NODE_TYPE_LABEL = "heteroserve.io/node-type"
DEVICE_LABEL = "heteroserve.io/device"


def managed_selector(instance: str) -> dict[str, str]:
    """Labels shared by every object this release's planner created (its list selector)."""
    return {PART_OF_LABEL: "heteroserve", INSTANCE_LABEL: instance, MANAGED_BY_LABEL: MANAGED_BY}


def ownership_labels(instance: str, target: PoolTarget) -> dict[str, str]:
    """Every label a created object carries."""
    return managed_selector(instance) | {
        POOL_LABEL: target.pool, NODE_TYPE_LABEL: target.node_type, ROLE_LABEL: target.role,
        DEVICE_LABEL: target.device,
    }


def selector_string(labels: Mapping[str, str]) -> str:
    """A label selector matching all of `labels` (sorted, so requests are reproducible)."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _quantities_as_strings(container: dict[str, Any]) -> None:
    """Resource quantities as the API's strings (YAML gives `nvidia.com/gpu: 1` as an int)."""
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        if resources.get(kind):
            resources[kind] = {name: str(value) for name, value in resources[kind].items()}


def _pod_spec(template: PoolTemplate, target: PoolTarget, node_type_label: str) -> dict[str, Any]:
    spec = copy.deepcopy(template.pod_spec)
    for container in [*spec["containers"], *spec.get("initContainers", [])]:
        _quantities_as_strings(container)
    worker = spec["containers"][0]
    worker["args"] = [*worker.get("args", []), f"--role={target.role}", f"--node-type={target.node_type}",
                      f"--pool={target.pool}"]
    if not spec.get("nodeSelector"):
        spec["nodeSelector"] = {node_type_label: target.node_type}
    return spec


def deployment_manifest(*, name: str, namespace: str, instance: str, pod_labels: Mapping[str, str],
                        target: PoolTarget, template: PoolTemplate, node_type_label: str) -> dict[str, Any]:
    """The Deployment of `target`'s pool with `target.replicas` replicas. `pod_labels` are the chart's
    labels of every worker pod (the NetworkPolicies select on them)."""
    labels = ownership_labels(instance, target)
    selector = {INSTANCE_LABEL: instance, PART_OF_LABEL: "heteroserve", POOL_LABEL: target.pool}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": target.replicas,
            "revisionHistoryLimit": 3,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**pod_labels, **labels}},
                "spec": _pod_spec(template, target, node_type_label),
            },
        },
    }


def pdb_manifest(*, name: str, namespace: str, instance: str, target: PoolTarget) -> dict[str, Any]:
    """The pool's PodDisruptionBudget: voluntary evictions take one worker of the pool at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace, "labels": ownership_labels(instance, target)},
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {INSTANCE_LABEL: instance, PART_OF_LABEL: "heteroserve",
                                         POOL_LABEL: target.pool}},
        },
    }
