"""Run one gateway process: REST (uvicorn) and gRPC on one event loop, sharing one runtime.

`serve(config, on_ready)` starts the runtime, the gRPC server (when `grpc_port` is set) and uvicorn,
calls `on_ready(http_port, grpc_port)` once both listen, and returns after SIGINT/SIGTERM (or
`stop_event`) with everything stopped: uvicorn finishes open responses, gRPC gets a grace period.
`run(config, on_ready)` is `serve` on its own event loop: uvloop's (every request crosses the loop a
dozen times, and uvloop's turns are cheaper; measured in docs/benchmarks.md, bench gateway).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn

from control_plane.gateway.config import GatewayConfig
from control_plane.gateway.grpc_servicer import start_grpc_server
from control_plane.gateway.rest import create_app
from control_plane.gateway.runtime import GatewayRuntime

log = logging.getLogger(__name__)
GRPC_GRACE_SECONDS = 5.0


class _QuietServer(uvicorn.Server):
    """Uvicorn without its own signal handling: `serve` owns SIGINT/SIGTERM for both transports."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run(config: GatewayConfig, on_ready: Callable[[int, int | None], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM on a new uvloop event loop. Once serving, the objects built at
    start-up (modules, app, tokenizers, runtime: they live as long as the process) leave the garbage
    collector's generations (`gc.freeze`): a full collection then scans only what requests allocated.
    Before, a full collection of the gateway paused it for 13-35 ms (bench gateway, docs/benchmarks.md)."""
    import uvloop

    def ready(http_port: int, grpc_port: int | None) -> None:
        gc.collect()
        gc.freeze()
        if on_ready is not None:
            on_ready(http_port, grpc_port)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(config, on_ready=ready))


async def serve(config: GatewayConfig, on_ready: Callable[[int, int | None], None] | None = None,
                stop_event: asyncio.Event | None = None) -> None:
    runtime = GatewayRuntime(config)
    await runtime.start()
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    grpc_server = None
    grpc_port: int | None = None
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (else Nagle adds ~40 ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.http_port))
    http_port = int(sock.getsockname()[1])
    server = _QuietServer(uvicorn.Config(create_app(runtime), log_level="warning", access_log=False,
                                         lifespan="off", timeout_graceful_shutdown=10))
    try:
        if config.grpc_port is not None:
            grpc_server, grpc_port = await start_grpc_server(runtime, config.host, config.grpc_port)
        http_task = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
        while not server.started and not http_task.done():
            await asyncio.sleep(0.02)
        if http_task.done():
            http_task.result()
        log.info("gateway serving REST on %s:%d%s", config.host, http_port,
                 f", gRPC on {config.host}:{grpc_port}" if grpc_port else "")
        if on_ready is not None:
            on_ready(http_port, grpc_port)
        stop_task = asyncio.create_task(stop.wait())
        await asyncio.wait({http_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
        server.should_exit = True
        await http_task
    finally:
        if grpc_server is not None:
            await grpc_server.stop(GRPC_GRACE_SECONDS)
        await runtime.stop()
        sock.close()
