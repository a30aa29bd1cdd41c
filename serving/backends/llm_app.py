"""The LLM replica's HTTP API: OpenAI routes, ``/v1/models`` and ``/health``.

Thin routes over an :class:`OpenAIModel` (:class:`~serving.backends.llm.LLMBackend` is
one): read and validate the body, call the backend, write its answer. Every error
leaves in OpenAI's shape with the status of the :class:`~paved.errors.PavedError`
behind it (503s with ``Retry-After``), so any OpenAI SDK reports it properly.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paved.errors import MethodNotAllowed, NotFound, PavedError
from serving import asgi
from serving.backends.base import BackendConfig
from serving.backends.llm_outputs import Stream
from serving.backends.llm_stream import ClientDisconnected, SSEResponse, until_disconnect
from serving.backends.llm_usage import AbortedUsage, valid_upstream_id
from serving.headers import MODEL_VERSION, UPSTREAM_ID
from serving.protocol.openai import ChatCompletionRequest, CompletionRequest, parse_request
from serving.protocol.openai_responses import ModelList, error_response

if TYPE_CHECKING:
    from pydantic import BaseModel

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # far above any prompt that fits a context; refuses abuse early
JSON = "application/json"


class OpenAIModel(Protocol):
    """What the routes need from a backend; :class:`~serving.backends.llm.LLMBackend` is
    one. The backend builds its app from this module, so this module never imports it."""

    @property
    def config(self) -> BackendConfig: ...
    @property
    def aborted(self) -> AbortedUsage: ...
    @property
    def ready(self) -> bool: ...
    def complete(self, request: CompletionRequest) -> Coroutine[Any, Any, BaseModel | Stream]: ...
    def chat(self, request: ChatCompletionRequest) -> Coroutine[Any, Any, BaseModel | Stream]: ...
    def models(self) -> ModelList: ...
    def stats(self) -> BaseModel: ...
    def stream_closed(
        self, stream: Stream, disconnected: bool, upstream_id: str | None
    ) -> None: ...
    def client_left(self) -> None: ...


def build_app(backend: OpenAIModel) -> Starlette:
    """The ASGI app serving ``backend``."""
    headers = {MODEL_VERSION.decode(): str(backend.config.version)}

    def answer(result: BaseModel | Stream, upstream_id: str | None) -> Response:
        if isinstance(result, Stream):
            stream = result
            return SSEResponse(
                stream.events,
                on_close=lambda gone: backend.stream_closed(stream, gone, upstream_id),
                headers=headers,
            )
        return Response(result.model_dump_json(), media_type=JSON, headers=headers)

    async def respond(request: Request, work: Coroutine[Any, Any, BaseModel | Stream]) -> Response:
        upstream_id = valid_upstream_id(request.headers.get(UPSTREAM_ID.decode()))
        try:
            return answer(await until_disconnect(work, request.receive), upstream_id)
        except ClientDisconnected:
            backend.client_left()
            return Response(status_code=499)  # nobody reads it; nginx's "client closed"

    async def completions(request: Request) -> Response:
        body = parse_request(CompletionRequest, await _read_body(request))
        return await respond(request, backend.complete(body))

    async def chat_completions(request: Request) -> Response:
        body = parse_request(ChatCompletionRequest, await _read_body(request))
        return await respond(request, backend.chat(body))

    async def aborted_usage(request: Request) -> Response:
        """The usage of a stream whose client left (see ``llm_usage``); once, then gone."""
        upstream_id = valid_upstream_id(request.path_params["upstream_id"])
        usage = None if upstream_id is None else await backend.aborted.take(upstream_id, 2.0)
        if usage is None:
            raise NotFound("no usage recorded under that id", rule="upstream_id")
        return Response(usage.model_dump_json(), media_type=JSON)

    async def models(request: Request) -> Response:
        return Response(backend.models().model_dump_json(), media_type=JSON)

    async def health(request: Request) -> Response:
        status = 200 if backend.ready else 503
        return Response(backend.stats().model_dump_json(), status_code=status, media_type=JSON)

    return Starlette(
        routes=[
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/paved/usage/{upstream_id}", aborted_usage, methods=["GET"]),
        ],
        exception_handlers={
            PavedError: _paved_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )


async def _read_body(request: Request) -> bytes:
    return await asgi.read_body(request.receive, MAX_BODY_BYTES)


def _error(err: PavedError) -> Response:
    headers = {k.decode(): v.decode() for k, v in asgi.error_headers(err)}
    body = error_response(err).model_dump_json()
    return Response(body, status_code=err.status, media_type=JSON, headers=headers)


async def _paved_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PavedError)
    return _error(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (unknown path, wrong method) as Pavedpath errors."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return _error(MethodNotAllowed(request.method, allow))
    return _error(NotFound(f"no route {request.url.path}", rule="route"))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return _error(PavedError("internal error"))
