"""Creating, listing and deleting the pools the planner opens from templates (Deployment + PDB each).

Only objects labelled with this release's `managed_selector` (part-of, instance, managed-by
`heteroserve-planner`) are listed, read back after a name clash, or deleted; a clash with an object
without those labels is a `PermissionDeniedError` and nothing is changed.

Create order: the PDB first, then the Deployment. A create cut short by an outage leaves at most a
PDB, which the next apply finds (`AlreadyExists`, owned: kept) before creating the Deployment; a pool
is listed as existing only once its Deployment exists. Delete order: the Deployment (its pods get
SIGTERM and drain themselves; the actuator drained them before), then the PDB (404 ignored).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from common.errors import NotFoundError, PermissionDeniedError
from control_plane.actuators.base import PoolTarget
from control_plane.actuators.kube_calls import AlreadyExistsError, KubeCalls
from control_plane.actuators.manifests import (
    POOL_LABEL,
    deployment_manifest,
    managed_selector,
    pdb_manifest,
    selector_string,
)
from control_plane.actuators.templates import PoolTemplate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolObjects:
    """Where this release's template pools live: `name_prefix + pool` names both objects."""

    namespace: str
    instance: str
    name_prefix: str
    pod_labels: Mapping[str, str]
    node_type_label: str


class TemplatePools:
    """The planner-created pools of one release (see the module docstring)."""

    def __init__(self, where: PoolObjects, api_client: k8s.ApiClient, call: KubeCalls) -> None:
        self._where = where
        self._apps = k8s.AppsV1Api(api_client)
        self._policy = k8s.PolicyV1Api(api_client)
        self._call = call

    def _owned(self, obj: Any) -> bool:
        labels: Mapping[str, str] = (obj.metadata.labels if obj.metadata else None) or {}
        return all(labels.get(k) == v for k, v in managed_selector(self._where.instance).items())

    async def list(self) -> dict[str, Any]:
        """pool -> Deployment (V1Deployment) of every pool this release's planner created."""
        selector = selector_string(managed_selector(self._where.instance))
        found: Any = await self._call("list deployments", self._apps.list_namespaced_deployment,
                                      self._where.namespace, label_selector=selector)
        owned = [d for d in found.items if self._owned(d)]
        return {d.metadata.labels[POOL_LABEL]: d for d in owned if POOL_LABEL in d.metadata.labels}

    async def check_free(self, pool: str) -> None:
        """Raise PermissionDeniedError when a Deployment of the pool's name exists that `list` did not
        return (so it lacks this release's planner labels). Read-only."""
        name = self._where.name_prefix + pool
        try:
            existing = await self._call("get deployment", self._apps.read_namespaced_deployment, name,
                                        self._where.namespace, object_name=name)
        except NotFoundError:
            return
        self._require_owned("Deployment", existing)

    async def create(self, target: PoolTarget, template: PoolTemplate) -> None:
        """Create the pool's PDB and Deployment (`target.replicas` replicas)."""
        w = self._where
        name = w.name_prefix + target.pool
        pdb = pdb_manifest(name=name, namespace=w.namespace, instance=w.instance, target=target)
        try:
            await self._call("create pdb", self._policy.create_namespaced_pod_disruption_budget,
                             w.namespace, pdb, object_name=name)
        except AlreadyExistsError:
            existing_pdb = await self._call("get pdb", self._policy.read_namespaced_pod_disruption_budget,
                                        name, w.namespace, object_name=name)
            self._require_owned("PodDisruptionBudget", existing_pdb)
        deployment = deployment_manifest(name=name, namespace=w.namespace, instance=w.instance,
                                         pod_labels=w.pod_labels, target=target, template=template,
                                         node_type_label=w.node_type_label)
        log.info("creating pool %s: Deployment %s/%s with %d replica(s)", target.pool, w.namespace, name,
                 target.replicas)
        try:
            await self._call("create deployment", self._apps.create_namespaced_deployment, w.namespace,
                             deployment, object_name=name)
        except AlreadyExistsError:
            # Created meanwhile (by another planner, or by a call that timed out after it succeeded).
            existing = await self._call("get deployment", self._apps.read_namespaced_deployment, name,
                                        w.namespace, object_name=name)
            self._require_owned("Deployment", existing)

    async def delete(self, pool: str) -> None:
        """Delete the pool's Deployment, then its PDB (either already gone is fine)."""
        w = self._where
        name = w.name_prefix + pool
        log.info("deleting pool %s: Deployment and PDB %s/%s", pool, w.namespace, name)
        for operation, fn in (("delete deployment", self._apps.delete_namespaced_deployment),
                              ("delete pdb", self._policy.delete_namespaced_pod_disruption_budget)):
            with contextlib.suppress(NotFoundError):
                await self._call(operation, fn, name, w.namespace, object_name=name)

    def _require_owned(self, kind: str, obj: Any) -> None:
        if not self._owned(obj):
            wanted = selector_string(managed_selector(self._where.instance))
            raise PermissionDeniedError(
                f"refusing to use {kind} {self._where.namespace}/{obj.metadata.name}: it exists without "
                f"the labels of this release's planner ({wanted})"
            )
