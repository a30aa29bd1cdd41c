"""Promote, approve, roll back: each one checked in full, then written as one commit.

Order inside every action: validate every input and the actor's roles, look the
version up in the registry, read the current manifest, run the gate, and only then
write. Anything refused on the way leaves Git exactly as it was.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from paved.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from paved.names import validate_name, validate_version
from paved.schemas import Actor, Role
from pipelines.gitops import trailers as t
from pipelines.gitops.layout import default_team, endpoint_path, render_manifest, team_path
from pipelines.gitops.repo import GitOpsRepo
from pipelines.promotion.changes import mode_of, plan_promotion
from pipelines.promotion.checks import check_mergeable
from pipelines.promotion.four_eyes import KeyDirectory, check_four_eyes, key_of, require_key
from pipelines.promotion.gate import Gate, GateRequest, run_gate
from pipelines.promotion.messages import (
    approve_message,
    gate_text,
    newest_version,
    promote_message,
    promotion_from_commit,
    rollback_message,
)
from pipelines.promotion.policy import (
    BRANCH_PREFIX,
    PromotionPolicy,
    branch_for,
    require,
    validate_promotion_id,
)
from pipelines.promotion.records import Approval, Promotion, Rollback

if TYPE_CHECKING:
    from paved.manifest import Endpoint
    from registry.schemas import ModelVersionInfo


class ModelCatalog(Protocol):
    """The registry as the promotion flow needs it: look a version up."""

    def get(self, ref: str) -> ModelVersionInfo: ...


def new_promotion_id() -> str:
    return f"p-{secrets.token_hex(4)}"


class Promotions:
    """The promotion flow over one GitOps repository and the registry."""

    def __init__(
        self,
        repo: GitOpsRepo,
        registry: ModelCatalog,
        *,
        policy: PromotionPolicy | None = None,
        new_id: Callable[[], str] = new_promotion_id,
        keys: KeyDirectory | None = None,
    ) -> None:
        self.repo = repo
        self.registry = registry
        self.policy = policy or PromotionPolicy()
        self._new_id = new_id
        # Approvals compare the minting chains of both keys; without a key directory
        # no approval can be verified, so none is accepted.
        self.keys = keys

    # -------------------------------------------------------------- promote

    def promote(
        self,
        name: str,
        version: int | str,
        endpoint: str,
        env: str,
        *,
        actor: Actor,
        gate: Gate | None = None,
        canary_steps: Sequence[int] | None = None,
        shadow: bool = False,
    ) -> Promotion:
        """Promote ``name`` ``version`` on ``env``/``endpoint``.

        Outside the protected environments the change lands on main at once; inside
        them it lands on ``promotion/<id>`` and waits for :meth:`approve`.
        """
        name, ver = validate_name(name), validate_version(version)
        endpoint, env = validate_name(endpoint, "endpoint"), validate_name(env, "environment")
        mode = mode_of(canary_steps, shadow)
        protected = self.policy.is_protected(env)
        hint = "; it then waits for an approval by an approver" if protected else ""
        require(actor, [Role.ML_ENGINEER], f"promote to {env}", hint=hint)
        if protected:
            require_key(actor, f"promoting to {env}")
        info = self.registry.get(f"{name}/{ver}")

        with self.repo.lock():
            self.repo.sync()
            if protected:
                self._refuse_if_pending(endpoint, env)
            current = self.repo.read_endpoint(env, endpoint)
            change = plan_promotion(
                current,
                model=name,
                version=ver,
                endpoint=endpoint,
                env=env,
                team=info.lineage.team,
                mode=mode,
                digest=info.digest,  # Git pins it: the registry's tag is not the authority
                canary_steps=canary_steps,
                champion_digest=self._unpinned_champion_digest(current, name, mode),
            )
            outcome = run_gate(
                gate,
                GateRequest(
                    model=name,
                    candidate_version=ver,
                    champion_version=change.from_version,
                    endpoint=endpoint,
                    env=env,
                    mode=mode,
                    manifest=current[1] if current else None,
                    actor=actor.identity,
                ),
            )
            pid = self._new_id()
            record = Promotion(
                id=pid,
                state="pending" if protected else "applied",
                model=name,
                endpoint=endpoint,
                env=env,
                mode=mode,
                from_version=change.from_version,
                to_version=ver,
                actor=actor.identity,
                commit="",
                branch=branch_for(pid) if protected else self.repo.main,
                gate=gate_text(outcome),
            )
            steps = list(canary_steps) if canary_steps is not None else None
            files = {endpoint_path(env, endpoint): render_manifest(change.document)}
            team = change.endpoint.metadata.team
            new_team = current is None and not self.repo.has_team(team)
            if new_team:
                files[team_path(team)] = default_team(team)
            sha = self.repo.commit_files(
                files,
                message=promote_message(record, actor, steps, new_team=team if new_team else None),
                actor=actor,
                branch=record.branch if protected else None,
            )
        return record.model_copy(update={"commit": sha})

    # -------------------------------------------------------------- approve

    def approve(self, promotion_id: str, *, actor: Actor) -> Approval:
        """Merge a pending promotion into main; the approver must not be its author."""
        pid = validate_promotion_id(promotion_id)
        require(actor, [Role.APPROVER], "approve a promotion")
        approver_key = require_key(actor, "approving a promotion")
        branch = branch_for(pid)
        with self.repo.lock():
            self.repo.sync()
            ref = self._branch_ref(branch)
            if ref is None:
                raise self._missing(pid)
            tip = self.repo.git.log(ref, max_count=1)[0]
            promo = promotion_from_commit(tip, branch)
            if promo.id != pid:
                raise InvalidInput(
                    f"{branch} records promotion {promo.id}", rule="promotion_commit"
                )
            if actor.identity in (promo.actor, tip.author):
                raise PermissionDenied(
                    f"promotion {pid} was made by {promo.actor}; it needs an approval by a "
                    f"different identity with the role 'approver', not {actor.identity}",
                    rule="four_eyes",
                )
            self._check_four_eyes(pid, promo.actor, approver_key)
            check_mergeable(self.repo, promo, ref)
            sha = self.repo.merge(ref, message=approve_message(promo, actor), actor=actor)
            self.repo.delete_branch(branch)
        return Approval(
            promotion_id=pid,
            commit=sha,
            approved_by=actor.identity,
            promoted_by=promo.actor,
            model=promo.model,
            endpoint=promo.endpoint,
            env=promo.env,
            from_version=promo.from_version,
            to_version=promo.to_version,
        )

    def pending(self) -> list[Promotion]:
        """Promotions waiting for an approval, oldest first."""
        with self.repo.lock():
            self.repo.sync()
            return self._pending()

    # ------------------------------------------------------------- rollback

    def rollback(self, endpoint: str, env: str, *, actor: Actor) -> Rollback:
        """Revert the last change to an endpoint's manifest with a new commit on main."""
        endpoint, env = validate_name(endpoint, "endpoint"), validate_name(env, "environment")
        require(actor, [Role.ML_ENGINEER, Role.APPROVER], f"roll back {env}/{endpoint}")
        if self.policy.is_protected(env):
            require_key(actor, f"rolling back {env}/{endpoint}")
        path = endpoint_path(env, endpoint)
        with self.repo.lock():
            self.repo.sync()
            last = self.repo.changes(endpoint, env, limit=1)
            if not last:
                raise NotFound(f"{env}/{endpoint} has no manifest in Git", rule="no_manifest")
            if last[0].action == "rollback":
                raise Conflict(
                    f"the last change to {env}/{endpoint} is a rollback already; to go further "
                    "back, promote the version you want",
                    rule="rollback_of_rollback",
                )
            commit = self.repo.git.log(last[0].commit, max_count=1)[0]
            parent = commit.parents[0] if commit.parents else None
            previous = self.repo.read_endpoint(env, endpoint, at=parent) if parent else None
            current = self.repo.read_endpoint(env, endpoint)
            if previous is None or current is None:
                raise Conflict(
                    f"{commit.sha[:12]} created or removed {path}; there is no earlier "
                    "manifest to roll back to",
                    rule="rollback_first",
                )
            if parent and self.repo.git.changed_files(parent, commit.sha) != [path]:
                raise Conflict(
                    f"{commit.sha[:12]} changed more than {path}; revert it by hand",
                    rule="rollback_shared_commit",
                )
            message = rollback_message(commit, current[1], previous[1], actor)
            sha = self.repo.revert(commit.sha, message=message, actor=actor)
        return Rollback(
            commit=sha,
            reverted=commit.sha,
            endpoint=endpoint,
            env=env,
            from_version=newest_version(current[1]),
            to_version=previous[1].spec.champion.version,
            actor=actor.identity,
        )

    # ------------------------------------------------------------ internals

    def _check_four_eyes(self, pid: str, promoted_by: str, approver_key: str) -> None:
        promoter_key = key_of(promoted_by)
        keys = self.keys
        promoter = keys.lineage(promoter_key) if keys and promoter_key else []
        approver = keys.lineage(approver_key) if keys else []
        check_four_eyes(pid, promoter, approver, promoted_by)

    def _unpinned_champion_digest(
        self, current: tuple[object, Endpoint] | None, name: str, mode: str
    ) -> str | None:
        """The registry's digest for a champion an older manifest left unpinned.

        Only needed when the champion stays (canary, shadow); pinned once, Git keeps it.
        """
        if current is None or mode == "champion" or current[1].spec.champion.digest:
            return None
        return self.registry.get(f"{name}/{current[1].spec.champion.version}").digest

    def _branch_ref(self, branch: str) -> str | None:
        """The ref of a promotion branch: the remote's copy when there is a remote."""
        if self.repo.has_remote() and self.repo.git.rev_parse(f"origin/{branch}"):
            return f"origin/{branch}"
        return branch if self.repo.git.rev_parse(f"refs/heads/{branch}") else None

    def _pending(self) -> list[Promotion]:
        git, main = self.repo.git, self.repo.main
        names = set(git.branches(f"{BRANCH_PREFIX}*"))
        if self.repo.has_remote():
            names |= set(git.branches(f"{BRANCH_PREFIX}*", remote=True))
        out = []
        for name in sorted(names):
            ref = self._branch_ref(name)
            if ref is None or git.is_ancestor(ref, main):
                continue  # merged: approved already
            try:
                out.append(promotion_from_commit(git.log(ref, max_count=1)[0], name))
            except InvalidInput:
                continue  # a branch under promotion/ that Pavedpath did not write
        return out

    def _refuse_if_pending(self, endpoint: str, env: str) -> None:
        for p in self._pending():
            if (p.endpoint, p.env) == (endpoint, env):
                raise Conflict(
                    f"promotion {p.id} of {p.model} v{p.to_version} to {env}/{endpoint} is "
                    f"waiting for an approval; approve it first (paved approve {p.id})",
                    rule="promotion_pending",
                )

    def _missing(self, pid: str) -> Conflict | NotFound:
        done = self.repo.git.log(self.repo.main, first_parent=True, grep=f"{t.PROMOTION_ID}: {pid}")
        approved = [c for c in done if c.trailers.get(t.ACTION) == "approve"]
        if approved:
            return Conflict(
                f"promotion {pid} was approved already in {approved[0].sha[:12]}",
                rule="promotion_approved",
            )
        return NotFound(
            f"no pending promotion {pid}; `paved gitops pending` lists them",
            rule="promotion_id",
        )
