"""The actuator interface: what the planner calls to make the running fleet match a plan.

An actuator owns one thing, the number of running workers per pool. The planner hands it the full set
of pool targets of a plan; the actuator changes replica counts and nothing else (never images, never
resources, never objects it does not own). Scale-downs drain first: the actuator chooses which workers
go, calls the `DrainFn` the planner gave it for each of them (which sends the worker Drain RPC), and only
then lowers the replica count, so no request in flight is cut.

Implementations: `KubernetesActuator` (this package) scales one Deployment per pool; `LocalActuator`
(the planner's embedded mode) starts and stops processes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from common.vocab import DEVICES, ROLES, Device, Role

# A DNS-1123 label: a pool name becomes part of Kubernetes object names and label values.
_POOL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


def check_pool_name(pool: str, *, field: str = "pool") -> None:
    """Raise ValueError unless `pool` is a DNS label of at most 40 characters."""
    if not _POOL_NAME.match(pool):
        raise ValueError(
            f"{field}: {pool!r} is not a valid pool name (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 40 characters)"
        )


@dataclass(frozen=True)
class PoolTarget:
    """The desired state of one pool: `replicas` workers of `node_type` in `role` serving `model`."""

    pool: str
    node_type: str
    role: Role
    device: Device
    model: str
    replicas: int

    def __post_init__(self) -> None:
        check_pool_name(self.pool)
        if not self.node_type:
            raise ValueError("node_type: must not be empty")
        if self.role not in ROLES:
            raise ValueError(f"role: {self.role!r} is not one of {', '.join(ROLES)}")
        if self.device not in DEVICES:
            raise ValueError(f"device: {self.device!r} is not one of {', '.join(DEVICES)}")
        if not self.model:
            raise ValueError("model: must not be empty")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 0:
            raise ValueError(f"replicas: {self.replicas!r} must be an integer >= 0")


@dataclass(frozen=True)
class DrainTarget:
    """One worker chosen to leave its pool. `address` is `host:port` of its gRPC server, or None when
    the worker never got an address (a pending pod), in which case there is nothing to drain."""

    pool: str
    name: str
    address: str | None


# Called once per worker about to be removed; returns when the worker holds no more work. Raising a
# HeteroserveError, OSError or TimeoutError marks the drain as failed; the scale-down goes on anyway
# (the gateway retries what a dead worker held), and the failure is reported in `ApplyResult`.
DrainFn = Callable[[DrainTarget], Awaitable[None]]


@dataclass(frozen=True)
class PoolChange:
    """One replica count changed by `apply`."""

    pool: str
    from_replicas: int
    to_replicas: int


@dataclass(frozen=True)
class ApplyResult:
    """What one `apply` call changed: replica counts (in the order applied, a created pool as a change
    from 0, a deleted one as a change to 0), pools created and deleted, drained workers, the workers
    whose drain failed or timed out (they were removed regardless), and the pools whose change could
    not be made (the backend stayed unreachable through the retries): a half-applied plan is never
    silent, `complete` is False and `not_applied` names the pools still to do."""

    changes: tuple[PoolChange, ...] = ()
    drained: tuple[DrainTarget, ...] = ()
    drain_failures: tuple[DrainTarget, ...] = ()
    created: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    not_applied: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes or self.created or self.deleted)

    @property
    def complete(self) -> bool:
        return not self.not_applied


@dataclass(frozen=True)
class NodeGroup:
    """Schedulable nodes of one type, as the planner's inventory sees them.

    `num_gpus` is the total allocatable `nvidia.com/gpu` over the group (0 for CPU and CSD nodes).
    """

    node_type: str
    device: Device
    num_nodes: int
    num_gpus: int


class Actuator(Protocol):
    """Makes the number of running workers per pool match a plan. Owned by the planner's leader."""

    async def apply(self, targets: Sequence[PoolTarget]) -> ApplyResult:
        """Set every pool in `targets` to its replica count: scale-ups first, then scale-downs, each
        preceded by draining the workers that go. Pools not in `targets` are left as they are, except
        pools the actuator itself created (an actuator that creates pools deletes those the plan
        dropped). A change that cannot be made is named in `ApplyResult.not_applied`.
        Raises PermissionDeniedError for an object the actuator does not own, ConfigError when a
        target contradicts the pool's deployed role or node type, UnavailableError when the backend
        cannot be reached. Idempotent: applying the same targets twice changes nothing the second time."""
        ...

    async def current(self) -> dict[str, int]:
        """Ready workers per pool now (pool -> count), for every pool the actuator manages. No change."""
        ...

    async def close(self) -> None:
        """Release connections. The actuator is unusable afterwards."""
        ...
