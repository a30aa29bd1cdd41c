"""Server-sent events, and tying a generation's life to its client's connection.

A generation must not outlive the client that asked for it: tokens nobody reads cost
engine time other requests wait for. :class:`SSEResponse` and :func:`until_disconnect`
watch the ASGI ``http.disconnect`` message and cancel the generation when it comes;
cancelling (or closing) vLLM's ``generate`` iterator aborts the request in the engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing, suppress
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.responses import StreamingResponse

from serving.asgi import Receive, Scope, Send
from serving.headers import USAGE_COMMENT_PREFIX
from serving.protocol.openai_responses import Usage

T = TypeVar("T")

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse_data(payload: BaseModel) -> bytes:
    """One ``data:`` event; ``None`` fields are left out to keep per-token events small."""
    return b"data: " + payload.model_dump_json(exclude_none=True).encode() + b"\n\n"


def usage_comment(usage: Usage, first_token_s: float | None = None, sequences: int = 1) -> bytes:
    """The ``: paved-usage`` comment the gateway meters from (see ``base.py``).

    ``first_token_s``: seconds from the request reaching the engine to its first token,
    as the replica saw it (the gateway's own time to first token contains it).
    ``sequences``: how many were generated side by side (prompts x ``n``), so the
    gateway's inter-token latency is per sequence, not the completion tokens of all.
    """
    body: dict[str, int | float] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
    }
    if first_token_s is not None:
        body["first_token_s"] = round(first_token_s, 6)
    if sequences > 1:
        body["sequences"] = sequences
    return USAGE_COMMENT_PREFIX + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


class ClientDisconnected(Exception):
    """The client went away before its response was ready."""


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(work: Coroutine[Any, Any, T], receive: Receive) -> T:
    """Run ``work``; cancel it and raise :class:`ClientDisconnected` if the client leaves.

    Only for requests whose body has been read: every later ``receive()`` then waits for
    the disconnect.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            pending.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
    if task.cancelled():
        raise ClientDisconnected
    return task.result()


class SSEResponse(StreamingResponse):
    """A ``text/event-stream`` response that stops generating when the client leaves.

    ``on_close(disconnected)`` runs exactly once, however the stream ends, so the
    backend's concurrency slot is always released.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncGenerator[bytes, None],
        *,
        on_close: Callable[[bool], None],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(events, headers=SSE_HEADERS | (headers or {}))
        self._events = events
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = True
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            pump = asyncio.ensure_future(self._pump(send))
            watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
            try:
                await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (pump, watcher):
                    task.cancel()
                await asyncio.gather(pump, watcher, return_exceptions=True)
            disconnected = pump.cancelled() or pump.exception() is not None
        finally:
            await self._events.aclose()  # closes vLLM's iterator: the engine aborts
            self._on_close(disconnected)

    async def _pump(self, send: Send) -> None:
        async with aclosing(self._events):
            async for event in self._events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def merge_streams(
    streams: list[AsyncGenerator[T, None]],
) -> AsyncGenerator[tuple[int, T], None]:
    """Items of several iterators as they come, tagged with the iterator's index.

    Closing the merged iterator cancels every source, so no generation is left running.
    """
    if len(streams) == 1:
        async with aclosing(streams[0]) as only:
            async for item in only:
                yield 0, item
        return
    queue: asyncio.Queue[tuple[int, T] | BaseException | None] = asyncio.Queue()

    async def drain(index: int, stream: AsyncGenerator[T, None]) -> None:
        try:
            async with aclosing(stream):
                async for item in stream:
                    await queue.put((index, item))
            await queue.put(None)
        except Exception as exc:
            await queue.put(exc)

    tasks = [asyncio.ensure_future(drain(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            message = await queue.get()
            if message is None:
                remaining -= 1
            elif isinstance(message, BaseException):
                raise message
            else:
                yield message
    finally:
        for task in tasks:
            task.cancel()
        with suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
