"""The router: pick a worker for a request, as a pipeline of filters → scorers → picker.

Pure and synchronous (no I/O); see README in control_plane/ for the algorithm and thresholds.
"""

from __future__ import annotations

from control_plane.router.config import POLICIES, RouterConfig
from control_plane.router.inflight import InflightTracker
from control_plane.router.pipeline import Router
from control_plane.router.table import Candidates, WorkerTable
from control_plane.router.types import PrefixHoldings, RouteDecision, RouteRequest, WorkerState

__all__ = ["POLICIES", "Candidates", "InflightTracker", "PrefixHoldings", "RouteDecision", "RouteRequest",
           "Router", "RouterConfig", "WorkerState", "WorkerTable"]
