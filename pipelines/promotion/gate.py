"""The promotion gate: the check a candidate version must pass before Git is touched.

A gate is any callable taking a :class:`GateRequest` and returning a
:class:`GateOutcome`; the evaluation gates (``evaluation.gates.evaluate_gate``) plug in
through :func:`evaluation_gate`, tests pass their own. A refused gate raises before
the first write, so a refused promotion leaves the repository untouched.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from paved.errors import InvalidInput, PermissionDenied, Unauthenticated
from paved.manifest import Endpoint
from paved.schemas import Actor, Role

Mode = Literal["champion", "canary", "shadow"]
GATES_MODULE = "evaluation.gates"


class GateRequest(BaseModel):
    """What is being promoted where, and what it replaces."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    candidate_version: int
    champion_version: int | None = Field(description="The endpoint's champion now, if any.")
    endpoint: str
    env: str
    mode: Mode = Field(description="champion: replace it; canary/shadow: a challenger.")
    manifest: Endpoint | None = Field(description="The endpoint's manifest now, if any.")
    actor: str


class GateOutcome(BaseModel):
    """A gate's verdict; the summary goes into the commit, the details into errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    passed: bool
    summary: str = Field(description="One line: what was checked and the result.")
    rule: str | None = Field(default=None, description="The rule that failed, if one did.")
    details: dict[str, Any] = Field(default_factory=dict)


class Gate(Protocol):
    def __call__(self, request: GateRequest) -> GateOutcome: ...


def run_gate(gate: Gate | None, request: GateRequest) -> GateOutcome | None:
    """Ask the gate; a refusal raises :class:`InvalidInput` naming the failed rule."""
    if gate is None:
        return None
    outcome = gate(request)
    if not outcome.passed:
        failed = f" (rule {outcome.rule})" if outcome.rule else ""
        raise InvalidInput(
            f"the promotion gate refused {request.model}/{request.candidate_version} for "
            f"{request.env}/{request.endpoint}{failed}: {outcome.summary}; nothing was written",
            rule="promotion_gate",
            details={"gate_rule": outcome.rule, **outcome.details},
        )
    return outcome


def skip_gate(actor: Actor) -> Gate:
    """A gate that lets everything through, recorded as skipped; only an admin key gets one
    (the local, unauthenticated user never does, whatever the environment)."""
    if actor.key_id is None:
        raise Unauthenticated(
            "skipping the promotion gate needs an authenticated key with the role 'admin': "
            f"set PAVED_API_KEY ({actor.identity!r} is a name from the environment)",
            rule="api_key_required",
        )
    if not actor.has(Role.ADMIN):
        raise PermissionDenied(
            f"{actor.identity} may not skip the promotion gate: the role 'admin' is needed",
            rule="role",
        )

    def skipped(request: GateRequest) -> GateOutcome:
        return GateOutcome(passed=True, summary=f"skipped by {actor.identity} (admin)")

    return skipped


def evaluation_gate(registry: object, actor: Actor) -> Gate | None:
    """The evaluation gates as a :class:`Gate`, or None when they are not installed.

    Present when ``evaluation.gates`` has ``evaluate_gate``; the candidate is then
    evaluated and judged by ``evaluation.offline.gate_version`` against the endpoint's
    champion (the model's ``champion`` alias for a new endpoint), recorded as
    ``actor``. Imported lazily: the evaluation stack is heavy.
    """
    try:
        gates = importlib.import_module(GATES_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name in (GATES_MODULE, GATES_MODULE.split(".")[0]):
            return None
        raise  # the module is there but one of its imports is broken: say so
    if not hasattr(gates, "evaluate_gate"):
        return None
    gate_version = importlib.import_module("evaluation.offline").gate_version

    def gate(request: GateRequest) -> GateOutcome:
        candidate = f"{request.model}/{request.candidate_version}"
        against = (
            f"{request.model}/{request.champion_version}"
            if request.champion_version is not None
            else f"{request.model}@champion"
        )
        result = gate_version(registry, candidate, against, actor=actor).gate
        failed = [r for r in result.rules if not r.passed]
        return GateOutcome(
            passed=bool(result.passed),
            summary=str(result.summary()),
            rule=str(failed[0].rule) if failed else None,
            details={"rules": [r.model_dump(mode="json") for r in result.rules]},
        )

    return gate
