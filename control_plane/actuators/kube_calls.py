"""Calls to the Kubernetes API from async code: in a thread, retried with backoff, errors mapped once.

Retried (up to `RetryPolicy.attempts` calls in all, sleeping `initial_backoff_seconds` doubling up to
`max_backoff_seconds` in between): an optimistic-concurrency conflict (HTTP 409 with reason
`Conflict`: someone changed the object between our read and write), throttling (429) and API-server
outages (500, 502, 503, 504, a refused or broken connection). Not retried: 404 (`NotFoundError`), 401
and 403 (`PermissionDeniedError`: RBAC), 409 `AlreadyExists` (`AlreadyExistsError`: the caller decides),
422 and other 4xx, and a body the client itself rejects before sending (`ConfigError`: the object is
invalid). What is still failing after the last attempt
becomes `UnavailableError`. Every failed attempt counts in `heteroserve_actuator_api_errors_total`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes import client as k8s
from urllib3.exceptions import HTTPError as TransportError

from common.errors import (
    ConfigError,
    HeteroserveError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from control_plane.actuators.metrics import ActuatorMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRIED_STATUSES = frozenset({409, 429, 500, 502, 503, 504})


class AlreadyExistsError(HeteroserveError):
    """A create found an object of that name already there (HTTP 409, reason AlreadyExists)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts: {self.attempts} must be >= 1")
        if self.initial_backoff_seconds < 0 or self.max_backoff_seconds < self.initial_backoff_seconds:
            raise ValueError("initial_backoff_seconds: must be >= 0 and <= max_backoff_seconds")

    def delays(self) -> list[float]:
        """Seconds to sleep before attempts 2..attempts."""
        return [min(self.initial_backoff_seconds * 2**i, self.max_backoff_seconds)
                for i in range(self.attempts - 1)]


def _reason(exc: k8s.ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("reason", ""))
    except (ValueError, AttributeError):
        return ""


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, k8s.ApiException):
        return exc.status in RETRIED_STATUSES and _reason(exc) != "AlreadyExists"
    return isinstance(exc, OSError | TransportError)


def _domain_error(what: str, exc: BaseException) -> HeteroserveError:
    if not isinstance(exc, k8s.ApiException):
        return UnavailableError(f"Kubernetes API {what}: {exc}")
    detail = f"Kubernetes API {what}: HTTP {exc.status} {exc.reason}"
    if exc.status == 404:
        return NotFoundError(detail)
    if exc.status in (401, 403):
        return PermissionDeniedError(f"{detail} (check the planner's RBAC Role)")
    if exc.status == 409 and _reason(exc) == "AlreadyExists":
        return AlreadyExistsError(detail)
    if exc.status in RETRIED_STATUSES or exc.status is None or exc.status >= 500:
        return UnavailableError(detail)
    return ConfigError(f"{detail}: {exc.body}", field="object")


class KubeCalls:
    """Runs synchronous `kubernetes` client calls for async code (see the module docstring)."""

    def __init__(self, metrics: ActuatorMetrics, retry: RetryPolicy,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._metrics = metrics
        self._retry = retry
        self._sleep = sleep

    async def __call__(self, operation: str, fn: Callable[..., T], *args: Any, object_name: str = "",
                       **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a thread. `operation` (a fixed verb phrase) labels the error metric;
        `object_name` only goes into messages, keeping the label set bounded."""
        what = f"{operation} {object_name}".strip()
        delays = self._retry.delays()
        for attempt in range(self._retry.attempts):
            try:
                return await asyncio.to_thread(fn, *args, **kwargs)
            except ValueError as exc:  # the client checks bodies (pydantic) before sending them
                raise ConfigError(f"Kubernetes API {what}: invalid object: {exc}", field="object") from exc
            except (k8s.ApiException, OSError, TransportError) as exc:
                self._metrics.api_errors.labels(operation=operation).inc()
                if not _is_transient(exc) or attempt == len(delays):
                    raise _domain_error(what, exc) from exc
                log.warning("Kubernetes API %s failed (%s); retry %d of %d in %.1fs", what,
                            getattr(exc, "status", None) or exc, attempt + 1, len(delays), delays[attempt])
                await self._sleep(delays[attempt])
        raise AssertionError("unreachable: the loop returns or raises")
