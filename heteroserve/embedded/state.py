"""`<run_dir>/cluster.json`: what `heteroserve up` started, for `down`, `status` and `demo`.

Written once the cluster is ready (mode 0600: it holds the API key and the tokens), removed by a clean
shutdown. Worker processes are listed separately, one file each, in `<run_dir>/workers/` by the
`LocalActuator` that owns them (they come and go with the plan).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.errors import NotFoundError

STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    pid: int
    log: str
    metrics_url: str | None = None


@dataclass(frozen=True)
class ClusterState:
    run_dir: str
    launcher_pid: int
    redis_url: str
    http_url: str
    grpc_address: str
    api_key: str = field(repr=False)
    admin_token: str = field(repr=False)
    cluster_token: str = field(repr=False)
    model: str
    model_dir: str
    processes: tuple[ProcessInfo, ...] = ()
    started_at: float = 0.0

    def process(self, name: str) -> ProcessInfo | None:
        return next((p for p in self.processes if p.name == name), None)


def state_path(run_dir: Path) -> Path:
    return run_dir / STATE_FILE


def write_state(run_dir: Path, state: ClusterState) -> Path:
    path = state_path(run_dir)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(state), out, indent=2)
    tmp.replace(path)
    return path


def read_state(run_dir: Path) -> ClusterState:
    """The state of the cluster in `run_dir`; NotFoundError if none is running there."""
    path = state_path(run_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFoundError(f"no embedded cluster in {run_dir} (no {STATE_FILE}); "
                            f"start one with `heteroserve up --run-dir {run_dir}`") from None
    data["processes"] = tuple(ProcessInfo(**p) for p in data.get("processes", ()))
    return ClusterState(**data)


def worker_files(run_dir: Path) -> list[dict[str, object]]:
    """The worker pid files written by the LocalActuator (pid, pool, address, metrics_port, log)."""
    out = []
    for path in sorted((run_dir / "workers").glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return out
