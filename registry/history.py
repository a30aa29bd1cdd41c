"""Alias history, which MLflow OSS does not keep.

Every alias move is appended to ``paved_alias_events`` in the registry's own database
(the SQLite file or PostgreSQL database MLflow uses), so "who moved champion from 3
to 4, and when" survives as long as the registry does. Rows are only ever inserted.
A move someone made around Pavedpath (a raw MLflow client) leaves no row; when the
reconciler sees one it appends a row marked ``outside_flow``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa

from registry.schemas import AliasEvent

_metadata = sa.MetaData()
alias_events = sa.Table(
    "paved_alias_events",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("from_version", sa.Integer, nullable=True),
    sa.Column("to_version", sa.Integer, nullable=True),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("reason", sa.String(1024), nullable=False, default=""),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outside_flow", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_paved_alias_events_model_alias", "model", "alias", "id"),
)


class AliasHistory(Protocol):
    def record_move(self, event: AliasEvent) -> AliasEvent: ...

    def events(self, model: str) -> list[AliasEvent]: ...

    def current(self, model: str, alias: str) -> int | None: ...

    def last(self, model: str, alias: str) -> AliasEvent | None: ...


class SqlAliasHistory:
    """Alias history in the registry's SQL database."""

    def __init__(self, db_uri: str) -> None:
        self._engine = sa.create_engine(db_uri, pool_pre_ping=True)
        _metadata.create_all(self._engine, checkfirst=True)
        _add_missing_columns(self._engine)

    def current(self, model: str, alias: str) -> int | None:
        """The version the last recorded move left ``alias`` on (None: unset)."""
        with self._engine.connect() as conn:
            return _current(conn, model, alias)

    def last(self, model: str, alias: str) -> AliasEvent | None:
        """The last recorded move of ``alias`` (None: never recorded)."""
        query = (
            sa.select(alias_events)
            .where(alias_events.c.model == model, alias_events.c.alias == alias)
            .order_by(alias_events.c.id.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _event(row)

    def record_move(self, event: AliasEvent) -> AliasEvent:
        """Append the event, atomically filling in an unknown ``from_version`` from the
        last recorded move. Nothing is appended when the alias did not change.
        """
        with self._engine.begin() as conn:
            previous = event.from_version
            if previous is None:
                previous = _current(conn, event.model, event.alias)
                event = event.model_copy(update={"from_version": previous})
            if previous != event.to_version:
                conn.execute(alias_events.insert().values(**_row(event)))
        return event

    def events(self, model: str) -> list[AliasEvent]:
        query = (
            sa.select(alias_events)
            .where(alias_events.c.model == model)
            .order_by(alias_events.c.at, alias_events.c.id)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_event(r) for r in rows]

    def dispose(self) -> None:
        self._engine.dispose()


def _event(r: sa.RowMapping) -> AliasEvent:
    return AliasEvent(
        model=r["model"],
        alias=r["alias"],
        from_version=r["from_version"],
        to_version=r["to_version"],
        actor=r["actor"],
        reason=r["reason"],
        at=_as_utc(r["at"]),
        outside_flow=bool(r["outside_flow"]),
    )


def _add_missing_columns(engine: sa.Engine) -> None:
    """Add columns a newer Pavedpath defines to a table an older one created."""
    present = {c["name"] for c in sa.inspect(engine).get_columns(alias_events.name)}
    missing = [c for c in alias_events.columns if c.name not in present]
    if not missing:
        return
    with engine.begin() as conn:
        for column in missing:
            ddl = sa.schema.CreateColumn(column).compile(dialect=engine.dialect)
            conn.execute(sa.text(f"ALTER TABLE {alias_events.name} ADD COLUMN {ddl}"))


def _as_utc(at: datetime) -> datetime:
    # SQLite drops the zone; every value written here is UTC.
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _row(event: AliasEvent) -> dict[str, object]:
    return event.model_dump(
        include={
            "model",
            "alias",
            "from_version",
            "to_version",
            "actor",
            "reason",
            "at",
            "outside_flow",
        }
    )


def _current(conn: sa.Connection, model: str, alias: str) -> int | None:
    query = (
        sa.select(alias_events.c.to_version)
        .where(alias_events.c.model == model, alias_events.c.alias == alias)
        .order_by(alias_events.c.id.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return None if row is None else int(row[0]) if row[0] is not None else None
