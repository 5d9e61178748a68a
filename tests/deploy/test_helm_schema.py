"""values.schema.json: bad values fail `helm template` (and so `helm install`) with a readable message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.helm_render import CHART, helm


def pool(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "p",
        "nodeType": "l4",
        "role": "decode",
        "device": "cpu",
        "model": "m",
        "replicas": 1,
    } | overrides


CASES = [
    (
        "unknown-role",
        {"workerPools": [pool(role="both")]},
        ["/workerPools/0/role", "value must be one of 'colocated', 'prefill', 'decode'"],
    ),
    (
        "unknown-device",
        {"workerPools": [pool(device="tpu")]},
        ["/workerPools/0/device", "'cpu', 'cuda', 'csd'"],
    ),
    (
        "bad-pool-name",
        {"workerPools": [pool(name="L4_Decode")]},
        ["/workerPools/0/name", "does not match pattern"],
    ),
    ("negative-replicas", {"workerPools": [pool(replicas=-1)]}, ["/workerPools/0/replicas", "minimum"]),
    (
        "missing-model",
        {"workerPools": [{k: v for k, v in pool().items() if k != "model"}]},
        ["/workerPools/0", "missing property 'model'"],
    ),
    (
        "cuda-without-gpus",
        {"workerPools": [pool(device="cuda")]},
        ["/workerPools/0", "missing property 'gpus'"],
    ),
    ("cpu-with-gpus", {"workerPools": [pool(gpus=2)]}, ["/workerPools/0/gpus", "value must be 0"]),
    (
        "csd-prefill",
        {"workerPools": [pool(device="csd", role="prefill", csd={"drivePath": "/mnt/csd"})]},
        ["/workerPools/0/role", "value must be 'decode'"],
    ),
    (
        "csd-without-drive",
        {"workerPools": [pool(device="csd")]},
        ["/workerPools/0", "missing property 'csd'"],
    ),
    ("typo-key", {"gatway": {"replicas": 2}}, ["additional properties 'gatway' not allowed"]),
    (
        "pool-typo-key",
        {"workerPools": [pool(replica=3)]},
        ["/workerPools/0", "additional properties 'replica'"],
    ),
    ("no-pools", {"workerPools": []}, ["/workerPools", "minItems"]),
    ("external-redis-without-url", {"redis": {"enabled": False}}, ["/externalRedis/url"]),
    (
        "tls-with-plain-url",
        {"redis": {"enabled": False}, "externalRedis": {"url": "redis://r:6379/0", "tls": {"enabled": True}}},
        ["/externalRedis/url", "rediss://"],
    ),
    ("bad-redis-url", {"externalRedis": {"url": "http://redis:6379"}}, ["/externalRedis/url"]),
    ("short-cluster-token", {"auth": {"clusterToken": "short"}}, ["/auth/clusterToken"]),
    (
        "bad-actuator-mode",
        {"planner": {"actuator": {"mode": "hpa"}}},
        ["/planner/actuator/mode", "'scale', 'export'"],
    ),
    ("bad-port", {"gateway": {"httpPort": 70000}}, ["/gateway/httpPort", "maximum"]),
    ("api-key-without-key", {"auth": {"apiKeys": [{"name": "a", "tenant": "t"}]}}, ["/auth/apiKeys/0"]),
    (
        "api-key-bad-digest",
        {"auth": {"apiKeys": [{"name": "a", "tenant": "t", "sha256": "xyz"}]}},
        ["/auth/apiKeys/0/sha256"],
    ),
    ("bad-quantity", {"redis": {"persistence": {"size": "lots"}}}, ["/redis/persistence/size"]),
]


@pytest.mark.parametrize(("values", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_values_are_rejected_with_a_readable_message(
    values: dict[str, Any], expected: list[str], tmp_path: Path
):
    result = helm("template", "hs", str(CHART), values=values, tmp_path=tmp_path)
    assert result.returncode != 0, f"values were accepted: {values}"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    for fragment in expected:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"workerPools": [pool(), pool(role="colocated")]}, 'pool name "p" is used twice'),
        (
            {"worker": {"drainGraceSeconds": 120, "terminationGracePeriodSeconds": 60}},
            "worker.drainGraceSeconds (120) must be below worker.terminationGracePeriodSeconds (60)",
        ),
    ],
    ids=["duplicate-pool", "drain-longer-than-grace"],
)
def test_cross_field_errors_fail_the_render(values: dict[str, Any], expected: str, tmp_path: Path):
    result = helm("template", "hs", str(CHART), values=values, tmp_path=tmp_path)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_schema_is_valid_json_schema():
    import json

    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    import yaml

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert list(jsonschema.Draft7Validator(schema).iter_errors(defaults)) == []
