"""The gateway's client to model replicas: pooled keep-alive HTTP/1.1 on httptools.

Measured on the 2-core machines (docs/benchmarks.md): httpx adds ~1.2 ms per forwarded
request and tops out near 400 req/s; aiohttp ~0.35 ms; this client ~0.2 ms and several
thousand req/s, because it does only what a hop between our own processes needs:
one request per connection at a time, ``content-length`` bodies out, chunked or sized
bodies in, parsed by the same C parser uvicorn uses.

Which failures may be retried matters: a request that may have reached a replica is
never sent again (a POST may have run). Only a failed connect (:class:`ReplicaUnreachable`,
nothing written) is safe to send elsewhere, and a GET on a kept-alive connection the
replica closed. Idle connections are reused only while younger than ``keepalive_s``,
shorter than the replicas' own keep-alive timeout (uvicorn: 5 s), so a POST is not
written to a connection the replica is closing.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httptools

from paved.errors import BackendError, ReplicaUnreachable, Unavailable, UpstreamTimeout

_END = object()
_IDEMPOTENT = frozenset({"GET", "HEAD"})


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


class UpstreamBody:
    """The body of a streamed response, chunk by chunk; closing it early closes the
    connection, which makes the replica abort the generation."""

    def __init__(self, pool: UpstreamPool, target: str, conn: _Connection) -> None:
        pending = conn.pending
        assert pending is not None
        assert pending.queue is not None
        self._pool = pool
        self._target = target
        self._conn = conn
        self._queue = pending.queue
        self._done = False

    async def read(self) -> bytes | None:
        """The next chunk; ``None`` once the response is complete.

        Raises :class:`~paved.errors.BackendError` if the replica broke off the stream,
        or the exception given to :meth:`interrupt`.
        """
        item = await self._queue.get()
        if item is _END:
            self._finish(reuse=True)
            return None
        if isinstance(item, BaseException):
            self._finish(reuse=False)
            if isinstance(item, ConnectionError | BackendError):
                raise BackendError(
                    "the model replica broke off the stream", rule="replica_stream_broken"
                ) from item
            raise item
        assert isinstance(item, bytes)
        return item

    def interrupt(self, exc: BaseException) -> None:
        """Make the pending (or next) :meth:`read` raise ``exc`` at once."""
        if not self._done:
            self._queue.put_nowait(exc)

    def close(self) -> None:
        self._finish(reuse=False)

    def _finish(self, *, reuse: bool) -> None:
        if self._done:
            return
        self._done = True
        if reuse:
            self._pool._release(self._target, self._conn)
        else:
            self._conn.pending = None
            self._conn.close()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            while (chunk := await self.read()) is not None:
                yield chunk
        finally:
            self.close()


class UpstreamPool:
    """Idle keep-alive connections per ``host:port``, reused while young."""

    def __init__(
        self,
        *,
        max_idle_per_target: int = 256,
        timeout_s: float = 300.0,
        connect_timeout_s: float = 5.0,
        keepalive_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle: dict[str, collections.deque[tuple[float, _Connection]]] = (
            collections.defaultdict(collections.deque)
        )
        self.max_idle = max_idle_per_target
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self._clock = clock

    async def _connect(self, target: str) -> _Connection:
        host, _, port = target.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(_Connection, host, int(port))
        except (OSError, TimeoutError, ValueError) as exc:
            raise ReplicaUnreachable(
                f"model replica {target} is unreachable",
                retry_after_s=1,
                rule="replica_unreachable",
            ) from exc
        return conn

    def _acquire_idle(self, target: str) -> _Connection | None:
        q = self._idle[target]
        oldest = self._clock() - self.keepalive_s
        while q and q[0][0] < oldest:
            q.popleft()[1].close()
        while q:
            _, conn = q.pop()
            if not conn.closed:
                return conn
        return None

    def _release(self, target: str, conn: _Connection) -> None:
        conn.pending = None
        if conn.closed or not conn.reusable or len(self._idle[target]) >= self.max_idle:
            conn.close()
        else:
            self._idle[target].append((self._clock(), conn))

    @staticmethod
    def _encode(
        method: str, target: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bytes:
        head = [f"{method} {path} HTTP/1.1\r\nhost: {target}\r\n".encode()]
        head.extend(k + b": " + v + b"\r\n" for k, v in headers)
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        return b"".join(head) + body

    async def _send(
        self, target: str, method: str, request: bytes, streaming: bool
    ) -> tuple[_Connection, UpstreamResponse]:
        conn = self._acquire_idle(target)
        reused = conn is not None
        if conn is None:
            conn = await self._connect(target)  # ReplicaUnreachable: nothing was written
        try:
            try:
                return conn, await self._exchange(conn, request, streaming)
            except ConnectionResetError:
                conn.close()
                if not (reused and not conn.got_bytes and method in _IDEMPOTENT):
                    raise
            # A kept-alive connection closed under an idempotent request: ask again.
            conn = await self._connect(target)
            return conn, await self._exchange(conn, request, streaming)
        except ConnectionResetError:
            conn.close()
            raise Unavailable(
                f"model replica {target} dropped the request", rule="replica_dropped"
            ) from None
        except TimeoutError:
            conn.close()
            raise UpstreamTimeout(
                f"model replica {target} did not answer in {self.timeout_s:g}s",
                rule="upstream_timeout",
            ) from None
        except BaseException:  # cancelled (the client left): the replica must see it
            conn.close()
            raise

    async def _exchange(
        self, conn: _Connection, request: bytes, streaming: bool
    ) -> UpstreamResponse:
        async with asyncio.timeout(self.timeout_s):
            return await conn.start(request, streaming)

    async def request(
        self,
        target: str,
        method: str,
        path: str,
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> UpstreamResponse:
        """A whole request and response. Cancelling it closes the connection."""
        conn, resp = await self._send(
            target, method, self._encode(method, target, path, headers or [], body), False
        )
        self._release(target, conn)
        return resp

    async def stream(
        self,
        target: str,
        path: str,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> tuple[UpstreamResponse, UpstreamBody]:
        """POST and return the status/headers at once and the body as it arrives."""
        conn, resp = await self._send(
            target, "POST", self._encode("POST", target, path, headers or [], body), True
        )
        return resp, UpstreamBody(self, target, conn)

    def close(self) -> None:
        for q in self._idle.values():
            while q:
                q.pop()[1].close()
