"""The bodies of `heteroserve up`, `down` and `status` (the CLI modules only parse flags).

`run_up` refuses to start over a running cluster, starts one (`EmbeddedCluster`), prints its
summary, then prints each new plan version until SIGINT / SIGTERM and stops everything.
`run_down` SIGTERMs the `up` process and waits for it; whatever is still alive afterwards (the
launcher was SIGKILLed, say) is stopped by pid from cluster.json and the worker pid files.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType

from common.errors import ConfigError, NotFoundError
from heteroserve.embedded.config import load_embedded_config
from heteroserve.embedded.launcher import EmbeddedCluster, stop_stray_workers, summary
from heteroserve.embedded.processes import pid_alive, stop_pid
from heteroserve.embedded.state import read_state, state_path


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_up(config_path: Path | None, run_dir: Path, log_level: str = "INFO") -> int:
    try:
        running = read_state(run_dir)
        if pid_alive(running.launcher_pid):
            raise ConfigError(f"a cluster is already running in {run_dir} (pid {running.launcher_pid}); "
                              f"stop it with `heteroserve down --run-dir {run_dir}`", field="run_dir")
        state_path(run_dir).unlink()
    except NotFoundError:
        pass
    config = load_embedded_config(config_path)
    cluster = EmbeddedCluster(config, run_dir, config_path=config_path, log_level=log_level)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    print(f"starting the embedded cluster in {cluster.run_dir} (logs in {cluster.logs_dir}) ...", flush=True)
    try:
        state = cluster.start()
        print(summary(state), flush=True)
        _follow(cluster, state.redis_url)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping the embedded cluster ...", flush=True)
        cluster.stop()
        print("stopped.", flush=True)
    return 0


def _follow(cluster: EmbeddedCluster, redis_url: str) -> None:
    """Print plan changes and dead processes until interrupted."""
    from control_plane.plan_store import read_plan_sync

    version, reported_dead = 0, set[str]()
    while True:
        record = read_plan_sync(redis_url)
        if record is not None and record.version != version:
            version = record.version
            pools = ", ".join(f"{p['name']}×{p['count']}" for p in record.plan.get("pools", []) if p["count"])
            print(f"[{time.strftime('%H:%M:%S')}] plan v{version} ({record.reason}): {pools}; "
                  f"${record.plan.get('cost_per_hour', 0):.2f}/h", flush=True)
        for name in set(cluster.dead_processes()) - reported_dead:
            reported_dead.add(name)
            print(f"[{time.strftime('%H:%M:%S')}] {name} exited; see {cluster.logs_dir / (name + '.log')}",
                  file=sys.stderr, flush=True)
        time.sleep(2.0)


def run_down(run_dir: Path, timeout_seconds: float = 120.0) -> int:
    try:
        state = read_state(run_dir)
    except NotFoundError:
        leftovers = stop_stray_workers(run_dir)
        print(f"no cluster running in {run_dir}" + (f" (stopped {leftovers} stray workers)"
                                                     if leftovers else ""))
        return 0
    print(f"stopping the cluster in {state.run_dir} ...", flush=True)
    stop_pid(state.launcher_pid, timeout_seconds=timeout_seconds, expect="heteroserve")
    for process in state.processes:
        expect = "redis" if process.name == "redis" else "heteroserve"
        stop_pid(process.pid, timeout_seconds=10, expect=expect)
    stop_stray_workers(run_dir)
    state_path(run_dir).unlink(missing_ok=True)
    print("stopped.")
    return 0


def run_status(run_dir: Path, *, watch: bool = False, interval_seconds: float = 2.0) -> int:
    from rich.console import Console
    from rich.live import Live

    from heteroserve.embedded.status import collect, render

    state = read_state(run_dir)
    console = Console()
    if not watch:
        console.print(render(collect(state)))
        return 0
    with Live(render(collect(state)), console=console, refresh_per_second=1) as live:
        try:
            while True:
                time.sleep(interval_seconds)
                live.update(render(collect(state)))
        except KeyboardInterrupt:
            pass
    return 0
