"""Schemathesis against the gateway's own OpenAPI document, on a real gateway process with a real worker.

Every operation of `/openapi.json` gets up to `MAX_EXAMPLES` generated requests (schemathesis'
default generation: valid and invalid data), sent with an API key (the admin token under `/admin`).
Checked on every response: no 5xx, the status code is declared, the content type is declared, and the
body matches the declared schema. Generated completions reach the tiny model; the gateway's max_tokens
bound (16) keeps them short. `/admin/drain/{worker_id}` always names a worker that does not exist.

(schemathesis' own pytest plugin, `schema.parametrize()`, fails on pytest 9 with "'Function' object has
no attribute '_nodeid'", so the operations are driven with hypothesis directly.)
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.control_plane.gateway.gateway_procs import ADMIN_TOKEN, API_KEY
from tests.reliability.conftest import Cluster, leaked

MAX_EXAMPLES = 20
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _fuzz(operation: schemathesis.APIOperation, base_url: str, seen: dict[str, set[int]]) -> None:
    token = ADMIN_TOKEN if operation.path.startswith("/admin") else API_KEY

    @hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(case=operation.as_strategy())
    def check(case: schemathesis.Case) -> None:
        if case.path_parameters and "worker_id" in case.path_parameters:
            case.path_parameters = {"worker_id": "no-such-worker"}  # never drain the real worker
        response = case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=60,
                                          headers={"authorization": f"Bearer {token}"})
        seen.setdefault(operation.label, set()).add(response.status_code)
        assert leaked(response.text) == []

    check()


@pytest.mark.slow
def test_gateway_conforms_to_its_openapi_document(cluster: Cluster) -> None:
    base_url = cluster.gateway.http_url
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9, [op.label for op in operations]
    seen: dict[str, set[int]] = {}
    for operation in operations:
        _fuzz(operation, base_url, seen)
    assert set(seen) == {op.label for op in operations}
    assert any(200 in codes for codes in seen.values()), seen  # valid requests were served, not only refused
