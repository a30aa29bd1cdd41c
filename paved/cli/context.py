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
        # The local CLI user acts as an ML engineer on their own PAVED_HOME. API keys
        # (and the roles they carry) take over once `paved keys` issues them.
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
