"""A bounded HTTP/1.1 load generator on raw asyncio protocols (uvloop + httptools).

Client overhead must stay far below what is measured (a gateway adds well under a
millisecond), so each connection is a bare protocol object parsing responses with
httptools, not an HTTP client library. Every run is bounded by a request count and a
wall-clock deadline, every request by a timeout (a server that hangs or fails costs
errors, counted, never an unbounded run), and only loopback addresses are accepted.

    python -m tests.bench.loadgen unary URL [URL ...] --conc 16 --n 100000 --secs 4
    python -m tests.bench.loadgen stream URL --conc 16 --n 96 --secs 120 --body '{...}'

Connection ``i`` goes to ``URL[i % len(URLs)]``. Prints one JSON line: latency
percentiles and requests/s (unary); output tokens/s, time to first token and
end-to-end time (stream). Tokens are read from the final ``usage`` event when the
server sends one, else counted as text events. Run it in its own process so the load
generator and the server under test do not share an event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
import uvloop

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_TEXT_EVENT = re.compile(rb'"(?:text|content)": ?"[^"]')
_USAGE_TOKENS = re.compile(rb'"completion_tokens": ?(\d+)')


def pct(xs: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by nearest rank; None for no samples."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1e3, 3)


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    request: bytes

    @classmethod
    def build(cls, url: str, body: bytes, headers: dict[str, str]) -> Target:
        u = urlsplit(url)
        if u.hostname not in LOOPBACK or u.port is None:
            raise ValueError(f"loopback URLs with a port only, got {url!r}")
        lines = [
            f"POST {u.path or '/'} HTTP/1.1",
            f"Host: {u.hostname}:{u.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        return cls(u.hostname, u.port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


@dataclass
class Response:
    status: int = 0
    body: bytearray = field(default_factory=bytearray)
    first_text_at: float | None = None


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response = Response()
        self.done: asyncio.Future[Response] | None = None
        self.watch_text = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("connection closed"))

    def _fail(self, exc: BaseException) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)

    # httptools callbacks
    def on_status(self, _status: bytes) -> None:
        self.response.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        r = self.response
        if self.watch_text and r.first_text_at is None and _TEXT_EVENT.search(body):
            r.first_text_at = time.perf_counter()
        r.body += body

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.response)

    async def send(self, request: bytes, *, watch_text: bool = False) -> Response:
        assert self.transport is not None
        self.response = Response()
        self.watch_text = watch_text
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.done

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(t: Target) -> Connection:
    _, conn = await asyncio.get_running_loop().create_connection(Connection, t.host, t.port)
    return conn


@dataclass
class Budget:
    """Shared bound on requests and time across workers."""

    remaining: int
    deadline: float

    def take(self) -> bool:
        if self.remaining <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.remaining -= 1
        return True


async def run_unary(
    targets: list[Target], conc: int, n: int, secs: float, warmup: int, timeout: float
) -> dict[str, Any]:
    """``conc`` keep-alive connections, each sending its next request when the previous
    is answered, until ``n`` requests or ``secs`` have gone by (after ``warmup``
    requests per connection, themselves bounded by ``secs``).

    A request unanswered after ``timeout`` seconds, a refused or broken connection and
    a status other than 200 count as errors (the connection is opened again); only
    answered 200s give latencies and requests/s. So a run lasts at most about
    ``2 * (secs + timeout)`` whatever the server does."""
    errors = warmup_errors = 0
    conns: list[Connection | None] = [None] * conc

    async def connected(i: int) -> Connection:
        conn = conns[i]
        if conn is None or conn.closed:
            conn = await asyncio.wait_for(connect(targets[i % len(targets)]), timeout)
            conns[i] = conn
        return conn

    def drop(i: int) -> None:
        conn, conns[i] = conns[i], None
        if conn is not None:
            conn.close()

    async def once(i: int) -> Response | None:
        """One request on connection ``i``; None (and the connection dropped) on failure."""
        try:
            conn = await connected(i)
            return await asyncio.wait_for(conn.send(targets[i % len(targets)].request), timeout)
        except (OSError, TimeoutError, httptools.HttpParserError):
            drop(i)
            return None

    async def warm(i: int, deadline: float) -> None:
        nonlocal warmup_errors
        try:
            await connected(i)  # so the first measured request does not pay for connecting
        except (OSError, TimeoutError):
            warmup_errors += 1
        for _ in range(warmup):
            if time.perf_counter() >= deadline:
                return
            r = await once(i)
            warmup_errors += r is None or r.status != 200

    warm_deadline = time.perf_counter() + secs
    await asyncio.gather(*(warm(i, warm_deadline) for i in range(conc)))
    lat: list[float] = []
    budget = Budget(n, time.perf_counter() + secs)

    async def worker(i: int) -> None:
        nonlocal errors
        while budget.take():
            t0 = time.perf_counter()
            r = await once(i)
            if r is None or r.status != 200:
                errors += 1
                continue
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(conc)))
    elapsed = time.perf_counter() - t0
    for i in range(conc):
        drop(i)
    return {
        "mode": "unary",
        "conc": conc,
        "n": len(lat),
        "errors": errors,
        "warmup_errors": warmup_errors,
        "secs": round(elapsed, 3),
        "rps": round(len(lat) / elapsed, 1),
        "p50_ms": ms(pct(lat, 0.5)),
        "p99_ms": ms(pct(lat, 0.99)),
        "mean_ms": ms(statistics.fmean(lat)) if lat else None,
    }


def completion_tokens(body: bytes) -> int:
    """Output tokens of one stream: the last usage event's count, else text events."""
    found = _USAGE_TOKENS.findall(body)
    if found:
        return int(found[-1])
    return len(_TEXT_EVENT.findall(body))


