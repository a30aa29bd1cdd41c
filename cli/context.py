"""What every command needs: settings, the acting identity, and lazily built services."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from paved.errors import InvalidInput, PermissionDenied, Unauthenticated
from paved.schemas import Actor, Role
from paved.settings import Settings

if TYPE_CHECKING:
    from registry.service import Registry
    from serving.keys import ApiKey, KeyStore


class CliContext:
    def __init__(self, settings: Settings | None = None, *, verbose: bool = False) -> None:
        self.settings = settings or Settings()
        self.verbose = verbose

    def key_store(self) -> KeyStore:
        """The key store (the registry's database); opening it creates nothing."""
        from serving.keys import KeyStore

        return KeyStore(self.settings.tracking_uri)

    @cached_property
    def key(self) -> ApiKey | None:
        """The verified record of PAVED_API_KEY; None when no key is given.

        A key that is given but malformed, unknown or revoked is refused, never
        ignored (the command would otherwise run as the local user).
        """
        if not self.settings.api_key:
            return None
        from serving.keys import verify

        store = self.key_store()
        try:
            record = verify(self.settings.api_key, store.snapshot())
        finally:
            store.dispose()
        if record is None:
            raise Unauthenticated("PAVED_API_KEY is not a valid, active API key", rule="api_key")
        return record

    @cached_property
    def actor(self) -> Actor:
        # With PAVED_API_KEY the CLI acts as that key (identity key:<id>, its team and
        # roles): the only authenticated identity. Without one, the local OS user
        # (PAVED_ACTOR) acts as an ML engineer, which the promotion flow allows only
        # outside production and never for a gate skip or an approval.
        if self.key is not None:
            return self.key.actor()
        try:
            return Actor(
                identity=self.settings.actor,
                roles=frozenset({Role.ML_ENGINEER}),
                team=self.settings.team,
            )
        except ValueError:
            raise InvalidInput(
                f"PAVED_ACTOR {self.settings.actor[:40]!r} is not a usable name (at most "
                "128 characters; 'key:' names belong to API keys: set PAVED_API_KEY instead)",
                rule="actor_name",
            ) from None

    def admin_key(self, action: str) -> ApiKey:
        """The caller's key, which must hold the admin role, for ``action``."""
        if self.key is None:
            raise Unauthenticated(
                f"{action} needs PAVED_API_KEY set to an admin key (the first one comes from "
                "`paved keys bootstrap`)",
                rule="api_key_required",
            )
        if Role.ADMIN not in self.key.roles:
            held = ", ".join(sorted(r.value for r in self.key.roles))
            raise PermissionDenied(
                f"key:{self.key.key_id} may not {action}: the role 'admin' is needed "
                f"(held: {held})",
                rule="role",
                details={"needed": [Role.ADMIN.value]},
            )
        return self.key

    @cached_property
    def registry(self) -> Registry:
        import logging

        from registry.service import Registry

        if not self.verbose:
            # MLflow sets its own loggers to INFO when imported; the CLI speaks for itself.
            for name in ("mlflow", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)
        return Registry.from_settings(self.settings)
