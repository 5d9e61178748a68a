"""`KubernetesActuator`: one Deployment per pool, scaled through the scale subresource.

For each `PoolTarget` the actuator reads the pool's Deployment (`<deployment_prefix><pool>`), refuses it
unless it carries the chart's ownership labels (`OWNERSHIP_LABELS`), and compares `spec.replicas`:
- up: PATCH `deployments/<name>/scale` to the new count;
- down: list the pool's pods, choose the ones to remove (`pods.choose_pods_to_remove`), annotate them with
  a low pod-deletion-cost, call the `DrainFn` for each (concurrently, `drain_timeout_seconds` each), then
  PATCH the scale. A failed drain does not stop the scale-down; it is reported.
Scale-ups run before scale-downs, so capacity never dips below the lower of the two plans.
In `export_only` mode only the desired-replicas gauge is set (for HPA / KEDA users).

The `kubernetes` client is synchronous; every call runs in `asyncio.to_thread`. RBAC needed (the chart
grants exactly this): nodes get/list; deployments and deployments/scale get/patch on the pool
Deployments by name; pods list/patch in the namespace (the deletion-cost annotation).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubernetes import client as k8s
from urllib3.exceptions import HTTPError as TransportError

from common.errors import (
    ConfigError,
    HeteroserveError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from control_plane.actuators.base import ApplyResult, DrainFn, DrainTarget, NodeGroup, PoolChange, PoolTarget
from control_plane.actuators.base import check_pool_name as _check_pool
from control_plane.actuators.inventory import InventoryLabels, inventory_from_nodes
from control_plane.actuators.metrics import ActuatorMetrics
from control_plane.actuators.pods import DELETION_COST, DELETION_COST_ANNOTATION, choose_pods_to_remove
from control_plane.actuators.pods import drain_target as _drain_target

log = logging.getLogger(__name__)
T = TypeVar("T")

PART_OF_LABEL = "app.kubernetes.io/part-of"
INSTANCE_LABEL = "app.kubernetes.io/instance"
POOL_LABEL = "heteroserve.io/pool"
ROLE_LABEL = "heteroserve.io/role"
NODE_TYPE_LABEL = "heteroserve.io/node-type"
DEVICE_LABEL = "heteroserve.io/device"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class KubernetesActuatorConfig:
    """Where the pool Deployments live and how to treat them. `instance` is the Helm release name."""

    namespace: str
    instance: str
    deployment_prefix: str
    pools: tuple[str, ...] = ()
    worker_port: int = 50051
    drain_timeout_seconds: float = 60.0
    export_only: bool = False
    node_label_selector: str = ""
    labels: InventoryLabels = field(default_factory=InventoryLabels)

    def __post_init__(self) -> None:
        for name in ("namespace", "instance", "deployment_prefix"):
            if not getattr(self, name):
                raise ValueError(f"{name}: must not be empty")
        for i, pool in enumerate(self.pools):
            _check_pool(pool, field=f"pools[{i}]")
        if not 0 < self.worker_port < 65536:
            raise ValueError(f"worker_port: {self.worker_port} is not a TCP port")
        if self.drain_timeout_seconds <= 0:
            raise ValueError(f"drain_timeout_seconds: {self.drain_timeout_seconds} must be > 0")

    def ownership_labels(self, pool: str) -> dict[str, str]:
        """Labels an object must carry for this actuator to touch it."""
        return {PART_OF_LABEL: "heteroserve", INSTANCE_LABEL: self.instance, POOL_LABEL: pool}


def _api_error(what: str, exc: k8s.ApiException) -> HeteroserveError:
    detail = f"Kubernetes API {what}: HTTP {exc.status} {exc.reason}"
    if exc.status == 404:
        return NotFoundError(detail)
    if exc.status in (401, 403):
        return PermissionDeniedError(f"{detail} (check the planner's RBAC Role)")
    return UnavailableError(detail)


class KubernetesActuator:
    """Scales the chart's pool Deployments. Implements `control_plane.actuators.base.Actuator`.

    The actuator owns `api_client` (closed by `close()`); `drain` is called before any worker is removed.
    """

    def __init__(
        self,
        config: KubernetesActuatorConfig,
        api_client: k8s.ApiClient,
        drain: DrainFn,
        metrics: ActuatorMetrics,
    ) -> None:
        self._config = config
        self._api_client = api_client
        self._apps = k8s.AppsV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._drain = drain
        self._metrics = metrics

    async def _call(
        self, operation: str, fn: Callable[..., T], *args: Any, object_name: str = "", **kwargs: Any
    ) -> T:
        """Run one client call in a thread. `operation` (a fixed verb phrase) labels the error metric;
        `object_name` only goes into the error message, keeping the label set bounded."""
        what = f"{operation} {object_name}".strip()
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except k8s.ApiException as exc:
            self._metrics.api_errors.labels(operation=operation).inc()
            raise _api_error(what, exc) from exc
        except (OSError, TransportError) as exc:
            self._metrics.api_errors.labels(operation=operation).inc()
            raise UnavailableError(f"Kubernetes API {what}: {exc}") from exc

    async def inventory(self) -> tuple[NodeGroup, ...]:
        """Schedulable nodes grouped by (node type, device), from node labels. Read-only."""
        selector = self._config.node_label_selector
        kwargs = {"label_selector": selector} if selector else {}
        nodes = await self._call("list nodes", self._core.list_node, **kwargs)
        return inventory_from_nodes(nodes.items, self._config.labels)

    async def _owned_deployment(self, pool: str) -> Any:
        name = self._config.deployment_prefix + pool
        deployment: Any = await self._call(
            "get deployment", self._apps.read_namespaced_deployment, name, self._config.namespace,
            object_name=name,
        )
        have = deployment.metadata.labels or {}
        missing = {k: v for k, v in self._config.ownership_labels(pool).items() if have.get(k) != v}
        if missing:
            wanted = ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
            raise PermissionDeniedError(
                f"refusing to touch Deployment {self._config.namespace}/{name}: it lacks the heteroserve "
                f"chart's ownership labels ({wanted}); only Deployments created by the chart are scaled"
            )
        return deployment

    @staticmethod
    def _check_matches(target: PoolTarget, deployment: Any) -> None:
        labels: Mapping[str, str] = deployment.metadata.labels or {}
        wanted = {ROLE_LABEL: target.role, NODE_TYPE_LABEL: target.node_type, DEVICE_LABEL: target.device}
        for label, want in wanted.items():
            if label in labels and labels[label] != want:
                raise ConfigError(
                    f"plan says {want!r} but Deployment {deployment.metadata.name} has {label}="
                    f"{labels[label]!r}; change the chart's pool definition or the plan",
                    field=f"pools.{target.pool}.{label.split('/')[-1]}",
                )

    async def apply(self, targets: Sequence[PoolTarget]) -> ApplyResult:
        """See `Actuator.apply`. Checks every target's Deployment before changing any."""
        pools = [t.pool for t in targets]
        if len(set(pools)) != len(pools):
            raise ConfigError(f"duplicate pools in targets: {sorted(pools)}", field="targets")
        unknown = sorted(set(pools) - set(self._config.pools)) if self._config.pools else []
        if unknown:
            raise ConfigError(
                f"pools {unknown} are not among the chart's pools {list(self._config.pools)}; add them to "
                "the release's workerPools (which creates their Deployments and RBAC)",
                field="targets",
            )
        observed: list[tuple[PoolTarget, int]] = []
        for target in targets:
            deployment = await self._owned_deployment(target.pool)
            self._check_matches(target, deployment)
            labels = {"pool": target.pool, "node_type": target.node_type, "role": target.role}
            self._metrics.desired_replicas.labels(**labels).set(target.replicas)
            observed.append((target, int(deployment.spec.replicas or 0)))
        if self._config.export_only:
            return ApplyResult()
        ups = sorted((o for o in observed if o[0].replicas > o[1]), key=lambda o: o[0].pool)
        downs = sorted((o for o in observed if o[0].replicas < o[1]), key=lambda o: o[0].pool)
        changes: list[PoolChange] = []
        drained: list[DrainTarget] = []
        failures: list[DrainTarget] = []
        for target, now in ups:
            await self._scale(target.pool, target.replicas)
            self._metrics.scale_operations.labels(pool=target.pool, direction="up").inc()
            changes.append(PoolChange(target.pool, now, target.replicas))
        for target, now in downs:
            ok, failed = await self._drain_pool(target.pool, now - target.replicas)
            drained += ok
            failures += failed
            await self._scale(target.pool, target.replicas)
            self._metrics.scale_operations.labels(pool=target.pool, direction="down").inc()
            changes.append(PoolChange(target.pool, now, target.replicas))
        return ApplyResult(changes=tuple(changes), drained=tuple(drained), drain_failures=tuple(failures))

    async def _scale(self, pool: str, replicas: int) -> None:
        name = self._config.deployment_prefix + pool
        log.info("scaling Deployment %s/%s to %d", self._config.namespace, name, replicas)
        await self._call(
            "scale deployment",
            self._apps.patch_namespaced_deployment_scale,
            name,
            self._config.namespace,
            {"spec": {"replicas": replicas}},
            object_name=name,
            _content_type=MERGE_PATCH,
        )

    async def _drain_pool(self, pool: str, count: int) -> tuple[list[DrainTarget], list[DrainTarget]]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(self._config.ownership_labels(pool).items()))
        pods = await self._call(
            "list pods", self._core.list_namespaced_pod, self._config.namespace,
            object_name=f"of pool {pool}", label_selector=selector,
        )
        chosen = choose_pods_to_remove(pods.items, count)
        for pod in chosen:
            await self._call(
                "annotate pod",
                self._core.patch_namespaced_pod,
                pod.metadata.name,
                self._config.namespace,
                {"metadata": {"annotations": {DELETION_COST_ANNOTATION: DELETION_COST}}},
                object_name=pod.metadata.name,
                _content_type=MERGE_PATCH,
            )
        targets = [_drain_target(pool, pod, self._config.worker_port) for pod in chosen]
        results = await asyncio.gather(*(self._drain_one(t) for t in targets))
        ok = [t for t, good in zip(targets, results, strict=True) if good]
        failed = [t for t, good in zip(targets, results, strict=True) if not good]
        return ok, failed

    async def _drain_one(self, target: DrainTarget) -> bool:
        if target.address is None:
            return True  # never got an address: it holds no work
        try:
            await asyncio.wait_for(self._drain(target), self._config.drain_timeout_seconds)
        except (HeteroserveError, OSError, TimeoutError) as exc:
            log.warning("drain of %s (%s) failed: %s; removing it anyway", target.name, target.address, exc)
            self._metrics.drains.labels(pool=target.pool, status="failed").inc()
            return False
        self._metrics.drains.labels(pool=target.pool, status="ok").inc()
        return True

    async def current(self) -> dict[str, int]:
        """Ready replicas of every configured pool (`config.pools`); also sets the actual gauge."""
        result: dict[str, int] = {}
        for pool in self._config.pools:
            deployment = await self._owned_deployment(pool)
            labels = deployment.metadata.labels or {}
            ready = int((deployment.status.ready_replicas if deployment.status else None) or 0)
            self._metrics.actual_replicas.labels(
                pool=pool, node_type=labels.get(NODE_TYPE_LABEL, ""), role=labels.get(ROLE_LABEL, "")
            ).set(ready)
            result[pool] = ready
        return result

    async def close(self) -> None:
        await asyncio.to_thread(self._api_client.close)


def api_client_from_environment(kubeconfig: str | None = None) -> k8s.ApiClient:
    """An ApiClient from the in-cluster service account, else from `kubeconfig` (or ~/.kube/config)."""
    from kubernetes import config as k8s_config

    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(config_file=kubeconfig)
    return k8s.ApiClient()
