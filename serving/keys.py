"""API keys: created once, stored only as a hash, mapped to a team and roles.

A key looks like ``pp-<key id>.<secret>``. The key id is public (it names the key in
logs, metrics and `paved keys list`); the secret is 256 random bits and only its sha256
is stored, so the database never holds a usable key. Lookups compare in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from paved.errors import InvalidInput, NotFound
from paved.names import validate_name
from paved.schemas import GRANTABLE_ROLES, Actor, Role

_KEY_RE = re.compile(r"pp-([0-9a-f]{16})\.([A-Za-z0-9_-]{43})")

_metadata = sa.MetaData()
api_keys = sa.Table(
    "paved_api_keys",
    _metadata,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("team", sa.String(64), nullable=False),
    sa.Column("roles", sa.String(256), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)


class ApiKey(BaseModel):
    """A key as stored: everything but the secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str
    team: str
    roles: frozenset[Role]
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None

    def actor(self) -> Actor:
        return Actor(identity=f"key:{self.key_id}", roles=self.roles, team=self.team)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None. Never echoes the key."""
    m = _KEY_RE.fullmatch(key) if isinstance(key, str) else None
    return (m.group(1), m.group(2)) if m else None


def parse_roles(roles: list[str] | tuple[str, ...]) -> frozenset[Role]:
    out = set()
    for r in roles:
        try:
            role = Role(r)
        except ValueError:
            role = None
        if role is None or role not in GRANTABLE_ROLES:
            allowed = ", ".join(sorted(x.value for x in GRANTABLE_ROLES))
            raise InvalidInput(f"unknown role {r!r}; roles: {allowed}", rule="role_name")
        out.add(role)
    if not out:
        raise InvalidInput("a key needs at least one role", rule="role_name")
    return frozenset(out)


class KeyStore:
    """Keys in a SQL database (the registry's by default)."""

    def __init__(self, db_uri: str) -> None:
        self._engine = sa.create_engine(db_uri, pool_pre_ping=True)
        _metadata.create_all(self._engine, checkfirst=True)

    def create(self, *, team: str, roles: frozenset[Role], created_by: str) -> tuple[str, ApiKey]:
        """Create a key; the plaintext is returned here and never again."""
        validate_name(team, "team")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = ApiKey(
            key_id=key_id,
            team=team,
            roles=roles,
            created_by=created_by,
            created_at=datetime.now(UTC),
        )
        with self._engine.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    key_id=key_id,
                    secret_sha256=_hash(secret),
                    team=team,
                    roles=",".join(sorted(r.value for r in roles)),
                    created_by=created_by,
                    created_at=record.created_at,
                )
            )
        return f"pp-{key_id}.{secret}", record

    def revoke(self, key_id: str) -> None:
        with self._engine.begin() as conn:
            done = conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        if done.rowcount == 0:
            raise NotFound(f"no active key with id {key_id!r}")

    def list(self) -> list[ApiKey]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).mappings()
            return [_record(r) for r in rows]

    def snapshot(self) -> dict[str, tuple[str, ApiKey]]:
        """Active keys as key id -> (secret hash, record): what the gateway holds in memory."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).where(api_keys.c.revoked_at.is_(None)))
            return {r.key_id: (r.secret_sha256, _record(r._mapping)) for r in rows}

    def dispose(self) -> None:
        self._engine.dispose()


def verify(key: str, snapshot: dict[str, tuple[str, ApiKey]]) -> ApiKey | None:
    """The key's record if it is well formed, known, active and its secret matches."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    entry = snapshot.get(parsed[0])
    if entry is None:
        return None
    if not hmac.compare_digest(entry[0], _hash(parsed[1])):
        return None
    return entry[1]


def _record(r: sa.RowMapping) -> ApiKey:
    def utc(v: datetime | None) -> datetime | None:
        return v if v is None or v.tzinfo else v.replace(tzinfo=UTC)

    return ApiKey(
        key_id=r["key_id"],
        team=r["team"],
        roles=frozenset(Role(x) for x in r["roles"].split(",") if x),
        created_by=r["created_by"],
        created_at=utc(r["created_at"]) or datetime.now(UTC),
        revoked_at=utc(r["revoked_at"]),
    )
