"""KubernetesLeaseLock against the RECORDING HTTP ENDPOINT (recording_apiserver.py), with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client as k8s

from control_plane.actuators.leader import KubernetesLeaseLock, LeaseConfig
from tests.control_plane.actuators.recording_apiserver import RecordingApiServer

NS = "serving"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
CONFIG = LeaseConfig(
    namespace=NS,
    name="hs-heteroserve-planner",
    lease_duration_seconds=15,
    renew_deadline_seconds=10,
    retry_period_seconds=2,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 16, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def lock(server: RecordingApiServer, clock: Clock, holder: str) -> KubernetesLeaseLock:
    api_client = k8s.ApiClient(k8s.Configuration(host=server.url))
    return KubernetesLeaseLock(CONFIG, api_client, holder, clock=clock)


async def test_first_candidate_creates_the_lease_and_leads(server: RecordingApiServer, clock: Clock):
    a = lock(server, clock, "planner-a")
    assert await a.try_acquire()
    assert [(c.method, c.path) for c in server.calls] == [
        ("GET", f"{LEASE_PATH}/hs-heteroserve-planner"),
        ("POST", LEASE_PATH),
    ]
    spec = server.calls[1].body["spec"]
    assert spec == {
        "holderIdentity": "planner-a",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-11-23T16:00:00.000001+00:00",
        "renewTime": "2026-11-23T16:00:00.000001+00:00",
        "leaseTransitions": 0,
    }
    assert await a.current_leader() == "planner-a"


async def test_second_candidate_waits_until_the_lease_expires(server: RecordingApiServer, clock: Clock):
    a, b = lock(server, clock, "planner-a"), lock(server, clock, "planner-b")
    assert await a.try_acquire()
    assert not await b.try_acquire()
    clock.now += timedelta(seconds=10)
    assert await a.renew()
    clock.now += timedelta(seconds=14)  # 14 s after the renewal: still held
    assert not await b.try_acquire()
    clock.now += timedelta(seconds=2)  # 16 s: expired, b takes over
    assert await b.try_acquire()
    lease = server.leases["hs-heteroserve-planner"]["spec"]
    assert lease["holderIdentity"] == "planner-b"
    assert lease["leaseTransitions"] == 1
    assert not await a.renew(), "the old leader must learn it lost the lease"


async def test_release_lets_a_successor_in_at_once(server: RecordingApiServer, clock: Clock):
    a, b = lock(server, clock, "planner-a"), lock(server, clock, "planner-b")
    assert await a.try_acquire()
    assert await a.release()
    assert await a.current_leader() is None
    assert await b.try_acquire()
    assert await b.current_leader() == "planner-b"


async def test_stale_resource_version_loses_the_race(server: RecordingApiServer, clock: Clock):
    a = lock(server, clock, "planner-a")
    assert await a.try_acquire()
    clock.now += timedelta(seconds=30)
    # Another replica wrote the Lease between our read and our write: simulate by bumping the version.
    b = lock(server, clock, "planner-b")
    assert await b.try_acquire()
    put = [c for c in server.calls if c.method == "PUT"][-1]
    assert put.body["metadata"]["resourceVersion"] == "101", "updates must carry the version just read"
    server.leases["hs-heteroserve-planner"]["metadata"]["resourceVersion"] = "999"
    server.leases["hs-heteroserve-planner"]["spec"]["holderIdentity"] = "planner-a"
    server.leases["hs-heteroserve-planner"]["spec"]["renewTime"] = "2026-11-23T15:00:00.000000Z"
    original_read = b._read

    async def stale_read():  # b read an older version than the one now stored
        status, lease = await original_read()
        lease.metadata.resource_version = "102"
        return status, lease

    b._read = stale_read  # type: ignore[method-assign]
    assert not await b.try_acquire()
    assert server.calls[-1].method == "PUT"


async def test_unreachable_api_server_means_not_leader(clock: Clock, unreachable_api_client: k8s.ApiClient):
    a = KubernetesLeaseLock(CONFIG, unreachable_api_client, "planner-a", clock=clock)
    assert not await a.try_acquire()
    assert not await a.renew()


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"^renew_deadline_seconds:"):
        LeaseConfig(namespace=NS, name="x", lease_duration_seconds=10, renew_deadline_seconds=10)
    with pytest.raises(ValueError, match=r"^name:"):
        LeaseConfig(namespace=NS, name="")
