"""`heteroserve worker`: run one gRPC worker (engine on cpu, cuda or csd; `--engine vllm` hosts vLLM).

Prints exactly one line on stdout, `worker <id> ready on <host:port>`, once it serves (launchers and
tests wait for it); logs go to stderr. SIGTERM drains (no new work, running requests finish within
`--drain-grace-seconds`, deregistration) and exits 0. A bad flag is a one-line error naming the flag.
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlparse

from common.errors import ConfigError
from common.vocab import DEVICES, ENGINES, ROLES
from heteroserve.cli._tls import add_tls_flag, tls_files

if TYPE_CHECKING:
    from cache.config import CacheConfig
    from workers.config import WorkerConfig
    from workers.vllm.config import VLLMEngineConfig

HELP = "run one gRPC worker (engine on cpu, cuda or csd)"
DEFAULT_TOKEN_ENV = "HETEROSERVE_CLUSTER_TOKEN"

# WorkerConfig field -> the flag that sets it, so validation errors name what the user typed.
_FLAG_OF_FIELD = {
    "worker_id": "--worker-id", "cluster_token": "--cluster-token-env", "device": "--device",
    "role": "--role", "csd_path": "--csd-path", "metrics_port": "--metrics-port", "port": "--port",
    "kv_cache_mb": "--kv-cache-mb", "node_type": "--node-type", "pool": "--pool",
    "drain_grace_seconds": "--drain-grace-seconds", "redis_url": "--redis-url",
    "health_port": "--health-port", "session_port": "--session-port",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.error = _one_line_error(parser)  # type: ignore[method-assign,assignment]
    parser.add_argument("--model", required=True, type=Path, help="model directory (Hugging Face format)")
    parser.add_argument("--device", default="cpu", choices=DEVICES, help="device kind")
    parser.add_argument("--engine", default="native", choices=ENGINES,
                        help="engine behind the Worker service (vllm needs the vllm extra)")
    parser.add_argument("--vllm-memory-fraction", type=float, default=0.1, metavar="F",
                        help="vllm: share of device (on cpu: host) memory the engine takes (default 0.1)")
    parser.add_argument("--vllm-block-size", type=int, default=32, metavar="N",
                        help="vllm: tokens per vLLM KV page, a multiple of --hash-block-size (default 32)")
    parser.add_argument("--hash-block-size", type=int, default=16, metavar="N",
                        help="vllm: the cluster's block-hash size, the gateways' (default 16)")
    parser.add_argument("--role", default="colocated", choices=ROLES)
    parser.add_argument("--port", required=True, type=int, help="gRPC port (0 = pick a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--advertise-host", default=None,
                        help="host registered for peers to dial (default: --host)")
    parser.add_argument("--node-type", default=None, help="node type name (default: the device kind)")
    parser.add_argument("--pool", default="default", help="pool this worker belongs to")
    parser.add_argument("--redis-url", default=None, help="registry Redis URL (default: no registration)")
    parser.add_argument("--shared-tier-url", default=None, metavar="URL",
                        help="Redis URL of the shared KV tier (shorthand for a cache config with only Redis)")
    parser.add_argument("--cache-config", type=Path, default=None, metavar="FILE",
                        help="YAML/JSON of cache.config.CacheConfig: KV tiers below the pool (default: none)")
    parser.add_argument("--disk-tier", type=Path, default=None, metavar="DIR",
                        help="directory of a node-local disk KV tier (with --shared-tier-url or alone)")
    parser.add_argument("--disk-tier-mb", type=int, default=10240, help="disk tier capacity in MiB")
    parser.add_argument("--no-kv-events", action="store_true",
                        help="do not publish KV block events to --redis-url")
    parser.add_argument("--cluster-token-env", default=DEFAULT_TOKEN_ENV, metavar="VAR",
                        help=f"environment variable holding the cluster token (default: {DEFAULT_TOKEN_ENV})")
    parser.add_argument("--csd-path", type=Path, default=None, help="drive directory of the csd KV pool")
    add_tls_flag(parser)
    parser.add_argument("--health-port", type=int, default=None, metavar="PORT",
                        help="also serve the gRPC health service alone, in plaintext, on PORT (probes that "
                             "cannot do mutual TLS, e.g. the kubelet's; default: off)")
    parser.add_argument("--session-port", type=_session_port, default=0, metavar="PORT",
                        help="without TLS, the plain session port the gateway streams generations over "
                             "(0 = a free one, the default; 'off' = none, clients stay on gRPC); a fixed "
                             "PORT lets a network policy admit it")
    parser.add_argument("--kv-cache-mb", type=int, default=None, help="KV pool size in MiB")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port (0 = off)")
    parser.add_argument("--openai-port", type=int, default=None, metavar="PORT",
                        help="also serve OpenAI-compatible HTTP (/v1/completions, /v1/chat/completions, "
                             "/health, /metrics) on PORT, 0 = a free one (default: off)")
    parser.add_argument("--worker-id", default=None, help="worker id (default: random)")
    parser.add_argument("--drain-grace-seconds", type=float, default=30.0,
                        help="how long a drain waits for running requests (default: 30)")


def _session_port(value: str) -> int | None:
    """`--session-port`: a port number, or 'off' (None)."""
    if value == "off":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a port number or 'off', got {value!r}") from None


def _one_line_error(parser: argparse.ArgumentParser) -> Callable[[str], NoReturn]:
    """argparse's error without the usage block: one line naming the flag, exit code 2."""
    def error(message: str) -> NoReturn:
        parser.exit(2, f"{parser.prog}: error: {message}\n")
    return error


