"""The one interface every model backend implements.

A model replica (a Ray Serve replica, see ``serving/replica.py``) builds a backend from
a verified local model directory, starts it, and serves ``backend.app()`` over its own
HTTP server. The gateway forwards validated requests to that server and reads back the
protocol's own responses (OpenAI JSON/SSE or KServe v2 JSON), so the replica API *is*
the public protocol, minus authentication.

Headers the gateway sends to replicas (replicas may read them, never trust them for
auth; the gateway has already authenticated; their names are in ``serving.headers``):

- ``x-paved-endpoint``: endpoint name (what the client sent as ``model``)
- ``x-paved-model-version``: the registered version this replica serves
- ``x-paved-cohort``: ``champion`` | ``challenger`` | ``shadow``
- ``x-paved-team``: the calling key's team

Streaming responses (SSE) end with a comment line the gateway consumes and strips::

    : paved-usage {"prompt_tokens": 12, "completion_tokens": 64, "cached_tokens": 0}

so tokens are metered whether or not the client asked for ``include_usage``. LLM replicas
add ``first_token_s`` (their own time to first token) and, when several sequences were
generated side by side (prompts x ``n``), ``sequences``. Streams
are sent with ``x-paved-upstream-id`` (a fresh hex id per request); if the client leaves
mid-stream, the gateway closes the connection (the replica aborts the generation) and
asks ``GET /paved/usage/{id}`` for what was generated up to the abort.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from serving.asgi import ASGIApp


class BackendConfig(BaseModel):
    """What a replica knows when it builds its backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(description="Endpoint name; clients send it as `model`.")
    model_name: str = Field(description="Registered model name.")
    version: int = Field(ge=1)
    model_dir: Path = Field(description="Verified local copy of the version's files.")
    max_model_len: int = Field(default=256, ge=16, description="LLM context length.")
    max_batch_rows: int = Field(default=1024, ge=1, description="Tabular rows per request.")
    max_concurrency: int = Field(
        default=64, ge=1, description="Requests in flight in this replica; past it: 503."
    )


class Backend(Protocol):
    """A loaded model serving one protocol."""

    @property
    def kind(self) -> Literal["llm", "tabular"]: ...

    async def start(self) -> None:
        """Load the model / start the engine. Called once, before ``app()`` serves."""

    async def stop(self) -> None:
        """Release the engine after in-flight requests finished."""

    @property
    def ready(self) -> bool: ...

    def app(self) -> ASGIApp:
        """The replica's HTTP API (the public protocol, no authentication)."""
