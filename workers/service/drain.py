"""Admission and draining: counts the RPCs in flight and stops new work once draining starts.

`admit()` wraps an RPC that brings new work (Generate, Prefill, Decode): it raises `CapacityError`
("worker is draining", UNAVAILABLE, retryable: the gateway sends the request elsewhere) once
`start_draining()` was called. `track()` wraps RPCs still served while draining (PullKV, so a decode
worker can still fetch KV this worker holds). `wait_idle(timeout)` waits until nothing is in flight,
at most `timeout` seconds, and returns how many calls remain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from common.errors import CapacityError


class DrainGate:
    """Owned by one servicer; single event loop, no locking needed."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def start_draining(self) -> None:
        """From now on `admit()` refuses new work. Idempotent."""
        self._draining = True

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Run one unit of new work; refused with `CapacityError` while draining."""
        if self._draining:
            raise CapacityError("worker is draining")
        with self.track():
            yield

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count one call in flight, whether or not the worker drains."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def wait_idle(self, timeout_seconds: float) -> int:
        """Wait until no call is in flight or `timeout_seconds` pass; returns the calls still running."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=max(0.0, timeout_seconds))
        return self._in_flight
