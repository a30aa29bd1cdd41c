"""An alias move whose history row cannot be written is undone: the alias is put back.

The store is a small in-memory fake of the alias part of :class:`ModelStore`; the
history is the real SQL history on SQLite, made to fail the way a lost database does
(every call raises), so the undo cannot lean on the history that just failed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from paved.errors import BackendError, InvalidInput, NotFound
from paved.schemas import Actor, Role
from registry.history import SqlAliasHistory
from registry.schemas import AliasEvent
from registry.service import Registry
from registry.store import ModelStore, StoredVersion

pytestmark = pytest.mark.unit

ENGINEER = Actor(identity="alice", roles=frozenset({Role.ML_ENGINEER}), team="risk")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class AliasStore:
    """The alias operations of a model store, in memory, for one model with versions 1-3."""

    def __init__(self) -> None:
        self.aliases: dict[str, int] = {}

    def get_version_by_alias(self, name: str, alias: str) -> StoredVersion | None:
        version = self.aliases.get(alias)
        if version is None:
            return None
        return StoredVersion(name, version, "runs:/x/model", None, "READY", {}, [alias], 0, "")

    def set_alias(self, name: str, alias: str, version: int) -> None:
        if version not in (1, 2, 3):
            raise NotFound(f"model version {name}/{version} does not exist")
        self.aliases[alias] = version

    def delete_alias(self, name: str, alias: str) -> None:
        self.aliases.pop(alias, None)


class BrokenHistory(SqlAliasHistory):
    """The real history until ``broken``; then every call fails like a lost database."""

    broken = False

    def _fail(self) -> None:
        if self.broken:
            raise OSError("database is gone")

    def record_move(self, event: AliasEvent) -> AliasEvent:
        self._fail()
        return super().record_move(event)

    def current(self, model: str, alias: str) -> int | None:
        self._fail()
        return super().current(model, alias)

    def events(self, model: str) -> list[AliasEvent]:
        self._fail()
        return super().events(model)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Registry, AliasStore, BrokenHistory]:
    store = AliasStore()
    history = BrokenHistory(f"sqlite:///{tmp_path / 'history.db'}")
    reg = Registry(cast(ModelStore, store), history, cache_dir=tmp_path / "cache", clock=lambda: T0)
    return reg, store, history


def _events(history: BrokenHistory) -> list[tuple[Any, ...]]:
    history.broken = False
    return [(e.alias, e.from_version, e.to_version) for e in history.events("m")]


def test_a_failed_history_write_puts_a_moved_alias_back(
    parts: tuple[Registry, AliasStore, BrokenHistory],
) -> None:
    reg, store, history = parts
    reg.set_alias("m", "challenger", 1, actor=ENGINEER)
    history.broken = True
    with pytest.raises(BackendError, match="alias left as it was"):
        reg.set_alias("m", "challenger", 2, actor=ENGINEER)
    assert store.aliases == {"challenger": 1}
    assert _events(history) == [("challenger", None, 1)]


def test_a_failed_history_write_removes_a_new_alias_again(
    parts: tuple[Registry, AliasStore, BrokenHistory],
) -> None:
    reg, store, history = parts
    history.broken = True
    with pytest.raises(BackendError):
        reg.set_alias("m", "challenger", 3, actor=ENGINEER)
    assert store.aliases == {}
    assert _events(history) == []


def test_a_failed_history_write_restores_a_removed_alias(
    parts: tuple[Registry, AliasStore, BrokenHistory],
) -> None:
    reg, store, history = parts
    reg.set_alias("m", "challenger", 2, actor=ENGINEER)
    history.broken = True
    with pytest.raises(BackendError):
        reg.remove_alias("m", "challenger", actor=ENGINEER)
    assert store.aliases == {"challenger": 2}
    assert _events(history) == [("challenger", None, 2)]


def test_the_undo_restores_what_the_store_held_not_what_the_history_says(
    parts: tuple[Registry, AliasStore, BrokenHistory],
) -> None:
    """A move made around Pavedpath leaves the history behind the store; the undo puts
    back what the store held before this move."""
    reg, store, history = parts
    reg.set_alias("m", "challenger", 1, actor=ENGINEER)
    store.aliases["challenger"] = 3  # moved by a raw MLflow client, no history row
    history.broken = True
    with pytest.raises(BackendError):
        reg.set_alias("m", "challenger", 2, actor=ENGINEER)
    assert store.aliases == {"challenger": 3}


@pytest.mark.parametrize(
    ("reason", "rule"),
    [("ok\x1b]0;owned\x07", "no_control"), ("a\u202eb", "no_control"), ("x" * 1025, "max_length")],
)
def test_a_bad_reason_is_refused_before_the_alias_moves(
    parts: tuple[Registry, AliasStore, BrokenHistory], reason: str, rule: str
) -> None:
    reg, store, history = parts
    with pytest.raises(InvalidInput) as info:
        reg.set_alias("m", "challenger", 1, actor=ENGINEER, reason=reason)
    assert info.value.rule == rule
    assert len(info.value.message) < 400
    assert store.aliases == {}
    assert _events(history) == []
