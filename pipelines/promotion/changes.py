"""The manifest edit a promotion makes, as a pure function of the manifest before it.

The raw YAML document is edited, not re-rendered from the model, so fields a person
wrote (and their order) survive; the result is validated as an :class:`Endpoint`
before anything is written.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paved.documents import validate_document
from paved.errors import Conflict, InvalidInput
from paved.manifest import Endpoint
from pipelines.promotion.gate import Mode

_KEPT_CHALLENGER_FIELDS = ("interval", "sticky")


@dataclass(frozen=True)
class ManifestChange:
    document: dict[str, Any]
    endpoint: Endpoint
    from_version: int | None
    """The champion before the change (None for a new endpoint)."""


def mode_of(canary_steps: Sequence[int] | None, shadow: bool) -> Mode:
    if canary_steps is not None and shadow:
        raise InvalidInput("give canary steps or shadow, not both", rule="canary_or_shadow")
    if canary_steps is not None:
        steps = list(canary_steps)
        if (
            not steps
            or any(not 1 <= s <= 100 for s in steps)
            or any(b <= a for a, b in itertools.pairwise(steps))
        ):
            raise InvalidInput(
                f"canary steps {steps} must be a strictly increasing list within 1..100",
                rule="canary_steps",
            )
        return "canary"
    return "shadow" if shadow else "champion"


def plan_promotion(
    current: tuple[dict[str, Any], Endpoint] | None,
    *,
    model: str,
    version: int,
    endpoint: str,
    env: str,
    team: str,
    mode: Mode,
    digest: str,
    canary_steps: Sequence[int] | None = None,
    champion_digest: str | None = None,
) -> ManifestChange:
    """The manifest after promoting ``model`` ``version`` on ``env``/``endpoint``.

    champion: the version replaces the champion and any challenger leaves;
    canary: it becomes the challenger at the first step's weight; shadow: it becomes
    a mirrored challenger receiving no live answers.

    ``digest`` is the version's manifest digest: the commit pins it, and the reconciler
    and replicas verify against it. ``champion_digest`` pins a champion that an older
    manifest left unpinned (it is ignored when the champion is pinned already).
    """
    if current is None:
        if mode != "champion":
            raise InvalidInput(
                f"{env}/{endpoint} has no champion yet; the first promotion sets the "
                "champion (leave out --canary/--shadow)",
                rule="no_champion",
            )
        doc: dict[str, Any] = {
            "apiVersion": "pavedpath/v1",
            "kind": "Endpoint",
            "metadata": {"name": endpoint, "env": env, "team": team},
            "spec": {"model": model, "champion": {"version": version, "digest": digest}},
        }
        return ManifestChange(document=doc, endpoint=_validate(doc), from_version=None)

    raw, before = current
    if before.spec.model != model:
        raise InvalidInput(
            f"{env}/{endpoint} serves model {before.spec.model!r}, not {model!r}",
            rule="endpoint_model",
        )
    champion = before.spec.champion.version
    if version == champion:
        raise Conflict(
            f"{model}/{version} is already the champion of {env}/{endpoint}", rule="no_change"
        )
    doc = copy.deepcopy(raw)
    spec = doc["spec"]
    if mode == "champion":
        spec["champion"] = {"version": version, "digest": digest}
        spec.pop("challenger", None)
    else:
        if before.spec.champion.digest is None and champion_digest is not None:
            spec["champion"] = {**spec["champion"], "digest": champion_digest}
        old = spec.get("challenger") or {}
        challenger: dict[str, Any] = {"version": version, "digest": digest, "mode": mode}
        if mode == "canary":
            assert canary_steps is not None
            challenger["steps"] = list(canary_steps)
            challenger["weight"] = canary_steps[0]
        challenger |= {k: old[k] for k in _KEPT_CHALLENGER_FIELDS if k in old}
        spec["challenger"] = challenger
    after = _validate(doc)
    if after == before:
        raise Conflict(f"{env}/{endpoint} already says this; nothing to change", rule="no_change")
    return ManifestChange(document=doc, endpoint=after, from_version=champion)


def _validate(doc: dict[str, Any]) -> Endpoint:
    return validate_document(Endpoint, doc, source="the promoted manifest", rule="manifest")
