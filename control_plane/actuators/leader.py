"""Leader election among planner replicas with a Kubernetes Lease (coordination.k8s.io/v1).

Same interface as `control_plane.planner.leader.RedisLeaderLock` (`try_acquire`, `renew`, `release`,
`current_leader`), so the planner can use either. Algorithm, as client-go's leaderelection:
- The Lease `spec.holderIdentity` names the leader; it holds while `renewTime + leaseDurationSeconds`
  is in the future.
- `try_acquire`: create the Lease if missing; take it over (holder := me, `leaseTransitions` + 1) if it
  has no holder or has expired; renew it if already mine. Otherwise False.
- `renew`: if still mine, set `renewTime` := now. Otherwise False: stop acting as leader at once.
- `release`: if mine, clear the holder so a successor need not wait for expiry.
Every write is an update carrying the `resourceVersion` just read, so two replicas racing for the
Lease cannot both win: the loser gets HTTP 409 and returns False. Any API failure also returns False
(a replica that cannot reach the API server must not lead). Callers renew every `retry_period_seconds`
and at most `renew_deadline_seconds` apart, below `lease_duration_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client as k8s
from urllib3.exceptions import HTTPError as TransportError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseConfig:
    """Which Lease to hold and for how long (seconds)."""

    namespace: str
    name: str
    lease_duration_seconds: int = 15
    renew_deadline_seconds: int = 10
    retry_period_seconds: int = 2

    def __post_init__(self) -> None:
        for field in ("namespace", "name"):
            if not getattr(self, field):
                raise ValueError(f"{field}: must not be empty")
        if self.retry_period_seconds < 1:
            raise ValueError(f"retry_period_seconds: {self.retry_period_seconds} must be >= 1")
        if not self.retry_period_seconds < self.renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError(
                f"renew_deadline_seconds: need retry_period_seconds ({self.retry_period_seconds}) < "
                f"renew_deadline_seconds ({self.renew_deadline_seconds}) < lease_duration_seconds "
                f"({self.lease_duration_seconds})"
            )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _micro_time(moment: datetime) -> datetime:
    """A Lease MicroTime. The client re-serialises times with `isoformat()`, which drops a zero
    fractional part, and the API server's MicroTime parser requires the 6 digits: never send .000000."""
    moment = moment.astimezone(UTC)
    return moment if moment.microsecond else moment.replace(microsecond=1)


class KubernetesLeaseLock:
    """Leadership held by `holder_id` through the Lease of `config`. Owns nothing but that Lease."""

    def __init__(
        self,
        config: LeaseConfig,
        api_client: k8s.ApiClient,
        holder_id: str,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not holder_id:
            raise ValueError("holder_id: must not be empty")
        self.config = config
        self.holder_id = holder_id
        self._api = k8s.CoordinationV1Api(api_client)
        self._clock = clock

    async def _call(self, fn: Callable[..., Any], *args: Any) -> tuple[int, Any]:
        """(HTTP status, result) of one API call; status 0 when the API server cannot be reached."""
        try:
            return 200, await asyncio.to_thread(fn, *args)
        except k8s.ApiException as exc:
            return int(exc.status or 0), None
        except (OSError, TransportError) as exc:
            log.warning("lease %s: API server unreachable: %s", self.config.name, exc)
            return 0, None

    async def _read(self) -> tuple[int, Any]:
        return await self._call(self._api.read_namespaced_lease, self.config.name, self.config.namespace)

    def _expired(self, lease: Any) -> bool:
        spec = lease.spec
        if not spec.holder_identity or spec.renew_time is None:
            return True
        duration = timedelta(seconds=spec.lease_duration_seconds or self.config.lease_duration_seconds)
        return bool(spec.renew_time + duration < self._clock())

    def _body(self, resource_version: str | None, *, acquire_time: datetime, transitions: int,
              holder: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.config.name, "namespace": self.config.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": self.config.lease_duration_seconds,
                "acquireTime": acquire_time,
                "renewTime": _micro_time(self._clock()),
                "leaseTransitions": transitions,
            },
        }

    async def _replace(self, body: dict[str, Any]) -> bool:
        status, _ = await self._call(
            self._api.replace_namespaced_lease, self.config.name, self.config.namespace, body
        )
        return status == 200

    async def try_acquire(self) -> bool:
        """Take the Lease if free or expired. True if this holder now leads (or already led)."""
        status, lease = await self._read()
        now = _micro_time(self._clock())
        if status == 404:
            body = self._body(None, acquire_time=now, transitions=0, holder=self.holder_id)
            created, _ = await self._call(self._api.create_namespaced_lease, self.config.namespace, body)
            return created == 200
        if status != 200:
            return False
        if lease.spec.holder_identity == self.holder_id:
            return await self.renew()
        if not self._expired(lease):
            return False
        transitions = (lease.spec.lease_transitions or 0) + 1
        body = self._body(lease.metadata.resource_version, acquire_time=now, transitions=transitions,
                          holder=self.holder_id)
        return await self._replace(body)

    async def renew(self) -> bool:
        """Extend the Lease if this holder still owns it. False means: stop acting as leader."""
        status, lease = await self._read()
        if status != 200 or lease.spec.holder_identity != self.holder_id:
            return False
        acquired = lease.spec.acquire_time
        body = self._body(
            lease.metadata.resource_version,
            acquire_time=_micro_time(acquired) if acquired else _micro_time(self._clock()),
            transitions=lease.spec.lease_transitions or 0,
            holder=self.holder_id,
        )
        return await self._replace(body)

    async def release(self) -> bool:
        """Clear the holder if it is this one, so a successor can take over at once."""
        status, lease = await self._read()
        if status != 200 or lease.spec.holder_identity != self.holder_id:
            return False
        body = self._body(lease.metadata.resource_version, acquire_time=_micro_time(self._clock()),
                          transitions=lease.spec.lease_transitions or 0, holder=None)
        return await self._replace(body)

    async def current_leader(self) -> str | None:
        """The holder of an unexpired Lease, else None."""
        status, lease = await self._read()
        if status != 200 or self._expired(lease):
            return None
        return str(lease.spec.holder_identity)
