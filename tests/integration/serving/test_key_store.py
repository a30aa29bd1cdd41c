"""The key store on SQLite and PostgreSQL: bootstrap once, only admins mint and revoke,
and a refused write leaves neither a table nor a row."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from paved.errors import Conflict, InvalidInput, InvalidName, NotFound, PermissionDenied
from paved.schemas import KeyLink, Role
from serving.keys import KeyStore, api_keys, verify
from tests.conftest import new_pg_database

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own per test (the key table is one per database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keys.db'}"
        return
    with new_pg_database("paved_keys") as uri:
        yield uri


@pytest.fixture
def store(db_uri: str) -> Iterator[KeyStore]:
    s = KeyStore(db_uri)
    yield s
    s.dispose()


def tables(db_uri: str) -> list[str]:
    engine = sa.create_engine(db_uri)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_bootstrap_once_then_only_admins_mint(store: KeyStore) -> None:
    assert store.list() == []
    assert not store.any_admin()
    key, root = store.bootstrap(team="platform", holder="ops")
    assert verify(key, store.snapshot()) == root
    assert (root.roles, root.holder, root.minted_by, root.created_by) == (
        frozenset({Role.ADMIN}),
        "ops",
        None,
        "bootstrap",
    )
    with pytest.raises(Conflict) as again:
        store.bootstrap(team="platform", holder="mallory")
    assert again.value.rule == "bootstrap_done"

    _, alice = store.mint(by=root, team="risk", roles=frozenset({Role.ML_ENGINEER}), holder="alice")
    assert (alice.minted_by, alice.created_by, alice.holder) == (
        root.key_id,
        f"key:{root.key_id}",
        "alice",
    )
    with pytest.raises(PermissionDenied) as denied:  # an engineer mints nothing
        store.mint(by=alice, team="risk", roles=frozenset({Role.APPROVER}), holder="bob")
    assert denied.value.rule == "role"
    _, deputy = store.mint(by=root, team="platform", roles=frozenset({Role.ADMIN}), holder="dep")
    _, bob = store.mint(by=deputy, team="risk", roles=frozenset({Role.APPROVER}), holder="bob")
    assert store.lineage(bob.key_id) == [
        KeyLink(key_id=bob.key_id, holder="bob"),
        KeyLink(key_id=deputy.key_id, holder="dep"),
        KeyLink(key_id=root.key_id, holder="ops"),
    ]
    assert store.lineage("0" * 16) == []
    assert len(store.list()) == 4


def test_revocation_is_for_admins_and_never_of_the_last_admin(store: KeyStore) -> None:
    _, root = store.bootstrap(team="platform", holder="ops")
    _, app = store.mint(by=root, team="search", roles=frozenset({Role.APP}), holder="chat-svc")
    with pytest.raises(PermissionDenied):
        store.revoke(root.key_id, by=app)
    with pytest.raises(Conflict) as last:
        store.revoke(root.key_id, by=root)
    assert last.value.rule == "last_admin"
    _, deputy = store.mint(by=root, team="platform", roles=frozenset({Role.ADMIN}), holder="dep")
    store.revoke(root.key_id, by=deputy)
    assert root.key_id not in store.snapshot()
    with pytest.raises(PermissionDenied):  # a revoked admin key mints nothing
        store.mint(by=root, team="risk", roles=frozenset({Role.APPROVER}), holder="x")
    with pytest.raises(Conflict):  # revoked admins still count: the root is made once
        store.bootstrap(team="platform", holder="ops")
    with pytest.raises(InvalidInput) as bad:
        store.revoke("../x", by=deputy)
    assert bad.value.rule == "key_id"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.bootstrap(team="../x", holder="ops"), InvalidName),
        (lambda s: s.bootstrap(team="platform", holder="a b"), InvalidName),
        (
            lambda s: s.create(team="../x", roles=frozenset({Role.APP}), created_by="t"),
            InvalidName,
        ),
        (
            lambda s: s.create(team="risk", roles=frozenset({Role.ADMIN}), created_by="t"),
            PermissionDenied,
        ),
        (lambda s: s.revoke("0123456789abcdef"), NotFound),
    ],
)
def test_a_refused_write_creates_no_table(db_uri: str, store: KeyStore, call, error) -> None:
    with pytest.raises(error):
        call(store)
    assert api_keys.name not in tables(db_uri)
    assert store.list() == []
    assert store.snapshot() == {}
    assert api_keys.name not in tables(db_uri)


def test_a_refused_mint_writes_no_row(store: KeyStore) -> None:
    _, root = store.bootstrap(team="platform", holder="ops")
    before = store.list()
    for kwargs in (
        {"team": "../x", "roles": frozenset({Role.APP}), "holder": "svc"},
        {"team": "risk", "roles": frozenset({Role.PROMOTION}), "holder": "svc"},
        {"team": "risk", "roles": frozenset(), "holder": "svc"},
        {"team": "risk", "roles": frozenset({Role.APP}), "holder": "x" * 100},
    ):
        with pytest.raises(InvalidInput):
            store.mint(by=root, **kwargs)  # type: ignore[arg-type]
    assert store.list() == before


def test_racing_bootstraps_make_one_admin(db_uri: str) -> None:
    KeyStore(db_uri).create(team="t", roles=frozenset({Role.APP}), created_by="t")  # the table
    results: list[object] = []

    def boot(i: int) -> None:
        s = KeyStore(db_uri)
        try:
            results.append(s.bootstrap(team="platform", holder=f"h{i}")[1])
        except Conflict as exc:
            results.append(exc)
        finally:
            s.dispose()

    threads = [threading.Thread(target=boot, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, Conflict) for r in results) == 3
    assert sum(Role.ADMIN in k.roles for k in KeyStore(db_uri).list()) == 1


def test_a_table_from_before_holders_is_upgraded(db_uri: str) -> None:
    engine = sa.create_engine(db_uri)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE paved_api_keys (key_id VARCHAR(16) PRIMARY KEY, "
                "secret_sha256 VARCHAR(64) NOT NULL, team VARCHAR(64) NOT NULL, "
                "roles VARCHAR(256) NOT NULL, created_by VARCHAR(128) NOT NULL, "
                "created_at TIMESTAMP NOT NULL, revoked_at TIMESTAMP)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO paved_api_keys VALUES ('00000000000000aa', :h, 'risk', "
                "'approver', 'carol', CURRENT_TIMESTAMP, NULL)"
            ),
            {"h": "0" * 64},
        )
    engine.dispose()
    store = KeyStore(db_uri)
    [old] = store.list()
    assert (old.holder, old.minted_by, old.roles) == (None, None, frozenset({Role.APPROVER}))
    assert store.lineage(old.key_id) == [KeyLink(key_id=old.key_id, holder=None)]
    store.dispose()