async def run_stream(
    targets: list[Target], conc: int, n: int, secs: float, timeout: float
) -> dict[str, Any]:
    ttft: list[float] = []
    e2e: list[float] = []
    tokens: list[int] = []
    errors = 0
    budget = Budget(n, time.perf_counter() + secs)

    async def worker(t: Target) -> None:
        nonlocal errors
        conn: Connection | None = None
        while budget.take():
            try:
                if conn is None or conn.closed:
                    conn = await asyncio.wait_for(connect(t), timeout)
                t0 = time.perf_counter()
                r = await asyncio.wait_for(conn.send(t.request, watch_text=True), timeout)
            except (OSError, TimeoutError, httptools.HttpParserError):
                errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                continue
            if r.status != 200 or r.first_text_at is None:
                errors += 1
                continue
            e2e.append(time.perf_counter() - t0)
            ttft.append(r.first_text_at - t0)
            tokens.append(completion_tokens(bytes(r.body)))
        if conn is not None:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(targets[i % len(targets)]) for i in range(conc)))
    elapsed = time.perf_counter() - t0
    return {
        "mode": "stream",
        "conc": conc,
        "n": len(ttft),
        "errors": errors,
        "secs": round(elapsed, 3),
        "tokens": sum(tokens),
        "min_tokens": min(tokens, default=0),
        "tok_per_s": round(sum(tokens) / elapsed, 1),
        "ttft_p50_ms": ms(pct(ttft, 0.5)),
        "ttft_p99_ms": ms(pct(ttft, 0.99)),
        "e2e_p50_ms": ms(pct(e2e, 0.5)),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=["unary", "stream"])
    ap.add_argument("urls", nargs="+")
    ap.add_argument("--conc", type=int, default=1)
    ap.add_argument("--n", type=int, default=2000, help="requests (streams) at most")
    ap.add_argument("--secs", type=float, default=4.0, help="wall-clock bound")
    ap.add_argument("--warmup", type=int, default=20, help="unary: requests per connection")
    ap.add_argument(
        "--timeout",
        type=float,
        help="seconds one request (one whole stream) may take before it counts as an "
        "error; default 10 (unary), secs + 30 (stream)",
    )
    ap.add_argument("--body", required=True)
    ap.add_argument("--header", action="append", default=[], help="'Name: value'")
    a = ap.parse_args(argv)
    headers = dict(h.split(": ", 1) for h in a.header)
    targets = [Target.build(u, a.body.encode(), headers) for u in a.urls]
    work = (
        run_unary(targets, a.conc, a.n, a.secs, a.warmup, a.timeout or 10.0)
        if a.mode == "unary"
        else run_stream(targets, a.conc, a.n, a.secs, a.timeout or a.secs + 30)
    )
    print(json.dumps(uvloop.run(work)), flush=True)


if __name__ == "__main__":
    main()
