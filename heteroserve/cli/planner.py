"""`heteroserve planner`: run the planner loop (observe traffic, re-plan, publish, actuate).

The fleet, SLO classes, profiles and loop settings come from the planner's spec file
(`control_plane.planner.spec`; the Helm chart renders one); `--profile FILE` adds measured profiles
(the embedded cluster passes the ones it measured on its first start). With `--actuator local`, or without
`--config`, the planner is part of an embedded cluster and reads the whole embedded-cluster file
(`heteroserve.embedded.config`, default `deploy/examples/embedded.yaml`), whose `workers` section
configures the workers it starts; otherwise it never imports `heteroserve.embedded`.
`--actuator local` starts and stops worker processes on this machine (embedded mode);
`--actuator kubernetes` scales the chart's pool Deployments (`--kubernetes-config`, whose `lease`
section, when present, replaces the Redis leader lock by a Kubernetes Lease); `--actuator none` only
publishes plans (an autoscaler reading the desired-instances metric acts on them).
The cluster token comes from `$HETEROSERVE_CLUSTER_TOKEN`.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heteroserve.cli._tls import add_tls_flag, tls_files
from heteroserve.cli.up import DEFAULT_RUN_DIR

if TYPE_CHECKING:
    from common.tls import TLSFiles
    from heteroserve.embedded.config import EmbeddedConfig

HELP = "run the planner loop (observe traffic, re-plan, actuate)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="embedded cluster / fleet file (YAML)")
    parser.add_argument("--redis-url", default=os.environ.get("HETEROSERVE_REDIS_URL"),
                        help="Redis URL (default: $HETEROSERVE_REDIS_URL)")
    parser.add_argument("--actuator", choices=("local", "kubernetes", "none"), default="none")
    parser.add_argument("--kubernetes-config", type=Path, default=None,
                        help="kubernetes actuator: the chart's kubernetes.yaml (actuator and lease sections)")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR,
                        help="local actuator: where worker logs and pid files go")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="model directory (local actuator; its config.json gives the architecture)")
    parser.add_argument("--profile", type=Path, action="append", default=[], metavar="FILE",
                        help="a measured profile file, in addition to the spec's `profiles` (repeatable)")
    parser.add_argument("--planner-id", default=None, help="replica id for leader election "
                                                           "(default: hostname-pid)")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port (0 = off)")
    parser.add_argument("--metrics-host", default="0.0.0.0", help="address of /metrics (default: 0.0.0.0)")
    add_tls_flag(parser)  # the planner's certificate, for Drain calls to workers
    parser.add_argument("--worker-tls-dir", type=Path, default=None, metavar="DIR",
                        help="local actuator: --tls-dir of the workers it starts (default: plaintext)")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from common.errors import ConfigError
    from common.logs import register_secret
    from control_plane.planner.process import serve
    from control_plane.planner.solver import PlacementSolver
    from control_plane.planner.spec import PlannerSpec, load_planner_spec

    if not args.redis_url:
        raise ConfigError("a Redis URL is required (--redis-url or $HETEROSERVE_REDIS_URL)",
                          field="redis_url")
    if args.actuator == "kubernetes" and args.kubernetes_config is None:
        raise ConfigError("--actuator kubernetes needs --kubernetes-config FILE", field="kubernetes_config")
    embedded: EmbeddedConfig | None = None
    if args.actuator == "local" or args.config is None:  # part of an embedded cluster (module docstring)
        from heteroserve.embedded.config import load_embedded_config

        embedded = load_embedded_config(args.config)
    spec: PlannerSpec = embedded or load_planner_spec(args.config)
    base = args.config.resolve().parent if args.config else Path.cwd()
    model_dir = args.model_dir or (embedded.model_dir(args.run_dir.resolve()) if embedded else None)
    inputs = spec.planning_inputs(base=base, model_dir=model_dir, extra_profiles=args.profile,
                                  source=str(args.config or "embedded config"))
    planner_id = args.planner_id or f"{socket.gethostname()}-{os.getpid()}"
    token = os.environ.get("HETEROSERVE_CLUSTER_TOKEN", "")
    register_secret(token)
    tls = tls_files(args)
    if args.actuator != "none":
        from common.tls import log_mode

        log_mode("planner", tls)
    factory, lock, solve = None, None, None
    if args.actuator == "local":
        assert embedded is not None, "loaded above: the local actuator reads the embedded file"
        factory = _local_actuator_factory(embedded, args, token, tls)
    elif args.actuator == "kubernetes":
        from control_plane.actuators.kubernetes_setup import (
            kubernetes_actuator_factory,
            lease_lock,
            live_fleet_solver,
            load_kubernetes_settings,
        )

        path = args.kubernetes_config

        def factory(registry: Any) -> Any:
            return kubernetes_actuator_factory(path, token, registry, tls)()

        if load_kubernetes_settings(path).lease is not None:
            lock = lease_lock(path, planner_id)
        # The inventory comes from the live Node list, capped by the values and the spec.
        solve = live_fleet_solver(path, PlacementSolver(inputs))

    asyncio.run(serve(spec.planner_config(planner_id), inputs, args.redis_url, factory,
                      metrics_port=args.metrics_port, metrics_host=args.metrics_host, lock=lock,
                      solve=solve))
    return 0


def _local_actuator_factory(cfg: EmbeddedConfig, args: argparse.Namespace, token: str,
                            tls: TLSFiles | None) -> Any:
    """A factory of the `LocalActuator` starting workers on this machine, set by the embedded file
    `cfg` (its `workers` section and model directory)."""
    from control_plane.actuators.local import LocalActuator, LocalActuatorConfig

    run_dir = args.run_dir.resolve()
    local = LocalActuatorConfig(
        model_dir=(args.model_dir or cfg.model_dir(run_dir)).resolve(), redis_url=args.redis_url,
        run_dir=run_dir, cluster_token=token, kv_cache_mb=cfg.workers.kv_cache_mb,
        ready_timeout_seconds=cfg.workers.ready_timeout_seconds,
        drain_timeout_seconds=cfg.workers.drain_timeout_seconds,
        threads_per_worker=cfg.workers.threads_per_worker,
        shared_tier_url=args.redis_url if cfg.workers.shared_tier else None,
        disk_tier_mb=cfg.workers.disk_tier_mb, tls=tls, worker_tls_dir=args.worker_tls_dir,
        engines=dict(cfg.workers.engines), vllm_memory_fraction=cfg.workers.vllm_memory_fraction)

    def factory(registry: Any) -> Any:
        return LocalActuator(local)

    return factory
