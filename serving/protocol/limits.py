"""The endpoint's per-request caps, checked on the raw JSON at the gateway.

This runs on every request before it reaches a replica, so it reads the decoded JSON
directly instead of building a full request model (the replica validates the request
fully and checks the prompt's token count against the model's context, which needs
the tokenizer). Every refusal names the limit.
"""

from __future__ import annotations

from typing import Any

from paved.errors import InvalidInput, LimitExceeded
from paved.manifest import Limits


def _int_field(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer", rule="type", details={"param": name})
    if value < 0:
        raise InvalidInput(f"{name} must not be negative", rule="range", details={"param": name})
    return value


def check_openai_limits(doc: dict[str, Any], limits: Limits, *, chat: bool) -> None:
    """Refuse a completion request that asks for more than the endpoint allows."""
    for name in ("max_tokens", "max_completion_tokens"):
        n = _int_field(doc, name)
        if n is not None and n > limits.max_tokens:
            raise LimitExceeded(
                f"{name} {n} exceeds this endpoint's limit of {limits.max_tokens}",
                rule="max_tokens",
                details={"param": name},
            )
    n = _int_field(doc, "n")
    if n is not None and n > limits.max_n:
        raise LimitExceeded(
            f"n {n} exceeds this endpoint's limit of {limits.max_n}",
            rule="max_n",
            details={"param": "n"},
        )
    logprobs = doc.get("top_logprobs") if chat else doc.get("logprobs")
    name = "top_logprobs" if chat else "logprobs"
    if logprobs is not None and not isinstance(logprobs, bool):
        count = _int_field(doc, name)
        if count is not None and count > limits.max_logprobs:
            raise LimitExceeded(
                f"{name} {count} exceeds this endpoint's limit of {limits.max_logprobs}",
                rule="max_logprobs",
                details={"param": name},
            )
    key = "messages" if chat else "prompt"
    if key not in doc:
        raise InvalidInput(f"'{key}' is required", rule="required", details={"param": key})
    stream = doc.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidInput("stream must be a boolean", rule="type", details={"param": "stream"})
