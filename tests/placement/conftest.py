"""Small shared inputs for placement tests: the shipped catalogs and a few SLO classes."""

from __future__ import annotations

import pytest

from placement.catalog import Catalog, load_catalog
from placement.models import ModelSpec, load_models
from placement.workload import SLOClass


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def models() -> dict[str, ModelSpec]:
    return load_models()


@pytest.fixture(scope="session")
def slos() -> dict[str, SLOClass]:
    return {
        "interactive": SLOClass("interactive", 2.0, 0.1),
        "batch": SLOClass("batch", 60.0, 2.0, latency_tolerant=True),
    }
