"""deploy/healthcheck.py (the image's HEALTHCHECK) against real HTTP, gRPC health and TCP servers."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.localredis import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "heteroserve_healthcheck", ROOT / "deploy" / "healthcheck.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "probe"),
    [
        (["heteroserve", "gateway", "--host=0.0.0.0", "--port", "8080"], "http://127.0.0.1:8080/health"),
        (["/opt/heteroserve/bin/heteroserve", "gateway"], "http://127.0.0.1:8000/health"),
        (["heteroserve", "--log-level", "DEBUG", "worker", "--port=50061"], "grpc://127.0.0.1:50061"),
        (["heteroserve", "planner", "--metrics-port=9200"], "tcp://127.0.0.1:9200"),
        (["heteroserve", "planner"], "proc://1"),
        (["heteroserve", "planner", "--metrics-port", "0"], "proc://1"),
    ],
)
def test_probe_follows_the_command_line(healthcheck: ModuleType, argv: list[str], probe: str):
    assert healthcheck.probe_for(argv) == probe


@pytest.fixture
def http_server() -> Iterator[tuple[str, dict[str, int]]]:
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"] if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health", state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_http_probe(healthcheck: ModuleType, http_server: tuple[str, dict[str, int]]):
    url, state = http_server
    assert healthcheck.check(url) is None
    state["status"] = 503
    assert "503" in healthcheck.check(url)


@pytest.fixture
def grpc_health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"grpc://127.0.0.1:{port}", servicer
    server.stop(grace=None).wait(5)


def test_grpc_probe_needs_serving(
    healthcheck: ModuleType, grpc_health_server: tuple[str, health.HealthServicer]
):
    url, servicer = grpc_health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck.check(url).endswith("NOT_SERVING")
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.check(url) is None


def test_process_probe(healthcheck: ModuleType):
    import os
    import subprocess

    assert healthcheck.check(f"proc://{os.getpid()}") is None
    child = subprocess.Popen(["true"])
    for _ in range(100):  # exited, not yet reaped: a zombie
        if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            break
        time.sleep(0.02)
    assert healthcheck.check(f"proc://{child.pid}") == f"process {child.pid} is a zombie"
    child.wait()
    assert healthcheck.check(f"proc://{child.pid}") == f"process {child.pid} is gone"


def test_tcp_probe_fails_on_a_closed_port(healthcheck: ModuleType):
    reason = healthcheck.check(f"tcp://127.0.0.1:{free_port()}")
    assert reason is not None and "refused" in reason.lower()
