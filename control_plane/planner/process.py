"""One planner process: wires Redis, the solver, the actuator and /metrics, and runs until a signal.

`run_planner(config, ...)` blocks until SIGTERM / SIGINT, then stops the loop, releases the leader
lock and closes the actuator (a `LocalActuator` stops the workers it started). The CLI
(`heteroserve planner`) parses flags and files and calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, start_http_server

from control_plane.actuators.base import Actuator
from control_plane.planner.metrics import PlannerMetrics
from control_plane.planner.service import LeaderLock, PlannerConfig, PlannerService
from control_plane.planner.solver import PlacementSolver, PlanningInputs
from control_plane.planner.types import SolveFn
from control_plane.traffic import TrafficConfig

log = logging.getLogger(__name__)


async def serve(config: PlannerConfig, inputs: PlanningInputs, redis_url: str,
                actuator_factory: Callable[[CollectorRegistry], Actuator] | None, *, metrics_port: int = 0,
                metrics_host: str = "0.0.0.0", lock: LeaderLock | None = None,
                traffic: TrafficConfig | None = None, solve: SolveFn | None = None) -> None:
    """Run the planner until SIGTERM/SIGINT (or cancellation). The actuator factory gets the
    planner's metrics registry (for its own metrics); `lock` defaults to the Redis lock; `solve`
    defaults to `PlacementSolver(inputs)` (on Kubernetes: the live-fleet solver over the Node list,
    which wraps one)."""
    registry = CollectorRegistry()
    metrics = PlannerMetrics(registry)
    http = start_http_server(metrics_port, addr=metrics_host, registry=registry) if metrics_port else None
    client = aioredis.Redis.from_url(redis_url)
    actuator = actuator_factory(registry) if actuator_factory else None
    service = PlannerService(config, client, traffic or TrafficConfig(redis_url=redis_url),
                             solve or PlacementSolver(inputs), metrics, inputs, actuator=actuator, lock=lock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service.start()
    log.info("planner %s running (models %s, node types %s, %d measured profiles, interval %.0fs, "
             "actuator %s)", config.planner_id, ",".join(inputs.models), ",".join(inputs.fleet.names()),
             len(inputs.profiles), config.interval_seconds, type(actuator).__name__ if actuator else "none")
    try:
        await stop.wait()
    finally:
        log.info("planner %s stopping", config.planner_id)
        await service.stop()
        if actuator is not None:
            await actuator.close()
        await client.aclose()
        if http is not None:
            server, _thread = http
            server.shutdown()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
