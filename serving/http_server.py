"""Run an ASGI app on uvicorn inside an already running event loop (a Ray replica).

The socket is bound here (port 0 means any free port, ``reuse_port`` lets several
gateway replicas on one node share the public port) and handed to uvicorn, so the
address is known before the first request and no port race is possible.

Slow or idle clients cannot hold connections (:class:`ConnectionLimits`): uvicorn's
keep-alive timeout closes a connection idle between requests, and a small subclass of
its httptools protocol adds what uvicorn lacks: a deadline for the request head (from
the connection or the request's first byte to the end of its headers), a deadline for
the body, and a bound on open connections (past it a new connection is closed at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.asgi import ASGIApp


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0  # connect (or first byte) to the end of the headers
    body_timeout_s: float = 60.0  # end of headers to the end of the body
    keep_alive_timeout_s: float = 5.0  # idle between requests on one connection
    max_connections: int = 4096  # open connections per server; past it: closed at once


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with head and body deadlines and a connection bound."""

    class Guarded(HttpToolsProtocol):
        _timer: asyncio.TimerHandle | None = None
        _refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= limits.max_connections:
                self._refused = True
                self.transport = transport
                transport.abort()
                return
            super().connection_made(transport)
            self._arm(limits.header_timeout_s)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self._refused:
                super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm(limits.header_timeout_s)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._arm(limits.body_timeout_s)

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()
            if self.cycle is not None and self.cycle.response_complete and not self.pipeline:
                # Answered before the body was read (401, 413): idle from here on.
                self._unset_keepalive_if_required()
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )

        def _arm(self, delay: float) -> None:
            self._disarm()
            self._timer = self.loop.call_later(delay, self._expire)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expire(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return Guarded


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Inside a Ray worker the process's signals belong to Ray.
        yield


class EmbeddedServer:
    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int = 0,
        *,
        reuse_port: bool = False,
        backlog: int = 2048,
        lifespan: Literal["auto", "on", "off"] = "off",
        limits: ConnectionLimits | None = None,
        **config: Any,
    ) -> None:
        limits = limits or ConnectionLimits()
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        cfg = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            http=guarded_protocol(limits),
            loop="none",
            lifespan=lifespan,
            timeout_keep_alive=limits.keep_alive_timeout_s,  # type: ignore[arg-type]  # a float works
            timeout_graceful_shutdown=30,
            **config,
        )
        self.server = _Server(cfg)
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.server.serve([self.sock]))

    async def wait_started(self, timeout_s: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.server.started:
            if self._task is not None and self._task.done():
                self._task.result()
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the HTTP server did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (uvicorn's graceful shutdown)."""
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
