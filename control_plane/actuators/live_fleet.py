"""The planner's fleet on Kubernetes, from the live Node list: what it may place, and how much of it.

`live_profile_spec(base, nodes, ...)` turns the nodes the planner can see into the `ProfileSpec` it
solves over:
- pools: the chart's pools (`base.pools`), plus, for every node type present with a pool template that
  has a profile (`rate_per_worker`), one pool `<node type>-<role>` per role of the template, unless a
  pool of that (node type, role) or name already exists. A node type that appears in the cluster can so
  be planned for, and then opened by the actuator, without editing values;
- inventory: `inventory.worker_capacity` for the node types present (capped by the values' counts),
  and 0 for the node types of `base.pools` that have no schedulable node (absent would mean unlimited).

`LiveFleetSolver` is a planner `SolveFn`: each solve lists the nodes (a synchronous call: the planner
runs solves in a thread) and solves over the fleet of that moment. When the list fails, it solves over
the last fleet it saw (the `base` spec before any), and logs why.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from common.errors import HeteroserveError
from control_plane.actuators.inventory import InventoryLabels, inventory_from_nodes, worker_capacity
from control_plane.actuators.templates import TemplateSet, template_pool_name
from control_plane.planner.profile_solver import ProfiledPool, ProfileSolver, ProfileSpec
from control_plane.planner.types import DemandClass, SolvedPlan

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class InventoryCaps:
    """Most workers per node type (`max_workers`, the values' `planner.nodeCounts`) and for any node
    type not listed there (`default_max_workers`)."""

    max_workers: dict[str, int] = dataclasses.field(default_factory=dict)
    default_max_workers: int = 8

    def __post_init__(self) -> None:
        for node_type, count in self.max_workers.items():
            if count < 0:
                raise ValueError(f"max_workers.{node_type}: {count} must be >= 0")
        if self.default_max_workers < 0:
            raise ValueError(f"default_max_workers: {self.default_max_workers} must be >= 0")


def _template_pools(base: ProfileSpec, nodes: Iterable[Any], labels: InventoryLabels,
                    templates: TemplateSet) -> list[ProfiledPool]:
    taken = {(p.node_type, p.role) for p in base.pools}
    names = {p.name for p in base.pools}
    pools = []
    for group in inventory_from_nodes(nodes, labels):
        template = templates.find(group.node_type, group.device)
        if template is None or not template.rate_per_worker:
            continue
        for role in template.roles:
            name = template_pool_name(group.node_type, role)
            if (group.node_type, role) in taken or name in names:
                continue
            taken.add((group.node_type, role))
            names.add(name)
            pools.append(ProfiledPool(name=name, node_type=group.node_type, role=role, device=group.device,
                                      price_per_hour=template.price_per_hour,
                                      rate_per_worker=dict(template.rate_per_worker)))
    return pools


def live_profile_spec(base: ProfileSpec, nodes: Sequence[Any], labels: InventoryLabels,
                      templates: TemplateSet, caps: InventoryCaps) -> ProfileSpec:
    """`base` with the pools and inventory of the cluster whose nodes are `nodes` (V1Node objects)."""
    capacity = worker_capacity(nodes, labels, templates, caps.max_workers, caps.default_max_workers)
    pools = (*base.pools, *_template_pools(base, nodes, labels, templates))
    inventory = {p.node_type: 0 for p in pools} | capacity
    return dataclasses.replace(base, pools=pools, inventory=inventory)


class LiveFleetSolver:
    """A planner `SolveFn` over the live Node list (see the module docstring). `list_nodes` is
    synchronous and may raise HeteroserveError or OSError."""

    def __init__(self, base: ProfileSpec, list_nodes: Callable[[], Sequence[Any]], labels: InventoryLabels,
                 templates: TemplateSet, caps: InventoryCaps) -> None:
        self._base = base
        self._list_nodes = list_nodes
        self._labels = labels
        self._templates = templates
        self._caps = caps
        self.spec = base  # the fleet of the last solve

    def refresh(self) -> ProfileSpec:
        """The spec of the cluster now (the last one seen when the Node list fails)."""
        try:
            nodes = self._list_nodes()
        except (HeteroserveError, OSError) as exc:
            log.warning("listing nodes failed (%s); planning over the last known fleet", exc)
            return self.spec
        self.spec = live_profile_spec(self._base, nodes, self._labels, self._templates, self._caps)
        return self.spec

    def __call__(self, demand: Sequence[DemandClass], running: SolvedPlan | None) -> SolvedPlan:
        return ProfileSolver(self.refresh())(demand, running)

