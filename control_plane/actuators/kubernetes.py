"""`KubernetesActuator`: one Deployment per pool; the chart's pools scaled, template pools created too.

Two kinds of pools:
- the chart's pools (`config.pools`, values `workerPools`): Helm creates their Deployments; the actuator
  only scales them, and refuses one unless it carries the chart's ownership labels
  (`part-of`, `instance`, `heteroserve.io/pool`);
- template pools: any other pool of the plan, for a node type with a template (`templates.py`). The
  actuator creates its Deployment and PDB (`template_pools.py`, labelled `managed-by:
  heteroserve-planner`), scales it, and deletes it when the plan no longer lists it.

`apply` first reads everything (chart Deployments one by one, template pools with one list call) and
checks every target against it, raising before any change on a foreign object or a contradiction.
Then, in this order: creates, scale-ups, scale-downs, deletes, so capacity never dips below the
lower of the two plans. Scale-down (and delete): list the pool's pods, choose the ones to remove
(`pods.choose_pods_to_remove`), annotate them with a low pod-deletion-cost, call the `DrainFn` for
each (concurrently, `drain_timeout_seconds` each), then PATCH the scale subresource (or delete). A failed
drain does not stop the scale-down; it is reported. Every API call is retried on 409 conflicts and
outages (`kube_calls.py`); a change still failing after the retries does not stop the others: its pool
is named in `ApplyResult.not_applied`, logged, and counted (`heteroserve_actuator_pools_not_applied`).
In `export_only` mode only the desired-replicas gauge is set (for HPA / KEDA users).

RBAC needed (the chart grants it): nodes get/list/watch; deployments get/list/create/delete and
deployments/scale get/patch, PDBs get/create/delete in the namespace; pods list/patch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s

from common.errors import ConfigError, HeteroserveError, PermissionDeniedError, UnavailableError
from control_plane.actuators.base import ApplyResult, DrainFn, DrainTarget, NodeGroup, PoolChange, PoolTarget
from control_plane.actuators.base import check_pool_name as _check_pool
from control_plane.actuators.inventory import InventoryLabels, inventory_from_nodes
from control_plane.actuators.kube_calls import KubeCalls, RetryPolicy
from control_plane.actuators.manifests import (
    DEVICE_LABEL,
    INSTANCE_LABEL,
    NODE_TYPE_LABEL,
    PART_OF_LABEL,
    POOL_LABEL,
    ROLE_LABEL,
    selector_string,
)
from control_plane.actuators.metrics import ActuatorMetrics
from control_plane.actuators.pods import DELETION_COST, DELETION_COST_ANNOTATION, choose_pods_to_remove
from control_plane.actuators.pods import drain_target as _drain_target
from control_plane.actuators.template_pools import PoolObjects, TemplatePools
from control_plane.actuators.templates import TemplateSet

log = logging.getLogger(__name__)
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class KubernetesActuatorConfig:
    """Where the pool Deployments live and how to treat them. `instance` is the Helm release name;
    `worker_pod_labels` are the chart's labels of every worker pod (its NetworkPolicies select them)."""

    namespace: str
    instance: str
    deployment_prefix: str
    pools: tuple[str, ...] = ()
    worker_port: int = 50051
    drain_timeout_seconds: float = 60.0
    export_only: bool = False
    node_label_selector: str = ""
    labels: InventoryLabels = field(default_factory=InventoryLabels)
    templates: TemplateSet = field(default_factory=TemplateSet)
    worker_pod_labels: dict[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

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
        """Labels a chart pool's Deployment must carry for this actuator to scale it."""
        return {PART_OF_LABEL: "heteroserve", INSTANCE_LABEL: self.instance, POOL_LABEL: pool}


@dataclass
class _Outcome:
    """What `apply` did so far; `not_applied` collects pools whose change failed after the retries."""

    changes: list[PoolChange] = field(default_factory=list)
    drained: list[DrainTarget] = field(default_factory=list)
    failures: list[DrainTarget] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    not_applied: list[str] = field(default_factory=list)

    async def attempt(self, pool: str, step: Awaitable[None]) -> bool:
        try:
            await step
        except UnavailableError as exc:
            log.warning("pool %s not applied: %s", pool, exc)
            self.not_applied.append(pool)
            return False
        return True

    def result(self) -> ApplyResult:
        return ApplyResult(changes=tuple(self.changes), drained=tuple(self.drained),
                           drain_failures=tuple(self.failures), created=tuple(self.created),
                           deleted=tuple(self.deleted), not_applied=tuple(self.not_applied))


class KubernetesActuator:
    """Implements `control_plane.actuators.base.Actuator` on Kubernetes (see the module docstring).

    The actuator owns `api_client` (closed by `close()`); `drain` is called before any worker is removed.
    """

    def __init__(self, config: KubernetesActuatorConfig, api_client: k8s.ApiClient, drain: DrainFn,
                 metrics: ActuatorMetrics) -> None:
        self._config = config
        self._api_client = api_client
        self._apps = k8s.AppsV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._drain = drain
        self._metrics = metrics
        self._call = KubeCalls(metrics, config.retry)
        where = PoolObjects(config.namespace, config.instance, config.deployment_prefix,
                            config.worker_pod_labels, config.labels.node_type_label)
        self._template_pools = TemplatePools(where, api_client, self._call)

    async def inventory(self) -> tuple[NodeGroup, ...]:
        """Schedulable nodes grouped by (node type, device), from node labels. Read-only."""
        return inventory_from_nodes(await self.nodes(), self._config.labels)

    async def nodes(self) -> list[Any]:
        """The V1Node objects the inventory counts (`node_label_selector`). Read-only."""
        selector = self._config.node_label_selector
        kwargs = {"label_selector": selector} if selector else {}
        return list((await self._call("list nodes", self._core.list_node, **kwargs)).items)

    async def _chart_deployment(self, pool: str) -> Any:
        name = self._config.deployment_prefix + pool
        deployment: Any = await self._call("get deployment", self._apps.read_namespaced_deployment, name,
                                           self._config.namespace, object_name=name)
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

    def _check_targets(self, targets: Sequence[PoolTarget]) -> None:
        pools = [t.pool for t in targets]
        if len(set(pools)) != len(pools):
            raise ConfigError(f"duplicate pools in targets: {sorted(pools)}", field="targets")
        chart = set(self._config.pools)
        unknown = sorted(t.pool for t in targets if t.pool not in chart
                         and self._config.templates.find(t.node_type, t.device) is None)
        if unknown:
            raise ConfigError(
                f"pools {unknown} are not among the chart's pools {list(self._config.pools)} and no pool "
                "template matches their node type; add them to the release's workerPools or add a "
                "template (planner.poolTemplates)",
                field="targets",
            )

    async def apply(self, targets: Sequence[PoolTarget]) -> ApplyResult:
        """See `Actuator.apply`. Checks every target against the cluster before changing anything."""
        self._check_targets(targets)
        chart = set(self._config.pools)
        managed = await self._template_pools.list() if self._config.templates else {}
        observed: list[tuple[PoolTarget, int | None]] = []  # None: to be created
        for target in targets:
            deployment = (await self._chart_deployment(target.pool) if target.pool in chart
                          else managed.get(target.pool))
            if deployment is not None:
                self._check_matches(target, deployment)
            else:
                await self._template_pools.check_free(target.pool)
            labels = {"pool": target.pool, "node_type": target.node_type, "role": target.role}
            self._metrics.desired_replicas.labels(**labels).set(target.replicas)
            observed.append((target, None if deployment is None else int(deployment.spec.replicas or 0)))
        if self._config.export_only:
            return ApplyResult()
        dropped = sorted(set(managed) - {t.pool for t in targets})
        outcome = await self._execute(observed, {p: int(managed[p].spec.replicas or 0) for p in dropped})
        self._metrics.pools_not_applied.set(len(outcome.not_applied))
        if outcome.not_applied:
            self._metrics.incomplete_applies.inc()
            log.error("plan only partly applied: pools %s not applied (will retry)", outcome.not_applied)
        return outcome.result()

    async def _execute(self, observed: list[tuple[PoolTarget, int | None]],
                       dropped: dict[str, int]) -> _Outcome:
        out = _Outcome()
        for target, _ in sorted((o for o in observed if o[1] is None), key=lambda o: o[0].pool):
            template = self._config.templates.find(target.node_type, target.device)
            assert template is not None, "_check_targets lets no pool without a template through"
            if await out.attempt(target.pool, self._template_pools.create(target, template)):
                self._metrics.pool_lifecycle.labels(event="created").inc()
                out.created.append(target.pool)
                out.changes.append(PoolChange(target.pool, 0, target.replicas))
        existing = [(t, n) for t, n in observed if n is not None]
        for target, now in sorted((o for o in existing if o[0].replicas > o[1]), key=lambda o: o[0].pool):
            if await out.attempt(target.pool, self._scale(target.pool, target.replicas)):
                self._metrics.scale_operations.labels(pool=target.pool, direction="up").inc()
                out.changes.append(PoolChange(target.pool, now, target.replicas))
        for target, now in sorted((o for o in existing if o[0].replicas < o[1]), key=lambda o: o[0].pool):
            if await out.attempt(target.pool, self._drain_then(out, target.pool, now - target.replicas,
                                                               self._scale(target.pool, target.replicas))):
                self._metrics.scale_operations.labels(pool=target.pool, direction="down").inc()
                out.changes.append(PoolChange(target.pool, now, target.replicas))
        for pool, now in dropped.items():
            if await out.attempt(pool, self._drain_then(out, pool, now, self._template_pools.delete(pool))):
                self._metrics.pool_lifecycle.labels(event="deleted").inc()
                out.deleted.append(pool)
                out.changes.append(PoolChange(pool, now, 0))
        return out

    async def _drain_then(self, out: _Outcome, pool: str, count: int, step: Awaitable[None]) -> None:
        try:
            ok, failed = await self._drain_pool(pool, count)
        except BaseException:
            if asyncio.iscoroutine(step):
                step.close()  # never awaited: the drain failed first
            raise
        out.drained += ok
        out.failures += failed
        await step

    async def _scale(self, pool: str, replicas: int) -> None:
        name = self._config.deployment_prefix + pool
        log.info("scaling Deployment %s/%s to %d", self._config.namespace, name, replicas)
        await self._call("scale deployment", self._apps.patch_namespaced_deployment_scale, name,
                         self._config.namespace, {"spec": {"replicas": replicas}}, object_name=name,
                         _content_type=MERGE_PATCH)

    async def _drain_pool(self, pool: str, count: int) -> tuple[list[DrainTarget], list[DrainTarget]]:
        if count <= 0:
            return [], []
        selector = selector_string(self._config.ownership_labels(pool))
        pods = await self._call("list pods", self._core.list_namespaced_pod, self._config.namespace,
                                object_name=f"of pool {pool}", label_selector=selector)
        chosen = choose_pods_to_remove(pods.items, count)
        for pod in chosen:
            await self._call("annotate pod", self._core.patch_namespaced_pod, pod.metadata.name,
                             self._config.namespace,
                             {"metadata": {"annotations": {DELETION_COST_ANNOTATION: DELETION_COST}}},
                             object_name=pod.metadata.name, _content_type=MERGE_PATCH)
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
        """Ready replicas of every pool the actuator manages (the chart's and the ones it created);
        also sets the actual-replicas gauge."""
        deployments = {pool: await self._chart_deployment(pool) for pool in self._config.pools}
        if self._config.templates:
            deployments.update(await self._template_pools.list())
        result: dict[str, int] = {}
        for pool, deployment in deployments.items():
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
