"""`heteroserve gateway`: run the OpenAI-compatible REST and gRPC gateway.

Prints one line on stdout once both transports listen:
`gateway ready on http://HOST:PORT grpc HOST:PORT` (grpc part only with --grpc-port); logs go to
stderr. SIGTERM/SIGINT stop it cleanly. Secrets come from environment variables named by flags, never
from the command line. API keys come from a YAML/JSON file of entries
`{name, sha256, tenant, requests_per_minute?, tokens_per_minute?, max_tokens_per_request?}` under
`api_keys:`; `sha256` is `heteroserve.cli.gateway.hash_key(key)` (sha256 hex), never the key.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import ConfigError
from heteroserve.cli._tls import add_tls_flag, tls_files

if TYPE_CHECKING:
    from control_plane.gateway.config import GatewayConfig

HELP = "run the OpenAI-compatible REST and gRPC gateway"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, metavar="[NAME=]DIR",
                        help="a served model directory (repeatable); NAME defaults to the directory name")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="REST port (0 = pick a free one)")
    parser.add_argument("--grpc-port", type=int, default=None, help="gRPC port (0 = free; default: off)")
    parser.add_argument("--redis-url", default=None, help="Redis of the registry, plan and KV events")
    parser.add_argument("--cluster-token-env", default="HETEROSERVE_CLUSTER_TOKEN", metavar="VAR")
    add_tls_flag(parser)
    parser.add_argument("--admin-token-env", default="HETEROSERVE_ADMIN_TOKEN", metavar="VAR",
                        help="environment variable holding the admin token (unset = admin API closed)")
    parser.add_argument("--api-keys", type=Path, default=None, metavar="FILE", help="API keys file")
    parser.add_argument("--allow-anonymous", action="store_true",
                        help="serve requests without an API key (tenant '')")
    parser.add_argument("--policy", default="prefix_aware",
                        choices=("prefix_aware", "round_robin", "least_load", "random"))
    parser.add_argument("--balance-abs-threshold", type=int, default=8)
    parser.add_argument("--balance-rel-threshold", type=float, default=1.5)
    parser.add_argument("--load-signal", default="dispatch", choices=("dispatch", "reported"),
                        help="the load the router reads: this gateway's requests in flight (default) or "
                             "the workers' last stats report + routed since (control_plane/router/config.py)")
    parser.add_argument("--scoring", default="weighted", choices=("weighted", "cost"),
                        help="how prefix_aware ranks workers: weighted scores (default) or the token cost "
                             "model (opt-in; control_plane/router/scorers/cost.py)")
    parser.add_argument("--queue-weight", type=float, default=1.0,
                        help="cost scoring: weight of the work queued on a worker, in tokens")
    parser.add_argument("--request-cost-tokens", type=float, default=32.0,
                        help="cost scoring: prompt-token equivalent of one in-flight request")
    parser.add_argument("--max-retries", type=int, default=2)
    parser.add_argument("--max-migrations", type=int, default=2)
    parser.add_argument("--pd-min-uncached-tokens", type=int, default=256)
    parser.add_argument("--max-tokens-limit", type=int, default=4096)
    parser.add_argument("--first-token-timeout", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--token-timeout", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--refresh-seconds", type=float, default=0.5)
    parser.add_argument("--kv-dtype", default="float32", help="the workers' KV dtype (part of block hashes)")


def hash_key(key: str) -> str:
    from control_plane.gateway.auth import hash_key as _hash

    return _hash(key)


def _models(values: list[str]) -> tuple[Any, ...]:
    from control_plane.gateway.config import ModelSpec

    specs = []
    for value in values:
        name, sep, path = value.partition("=")
        directory = Path(path if sep else value)
        if not (directory / "config.json").is_file():
            raise ConfigError(f"{directory} is not a model directory (no config.json)", field="--model")
        specs.append(ModelSpec(name=name if sep else directory.name, path=directory))
    return tuple(specs)


def _api_keys(path: Path | None) -> tuple[Any, ...]:
    from common.config import build, load_mapping
    from control_plane.gateway.auth import ApiKeySpec

    if path is None:
        return ()
    entries = load_mapping(path).get("api_keys", [])
    if not isinstance(entries, list):
        raise ConfigError("must be a list", field="api_keys", source=str(path))
    return tuple(build(ApiKeySpec, entry, source=str(path), prefix=f"api_keys[{i}]")
                 for i, entry in enumerate(entries))


def build_config(args: argparse.Namespace) -> GatewayConfig:
    from common.logs import register_secret
    from control_plane.gateway.config import GatewayConfig
    from control_plane.orchestrator.config import OrchestratorConfig
    from control_plane.router import RouterConfig

    token = os.environ.get(args.cluster_token_env, "")
    if not token:
        raise ConfigError(f"environment variable {args.cluster_token_env} is empty or unset",
                          field="--cluster-token-env")
    admin = os.environ.get(args.admin_token_env) or None
    register_secret(token)
    register_secret(admin)
    try:
        return GatewayConfig(
            models=_models(args.model), cluster_token=token, redis_url=args.redis_url,
            admin_token_sha256=hash_key(admin) if admin else None, api_keys=_api_keys(args.api_keys),
            allow_anonymous=args.allow_anonymous, host=args.host, http_port=args.port,
            grpc_port=args.grpc_port, max_tokens_limit=args.max_tokens_limit,
            refresh_seconds=args.refresh_seconds, kv_dtype=args.kv_dtype,
            orchestrator=OrchestratorConfig(
                first_token_timeout_seconds=args.first_token_timeout,
                token_timeout_seconds=args.token_timeout, max_retries=args.max_retries,
                max_migrations=args.max_migrations, pd_min_uncached_tokens=args.pd_min_uncached_tokens),
            router=RouterConfig(policy=args.policy, balance_abs_threshold=args.balance_abs_threshold,
                                balance_rel_threshold=args.balance_rel_threshold,
                                load_signal=args.load_signal, scoring=args.scoring,
                                queue_weight=args.queue_weight, request_cost_tokens=args.request_cost_tokens),
            tls=tls_files(args))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from control_plane.gateway.server import run as run_gateway

    config = build_config(args)

    def ready(http_port: int, grpc_port: int | None) -> None:
        grpc = f" grpc {config.host}:{grpc_port}" if grpc_port is not None else ""
        print(f"gateway ready on http://{config.host}:{http_port}{grpc}", flush=True)

    run_gateway(config, on_ready=ready)
    sys.stdout.flush()
    return 0
