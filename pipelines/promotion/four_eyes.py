"""Four eyes on authenticated identities: who may approve whose promotion.

An approval compares API keys, never names from the environment. Each key records
the key that minted it and who holds it (``serving.keys``), so the check follows the
minting chains of both keys (nearest first: the key, its minter, that key's minter,
...). An approval is refused when

- it is the promoter's own key, or the two keys have the same holder;
- the promoter's key minted the approver's key, directly or through keys it minted
  (an admin minting an approver key for itself), or the approver's key minted the
  promoter's;
- a key held by the promoter's holder minted the approver's key (a second admin key
  of the same person minting the approver key), or the other way round;
- a holder is unknown (keys from before holders were recorded) or a key is unknown.

What it cannot see: an admin who mints two keys for holders that do not exist and uses
both. ``paved keys list`` shows every key with its holder and minter for that audit.
"""

from __future__ import annotations

from typing import Protocol

from paved.errors import PermissionDenied, Unauthenticated
from paved.schemas import Actor, KeyLink

KEY_PREFIX = "key:"


class KeyDirectory(Protocol):
    """The key store as four eyes needs it."""

    def lineage(self, key_id: str) -> list[KeyLink]:
        """The key and the keys that minted it, nearest first; empty if unknown."""
        ...


def require_key(actor: Actor, action: str) -> str:
    """The key id behind ``actor``; refuses a name from the environment."""
    if actor.key_id is None:
        raise Unauthenticated(
            f"{action} needs an authenticated identity: set PAVED_API_KEY to your API key "
            f"({actor.identity!r} is a name from the environment, not an identity)",
            rule="api_key_required",
        )
    return actor.key_id


def key_of(identity: str) -> str | None:
    """The key id of a ``key:<id>`` identity recorded in a commit, else None."""
    return identity.removeprefix(KEY_PREFIX) if identity.startswith(KEY_PREFIX) else None


def check_four_eyes(
    promotion_id: str, promoter: list[KeyLink], approver: list[KeyLink], promoted_by: str
) -> None:
    """Refuse unless the approver's key is independent of the promoter's (see module)."""
    if not promoter or not approver:
        who = promoted_by if not promoter else "the approving key"
        _refuse(
            promotion_id,
            promoted_by,
            f"{who} is not a key the key store knows, so the two identities cannot be compared",
            rule="four_eyes_unverifiable",
        )
    p, a = promoter[0], approver[0]
    if p.holder is None or a.holder is None:
        _refuse(
            promotion_id,
            promoted_by,
            "a key without a recorded holder cannot take part in an approval; mint a new "
            "key with --holder",
            rule="four_eyes_unverifiable",
        )
    p_ids, a_ids = {x.key_id for x in promoter}, {x.key_id for x in approver}
    p_holders = {x.holder for x in promoter if x.holder is not None}
    a_holders = {x.holder for x in approver if x.holder is not None}
    reason = None
    if a.key_id == p.key_id:
        reason = f"key:{a.key_id} is the promoter's own key"
    elif a.holder == p.holder:
        reason = f"key:{a.key_id} has the same holder ({a.holder}) as the promoter's key"
    elif p.key_id in a_ids:
        reason = (
            f"key:{a.key_id} was minted by the promoter's key (directly or through keys it minted)"
        )
    elif a.key_id in p_ids:
        reason = f"key:{a.key_id} minted the promoter's key"
    elif p.holder in a_holders:
        reason = f"key:{a.key_id} was minted by a key held by the promoter ({p.holder})"
    elif a.holder in p_holders:
        reason = f"the promoter's key was minted by a key held by the approver ({a.holder})"
    if reason is not None:
        _refuse(promotion_id, promoted_by, reason, rule="four_eyes")


def _refuse(promotion_id: str, promoted_by: str, reason: str, *, rule: str) -> None:
    raise PermissionDenied(
        f"promotion {promotion_id} was made by {promoted_by}; it needs an approval by a "
        f"different identity with the role 'approver', independent of the promoter: {reason}",
        rule=rule,
    )
