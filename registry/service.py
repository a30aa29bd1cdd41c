"""The registry: register versions with lineage and digests, look them up, move aliases.

Every public method validates all of its input before its first write, so a refused
call changes nothing. Protected aliases (``champion``) move only for an actor holding
the ``promotion`` role, which only the promotion flow has.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from paved.errors import BackendError, DigestMismatch, InvalidInput, NotFound, PermissionDenied
from paved.names import (
    ModelRef,
    validate_alias,
    validate_name,
    validate_run_id,
    validate_version,
)
from paved.schemas import Actor, Role
from paved.settings import Settings
from paved.text import validate_free_text
from registry import schemas as s
from registry.digests import DigestManifest
from registry.fetch import fetch_verified
from registry.formats import check_name
from registry.history import AliasHistory, SqlAliasHistory
from registry.runs import log_package
from registry.store import MlflowStore, ModelStore, StoredVersion

Clock = Callable[[], datetime]

WRITE_ROLES = (Role.ML_ENGINEER, Role.PROMOTION)
OUTSIDE_FLOW_ACTOR = "unknown (outside Pavedpath)"
_CARD_TAG = "mlflow.note.content"
_LINEAGE_TAGS = frozenset(
    {s.TAG_TEAM, s.TAG_TASK, s.TAG_FRAMEWORK, s.TAG_KIND, s.TAG_GIT_COMMIT, s.TAG_DATASET_DIGEST}
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class Registry:
    """Pavedpath's model registry over a :class:`ModelStore` and an alias history."""

    def __init__(
        self,
        store: ModelStore,
        history: AliasHistory,
        *,
        cache_dir: Path,
        protected_aliases: Iterable[str] = ("champion",),
        clock: Clock = _utcnow,
    ) -> None:
        self.store = store
        self.alias_history = history
        self.cache_dir = cache_dir
        self.protected_aliases = frozenset(protected_aliases)
        self._clock = clock
        self._owners: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        settings.ensure_home()
        store = MlflowStore(settings.tracking_uri, settings.artifact_location)
        return cls(store, SqlAliasHistory(settings.tracking_uri), cache_dir=settings.cache_dir)

    # ---------------------------------------------------------------- writes

    def log_package(self, package: s.ModelPackage, *, experiment: str, actor: Actor) -> s.LoggedRun:
        """Log a model directory with its lineage as a new MLflow run."""
        _require(actor, WRITE_ROLES, "log a model")
        return log_package(self.store, package, experiment=experiment, actor=actor)

    def check_can_register(self, name: str, team: str, actor: Actor) -> str:
        """Refuse, before any work, what ``register_run`` would refuse for this name and
        team (name, role, owner); return the validated name."""
        name = validate_name(name)
        validate_name(team, "team")
        _require(actor, WRITE_ROLES, "register a model version")
        self._check_owner(name, team, actor)
        return name

    def register_package(
        self, name: str, package: s.ModelPackage, *, experiment: str, actor: Actor
    ) -> s.ModelVersionInfo:
        """Log a model directory and register it as a new version of ``name``.

        The name, the role, the owner and every file are checked before the run is
        created, so a refused package leaves no run, artifact, tag or model behind.
        """
        self.check_can_register(name, package.team, actor)
        logged = self.log_package(package, experiment=experiment, actor=actor)
        return self.register_run(name, logged, actor=actor)

    def register_run(
        self, name: str, run: str | s.LoggedRun, *, actor: Actor
    ) -> s.ModelVersionInfo:
        """Register the model a Pavedpath-logged run holds as a new version of ``name``.

        ``run`` is a run id, or the :class:`LoggedRun` that ``log_package`` returned,
        which saves reading the run back from the store.
        """
        name = validate_name(name)
        _require(actor, WRITE_ROLES, "register a model version")
        logged = run if isinstance(run, s.LoggedRun) else self._read_run(validate_run_id(run))
        team = logged.tags.get(s.TAG_TEAM, "")
        model_exists = self._check_owner(name, team, actor)
        tags = {k: v for k, v in logged.tags.items() if k in _LINEAGE_TAGS}
        tags[s.TAG_DIGESTS] = logged.manifest.canonical_json()
        tags[s.TAG_DIGEST] = logged.manifest.digest
        tags[s.TAG_REGISTERED_BY] = actor.identity
        source = f"{logged.artifact_uri.rstrip('/')}/{s.MODEL_ARTIFACT_PATH}"

        if not model_exists:
            self.store.create_model(name, {s.TAG_TEAM: team}, f"Owned by team {team}.")
        try:
            version = self.store.create_version(
                name, source, logged.run_id, tags, logged.tags.get(_CARD_TAG, "")
            )
        except Exception as exc:
            if not model_exists:
                self.store.delete_model(name)
                self._owners.pop(name, None)
            raise BackendError(f"could not create a version of {name!r}: {exc}") from exc
        return self._info(version)

    def set_alias(
        self, name: str, alias: str, version: int | str, *, actor: Actor, reason: str = ""
    ) -> s.AliasEvent:
        """Point ``alias`` at ``version``; record who moved it from where."""
        name, alias, ver = validate_name(name), validate_alias(alias), validate_version(version)
        reason = validate_free_text(reason, "reason")
        self._check_alias_permission(alias, actor)
        before = self.store.get_version_by_alias(name, alias)
        # The store refuses an unknown version (NotFound) before anything changes.
        self.store.set_alias(name, alias, ver)
        event = s.AliasEvent(
            model=name,
            alias=alias,
            from_version=None,
            to_version=ver,
            actor=actor.identity,
            reason=reason[:1024],
            at=self._clock(),
        )
        return self._record_or_undo(event, before.version if before else None)

    def remove_alias(
        self, name: str, alias: str, *, actor: Actor, reason: str = ""
    ) -> s.AliasEvent:
        name, alias = validate_name(name), validate_alias(alias)
        reason = validate_free_text(reason, "reason")
        self._check_alias_permission(alias, actor)
        current = self.store.get_version_by_alias(name, alias)
        if current is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}")
        event = s.AliasEvent(
            model=name,
            alias=alias,
            from_version=current.version,
            to_version=None,
            actor=actor.identity,
            reason=reason[:1024],
            at=self._clock(),
        )
        self.store.delete_alias(name, alias)
        return self._record_or_undo(event, current.version)

    def record_observed_move(
        self,
        name: str,
        alias: str,
        to_version: int | None,
        *,
        actor: Actor,
        reason: str,
        outside_flow: bool,
    ) -> s.AliasEvent:
        """Append to the history a move the store shows but the history lacks.

        Nothing in the store changes. ``outside_flow`` marks a move made around
        Pavedpath (a raw MLflow client; its mover is unknown, so the row's actor is
        :data:`OUTSIDE_FLOW_ACTOR`); otherwise it is a flow move whose history row was
        lost to a crash. Only the promotion flow records these for protected aliases.
        """
        name, alias = validate_name(name), validate_alias(alias)
        self._check_alias_permission(alias, actor)
        event = s.AliasEvent(
            model=name,
            alias=alias,
            from_version=None,  # filled in from the last recorded move
            to_version=to_version,
            actor=OUTSIDE_FLOW_ACTOR if outside_flow else actor.identity,
            reason=reason[:1024],
            at=self._clock(),
            outside_flow=outside_flow,
        )
        return self.alias_history.record_move(event)

    # ----------------------------------------------------------------- reads

    def get(self, ref: ModelRef | str) -> s.ModelVersionInfo:
        """Resolve ``NAME/VERSION`` or ``NAME@ALIAS`` (a bare name means the latest)."""
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        if ref.version is not None:
            stored = self.store.get_version(ref.name, ref.version)
        elif ref.alias is not None:
            stored = self.store.get_version_by_alias(ref.name, ref.alias)
        else:
            model = self.store.get_model(ref.name)
            latest = model.latest_version if model else None
            stored = self.store.get_version(ref.name, latest) if latest else None
        if stored is None:
            raise NotFound(f"model version {ref} does not exist")
        return self._info(stored)

    def describe(self, ref: ModelRef | str) -> s.ModelVersionDetail:
        """A version with its run's params and metrics."""
        info = self.get(ref)
        run = self.store.get_run(info.lineage.run_id) if info.lineage.run_id else None
        return s.ModelVersionDetail(
            **info.model_dump(),
            params=run.params if run else {},
            metrics=run.metrics if run else {},
        )

    def list_models(self) -> list[s.RegisteredModelInfo]:
        return [
            s.RegisteredModelInfo(
                name=m.name,
                team=m.tags.get(s.TAG_TEAM),
                latest_version=m.latest_version,
                aliases=m.aliases,
                created_at=_ms(m.created_ms),
                updated_at=_ms(m.updated_ms),
                description=m.description,
            )
            for m in self.store.list_models()
        ]

    def list_versions(self, name: str) -> list[s.ModelVersionInfo]:
        name = validate_name(name)
        if self.store.get_model(name) is None:
            raise NotFound(f"model {name!r} does not exist")
        return [self._info(v) for v in self.store.list_versions(name)]

    def history(self, name: str) -> list[s.HistoryEntry]:
        """Registrations and alias moves of a model, oldest first."""
        entries = [
            s.HistoryEntry(
                at=v.created_at,
                event="registered",
                version=v.version,
                actor=v.lineage.registered_by,
                detail=f"digest {v.digest[:19]}…, commit {v.lineage.git_commit[:12]}",
            )
            for v in self.list_versions(name)
        ]
        for e in self.alias_history.events(name):
            entries.append(
                s.HistoryEntry(
                    at=e.at,
                    event="alias_set" if e.to_version is not None else "alias_removed",
                    version=e.to_version,
                    alias=e.alias,
                    from_version=e.from_version,
                    actor=e.actor,
                    detail=e.reason,
                    outside_flow=e.outside_flow,
                )
            )
        return sorted(entries, key=lambda x: x.at)

    def get_pinned(self, ref: ModelRef | str, digest: str) -> s.ModelVersionInfo:
        """A version whose registry digest (tag and manifest) is the one Git pins.

        The registry's tags can be rewritten around Pavedpath; the digest in Git cannot
        (without a new, audited commit), so a version whose digest manifest no longer
        hashes to ``digest`` is refused with ``digest_mismatch``.
        """
        info = self.get(ref)
        if info.manifest.digest != digest or info.digest != digest:
            raise DigestMismatch(
                f"model version {info.ref}: the registry's digest "
                f"{info.manifest.digest[:19]}… is not the {digest[:19]}… that Git pins; "
                "its tags or files were changed outside Pavedpath; refusing to serve it",
                rule="digest_mismatch",
                details={"pinned": digest, "registry": info.manifest.digest},
            )
        return info

    def last_alias_event(self, name: str, alias: str) -> s.AliasEvent | None:
        """The last move of ``alias`` the history recorded (None: never recorded)."""
        return self.alias_history.last(validate_name(name), validate_alias(alias))

    def fetch(self, ref: ModelRef | str, *, digest: str | None = None) -> Path:
        """Download a version into the cache, verify every digest, and return its directory.

        With ``digest`` (the value Git pins), the registry's digest manifest must hash to
        it first (:meth:`get_pinned`), so the files are verified against Git, not a tag.
        """
        info = self.get(ref) if digest is None else self.get_pinned(ref, digest)
        return fetch_verified(self.store, info, self.cache_dir)

    # ------------------------------------------------------------- internals

    def _info(self, v: StoredVersion) -> s.ModelVersionInfo:
        tags = v.tags
        try:
            manifest = DigestManifest.model_validate_json(tags[s.TAG_DIGESTS])
        except (KeyError, ValueError) as exc:
            raise BackendError(
                f"model version {v.name}/{v.version} carries no valid digest manifest; "
                "it was not registered through Pavedpath"
            ) from exc
        return s.ModelVersionInfo(
            name=v.name,
            version=v.version,
            aliases=sorted(v.aliases),
            status=v.status,
            source=v.source,
            created_at=_ms(v.created_ms),
            description=v.description,
            digest=tags.get(s.TAG_DIGEST, manifest.digest),
            manifest=manifest,
            lineage=s.Lineage(
                team=tags.get(s.TAG_TEAM, "unknown"),
                task=tags.get(s.TAG_TASK, "unknown"),
                framework=tags.get(s.TAG_FRAMEWORK, "unknown"),
                kind=tags.get(s.TAG_KIND),
                git_commit=tags.get(s.TAG_GIT_COMMIT, "unknown"),
                dataset_digest=tags.get(s.TAG_DATASET_DIGEST, "unknown"),
                registered_by=tags.get(s.TAG_REGISTERED_BY, "unknown"),
                run_id=v.run_id,
            ),
        )

    def _read_run(self, run_id: str) -> s.LoggedRun:
        run = self.store.get_run(run_id) if isinstance(run_id, str) else None
        if run is None:
            raise NotFound(f"run {run_id!r} does not exist")
        digest = run.tags.get(s.TAG_DIGEST)
        if not digest:
            raise InvalidInput(
                f"run {run_id} was not logged by Pavedpath (no digest manifest); "
                "log the model with `paved models train` or `paved models register --path`",
                rule="pavedpath_run",
            )
        if s.TAG_DIGESTS in run.tags:
            manifest = DigestManifest.model_validate_json(run.tags[s.TAG_DIGESTS])
        else:  # too large for a run tag: read it from the run's artifacts
            with tempfile.TemporaryDirectory() as tmp:
                uri = f"{run.artifact_uri.rstrip('/')}/{s.META_ARTIFACT_PATH}/{s.DIGESTS_FILE}"
                manifest = DigestManifest.model_validate(
                    json.loads(self.store.download(uri, Path(tmp)).read_text())
                )
        if manifest.digest != digest:
            raise InvalidInput(
                f"run {run_id}'s digest manifest does not match the digest recorded on the run",
                rule="artifact_digest",
            )
        # The run may predate today's allow-list or have been written around Pavedpath:
        # its files' names are checked now, their content again when they are fetched.
        for rel in manifest.files:
            check_name(rel)
        tags = {k: v for k, v in run.tags.items() if k.startswith(s.TAG_PREFIX)}
        tags[_CARD_TAG] = run.tags.get(_CARD_TAG, "")
        return s.LoggedRun(
            run_id=run.run_id, artifact_uri=run.artifact_uri, tags=tags, manifest=manifest
        )

    def _check_owner(self, name: str, team: str, actor: Actor) -> bool:
        """Refuse a version from another team; return whether the model exists.

        Ownership never changes once a model exists, so it is remembered per process.
        An authenticated key registers for its own team only (an admin key for any);
        the team a keyless caller names is a label, checked against the owner alone.
        """
        if actor.key_id is not None and team != actor.team and not actor.has(Role.ADMIN):
            raise PermissionDenied(
                f"{actor.identity} belongs to team {actor.team!r}; it registers versions "
                f"owned by its own team, not {team!r}",
                rule="owner_team",
            )
        owner = self._owners.get(name)
        if owner is None:
            existing = self.store.get_model(name)
            if existing is None:
                return False
            owner = existing.tags.get(s.TAG_TEAM, "")
            self._owners[name] = owner
        if owner and owner != team and not actor.has(Role.ADMIN):
            raise PermissionDenied(
                f"model {name!r} is owned by team {owner!r}; a version from team {team!r} "
                "needs the admin role",
                rule="model_owner",
            )
        return True

    def _check_alias_permission(self, alias: str, actor: Actor) -> None:
        if alias in self.protected_aliases:
            if Role.PROMOTION not in actor.roles:
                raise PermissionDenied(
                    f"alias {alias!r} is protected: only the promotion flow (role "
                    f"'promotion') may move it; use `paved promote`",
                    rule="protected_alias",
                )
            return
        _require(actor, WRITE_ROLES, f"move alias {alias!r}")

    def _record_or_undo(self, event: s.AliasEvent, previous: int | None) -> s.AliasEvent:
        """Append the move to the history; if that fails, put the alias back where the
        store had it (``previous``, read before the move: the history that just failed
        is not asked again)."""
        try:
            return self.alias_history.record_move(event)
        except Exception as exc:
            if previous is None:
                self.store.delete_alias(event.model, event.alias)
            else:
                self.store.set_alias(event.model, event.alias, previous)
            raise BackendError(
                f"alias history could not be written; alias left as it was: {exc}"
            ) from exc


def _require(actor: Actor, roles: Iterable[Role], action: str) -> None:
    roles = tuple(roles)
    if not any(actor.has(r) for r in roles):
        needed = " or ".join(f"'{r.value}'" for r in roles if r is not Role.PROMOTION)
        raise PermissionDenied(
            f"{actor.identity} may not {action}: the role {needed} is needed", rule="role"
        )
