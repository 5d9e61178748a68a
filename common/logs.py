"""Logging setup for every heteroserve process, with secret redaction.

Processes call `setup_logging()` once at start-up. Secrets (API keys, the cluster token, the admin
token, Redis passwords) are registered with `register_secret()`; a filter on the root handler replaces
them in every record, so they never reach a log line even when an exception message quotes them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
REDACTED = "***"


def register_secret(value: str | None) -> None:
    """Never print `value` in a log line from now on. Short values (< 6 chars) are not secrets."""
    if value and len(value) >= 6:
        with _LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `***`."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


def setup_logging(level: str = "INFO", component: str = "heteroserve") -> None:
    """Configure the root logger: one readable line per record on stderr, secrets redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)-5s {component} %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null for the block: native libraries (HiGHS prints a banner from
    C++ when first created) would otherwise write into a command's table or its last-line JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
