"""Shared fixtures: an isolated PAVED_HOME, a throwaway PostgreSQL database, model dirs."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from paved.schemas import Actor, Role
from paved.settings import Settings

PG_ADMIN_DSN = os.environ.get("PAVED_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_admin() -> Any:
    import psycopg

    return psycopg.connect(PG_ADMIN_DSN, connect_timeout=5, autocommit=True)


@pytest.fixture
def paved_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "paved-home"
    monkeypatch.setenv("PAVED_HOME", str(home))
    monkeypatch.delenv("PAVED_REGISTRY_URI", raising=False)
    return home


@contextlib.contextmanager
def new_pg_database(prefix: str = "paved_test") -> Iterator[str]:
    """A PostgreSQL database of its own, dropped (its sessions ended) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = _pg_admin()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database created for this test session and dropped after it."""
    with new_pg_database() as uri:
        yield uri


def make_settings(root: Path, backend: str, pg_uri: str | None = None) -> Settings:
    home = root / f"home-{backend}"
    uri = pg_uri if backend == "postgres" else None
    return Settings(home=home, registry_uri=uri, actor="tester")


@pytest.fixture
def engineer() -> Actor:
    return Actor(identity="alice", roles=frozenset({Role.ML_ENGINEER}), team="risk")


@pytest.fixture
def promoter() -> Actor:
    return Actor(identity="promotion-flow", roles=frozenset({Role.PROMOTION}))


def write_model_dir(path: Path, *, seed: int = 0, extra: dict[str, str] | None = None) -> Path:
    """A small, safe model directory: safetensors weights and a JSON config."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    save_file(
        {"w": rng.standard_normal((8, 8)).astype(np.float32)}, str(path / "model.safetensors")
    )
    (path / "config.json").write_text(json.dumps({"hidden": 8, "seed": seed}))
    for rel, content in (extra or {}).items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(content)
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model_dir(tmp_path / "model")
