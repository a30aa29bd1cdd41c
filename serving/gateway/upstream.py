"""The gateway's client to model replicas: pooled keep-alive HTTP/1.1 on httptools.

Measured on the 2-core machines (docs/benchmarks.md): httpx adds ~1.2 ms per forwarded
request and tops out near 400 req/s; aiohttp ~0.35 ms; this client ~0.2 ms and several
thousand req/s, because it does only what a hop between our own processes needs:
one request per connection at a time, ``content-length`` bodies out, chunked or sized
bodies in, parsed by the same C parser uvicorn uses.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httptools

from paved.errors import BackendError, Unavailable

_END = object()


@dataclass
class UpstreamResponse:
    status: int
    headers: dict[bytes, bytes]
    body: bytes = b""


@dataclass
class _Pending:
    future: asyncio.Future[UpstreamResponse]
    streaming: bool
    queue: asyncio.Queue[object] | None = None
    parts: list[bytes] = field(default_factory=list)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.pending: _Pending | None = None
        self.headers: dict[bytes, bytes] = {}
        self.closed = False
        self.reusable = False
        self.got_bytes = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they quack the same.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BackendError(f"invalid response from replica: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionResetError("replica closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        p = self.pending
        if p is None:
            return
        if not p.future.done():
            p.future.set_exception(exc)
        elif p.queue is not None:
            p.queue.put_nowait(exc)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        p = self.pending
        if p is not None and p.streaming:
            p.queue = asyncio.Queue()
            p.future.set_result(UpstreamResponse(self.parser.get_status_code(), self.headers))

    def on_body(self, body: bytes) -> None:
        p = self.pending
        if p is None:
            return
        if p.queue is not None:
            p.queue.put_nowait(body)
        else:
            p.parts.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        p = self.pending
        if p is None:
            return
        if p.queue is not None:
            p.queue.put_nowait(_END)
        elif not p.future.done():
            p.future.set_result(
                UpstreamResponse(self.parser.get_status_code(), self.headers, b"".join(p.parts))
            )

    def start(self, request: bytes, streaming: bool) -> asyncio.Future[UpstreamResponse]:
        assert self.transport is not None
        self.headers = {}
        self.reusable = False
        self.got_bytes = False
        self.pending = _Pending(asyncio.get_running_loop().create_future(), streaming)
        self.transport.write(request)
        return self.pending.future

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Idle keep-alive connections per ``host:port``; a stale one is retried once."""

    def __init__(self, *, max_idle_per_target: int = 256, timeout_s: float = 300.0) -> None:
        self._idle: dict[str, collections.deque[_Connection]] = collections.defaultdict(
            collections.deque
        )
        self.max_idle = max_idle_per_target
        self.timeout_s = timeout_s

    async def _connect(self, target: str) -> _Connection:
        host, _, port = target.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, host, int(port)), timeout=5.0
            )
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"model replica {target} is unreachable", retry_after_s=1) from exc
        return conn

    def _acquire_idle(self, target: str) -> _Connection | None:
        q = self._idle[target]
        while q:
            conn = q.pop()
            if not conn.closed:
                return conn
        return None

    def _release(self, target: str, conn: _Connection) -> None:
        conn.pending = None
        if conn.closed or not conn.reusable or len(self._idle[target]) >= self.max_idle:
            conn.close()
        else:
            self._idle[target].append(conn)

    @staticmethod
    def _encode(
        method: str, target: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bytes:
        head = [f"{method} {path} HTTP/1.1\r\nhost: {target}\r\n".encode()]
        head.extend(k + b": " + v + b"\r\n" for k, v in headers)
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        return b"".join(head) + body

    async def _send(
        self, target: str, request: bytes, streaming: bool
    ) -> tuple[_Connection, UpstreamResponse]:
        conn = self._acquire_idle(target)
        reused = conn is not None
        if conn is None:
            conn = await self._connect(target)
        try:
            resp = await asyncio.wait_for(conn.start(request, streaming), self.timeout_s)
        except ConnectionResetError:
            conn.close()
            if reused and not conn.got_bytes:
                # The replica closed an idle connection as we reused it: nothing was
                # processed, so sending once more on a fresh connection is safe.
                conn = await self._connect(target)
                resp = await asyncio.wait_for(conn.start(request, streaming), self.timeout_s)
            else:
                raise Unavailable(f"model replica {target} dropped the request") from None
        except TimeoutError:
            conn.close()
            raise Unavailable(f"model replica {target} did not answer in time") from None
        return conn, resp

    async def request(
        self,
        target: str,
        method: str,
        path: str,
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> UpstreamResponse:
        """A whole request and response."""
        conn, resp = await self._send(
            target, self._encode(method, target, path, headers or [], body), False
        )
        self._release(target, conn)
        return resp

    async def stream(
        self,
        target: str,
        path: str,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> tuple[UpstreamResponse, AsyncIterator[bytes]]:
        """POST and return the status/headers at once and the body as it arrives.

        Closing the iterator early (client gone) closes the connection, which makes the
        replica abort the generation.
        """
        conn, resp = await self._send(
            target, self._encode("POST", target, path, headers or [], body), True
        )
        pending = conn.pending
        assert pending is not None
        assert pending.queue is not None
        queue = pending.queue

        async def body_iter() -> AsyncIterator[bytes]:
            finished = False
            try:
                while True:
                    item = await queue.get()
                    if item is _END:
                        finished = True
                        return
                    if isinstance(item, BaseException):
                        raise Unavailable("model replica broke off the stream") from item
                    assert isinstance(item, bytes)
                    yield item
            finally:
                if finished:
                    self._release(target, conn)
                else:
                    conn.close()

        return resp, body_iter()

    def close(self) -> None:
        for q in self._idle.values():
            while q:
                q.pop().close()
