"""Alias history, which MLflow OSS does not keep.

Every alias move is appended to ``paved_alias_events`` in the registry's own database
(the SQLite file or PostgreSQL database MLflow uses), so "who moved champion from 3
to 4, and when" survives as long as the registry does. Rows are only ever inserted.
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
    sa.Column("model", sa.String(256), nullable=False, index=True),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("from_version", sa.Integer, nullable=True),
    sa.Column("to_version", sa.Integer, nullable=True),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("reason", sa.String(1024), nullable=False, default=""),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)


class AliasHistory(Protocol):
    def record(self, event: AliasEvent) -> None: ...

    def events(self, model: str) -> list[AliasEvent]: ...


class SqlAliasHistory:
    """Alias history in the registry's SQL database."""

    def __init__(self, db_uri: str) -> None:
        self._engine = sa.create_engine(db_uri, pool_pre_ping=True)
        _metadata.create_all(self._engine, checkfirst=True)

    def record(self, event: AliasEvent) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                alias_events.insert().values(
                    model=event.model,
                    alias=event.alias,
                    from_version=event.from_version,
                    to_version=event.to_version,
                    actor=event.actor,
                    reason=event.reason,
                    at=event.at,
                )
            )

    def events(self, model: str) -> list[AliasEvent]:
        query = (
            sa.select(alias_events)
            .where(alias_events.c.model == model)
            .order_by(alias_events.c.at, alias_events.c.id)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            AliasEvent(
                model=r["model"],
                alias=r["alias"],
                from_version=r["from_version"],
                to_version=r["to_version"],
                actor=r["actor"],
                reason=r["reason"],
                at=_as_utc(r["at"]),
            )
            for r in rows
        ]

    def dispose(self) -> None:
        self._engine.dispose()


def _as_utc(at: datetime) -> datetime:
    # SQLite drops the zone; every value written here is UTC.
    return at if at.tzinfo else at.replace(tzinfo=UTC)
