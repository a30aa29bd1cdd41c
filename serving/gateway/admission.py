"""The gateway's admission: the shared :class:`~serving.admission.Gate` with its refusals.

Per endpoint, more than ``max_inflight`` requests in flight answers 429 (that endpoint
is saturated; try later); past the gateway-wide bound, or while draining, 503. Both
carry ``Retry-After``.
"""

from __future__ import annotations

from paved.errors import PavedError, RateLimited, Unavailable
from serving.admission import Gate, Track


def _draining() -> PavedError:
    return Unavailable("the gateway is shutting down", retry_after_s=2)


def _gateway_full(limit: int) -> PavedError:
    return Unavailable(
        f"the gateway has {limit} requests in flight (limit {limit})",
        retry_after_s=1,
        rule="gateway_inflight",
    )


def _endpoint_full(endpoint: str, limit: int) -> PavedError:
    return RateLimited(
        f"endpoint {endpoint!r} has {limit} requests in flight, its limit",
        retry_after_s=1,
        rule="max_inflight",
    )


def admission(max_total: int, track: Track | None = None) -> Gate:
    """The gateway-wide gate: ``max_total`` in flight, each endpoint under its own bound."""
    return Gate(
        max_total, full=_gateway_full, key_full=_endpoint_full, closed=_draining, track=track
    )
