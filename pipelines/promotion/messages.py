"""Commit messages of the promotion flow, and promotions read back from commits.

The trailers are the audit record (see ``pipelines.gitops.trailers``)::

    promote credit-risk v2 to prod/risk as canary 5,25,50,100

    credit-risk version 2 becomes the canary challenger of prod/risk (champion:
    version 1), starting at 5% of traffic.

    Gate: passed: auc 0.83 >= champion 0.81 - 0.01

    Paved-Action: promote
    Paved-Promotion-Id: p-1a2b3c4d
    Paved-Actor: alice
    Paved-Actor-Roles: ml-engineer
    Paved-Model: credit-risk
    Paved-Endpoint: risk
    Paved-Env: prod
    Paved-Mode: canary
    Paved-From-Version: 1
    Paved-To-Version: 2
    Paved-Gate: passed: auc 0.83 >= champion 0.81 - 0.01
"""

from __future__ import annotations

from typing import Literal

from paved.errors import InvalidInput
from paved.manifest import Endpoint
from paved.schemas import Actor
from pipelines.gitops import trailers as t
from pipelines.gitops.git import Commit
from pipelines.promotion.gate import GateOutcome
from pipelines.promotion.records import Promotion

NONE = "none"


def gate_text(outcome: GateOutcome | None) -> str:
    return f"passed: {outcome.summary}" if outcome else "none (no gate configured)"


def promote_message(
    p: Promotion, actor: Actor, steps: list[int] | None, *, new_team: str | None = None
) -> str:
    where = f"{p.env}/{p.endpoint}"
    if p.mode == "canary":
        how = f"as canary {','.join(map(str, steps or []))}"
        what = (
            f"becomes the canary challenger of {where}, starting at {(steps or [0])[0]}% of traffic"
        )
    elif p.mode == "shadow":
        how = "as shadow"
        what = f"becomes the shadow challenger of {where} (mirrored traffic, no live answers)"
    else:
        how = "as champion"
        what = f"becomes the champion of {where}"
    before = f"version {p.from_version}" if p.from_version else "none; a new endpoint"
    body = [
        f"{p.model} version {p.to_version} {what} (champion before: {before}).",
        f"Gate: {p.gate}",
    ]
    if new_team is not None:
        body.append(
            f"teams/{new_team}.yaml is created with the default policy (no budget, no GPU "
            "quota); change it through Git."
        )
    if p.state == "pending":
        body.append(f"Waits for an approval by another identity: paved approve {p.id}")
    return t.compose(
        f"promote {p.model} v{p.to_version} to {where} {how}",
        body,
        {
            t.ACTION: "promote",
            t.PROMOTION_ID: p.id,
            t.ACTOR: actor.identity,
            t.ACTOR_ROLES: ",".join(sorted(r.value for r in actor.roles)) or NONE,
            t.MODEL: p.model,
            t.ENDPOINT: p.endpoint,
            t.ENV: p.env,
            t.MODE: p.mode,
            t.FROM_VERSION: p.from_version or NONE,
            t.TO_VERSION: p.to_version,
            t.GATE: p.gate,
        },
    )


def approve_message(p: Promotion, actor: Actor) -> str:
    return t.compose(
        f"approve {p.id}: {p.model} v{p.to_version} to {p.env}/{p.endpoint} as {p.mode}",
        [f"Promoted by {p.actor}; approved by {actor.identity}.", f"Gate: {p.gate}"],
        {
            t.ACTION: "approve",
            t.PROMOTION_ID: p.id,
            t.ACTOR: actor.identity,
            t.ACTOR_ROLES: ",".join(sorted(r.value for r in actor.roles)) or NONE,
            t.PROMOTED_BY: p.actor,
            t.MODEL: p.model,
            t.ENDPOINT: p.endpoint,
            t.ENV: p.env,
            t.MODE: p.mode,
            t.FROM_VERSION: p.from_version or NONE,
            t.TO_VERSION: p.to_version,
            t.GATE: p.gate,
        },
    )


def rollback_message(reverted: Commit, before: Endpoint, after: Endpoint, actor: Actor) -> str:
    where = f"{after.metadata.env}/{after.name}"
    serving = newest_version(before)
    return t.compose(
        f"rollback {where}: revert {reverted.sha[:12]} ({reverted.subject})",
        [
            f"Restores the manifest from before {reverted.sha[:12]}: champion version "
            f"{after.spec.champion.version}"
            + (
                f", challenger version {after.spec.challenger.version}"
                if after.spec.challenger
                else ""
            )
            + f"; version {serving} stops receiving its traffic."
        ],
        {
            t.ACTION: "rollback",
            t.ACTOR: actor.identity,
            t.ACTOR_ROLES: ",".join(sorted(r.value for r in actor.roles)) or NONE,
            t.MODEL: after.spec.model,
            t.ENDPOINT: after.name,
            t.ENV: after.metadata.env,
            t.FROM_VERSION: serving,
            t.TO_VERSION: after.spec.champion.version,
            t.REVERTS: reverted.sha,
        },
    )


def newest_version(ep: Endpoint) -> int:
    """The version a rollback takes traffic from: the challenger, else the champion."""
    return ep.spec.challenger.version if ep.spec.challenger else ep.spec.champion.version


def promotion_from_commit(
    commit: Commit, branch: str, state: Literal["applied", "pending"] = "pending"
) -> Promotion:
    """A promotion as its commit's trailers record it (for approval and listing)."""
    tr = commit.trailers
    from_version = tr.get(t.FROM_VERSION, NONE)
    try:
        return Promotion.model_validate(
            {
                "id": tr[t.PROMOTION_ID],
                "state": state,
                "model": tr[t.MODEL],
                "endpoint": tr[t.ENDPOINT],
                "env": tr[t.ENV],
                "mode": tr[t.MODE],
                "from_version": None if from_version == NONE else from_version,
                "to_version": tr[t.TO_VERSION],
                "actor": tr[t.ACTOR],
                "commit": commit.sha,
                "branch": branch,
                "gate": tr.get(t.GATE, NONE),
            }
        )
    except (KeyError, ValueError) as exc:
        raise InvalidInput(
            f"{branch} ({commit.sha[:12]}) is not a promotion written by Pavedpath: "
            f"its Paved-* trailers are missing or malformed",
            rule="promotion_commit",
        ) from exc
