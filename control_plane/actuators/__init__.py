"""Actuators: make the running fleet match the planner's plan (see base.py for the interface).

`KubernetesActuator` lives in `control_plane.actuators.kubernetes` and is imported from there, so that
importing this package does not load the `kubernetes` client.
"""

from control_plane.actuators.base import (
    Actuator,
    ApplyResult,
    DrainFn,
    DrainTarget,
    NodeGroup,
    PoolChange,
    PoolTarget,
)
from control_plane.actuators.metrics import ActuatorMetrics

__all__ = [
    "Actuator",
    "ActuatorMetrics",
    "ApplyResult",
    "DrainFn",
    "DrainTarget",
    "NodeGroup",
    "PoolChange",
    "PoolTarget",
]
