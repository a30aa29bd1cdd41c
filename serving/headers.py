"""The headers and markers the gateway and the replicas share: one place for each name.

Sent by the gateway to replicas (replicas may read them, never trust them for auth; the
gateway has already authenticated), and the gateway's own response headers:

- ``x-paved-endpoint``: endpoint name (what the client sent as ``model``)
- ``x-paved-model-version``: the registered version this replica serves (replicas send
  it back; the gateway adds it to its answers)
- ``x-paved-cohort``: ``champion`` | ``challenger`` | ``shadow``
- ``x-paved-team``: the calling key's team
- ``x-paved-upstream-id``: a fresh hex id per forwarded request, for aborted usage
- ``x-paved-internal-token``: the per-deployment secret a replica requires
  (``serving.internal_auth``)

Read by the gateway from clients: ``x-paved-user`` (sticky assignment) and
``x-request-id``. Streams from replicas end with the :data:`USAGE_COMMENT_PREFIX`
comment (see ``serving.backends.base``).
"""

from __future__ import annotations

from typing import Final

ENDPOINT: Final = b"x-paved-endpoint"
MODEL_VERSION: Final = b"x-paved-model-version"
COHORT: Final = b"x-paved-cohort"
TEAM: Final = b"x-paved-team"
USER: Final = b"x-paved-user"
UPSTREAM_ID: Final = b"x-paved-upstream-id"
INTERNAL_TOKEN: Final = b"x-paved-internal-token"
REQUEST_ID: Final = b"x-request-id"

USAGE_COMMENT_PREFIX: Final = b": paved-usage "
"""Starts the SSE comment line a replica ends every stream with (its token counts)."""
