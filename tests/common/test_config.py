"""Config loading: typed frozen dataclasses, one-line errors naming file and field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from common.config import build, env_overrides, load_mapping
from common.errors import ConfigError


@dataclass(frozen=True)
class Pool:
    name: str
    role: Literal["colocated", "prefill", "decode"] = "colocated"
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")


@dataclass(frozen=True)
class Cluster:
    pools: tuple[Pool, ...]
    redis_url: str | None = None
    rate: float = 1.0
    labels: dict[str, str] = field(default_factory=dict)


def test_build_nested(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("pools:\n  - name: a\n  - name: b\n    role: decode\n    count: 3\nrate: 2\n")
    cluster = build(Cluster, load_mapping(path), source=str(path))
    assert cluster.pools == (Pool("a"), Pool("b", "decode", 3))
    assert cluster.rate == 2.0 and isinstance(cluster.rate, float)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pools:\n  - name: a\n    role: leader\n", "c.yaml: pools[0].role: must be one of"),
        ("pools:\n  - name: a\n    count: -1\n", "c.yaml: pools[0]: count must be >= 0, got -1"),
        ("pools:\n  - name: a\n    cnt: 1\n", "c.yaml: pools[0].cnt: unknown field"),
        ("rate: 1\n", "c.yaml: pools: required field is missing"),
        ("pools: 3\n", "c.yaml: pools: must be a list"),
        ("pools: []\nrate: fast\n", "c.yaml: rate: must be float, got 'fast'"),
        ("pools: [\n", "c.yaml: not valid YAML"),
        ("- 1\n", "c.yaml: top level must be a mapping"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        build(Cluster, load_mapping(path), source="c.yaml")
    message = str(info.value).replace(f"{tmp_path}/", "")
    assert message.startswith(expected), message
    assert "\n" not in message


def test_missing_file_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^/nonexistent/x.yaml: cannot read file"):
        load_mapping("/nonexistent/x.yaml")


def test_json_and_env(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"pools": [{"name": "x"}], "labels": {"a": "b"}}')
    assert build(Cluster, load_mapping(path)).labels == {"a": "b"}
    assert env_overrides("HS", {"HS_REDIS_URL": "redis://x", "OTHER": "1"}) == {"redis_url": "redis://x"}
