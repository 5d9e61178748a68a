"""Shared fixtures of the actuator tests: the recording HTTP endpoint, live or already stopped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from tests.control_plane.actuators.recording_apiserver import RecordingApiServer


@pytest.fixture
def server() -> Iterator[RecordingApiServer]:
    """A running recording endpoint; stopped after the test."""
    srv = RecordingApiServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def unreachable_api_client() -> k8s.ApiClient:
    """A kubernetes ApiClient pointed at a port whose endpoint has already stopped (no retries)."""
    srv = RecordingApiServer().start()
    url = srv.url
    srv.stop()
    configuration = k8s.Configuration(host=url)
    configuration.retries = 0
    return k8s.ApiClient(configuration)
