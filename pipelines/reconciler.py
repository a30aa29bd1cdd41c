"""The reconciler: make serving match what Git says, one environment at a time.

Each pass reads the manifests at the repository's head, validates every endpoint
(schema, file name, environment, owner team, versions in the registry, digests), and
applies the valid ones to the serving target declaratively: new versions' replicas are
started and ready before any traffic moves, the gateway's routes are swapped in place,
and replicas no endpoint needs any more are removed last (they drain in-flight requests
as they stop). An invalid manifest is refused for its endpoint alone, with a status
that says why, and that endpoint keeps serving what it served before. The commit
applied is recorded only after a complete pass, and an older commit is never applied:
a rollback is a new commit. Every step is idempotent, so a pass killed half way
converges when run again.

:meth:`Reconciler.run` is the control loop (`paved reconcile --watch`, `paved serve
--env`): no exception from one pass stops it. A failed pass is recorded with its reason
(:class:`PassRecord`, logged and saved beside the applied state for `paved reconcile
--status`), retried after an exponential backoff with a cap that resets after a success,
and serving stays as it was: routes move only at the end of a pass that got that far.
A version whose replicas do not start by the deadline is refused for its endpoint alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from paved.errors import Conflict, InvalidInput, PavedError
from paved.manifest import Endpoint
from paved.settings import Settings
from pipelines.gitops.layout import ENV_DIR, endpoint_from_blob
from pipelines.pins import PinRegistry, VerifiedVersions
from pipelines.promotion.champion import ChampionStatus, GuardedRegistry, guard_champions
from pipelines.promotion.policy import PromotionPolicy
from pipelines.reconcile_metrics import ReconcilerMetrics
from serving.deploy import Plan, ReplicasFailed, plan

log = logging.getLogger(__name__)


class ManifestSource(Protocol):
    """Read access to the GitOps repository."""

    def head(self) -> str: ...

    def is_ancestor(self, older: str, newer: str) -> bool: ...

    def endpoint_files(self, commit: str, env: str) -> dict[str, str]: ...

    def teams(self, commit: str) -> set[str]: ...


class ReconcilerRegistry(GuardedRegistry, PinRegistry, Protocol):
    """The registry as the reconciler reaches it (``registry.service.Registry`` in
    production, fakes in tests): a version's record (``get``, also the champion alias
    read), the version against the digest Git pins (``get_pinned``, ``fetch``), the
    champion alias set, and the alias history (``last_alias_event``,
    ``record_observed_move``)."""


class ServingTarget(Protocol):
    """What the reconciler changes (``serving.deploy.RayServeTarget`` in production).

    The target names its applications: ``ensure_replicas`` returns the names of those
    the plan needs, and every other name ``model_apps`` lists is pruned with ``remove``.
    """

    def ensure_replicas(self, p: Plan) -> list[str]: ...

    def apply_routes(self, p: Plan) -> None: ...

    def model_apps(self) -> list[str]: ...

    def remove(self, names: list[str]) -> None: ...


class Clock(Protocol):
    """Where the control loop gets time (a step clock in tests)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        """Wait up to ``seconds``; True as soon as ``stop`` is set."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        return stop.wait(seconds)


def backoff_delay(interval: float, failures: int, cap: float) -> float:
    """The wait before the next pass: the interval, doubled per failure in a row, capped."""
    if failures <= 0:
        return interval
    return min(interval * 2.0 ** min(failures, 62), max(cap, interval))


def failure_reason(exc: BaseException, limit: int = 500) -> tuple[str, str | None]:
    """What a failed pass reports: ``[code] message`` (rule apart), bounded in length."""
    if isinstance(exc, PavedError):
        text, rule = f"[{exc.code}] {exc.message}", exc.rule
    else:
        text, rule = f"{type(exc).__name__}: {exc}", None
    return (text if len(text) <= limit else text[:limit] + "…"), rule


class EndpointStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str
    status: Literal["applied", "unchanged", "refused", "removed"]
    reason: str = ""
    rule: str | None = None


class AppliedState(BaseModel):
    """What the last complete pass applied: the commit and each endpoint's manifest."""

    model_config = ConfigDict(extra="forbid")

    env: str
    commit: str | None = None
    applied_at: datetime | None = None
    endpoints: dict[str, Endpoint] = Field(default_factory=dict)


class ReconcileReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    env: str
    commit: str
    previous_commit: str | None
    statuses: list[EndpointStatus]
    champions: list[ChampionStatus] = Field(
        default_factory=list,
        description="The registry's champion alias against Git (environments it follows).",
    )
    outside_flow_total: int = Field(
        default=0, ge=0, description="Champion moves around the flow this reconciler put back."
    )

    @property
    def refused(self) -> list[EndpointStatus]:
        return [s for s in self.statuses if s.status == "refused"]


class PassRecord(BaseModel):
    """The outcome of one pass of the control loop (saved as ``ENV.pass.json``)."""

    model_config = ConfigDict(extra="forbid")

    env: str
    at: datetime
    ok: bool
    commit: str | None = Field(default=None, description="The commit applied (ok passes).")
    refused: list[str] = Field(default_factory=list, description="Endpoints refused.")
    reason: str = Field(default="", description="Why the pass failed: [code] message.")
    rule: str | None = None
    consecutive_failures: int = Field(default=0, ge=0)
    next_pass_in_s: float = Field(ge=0)
    last_ok_at: datetime | None = None


class StateStore:
    """Applied state per environment, as JSON under ``PAVED_HOME/reconciler/``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, env: str) -> Path:
        return self.root / f"{env}.json"

    def load(self, env: str) -> AppliedState:
        path = self._path(env)
        if not path.exists():
            return AppliedState(env=env)
        return AppliedState.model_validate_json(path.read_text())

    @contextlib.contextmanager
    def lock(self, env: str) -> Iterator[None]:
        """One reconcile pass per environment at a time, across processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f".{env}.lock").open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def load_pass(self, env: str) -> PassRecord | None:
        path = self.root / f"{env}.pass.json"
        return PassRecord.model_validate_json(path.read_text()) if path.exists() else None

    def save_pass(self, record: PassRecord) -> None:
        self._write(f"{record.env}.pass.json", record.model_dump_json(indent=1))

    def _write(self, name: str, text: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, self.root / name)

    def save(self, state: AppliedState) -> None:
        """Write atomically: a crash leaves the old state or the new, never half."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{state.env}.")
        with os.fdopen(fd, "w") as f:
            f.write(state.model_dump_json(indent=1))
        os.replace(tmp, self._path(state.env))


class Reconciler:
    def __init__(
        self,
        *,
        source: ManifestSource,
        registry: ReconcilerRegistry,
        target: ServingTarget,
        state: StateStore,
        settings: Settings,
        env: str,
        internal_token: str,
        on_applied: Callable[[Endpoint, str], None] | None = None,
        before_pass: Callable[[], None] | None = None,
        clock: Clock | None = None,
        policy: PromotionPolicy | None = None,
    ) -> None:
        self.source = source
        self.registry = registry
        self.target = target
        self.state = state
        self.settings = settings
        self.env = env
        self.internal_token = internal_token
        self.on_applied = on_applied
        self.before_pass = before_pass
        self.clock: Clock = clock or SystemClock()
        self.policy = policy or PromotionPolicy()
        self.verified = VerifiedVersions(registry)  # files hashed once per (version, digest)
        self.metrics = ReconcilerMetrics()
        # endpoint -> (manifest that did not start, attempts, retry at, reason)
        self._failed_starts: dict[str, tuple[Endpoint, int, float, str]] = {}

    def run(
        self,
        stop: threading.Event,
        interval: float,
        on_pass: Callable[[PassRecord, ReconcileReport | None], None] | None = None,
    ) -> None:
        """Pass after pass until ``stop`` is set; no pass's exception ends the loop.

        A failed pass (a raw MLflow error, a git timeout, a download error, a target
        that refuses) is logged, recorded with its reason and retried after
        :func:`backoff_delay`; the endpoints keep serving what they served.
        """
        failures = 0
        last_ok: datetime | None = None
        cap = self.settings.reconcile_backoff_max_s
        while not stop.is_set():
            report: ReconcileReport | None = None
            try:
                report = self.once()
            except Exception as exc:  # the loop outlives any one pass
                failures += 1
                delay = backoff_delay(interval, failures, cap)
                reason, rule = failure_reason(exc)
                log.warning(
                    "reconcile pass for %s failed (%d in a row, next in %.1fs): %s",
                    self.env,
                    failures,
                    delay,
                    reason,
                    exc_info=not isinstance(exc, PavedError),
                )
                record = PassRecord(
                    env=self.env,
                    at=datetime.now(UTC),
                    ok=False,
                    reason=reason,
                    rule=rule,
                    consecutive_failures=failures,
                    next_pass_in_s=delay,
                    last_ok_at=last_ok,
                )
            else:
                failures = 0
                delay = interval
                last_ok = datetime.now(UTC)
                record = PassRecord(
                    env=self.env,
                    at=last_ok,
                    ok=True,
                    commit=report.commit,
                    refused=[s.endpoint for s in report.refused],
                    next_pass_in_s=delay,
                    last_ok_at=last_ok,
                )
            try:
                self.state.save_pass(record)
                if on_pass is not None:
                    on_pass(record, report)
            except Exception:  # reporting never stops the loop either
                log.exception("could not record the reconcile pass for %s", self.env)
            if self.clock.sleep(delay, stop):
                break

    def once(self) -> ReconcileReport:
        """One pass: validate head, apply what is valid, record the commit."""
        with self.state.lock(self.env):
            return self._pass()

    def _pass(self) -> ReconcileReport:
        if self.before_pass is not None:
            self.before_pass()  # e.g. fetch the GitOps remote
        head = self.source.head()
        applied = self.state.load(self.env)
        if (
            applied.commit
            and applied.commit != head
            and not self.source.is_ancestor(applied.commit, head)
        ):
            raise Conflict(
                f"head {head[:12]} does not descend from the applied commit "
                f"{applied.commit[:12]}; the reconciler never applies an older commit "
                "(roll back with a new commit: `paved rollback`)",
                rule="no_going_back",
            )
        desired, statuses = self._desired(head, applied)
        self._skip_failed_starts(desired, statuses, applied)
        p = plan(list(desired.values()), self.registry, self.settings, self.internal_token)
        try:
            wanted = set(self.target.ensure_replicas(p))
        except ReplicasFailed as exc:
            # Those endpoints alone are refused and go back to what they served; the
            # target already deleted applications that served nothing before.
            for name, reason in sorted(exc.failed.items()):
                self._refuse_start(name, reason, desired, statuses, applied)
            p = plan(list(desired.values()), self.registry, self.settings, self.internal_token)
            wanted = set(self.target.ensure_replicas(p))
        for s in statuses:
            if s.rule != "replica_start":
                self._failed_starts.pop(s.endpoint, None)
        self.target.apply_routes(p)
        stale = [name for name in self.target.model_apps() if name not in wanted]
        if stale:
            self.target.remove(stale)
        self.state.save(
            AppliedState(env=self.env, commit=head, applied_at=datetime.now(UTC), endpoints=desired)
        )
        if self.on_applied is not None:
            for s in statuses:
                if s.status == "applied":
                    self.on_applied(desired[s.endpoint], head)
        # Every pass, not only when Git changed: a move around the flow is put back.
        champions = guard_champions(
            self.registry, desired.values(), commit=head, policy=self.policy
        )
        self.metrics.record_champions(self.env, champions)
        for s in statuses:
            if s.status == "refused":
                self.metrics.record_refusal(self.env, s.rule)
        return ReconcileReport(
            env=self.env,
            commit=head,
            previous_commit=applied.commit,
            statuses=statuses,
            champions=champions,
            outside_flow_total=self.metrics.outside_flow_total,
        )

    def _skip_failed_starts(
        self, desired: dict[str, Endpoint], statuses: list[EndpointStatus], applied: AppliedState
    ) -> None:
        """A manifest whose replicas did not start is not retried until it changes or its
        backoff has passed (each try can hold a pass for the whole start deadline)."""
        now = self.clock.monotonic()
        for name, ep in list(desired.items()):
            failed = self._failed_starts.get(name)
            if failed is None:
                continue
            manifest, _, retry_at, reason = failed
            if manifest != ep:
                del self._failed_starts[name]
            elif now < retry_at:
                self._refuse_start(name, reason, desired, statuses, applied, again=False)

    def _refuse_start(
        self,
        name: str,
        reason: str,
        desired: dict[str, Endpoint],
        statuses: list[EndpointStatus],
        applied: AppliedState,
        again: bool = True,
    ) -> None:
        ep = desired.get(name)
        if ep is not None and again:
            attempts = self._failed_starts.get(name, (ep, 0, 0.0, ""))[1] + 1
            delay = backoff_delay(
                self.settings.reconcile_interval_s, attempts, self.settings.reconcile_backoff_max_s
            )
            self._failed_starts[name] = (ep, attempts, self.clock.monotonic() + delay, reason)
            log.warning("endpoint %s refused: %s (retried in %.0fs)", name, reason, delay)
        status = EndpointStatus(
            endpoint=name, status="refused", reason=reason, rule="replica_start"
        )
        for i, s in enumerate(statuses):
            if s.endpoint == name:
                statuses[i] = status
        if name in applied.endpoints:  # serving stays exactly as it was
            desired[name] = applied.endpoints[name]
        else:
            desired.pop(name, None)

    def _desired(
        self, head: str, applied: AppliedState
    ) -> tuple[dict[str, Endpoint], list[EndpointStatus]]:
        files = self.source.endpoint_files(head, self.env)
        teams = self.source.teams(head)
        desired: dict[str, Endpoint] = {}
        statuses: list[EndpointStatus] = []
        for filename, text in sorted(files.items()):
            name = Path(filename).stem
            try:
                ep = self._validate(filename, text, teams)
            except PavedError as exc:
                statuses.append(
                    EndpointStatus(
                        endpoint=name, status="refused", reason=exc.message, rule=exc.rule
                    )
                )
                if name in applied.endpoints:  # serving stays exactly as it was
                    desired[name] = applied.endpoints[name]
                continue
            desired[name] = ep
            same = applied.endpoints.get(name) == ep
            statuses.append(
                EndpointStatus(endpoint=name, status="unchanged" if same else "applied")
            )
        for name in sorted(set(applied.endpoints) - {Path(f).stem for f in files}):
            statuses.append(EndpointStatus(endpoint=name, status="removed"))
        return desired, statuses

    def _validate(self, filename: str, text: str, teams: set[str]) -> Endpoint:
        ep = endpoint_from_blob(f"{ENV_DIR}/{self.env}/{filename}", text)
        if ep.metadata.team not in teams:
            raise InvalidInput(
                f"team {ep.metadata.team!r} has no teams/{ep.metadata.team}.yaml",
                rule="unknown_team",
            )
        plan([ep], self.registry, self.settings, self.internal_token)  # versions and task
        # Git pins each version's digest: the registry's must be the same on every pass
        # (digest_mismatch), and the files must have matched it once (not re-hashed).
        self.verified.check(ep)
        return ep


def report_json(report: ReconcileReport) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2)
