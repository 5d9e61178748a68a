"""Container health check: probes the heteroserve process running as PID 1 in this container.

Used by the image's HEALTHCHECK (Docker, Podman, Compose; Kubernetes uses the chart's probes instead).
It reads PID 1's command line to find which command runs and on which port, then:
- `heteroserve gateway`: HTTP GET http://127.0.0.1:<--port, 8000>/health must answer 200;
- `heteroserve worker`: gRPC health check on 127.0.0.1:<--health-port, else --port> must be SERVING;
- `heteroserve planner` and anything else: a TCP connect to `--metrics-port` must succeed; without
  that flag (or with 0: the planner serves no metrics then) there is no port to ask, and the check is
  that the process is alive (`proc://1`: not gone, not a zombie).
`HETEROSERVE_HEALTHCHECK` (`http://...`, `grpc://host:port`, `tcp://host:port`, `proc://pid`) overrides
the choice.
Exit 0 = healthy, 1 = unhealthy (the reason on stderr). Timeout: 3 seconds per probe.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

TIMEOUT_SECONDS = 3.0
DEFAULT_PORTS = {"gateway": 8000, "worker": 50051}


def _flag(argv: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def probe_for(argv: Sequence[str]) -> str:
    """The probe URL for a process started as `argv` (e.g. ['heteroserve', 'worker', '--port=7000'])."""
    command = next((a for a in argv[1:] if a in ("gateway", "worker", "planner")), "")
    if command == "gateway":
        return f"http://127.0.0.1:{_flag(argv, '--port') or DEFAULT_PORTS['gateway']}/health"
    if command == "worker":  # with mutual TLS, its plaintext health-only port (--health-port)
        port = _flag(argv, "--health-port") or _flag(argv, "--port") or DEFAULT_PORTS["worker"]
        return f"grpc://127.0.0.1:{port}"
    metrics_port = _flag(argv, "--metrics-port")
    if metrics_port and metrics_port != "0":
        return f"tcp://127.0.0.1:{metrics_port}"
    return "proc://1"


def check(url: str) -> str | None:
    """None when healthy, else the reason."""
    scheme, _, rest = url.partition("://")
    if scheme == "proc":
        return _check_process(rest)
    try:
        if scheme in ("http", "https"):
            with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
                return None if response.status == 200 else f"{url} answered {response.status}"
        host, _, port = rest.rpartition(":")
        if scheme == "tcp":
            with socket.create_connection((host, int(port)), timeout=TIMEOUT_SECONDS):
                return None
        if scheme == "grpc":
            return _check_grpc(f"{host}:{port}")
    except OSError as exc:
        return f"{url}: {exc}"
    return f"unknown probe {url!r}"


def _check_process(pid: str) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return f"process {pid} is gone"
    state = stat.rsplit(")", 1)[-1].split()[0]  # the field after "(command)"
    return f"process {pid} is a zombie" if state in ("Z", "X") else None


def _check_grpc(target: str) -> str | None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            return f"grpc health of {target}: {exc.code().name}"
    if reply.status == health_pb2.HealthCheckResponse.SERVING:
        return None
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return f"grpc health of {target}: {status}"


def main() -> int:
    url = os.environ.get("HETEROSERVE_HEALTHCHECK")
    if not url:
        cmdline = Path("/proc/1/cmdline").read_bytes().split(b"\0")
        url = probe_for([part.decode() for part in cmdline if part])
    reason = check(url)
    if reason:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
