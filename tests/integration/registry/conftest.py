from __future__ import annotations

from pathlib import Path

import pytest

from registry.service import Registry
from tests.conftest import make_settings


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def registry(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Registry:
    """One registry per backend per module; tests use distinct model names."""
    pg = request.getfixturevalue("pg_database") if backend == "postgres" else None
    root: Path = tmp_path_factory.mktemp(f"reg-{backend}")
    settings = make_settings(root, backend, pg)
    reg = Registry.from_settings(settings)
    return reg
