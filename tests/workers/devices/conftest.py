"""Fixtures for the device tests: the HF oracle and csd engines on a drive directory of their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.workers.engine.conftest import HFOracle
from workers.devices.csd import DriveConfig, DrivePool
from workers.engine.config import EngineConfig
from workers.engine.engine import LLMEngine

# Unscaled figures (time_scale 1): the tests check behaviour and byte counts, not modelled time.
FAST_DRIVE = DriveConfig(time_scale=1.0)


@pytest.fixture(scope="session")
def hf(tiny_model_dir: Path) -> HFOracle:
    return HFOracle(tiny_model_dir)


@pytest.fixture
def make_csd_engine(tiny_model_dir: Path, tmp_path: Path) -> Iterator[Any]:
    """Build csd engines (drive settings `drive`, engine overrides); every drive is closed afterwards."""
    engines: list[LLMEngine] = []

    def build(drive: DriveConfig = FAST_DRIVE, name: str = "drive", **overrides: Any) -> LLMEngine:
        drive.save(tmp_path / name)
        config = EngineConfig(tiny_model_dir, **{"device": "csd", "csd_path": tmp_path / name,
                                                 "num_kv_blocks": 128, **overrides})
        engine = LLMEngine(config)
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        pool = engine.pool
        assert isinstance(pool, DrivePool)
        pool.close()
