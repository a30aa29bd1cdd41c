"""API keys: created once, stored only as a hash, mapped to a team, roles and a holder.

A key looks like ``pp-<key id>.<secret>``. The key id is public (it names the key in
logs, metrics and `paved keys list`); the secret is 256 random bits and only its sha256
is stored, so the database never holds a usable key. Lookups compare in constant time.

Who may mint: the first admin key comes from :meth:`KeyStore.bootstrap`, which is
refused once any admin key exists; after that only an active admin key mints
(:meth:`KeyStore.mint`) or revokes. Each key records the key that minted it and the
person or service that holds it, so four-eyes checks can follow who minted whom
(:meth:`KeyStore.lineage`). Every input is validated before the table is touched: a
refused command creates neither the table nor a row.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from paved.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from paved.names import validate_name
from paved.schemas import GRANTABLE_ROLES, Actor, KeyLink, Role

_KEY_RE = re.compile(r"pp-([0-9a-f]{16})\.([A-Za-z0-9_-]{43})")
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
BOOTSTRAP = "bootstrap"
MAX_LINEAGE = 64  # minting chains longer than this are cut (and are a sign of a loop)

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
    # Added in issue 7; NULL on keys created before (their holder is unknown).
    sa.Column("holder", sa.String(64), nullable=True),
    sa.Column("minted_by", sa.String(16), nullable=True),
)
_ADDED_COLUMNS = ("holder", "minted_by")


class ApiKey(BaseModel):
    """A key as stored: everything but the secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str
    team: str
    roles: frozenset[Role]
    holder: str | None = None
    minted_by: str | None = None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None

    def actor(self) -> Actor:
        return Actor(
            identity=f"key:{self.key_id}", roles=self.roles, team=self.team, key_id=self.key_id
        )


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None. Never echoes the key."""
    m = _KEY_RE.fullmatch(key) if isinstance(key, str) else None
    return (m.group(1), m.group(2)) if m else None


def validate_key_id(value: object) -> str:
    if not isinstance(value, str) or not _KEY_ID_RE.fullmatch(value):
        shown = repr(value)[:40]
        raise InvalidInput(
            f"key id {shown} must be 16 hex digits, as `paved keys list` shows", rule="key_id"
        )
    return value


def parse_roles(roles: list[str] | tuple[str, ...]) -> frozenset[Role]:
    out = set()
    for r in roles:
        try:
            role = Role(r)
        except ValueError:
            role = None
        if role is None or role not in GRANTABLE_ROLES:
            allowed = ", ".join(sorted(x.value for x in GRANTABLE_ROLES))
            shown = repr(r)[:40]
            raise InvalidInput(f"unknown role {shown}; roles: {allowed}", rule="role_name")
        out.add(role)
    if not out:
        raise InvalidInput("a key needs at least one role", rule="role_name")
    return frozenset(out)


class KeyStore:
    """Keys in a SQL database (the registry's by default).

    The table is created by the first write that passes its checks, never by a read
    or a refused write; a table from before issue 7 gets the holder and minted_by
    columns on first use.
    """

    def __init__(self, db_uri: str) -> None:
        self._engine = sa.create_engine(db_uri, pool_pre_ping=True)
        self._ready = False

    # ---------------------------------------------------------------- writes

    def bootstrap(self, *, team: str, holder: str) -> tuple[str, ApiKey]:
        """The first admin key; refused (``bootstrap_done``) once any admin key exists,
        revoked or not, so the trust root is created exactly once."""
        team, holder = validate_name(team, "team"), validate_name(holder, "holder")
        self._prepare(create=True)
        with self._engine.begin() as conn:
            self._lock(conn)
            key, record = self._insert(
                conn,
                team=team,
                roles=frozenset({Role.ADMIN}),
                holder=holder,
                minted_by=None,
                created_by=BOOTSTRAP,
            )
            # Counted after the insert, inside the transaction: of two racing bootstraps
            # the second sees the first and rolls back (PostgreSQL: the table lock).
            admins = [
                r.key_id
                for r in conn.execute(sa.select(api_keys.c.key_id, api_keys.c.roles))
                if Role.ADMIN.value in r.roles.split(",")
            ]
            if admins != [record.key_id]:
                raise _bootstrap_done()
        return key, record

    def mint(
        self, *, by: ApiKey, team: str, roles: frozenset[Role], holder: str
    ) -> tuple[str, ApiKey]:
        """A new key minted by ``by``, which must be an active admin key (checked again
        inside the transaction, so a key revoked meanwhile mints nothing)."""
        team, holder = validate_name(team, "team"), validate_name(holder, "holder")
        roles = _grantable(roles)
        if not self._prepare(create=False):
            raise _not_admin(by)
        with self._engine.begin() as conn:
            self._lock(conn)
            minter = self._active(conn, by.key_id)
            if minter is None or Role.ADMIN not in minter.roles:
                raise _not_admin(by)
            return self._insert(
                conn,
                team=team,
                roles=roles,
                holder=holder,
                minted_by=minter.key_id,
                created_by=f"key:{minter.key_id}",
            )

    def create(
        self,
        *,
        team: str,
        roles: frozenset[Role],
        created_by: str,
        holder: str | None = None,
    ) -> tuple[str, ApiKey]:
        """Insert a non-admin key with no permission check: for tests and tools that
        hold the database already. People mint through :meth:`bootstrap` and
        :meth:`mint`; an admin key only comes from those. ``holder`` defaults to
        ``created_by``. The plaintext is returned here and never again."""
        team = validate_name(team, "team")
        holder = validate_name(holder if holder is not None else created_by, "holder")
        roles = _grantable(roles)
        if Role.ADMIN in roles:
            raise PermissionDenied(
                "an admin key comes from `paved keys bootstrap` or an admin's "
                "`paved keys create`, not from KeyStore.create",
                rule="admin_mint",
            )
        self._prepare(create=True)
        with self._engine.begin() as conn:
            return self._insert(
                conn, team=team, roles=roles, holder=holder, minted_by=None, created_by=created_by
            )

    def revoke(self, key_id: str, *, by: ApiKey | None = None) -> None:
        """Revoke a key. With ``by`` (what the CLI passes) it must be an active admin key,
        and the last active admin key cannot be revoked (nobody could mint again)."""
        key_id = validate_key_id(key_id)
        if not self._prepare(create=False):
            if by is not None:
                raise _not_admin(by)
            raise NotFound(f"no active key with id {key_id!r}", rule="key_id")
        with self._engine.begin() as conn:
            self._lock(conn)
            if by is not None:
                minter = self._active(conn, by.key_id)
                if minter is None or Role.ADMIN not in minter.roles:
                    raise _not_admin(by)
                target = self._active(conn, key_id)
                if target is not None and Role.ADMIN in target.roles:
                    admins = [
                        r
                        for r in conn.execute(
                            sa.select(api_keys.c.roles).where(api_keys.c.revoked_at.is_(None))
                        )
                        if Role.ADMIN.value in r.roles.split(",")
                    ]
                    if len(admins) <= 1:
                        raise Conflict(
                            f"key {key_id} is the last active admin key; mint another admin "
                            "key first (nobody could mint or revoke keys after this)",
                            rule="last_admin",
                        )
            done = conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        if done.rowcount == 0:
            raise NotFound(f"no active key with id {key_id!r}", rule="key_id")

    # ----------------------------------------------------------------- reads

    def list(self) -> list[ApiKey]:
        if not self._prepare(create=False):
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).mappings()
            return [_record(r) for r in rows]

    def any_admin(self) -> bool:
        """Whether an admin key was ever created (revoked ones count)."""
        return any(Role.ADMIN in k.roles for k in self.list())

    def snapshot(self) -> dict[str, tuple[str, ApiKey]]:
        """Active keys as key id -> (secret hash, record): what the gateway holds in memory."""
        if not self._prepare(create=False):
            return {}
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).where(api_keys.c.revoked_at.is_(None)))
            return {r.key_id: (r.secret_sha256, _record(r._mapping)) for r in rows}

    def lineage(self, key_id: str) -> builtins.list[KeyLink]:
        """The key and the keys that minted it, nearest first (revoked ones included);
        empty for an unknown key."""
        keys = {k.key_id: k for k in self.list()}
        chain: builtins.list[KeyLink] = []
        current = keys.get(key_id)
        while current is not None and len(chain) < MAX_LINEAGE:
            if any(link.key_id == current.key_id for link in chain):
                break  # a loop can only come from hand-edited rows; stop there
            chain.append(KeyLink(key_id=current.key_id, holder=current.holder))
            current = keys.get(current.minted_by) if current.minted_by else None
        return chain

    def dispose(self) -> None:
        self._engine.dispose()

    # ------------------------------------------------------------- internals

    def _prepare(self, *, create: bool) -> bool:
        """Whether the table is there (creating it when ``create``); adds the columns
        a table from an older version lacks."""
        if self._ready:
            return True
        url = self._engine.url
        on_disk = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        if on_disk and not create and not Path(str(url.database)).exists():
            return False  # reading must not create the database file either
        inspector = sa.inspect(self._engine)
        if not inspector.has_table(api_keys.name):
            if not create:
                return False
            _metadata.create_all(self._engine, checkfirst=True)
        else:
            have = {c["name"] for c in inspector.get_columns(api_keys.name)}
            with self._engine.begin() as conn:
                for name in _ADDED_COLUMNS:
                    if name not in have:
                        column = api_keys.c[name]
                        kind = column.type.compile(dialect=self._engine.dialect)
                        conn.execute(
                            sa.text(f"ALTER TABLE {api_keys.name} ADD COLUMN {name} {kind}")
                        )
        self._ready = True
        return True

    def _lock(self, conn: sa.Connection) -> None:
        """Serialize key writes: PostgreSQL takes a table lock; SQLite writes one at a time."""
        if self._engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"LOCK TABLE {api_keys.name} IN SHARE ROW EXCLUSIVE MODE"))

    def _active(self, conn: sa.Connection, key_id: str) -> ApiKey | None:
        row = (
            conn.execute(
                sa.select(api_keys).where(
                    api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None)
                )
            )
            .mappings()
            .first()
        )
        return _record(row) if row is not None else None

    def _insert(
        self,
        conn: sa.Connection,
        *,
        team: str,
        roles: frozenset[Role],
        holder: str,
        minted_by: str | None,
        created_by: str,
    ) -> tuple[str, ApiKey]:
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = ApiKey(
            key_id=key_id,
            team=team,
            roles=roles,
            holder=holder,
            minted_by=minted_by,
            created_by=created_by,
            created_at=datetime.now(UTC),
        )
        conn.execute(
            api_keys.insert().values(
                key_id=key_id,
                secret_sha256=_hash(secret),
                team=team,
                roles=",".join(sorted(r.value for r in roles)),
                holder=holder,
                minted_by=minted_by,
                created_by=created_by,
                created_at=record.created_at,
            )
        )
        return f"pp-{key_id}.{secret}", record


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


def _grantable(roles: frozenset[Role]) -> frozenset[Role]:
    return parse_roles([r.value if isinstance(r, Role) else str(r) for r in roles])


def _not_admin(by: ApiKey) -> PermissionDenied:
    return PermissionDenied(
        f"key:{by.key_id} may not mint or revoke keys: an active key with the role 'admin' "
        "is needed",
        rule="role",
        details={"needed": [Role.ADMIN.value]},
    )


def _bootstrap_done() -> Conflict:
    return Conflict(
        "an admin key exists already, so there is nothing to bootstrap; an admin mints "
        "further keys: PAVED_API_KEY=<admin key> paved keys create --team T --role R --holder H",
        rule="bootstrap_done",
    )


def _record(r: sa.RowMapping) -> ApiKey:
    def utc(v: datetime | None) -> datetime | None:
        return v if v is None or v.tzinfo else v.replace(tzinfo=UTC)

    return ApiKey(
        key_id=r["key_id"],
        team=r["team"],
        roles=frozenset(Role(x) for x in r["roles"].split(",") if x),
        holder=r["holder"],
        minted_by=r["minted_by"],
        created_by=r["created_by"],
        created_at=utc(r["created_at"]) or datetime.now(UTC),
        revoked_at=utc(r["revoked_at"]),
    )