def build_config(args: argparse.Namespace) -> WorkerConfig:
    """The `WorkerConfig` for `args`; raises `ConfigError` naming the flag at fault."""
    from common.logs import register_secret
    from workers.config import WorkerConfig

    token = os.environ.get(args.cluster_token_env, "")
    if not token:
        raise ConfigError(f"environment variable {args.cluster_token_env} is empty or unset",
                          field="--cluster-token-env")
    register_secret(token)
    for url in (args.redis_url, args.shared_tier_url):
        register_secret(urlparse(url).password if url else None)  # Redis AUTH passwords in URLs
    if not (args.model / "config.json").is_file():
        raise ConfigError(f"{args.model} is not a model directory (no config.json)", field="--model")
    try:
        return WorkerConfig(
            worker_id=args.worker_id or f"{args.device}-{args.role}-{uuid.uuid4().hex[:8]}",
            model_dir=args.model, cluster_token=token, device=args.device, role=args.role,
            host=args.host, advertise_host=args.advertise_host, port=args.port,
            node_type=args.node_type or args.device, pool=args.pool,
            redis_url=args.redis_url, cache=cache_config(args), publish_kv_events=not args.no_kv_events,
            csd_path=args.csd_path,
            kv_cache_mb=args.kv_cache_mb,
            metrics_port=args.metrics_port, drain_grace_seconds=args.drain_grace_seconds,
            tls=tls_files(args), health_port=args.health_port,
            session_port=args.session_port)
    except ValueError as exc:
        message = str(exc)
        flag = next((f for name, f in sorted(_FLAG_OF_FIELD.items(), key=lambda kv: -len(kv[0]))
                     if message.startswith(name)), None)
        raise ConfigError(message, field=flag) from None


def cache_config(args: argparse.Namespace) -> CacheConfig | None:
    """The KV tiers below the engine's pool: from `--cache-config`, or from `--shared-tier-url` (Redis)
    and `--disk-tier` (node-local disk), or None. Pool evictions are written to both."""
    from cache.config import CacheConfig
    from cache.store import TierRole
    from cache.tiers import DiskTierConfig, RedisTierConfig
    from common.config import build, load_mapping

    shorthand = args.shared_tier_url or args.disk_tier is not None
    if args.cache_config is not None and shorthand:
        raise ConfigError("give --cache-config, or --shared-tier-url / --disk-tier, not both",
                          field="--cache-config")
    if args.cache_config is not None:
        return build(CacheConfig, load_mapping(args.cache_config), source=str(args.cache_config))
    if not shorthand:
        return None
    try:
        redis = RedisTierConfig(url=args.shared_tier_url) if args.shared_tier_url else None
    except ValueError as exc:
        raise ConfigError(str(exc), field="--shared-tier-url") from None
    try:
        disk = (DiskTierConfig(root=args.disk_tier, capacity_bytes=args.disk_tier_mb * 2**20)
                if args.disk_tier is not None else None)
    except ValueError as exc:
        raise ConfigError(str(exc), field="--disk-tier-mb") from None
    # No memory tier above the disk here, so the disk takes pool evictions directly (write-through).
    return CacheConfig(memory=None, redis=redis, disk=disk,
                       disk_role=TierRole(write="through", promote=False))


def vllm_config(args: argparse.Namespace, config: WorkerConfig) -> VLLMEngineConfig:
    """The vLLM engine's configuration for `args`; raises `ConfigError` naming the flag at fault.
    KV events are published on per-worker IPC sockets when the worker publishes KV events."""
    from workers.vllm.config import VLLMEngineConfig
    from workers.vllm.server import event_endpoints

    if args.device == "csd":
        raise ConfigError("the vllm engine runs on cpu or cuda, not csd", field="--device")
    events, replay = event_endpoints(config.worker_id)
    with_events = bool(config.redis_url and config.publish_kv_events)
    flags = {"block_size": "--vllm-block-size", "hash_block_size": "--hash-block-size",
             "memory_fraction": "--vllm-memory-fraction", "kv_cache_bytes": "--kv-cache-mb"}
    try:
        return VLLMEngineConfig(
            model_dir=config.model_dir, device=config.device, block_size=args.vllm_block_size,
            hash_block_size=args.hash_block_size, memory_fraction=args.vllm_memory_fraction,
            kv_cache_bytes=config.kv_cache_mb * 2**20 if config.kv_cache_mb else None, cache=config.cache,
            kv_events_endpoint=events if with_events else None,
            kv_events_replay_endpoint=replay if with_events else None)
    except ValueError as exc:
        message = str(exc)
        flag = next((f for name, f in flags.items() if message.startswith(name)), "--engine")
        raise ConfigError(message, field=flag) from None


def run(args: argparse.Namespace) -> int:
    import asyncio

    config = build_config(args)

    def ready(address: str) -> None:
        print(f"worker {config.worker_id} ready on {address}", flush=True)

    if args.openai_port is not None and not 0 <= args.openai_port <= 65535:
        raise ConfigError(f"must be in 0..65535, got {args.openai_port}", field="--openai-port")
    if args.engine == "vllm":
        from workers.vllm import server as vllm_server

        return asyncio.run(vllm_server.serve(config, vllm_config(args, config), on_ready=ready,
                                             openai_port=args.openai_port))
    from workers.service.server import serve

    return asyncio.run(serve(config, on_ready=ready, openai_port=args.openai_port))
