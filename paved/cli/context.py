"""What every command needs: settings, the acting identity, and lazily built services."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from paved.schemas import Actor, Role
from paved.settings import Settings

if TYPE_CHECKING:
    from registry.service import Registry


class CliContext:
    def __init__(self, settings: Settings | None = None, *, verbose: bool = False) -> None:
        self.settings = settings or Settings()
        self.verbose = verbose

    @cached_property
    def actor(self) -> Actor:
        # With PAVED_API_KEY the CLI acts as that key (identity key:<id>, its team and
        # roles), so approvals and admin actions need a key that holds those roles.
        # Without one, the local OS user (PAVED_ACTOR) acts as an ML engineer.
        if self.settings.api_key:
            from paved.errors import Unauthenticated
            from serving.keys import KeyStore, verify

            self.settings.ensure_home()
            store = KeyStore(self.settings.tracking_uri)
            try:
                record = verify(self.settings.api_key, store.snapshot())
            finally:
                store.dispose()
            if record is None:
                raise Unauthenticated(
                    "PAVED_API_KEY is not a valid, active API key", rule="api_key"
                )
            return record.actor()
        return Actor(
            identity=self.settings.actor,
            roles=frozenset({Role.ML_ENGINEER}),
            team=self.settings.team,
        )

    @cached_property
    def registry(self) -> Registry:
        import logging

        from registry.service import Registry

        if not self.verbose:
            # MLflow sets its own loggers to INFO when imported; the CLI speaks for itself.
            for name in ("mlflow", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)
        return Registry.from_settings(self.settings)
