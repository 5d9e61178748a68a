"""Start and stop a real `redis-server` on a free loopback port (embedded mode and tests).

The embedded cluster (`heteroserve up`) and the test fixtures use the same launcher, so the code users
run is the code the tests run. The server binds 127.0.0.1 only, keeps its data under `data_dir`, and is
stopped by `stop()` with SIGTERM, then SIGKILL after 5 s (it never saves: `--save ""`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from common.errors import UnavailableError
from common.lifetime import die_with_parent


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RedisServerConfig:
    data_dir: Path
    port: int = 0  # 0 = pick a free port
    password: str | None = None
    maxmemory_mb: int = 512

    def __post_init__(self) -> None:
        if self.port < 0 or self.port > 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.maxmemory_mb <= 0:
            raise ValueError(f"maxmemory_mb must be positive, got {self.maxmemory_mb}")


class LocalRedis:
    """One redis-server process. Use as a context manager or call `start()` / `stop()`."""

    def __init__(self, config: RedisServerConfig) -> None:
        self.config = config
        self.port = config.port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.config.password}@" if self.config.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout_seconds: float = 10.0) -> LocalRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise UnavailableError("redis-server not found on PATH: run `make install` (Debian package)")
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.config.data_dir),
            "--save", "", "--appendonly", "no", "--protected-mode", "yes",
            "--maxmemory", f"{self.config.maxmemory_mb}mb", "--maxmemory-policy", "allkeys-lru",
            "--logfile", str(self.config.data_dir / "redis.log"),
        ]
        if self.config.password:
            args += ["--requirepass", self.config.password]
        # Dies with the process that started it (common.lifetime): no orphan Redis after a SIGKILL.
        args, preexec = die_with_parent(args)
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      preexec_fn=preexec)
        self._wait_ready(timeout_seconds)
        return self

    def _wait_ready(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise UnavailableError(f"redis-server exited with code {self._proc.returncode}; "
                                       f"see {self.config.data_dir / 'redis.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    reply = sock.recv(64)
                    if reply.startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise UnavailableError(f"redis-server did not become ready on port {self.port} "
                               f"within {timeout_seconds}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
