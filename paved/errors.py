"""One error hierarchy for the whole platform.

Every error Pavedpath raises on purpose derives from :class:`PavedError`, carries an
HTTP status and a stable machine-readable ``code``, and (for input errors) the
``rule`` that refused the input, so the CLI, the gateway and the reconciler all
report the same thing the same way::

    PavedError                      500 internal_error
    ├── InvalidInput                400 invalid_input
    │   ├── InvalidName             400 invalid_name
    │   ├── InvalidSourceURI        400 invalid_source_uri
    │   ├── UnsafeModel             400 unsafe_model
    │   └── LimitExceeded           400 limit_exceeded
    ├── Unauthenticated             401 unauthenticated
    ├── PermissionDenied            403 permission_denied
    ├── NotFound                    404 not_found
    ├── MethodNotAllowed            405 method_not_allowed
    ├── Conflict                    409 conflict
    ├── DigestMismatch              422 digest_mismatch
    ├── RateLimited                 429 rate_limited
    ├── BackendError                502 backend_error
    ├── Unavailable                 503 unavailable
    │   └── ReplicaUnreachable      503 unavailable
    └── UpstreamTimeout             504 upstream_timeout

``RateLimited`` and ``Unavailable`` derive through :class:`RetryLater`, which holds the
``retry_after_s`` both carry.

Messages say what was wrong and which rule or limit applied; they never contain
secrets (API keys are never formatted into an error). A message quotes an offending
value through ``paved.text.quote`` (a short prefix), and every message is cut to
:data:`MAX_MESSAGE_CHARS` here, so no input comes back at its own size.
"""

from __future__ import annotations

from typing import Any, ClassVar

MAX_MESSAGE_CHARS = 2000


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 40] + f"... ({len(message)} characters, cut)"


class PavedError(Exception):
    """Base of every deliberate Pavedpath error."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        rule: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        message = _bounded(str(message))
        super().__init__(message)
        self.message = message
        self.rule = rule
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The error as the JSON body every surface returns."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.rule:
            body["rule"] = self.rule
        if self.details:
            body["details"] = self.details
        return body

    def __str__(self) -> str:
        return self.message


class InvalidInput(PavedError):
    """The caller's input broke a rule; nothing was changed."""

    status = 400
    code = "invalid_input"


class InvalidName(InvalidInput):
    """A model name, version, alias, team or endpoint name is not acceptable."""

    code = "invalid_name"


class InvalidSourceURI(InvalidInput):
    """A source URI points outside the stores Pavedpath accepts."""

    code = "invalid_source_uri"


class UnsafeModel(InvalidInput):
    """A model directory asks for remote code or carries pickled weights."""

    code = "unsafe_model"


class LimitExceeded(InvalidInput):
    """A request exceeds a configured limit (tokens, body size, ...)."""

    code = "limit_exceeded"


class Unauthenticated(PavedError):
    status = 401
    code = "unauthenticated"


class PermissionDenied(PavedError):
    """The caller is known but lacks the role or grant the action needs."""

    status = 403
    code = "permission_denied"


class NotFound(PavedError):
    status = 404
    code = "not_found"


class MethodNotAllowed(PavedError):
    """A known route called with the wrong HTTP method; ``allow`` names the right one."""

    status = 405
    code = "method_not_allowed"

    def __init__(self, method: str, allow: str) -> None:
        super().__init__(f"use {allow} on this route, not {method}", rule="http_method")
        self.allow = allow


class Conflict(PavedError):
    status = 409
    code = "conflict"


class DigestMismatch(PavedError):
    """An artifact's bytes do not match the digest recorded at registration."""

    status = 422
    code = "digest_mismatch"


class RetryLater(PavedError):
    """Base of the refusals a client should retry: they carry ``retry_after_s``, which
    every HTTP surface sends as ``Retry-After`` (see ``serving.asgi.retry_after``)."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class RateLimited(RetryLater):
    status = 429
    code = "rate_limited"


class BackendError(PavedError):
    """A dependency (MLflow, Git, Ray) failed in a way the caller cannot fix."""

    status = 502
    code = "backend_error"


class Unavailable(RetryLater):
    status = 503
    code = "unavailable"


class ReplicaUnreachable(Unavailable):
    """No connection to a model replica could be opened: nothing was sent to it, so the
    gateway may send the request to another replica (the only case it retries)."""


class UpstreamTimeout(PavedError):
    """A model replica stopped answering: a stream idle too long, a response too late."""

    status = 504
    code = "upstream_timeout"
