"""Measure node profiles on this machine: start one idle worker per role, profile, stop them.

Used by `heteroserve profile --model DIR` and by the embedded cluster's first start
(`ensure_profiles`), which keeps the files in a cache directory keyed by
`<model hash>-<machine fingerprint>-<engine>-<node type>.json`: the same model on the same machine
with the same engine is measured once; a new model, machine or engine measures again.

A node type of device `csd` only decodes in a plan, so for it only a decode worker of that device is
measured, fed by a `cpu` prefill worker (the route the cluster uses: CPU prefill → CSD decode); its
profile has a decode section and the transfer rows of that route.
A node type of engine `vllm` is measured in the colocated role only: a vLLM worker serves no `PullKV`
(its KV leaves through the shared tier, by its KV connector), so the profile has no prefill or decode
section and no transfer rows, and the planner gives that node type colocated pools only. Its KV bytes
per token come from the model's architecture instead of a measured transfer.
The workers are started without a registry (`--redis-url` absent), so they never join a cluster; with
`shared_tier_url` they write and read the shared tier, so its path is measured too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from common.errors import ConfigError
from common.vocab import ROLES, Device, Engine, Role
from control_plane.profiler.grid import ProfileGrid
from control_plane.profiler.machine import fingerprint, machine_info
from control_plane.profiler.run import Identity, RoleWorkers, profile_node
from heteroserve.embedded.config import EmbeddedConfig
from heteroserve.embedded.processes import ManagedProcess, heteroserve_command
from placement.profile_file import NodeProfile, load_node_profile, save_node_profile
from workerrpc.client import WorkerClient

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class LocalNodeType:
    """A node type emulated on this machine: workers of `device` running `engine`."""

    name: str
    device: Device
    engine: Engine = "native"

    @property
    def roles(self) -> tuple[Role, ...]:
        """The roles measured (module docstring: csd decodes only, vllm runs colocated only)."""
        if self.device == "csd":
            return ("decode",)
        return ("colocated",) if self.engine == "vllm" else ROLES


@dataclass(frozen=True)
class WorkerSettings:
    """How the profiled workers run (as the cluster's workers will): KV pool MiB, threads, and the
    share of memory a vLLM engine takes."""

    kv_cache_mb: int = 64
    threads: int = 1
    ready_timeout_seconds: float = 180.0
    vllm_memory_fraction: float = 0.05


def model_hash(model_dir: Path) -> str:
    """16 hex digits of sha256 over the model's config.json and weight files (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted([model_dir / "config.json", *model_dir.glob("*.safetensors")]):
        digest.update(path.name.encode())
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def cache_path(cache_dir: Path, model_dir: Path, node: LocalNodeType) -> Path:
    return cache_dir / f"{model_hash(model_dir)}-{fingerprint(machine_info())}-{node.engine}-{node.name}.json"


def expected_steps(grid: ProfileGrid, node: LocalNodeType) -> int:
    """How many progress lines `profile_local` reports for `node` (a progress bar's total)."""
    prefill = len(grid.input_tokens) * len(grid.prefill_batches)
    decode = len(grid.context_tokens) * len(grid.decode_batches)
    per_role = {"colocated": prefill + decode, "prefill": prefill, "decode": decode}
    transfers = 0 if node.engine == "vllm" else 2  # peer and shared transfer
    return sum(per_role[r] for r in node.roles) + transfers


@contextlib.contextmanager
def _workers(model_dir: Path, node: LocalNodeType, token: str, shared_tier_url: str | None,
             settings: WorkerSettings, log_dir: Path) -> Iterator[dict[str, str]]:
    """role → address of one started worker per role (plus the CPU prefill source of a CSD node)."""
    roles: list[tuple[Role, Device]] = [(r, node.device) for r in node.roles]
    if node.device == "csd":
        roles.insert(0, ("prefill", "cpu"))
    procs: dict[str, ManagedProcess] = {}
    env = {"HETEROSERVE_CLUSTER_TOKEN": token, "OMP_NUM_THREADS": str(settings.threads),
           "MKL_NUM_THREADS": str(settings.threads)}
    try:
        for role, device in roles:
            # --port 0: the worker binds a free port itself and names it on its ready line. A port picked
            # here could be taken meanwhile (a vLLM engine binds sockets while it loads for ~50 s).
            argv = heteroserve_command(
                "worker", "--model", str(model_dir), "--device", device, "--engine", node.engine,
                "--role", role, "--port", "0", "--node-type", node.name,
                "--kv-cache-mb", str(settings.kv_cache_mb),
                *(["--shared-tier-url", shared_tier_url] if shared_tier_url else []),
                *(["--csd-path", str(log_dir / f"csd-{role}")] if device == "csd" else []),
                *(["--vllm-memory-fraction", str(settings.vllm_memory_fraction)]
                  if node.engine == "vllm" else []),
                log_level="WARNING")
            name = f"profile-{node.name}-{role}"
            procs[role] = ManagedProcess(name, argv, log_dir / f"{name}.log", env)
        yield {role: process.wait_for_log(" ready on ", settings.ready_timeout_seconds).rsplit(" ", 1)[-1]
               for role, process in procs.items()}
    finally:
        for process in procs.values():
            process.stop(timeout_seconds=10)


async def _measure(addresses: dict[str, str], token: str, grid: ProfileGrid, identity: Identity,
                   shared_tier_url: str | None, progress: ProgressFn | None) -> NodeProfile:
    clients = {role: WorkerClient(address, token, stream_timeout_seconds=600)
               for role, address in addresses.items()}
    try:
        workers = RoleWorkers(clients.get("colocated"), clients.get("prefill"), clients.get("decode"),
                              shared_tier_url)
        return await profile_node(workers, grid, identity, progress)
    finally:
        for client in clients.values():
            await client.close()


def profile_local(model_dir: Path, model_name: str, node: LocalNodeType, grid: ProfileGrid, *,
                  shared_tier_url: str | None = None, settings: WorkerSettings | None = None,
                  log_dir: Path | None = None, progress: ProgressFn | None = None) -> NodeProfile:
    """Start the workers of `node` on `model_dir`, measure them (`control_plane.profiler.run`), stop
    them. Blocking; runs its own event loop. The cluster token is generated for this run only."""
    import secrets

    token = secrets.token_urlsafe(24)
    identity = Identity(model=model_name, node_type=node.name, device=node.device, engine=node.engine,
                        model_hash=model_hash(model_dir), kv_bytes_per_token=_kv_bytes_per_token(model_dir))
    with tempfile.TemporaryDirectory(prefix="heteroserve-profile-") as tmp:
        logs = log_dir or Path(tmp)
        started = _workers(model_dir, node, token, shared_tier_url, settings or WorkerSettings(), logs)
        with started as addresses:
            return asyncio.run(_measure(addresses, token, grid, identity, shared_tier_url, progress))


def _kv_bytes_per_token(model_dir: Path) -> float:
    """K and V bytes of one token over all layers, from the model's config.json (the figure a profile
    without a measured transfer carries)."""
    from placement.models import model_spec_from_hf

    return model_spec_from_hf(model_dir, model_dir.name).kv_bytes_per_token


def ensure_profiles(model_dir: Path, model_name: str, nodes: tuple[LocalNodeType, ...], grid: ProfileGrid,
                    cache_dir: Path, *, shared_tier_url: str | None = None,
                    settings: WorkerSettings | None = None, log_dir: Path | None = None,
                    progress: Callable[[LocalNodeType, str], None] | None = None) -> list[Path]:
    """The profile file of every node type, measured now unless the cache holds it. A cached file
    that does not load (older schema, truncated) is measured again."""
    paths = []
    for node in nodes:
        path = cache_path(cache_dir, model_dir, node)
        if path.exists():
            with contextlib.suppress(ConfigError):
                cached = load_node_profile(path)
                if cached.model == model_name and cached.node_type == node.name:
                    paths.append(path)
                    continue
        report: ProgressFn | None = None
        if progress is not None:
            report = functools.partial(progress, node)
        profile = profile_local(model_dir, model_name, node, grid, shared_tier_url=shared_tier_url,
                                settings=settings, log_dir=log_dir, progress=report)
        save_node_profile(path, profile)
        paths.append(path)
    return paths


def local_node_types(config: EmbeddedConfig) -> tuple[LocalNodeType, ...]:
    """The fleet's node types as emulated here: device from the kind, engine from `workers.engines`."""
    devices: dict[str, Device] = {"cpu": "cpu", "csd": "csd", "gpu": "cuda"}
    return tuple(LocalNodeType(name, devices[kind], config.workers.engine_of(name))
                 for name, kind in config.node_kinds().items())


def first_start_profiles(config: EmbeddedConfig, run_dir: Path, model_dir: Path, redis_url: str,
                         log_dir: Path) -> list[Path]:
    """The embedded cluster's profiles: every node type of its fleet, from the cache or measured now
    with `FIRST_START_GRID`, a rich progress bar on stderr while measuring. [] when disabled."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from control_plane.profiler.grid import FIRST_START_GRID

    if not config.profiling.enabled:
        return []
    nodes = local_node_types(config)
    cache_dir = config.profile_cache_dir(run_dir)
    missing = [n for n in nodes if not cache_path(cache_dir, model_dir, n).exists()]
    if not missing:
        return ensure_profiles(model_dir, config.model.name, nodes, FIRST_START_GRID, cache_dir)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("[dim]{task.fields[last]}"))
    total = sum(expected_steps(FIRST_START_GRID, n) for n in missing)
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(f"first start: profiling {', '.join(n.name for n in missing)}", total=total,
                                 last="starting workers")

        def report(node: LocalNodeType, line: str) -> None:
            progress.update(task, advance=1, last=f"{node.name}: {line}")

        settings = WorkerSettings(kv_cache_mb=config.workers.kv_cache_mb,
                                  threads=config.workers.threads_per_worker,
                                  ready_timeout_seconds=config.workers.ready_timeout_seconds,
                                  vllm_memory_fraction=config.workers.vllm_memory_fraction)
        return ensure_profiles(model_dir, config.model.name, nodes, FIRST_START_GRID, cache_dir,
                               shared_tier_url=redis_url, settings=settings, log_dir=log_dir, progress=report)
