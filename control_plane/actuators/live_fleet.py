"""The planner's fleet on Kubernetes, from the live Node list: how much of each node type it may use.

`live_inventory(solver, nodes, ...)` turns the nodes the planner can see into the inventory it solves
over: for every node type of the planner's fleet, the workers its schedulable nodes hold
(`inventory.worker_capacity`, from the pool templates' requests), capped by the values' counts and by
the planner spec's own `inventory`; 0 for a node type with no schedulable node (absent would mean
unlimited). Node types present in the cluster but absent from the planner's fleet (no catalog entry,
no profile) are not planned for, and named in the log once.

`LiveFleetSolver` is a planner `SolveFn`: each solve lists the nodes (a synchronous call: the planner
runs solves in a thread) and solves over the fleet of that moment with the planner's
`PlacementSolver` (the one compile → ILP → Plan path). When the list fails, it solves over the last
inventory it saw (the spec's before any), and logs why.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

from common.errors import HeteroserveError
from control_plane.actuators.inventory import InventoryLabels, worker_capacity
from control_plane.actuators.templates import TemplateSet
from control_plane.planner.solver import PlacementSolver
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


def live_inventory(solver: PlacementSolver, nodes: Sequence[Any], labels: InventoryLabels,
                   templates: TemplateSet, caps: InventoryCaps) -> dict[str, int]:
    """node type of the planner's fleet → workers it may run (module docstring)."""
    capacity = worker_capacity(nodes, labels, templates, caps.max_workers, caps.default_max_workers)
    fleet = solver.inputs.fleet.names()
    unknown = sorted(set(capacity) - set(fleet))
    if unknown:
        log.info("node types %s are in the cluster but not in the planner's fleet: not planned for", unknown)
    spec = solver.inputs.inventory
    return {t: min(capacity.get(t, 0), spec.get(t, capacity.get(t, 0))) for t in fleet}


class LiveFleetSolver:
    """A planner `SolveFn` over the live Node list (see the module docstring). `list_nodes` is
    synchronous and may raise HeteroserveError or OSError."""

    def __init__(self, base: PlacementSolver, list_nodes: Callable[[], Sequence[Any]],
                 labels: InventoryLabels, templates: TemplateSet, caps: InventoryCaps) -> None:
        self._base = base
        self._list_nodes = list_nodes
        self._labels = labels
        self._templates = templates
        self._caps = caps
        self.inventory: dict[str, int] = dict(base.inputs.inventory)  # the fleet of the last solve

    def refresh(self) -> dict[str, int]:
        """The inventory of the cluster now (the last one seen when the Node list fails)."""
        try:
            nodes = self._list_nodes()
        except (HeteroserveError, OSError) as exc:
            log.warning("listing nodes failed (%s); planning over the last known fleet", exc)
            return self.inventory
        self.inventory = live_inventory(self._base, nodes, self._labels, self._templates, self._caps)
        return self.inventory

    def __call__(self, demand: Sequence[DemandClass], running: SolvedPlan | None) -> SolvedPlan:
        return self._base.with_inventory(self.refresh())(demand, running)
