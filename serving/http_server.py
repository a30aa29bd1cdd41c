"""Run an ASGI app on uvicorn inside an already running event loop (a Ray replica).

The socket is bound here (port 0 means any free port, ``reuse_port`` lets several
gateway replicas on one node share the public port) and handed to uvicorn, so the
address is known before the first request and no port race is possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn

from serving.backends.base import ASGIApp


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
        **config: Any,
    ) -> None:
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
            http="httptools",
            loop="none",
            lifespan=lifespan,
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
