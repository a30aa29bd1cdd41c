"""The gateway: a raw ASGI application in front of every model replica.

Per request: authenticate the key (in-memory), route by endpoint, check the caller's
team and the endpoint's limits, admit or refuse at once (bounded in-flight), pick
champion or challenger, forward over a pooled keep-alive connection to a replica, and
record metrics. No web framework on this path: the measured cost of each layer is in
docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from typing import Any

from paved.errors import (
    InvalidInput,
    LimitExceeded,
    NotFound,
    PavedError,
    ReplicaUnreachable,
    Unavailable,
)
from paved.schemas import Role
from serving import asgi
from serving.asgi import Receive, Scope, Send
from serving.gateway import access, forward
from serving.gateway.admission import admission
from serving.gateway.auth import KeyCache
from serving.gateway.balance import Balancer
from serving.gateway.directory import Directory
from serving.gateway.limits import GatewayLimits
from serving.gateway.routing import Route, RouteTable, choose, user_id
from serving.gateway.shadow import Shadow
from serving.gateway.upstream import UpstreamPool
from serving.headers import (
    COHORT,
    ENDPOINT,
    INTERNAL_TOKEN,
    MODEL_VERSION,
    REQUEST_ID,
    TEAM,
    UPSTREAM_ID,
    USER,
)
from serving.keys import ApiKey
from serving.metrics import CONTENT_TYPE, GatewayMetrics
from serving.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    check_limits,
    parse_request,
    quote,
)

log = logging.getLogger(__name__)

_OPENAI_PATHS = {b"/v1/chat/completions", b"/v1/completions"}


class Gateway:
    def __init__(
        self,
        *,
        routes: RouteTable,
        directory: Directory,
        keys: KeyCache,
        metrics: GatewayMetrics | None = None,
        pool: UpstreamPool | None = None,
        limits: GatewayLimits | None = None,
        internal_token: str | None = None,
    ) -> None:
        self.routes = routes
        self.directory = directory
        self.keys = keys
        self.metrics = metrics or GatewayMetrics()
        self.pool = pool or UpstreamPool()
        self.limits = limits or GatewayLimits()
        self.admission = admission(self.limits.max_inflight, track=self.metrics.inflight)
        self._internal = [(INTERNAL_TOKEN, internal_token.encode())] if internal_token else []
        self._rng = random.Random()
        self.balancer = Balancer(rng=self._rng)
        self.shadow = Shadow()
        self._background: set[asyncio.Task[None]] = set()
        self.update_routes(routes)

    # ------------------------------------------------------------ lifecycle

    def update_routes(self, routes: RouteTable) -> None:
        """Swap the route table at once (start-up, tests with static directories)."""
        for name, route in routes.routes.items():
            for v in route.versions:
                self.directory.watch(name, v)
        self._install(routes)

    async def apply_routes(self, routes: RouteTable, timeout_s: float = 60.0) -> None:
        """Swap the route table once every version it names has a reachable replica.

        Until then the old table keeps serving, so a version switch never sends a
        request to a version the gateway cannot reach yet.
        """
        needed = [(n, v) for n, r in routes.routes.items() for v in r.versions]
        for name, v in needed:
            self.directory.watch(name, v)
        deadline = time.monotonic() + timeout_s
        while not all(self.directory.ready(n, v) for n, v in needed):
            if time.monotonic() > deadline:
                missing = [f"{n} v{v}" for n, v in needed if not self.directory.ready(n, v)]
                raise Unavailable(f"no ready replica for {', '.join(missing)}; routes unchanged")
            await asyncio.sleep(0.05)
        self._install(routes)

    def _install(self, routes: RouteTable) -> None:
        self.routes = routes
        self.metrics.bound(
            endpoints=routes.routes,
            teams=self.keys.teams | {r.endpoint.metadata.team for r in routes.routes.values()},
            versions={v for r in routes.routes.values() for v in r.versions},
            team_source=lambda: self.keys.teams,  # teams of keys made after start
        )

    @property
    def draining(self) -> bool:
        """Refusing new requests for good (503): the admission gate is closed."""
        return self.admission.closed

    @draining.setter
    def draining(self, value: bool) -> None:
        self.admission.closed = value

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Refuse new requests (503) and wait for those in flight."""
        self.admission.close()
        await self.admission.drained(timeout_s)

    # ------------------------------------------------------------ dispatch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        send = self.metrics.counting(send, path)  # every response, refusals included
        # Every response, errors included, carries the request id.
        send = stamped = asgi.Stamped(send, [(REQUEST_ID, asgi.request_id(scope))])
        protocol: asgi.Protocol = (
            "openai" if path.startswith("/v1/") else "v2" if path.startswith("/v2/") else "plain"
        )
        headers: list[tuple[bytes, bytes]] = []  # + x-paved-model-version once routed
        try:
            if path in ("/v2/health/live", "/healthz"):
                await asgi.send_json(send, 200, {"live": True})
                return
            if path == "/v2/health/ready":
                ready = not self.draining and self.all_ready()
                await asgi.send_json(send, 200 if ready else 503, {"ready": ready})
                return
            if asgi.header_bytes(scope) > self.limits.max_header_bytes:
                raise LimitExceeded(
                    f"request headers exceed {self.limits.max_header_bytes} bytes",
                    rule="max_header_bytes",
                )
            key = await self.keys.authenticate(asgi.header(scope, b"authorization"))
            method = scope["method"]
            raw_path = path.encode()
            if method == "POST" and raw_path in _OPENAI_PATHS:
                await self._openai(scope, receive, send, key, raw_path, headers)
            elif path == "/v1/models" and method == "GET":
                await self._list_models(send, key)
            elif path.startswith("/v2/models/"):
                await self._v2(scope, receive, send, key, path, headers)
            elif path == "/metrics" and method == "GET":
                access.require(key, access.READ_ROLES, "read metrics")
                await asgi.send_bytes(
                    send, 200, self.metrics.exposition(), content_type=CONTENT_TYPE.encode()
                )
            else:
                raise NotFound(f"no route {method} {quote(path)}", rule="route")
        except ConnectionAbortedError:
            return
        except PavedError as exc:
            if stamped.started:  # mid-response: the connection ends, nothing more to say
                log.warning("%s %s failed after its response began: %s", protocol, path, exc)
                return
            await asgi.send_error(send, exc, protocol, headers)
        except Exception:  # never a plaintext 500: the platform's error, in the protocol's shape
            log.exception("unexpected error serving %s", quote(path))
            if not stamped.started:
                await asgi.send_error(send, PavedError("internal error", rule="internal"),
                                      protocol, headers)  # fmt: skip

    # ------------------------------------------------------------ OpenAI

    async def _openai(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        key: ApiKey,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        access.require(key, access.INFER_ROLES, "call inference endpoints")
        body = await asgi.read_body(receive, self.limits.max_body_bytes)
        kind = ChatCompletionRequest if path == b"/v1/chat/completions" else CompletionRequest
        request = parse_request(kind, body)  # the same models the replica validates with
        route = self._route(request.model, key, "openai")
        check_limits(request, route.endpoint.spec.limits)
        stream = bool(request.stream)
        user = user_id(asgi.header(scope, USER), request.user)
        await self._forward(
            scope,
            receive,
            send,
            key,
            route,
            "POST",
            path.decode(),
            body,
            headers,
            stream=stream,
            user=user,
            meter=True,
        )

    async def _list_models(self, send: Send, key: ApiKey) -> None:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": r.endpoint.metadata.team}
            for name, r in sorted(self.routes.routes.items())
            if r.protocol == "openai" and (r.endpoint.allows(key.team) or Role.ADMIN in key.roles)
        ]
        await asgi.send_json(send, 200, {"object": "list", "data": data})

    # ------------------------------------------------------------ KServe v2

    async def _v2(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        key: ApiKey,
        path: str,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        access.require(key, access.INFER_ROLES, "call inference endpoints")
        parts = path.split("/")  # ['', 'v2', 'models', name, ...]
        name = parts[3] if len(parts) > 3 else ""
        route = self._route(name, key, "v2")
        tail = parts[4:]
        version = route.champion
        if tail and tail[0] == "versions":
            route, version = access.pinned(route, tail[1] if len(tail) > 1 else "")
            tail = tail[2:]
        method = scope["method"]
        if tail == ["ready"] and method == "GET":
            ready = self.directory.ready(name, version)
            await asgi.send_json(send, 200 if ready else 503, {"name": name, "ready": ready})
            return
        if tail == ["infer"] and method == "POST":
            body = await asgi.read_body(receive, self.limits.max_body_bytes)
            await self._forward(
                scope,
                receive,
                send,
                key,
                route,
                "POST",
                f"/v2/models/{name}/infer",
                body,
                headers,
                stream=False,
                user=user_id(asgi.header(scope, USER)),
                meter=False,
            )
            return
        if not tail and method == "GET":
            await self._forward(
                scope,
                receive,
                send,
                key,
                route,
                "GET",
                f"/v2/models/{name}",
                b"",
                headers,
                stream=False,
                user=None,
                meter=False,
            )
            return
        raise NotFound(f"no route {method} {path}")

    # ------------------------------------------------------------ shared

    def _route(self, name: Any, key: ApiKey, protocol: str) -> Route:
        if not isinstance(name, str) or not name:
            raise InvalidInput("the request must name a model (the endpoint)", rule="model")
        route = self.routes.get(name)
        # An endpoint the caller's team may not see answers exactly as one that does not
        # exist, so a key cannot probe for other teams' endpoint names (as /v1/models).
        if route is None or not (route.endpoint.allows(key.team) or Role.ADMIN in key.roles):
            raise NotFound(f"the model {quote(name)} does not exist", rule="model_not_found")
        if route.protocol != protocol:
            raise InvalidInput(
                f"endpoint {name!r} speaks the {route.protocol} protocol, not {protocol}",
                rule="protocol",
            )
        return route

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        key: ApiKey,
        route: Route,
        method: str,
        path: str,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        *,
        stream: bool,
        user: str | None,
        meter: bool,
    ) -> None:
        started = time.perf_counter()
        name = route.endpoint.name
        version, cohort = choose(route, user, self._rng)
        headers += [
            (MODEL_VERSION, str(version).encode()),
            (COHORT, cohort.encode()),
        ]
        labels = self.metrics.labels(name, route.endpoint.spec.model, version, cohort, key.team)
        status = 500
        out: forward.Outcome | None = None
        try:
            with self.admission.admit(name, route.endpoint.spec.limits.max_inflight):
                fwd = [
                    (b"content-type", asgi.header(scope, b"content-type") or b"application/json"),
                    (ENDPOINT, name.encode()),
                    (MODEL_VERSION, str(version).encode()),
                    (COHORT, cohort.encode()),
                    (TEAM, key.team.encode()),
                    *self._internal,
                ]
                binary_header = asgi.header(scope, b"inference-header-content-length")
                if binary_header is not None:
                    fwd.append((b"inference-header-content-length", binary_header))
                out = await self._relay(
                    name,
                    version,
                    method,
                    path,
                    body,
                    send,
                    receive,
                    fwd,
                    headers,
                    started,
                    stream=stream,
                    meter=meter,
                )
                status = out.status
        except PavedError as exc:
            status = exc.status
            raise
        finally:
            self.metrics.observe(labels, status, started)
        if out.client_gone and out.upstream_id and not out.usage_known:
            self._collect_usage(labels, out)  # the slot is free already; the count comes later
        else:
            self._observe_tokens(labels, out)
        if route.shadow and route.challenger is not None and method == "POST":
            binary = asgi.header(scope, b"inference-header-content-length")
            self.shadow.mirror(
                route,
                path,
                body,
                key,
                stream,
                binary,
                pool=self.pool,
                balancer=self.balancer,
                directory=self.directory,
                metrics=self.metrics,
                internal=self._internal,
            )

    async def _relay(
        self,
        name: str,
        version: int,
        method: str,
        path: str,
        body: bytes,
        send: Send,
        receive: Receive,
        fwd: list[tuple[bytes, bytes]],
        headers: list[tuple[bytes, bytes]],
        started: float,
        *,
        stream: bool,
        meter: bool,
    ) -> forward.Outcome:
        """Forward to the least-loaded ready replica (:class:`Balancer`).

        Another replica is tried only when no connection to the first could be made
        (:class:`ReplicaUnreachable`: nothing was written, so it cannot have run the
        request); any later failure is the client's answer, never a second POST.
        """
        targets = self.directory.targets(name, version)
        tried: list[str] = []
        unreachable: ReplicaUnreachable | None = None
        for _ in range(min(len(targets), self.limits.max_attempts)):
            target = self.balancer.choose(targets, tried)
            if target is None:
                break
            tried.append(target)
            self.balancer.acquire(target)
            upstream_id = uuid.uuid4().hex if stream else ""
            try:
                if stream:
                    out = await forward.stream(
                        self.pool,
                        target,
                        path,
                        body,
                        send,
                        receive,
                        [*fwd, (UPSTREAM_ID, upstream_id.encode())],
                        headers,
                        started,
                        idle_timeout_s=self.limits.stream_idle_timeout_s,
                    )
                else:
                    out = await forward.unary(
                        self.pool,
                        target,
                        method,
                        path,
                        body,
                        send,
                        receive,
                        fwd,
                        headers,
                        meter=meter,
                    )
            except ReplicaUnreachable as exc:
                out_s = self.balancer.failed(target)
                log.warning(
                    "replica %s of %s v%s unreachable; ejected for %gs",
                    target,
                    name,
                    version,
                    out_s,
                )
                unreachable = exc
                continue
            finally:
                self.balancer.release(target)
            self.balancer.succeeded(target)
            out.target, out.upstream_id = target, upstream_id
            return out
        assert unreachable is not None
        raise unreachable

    def _observe_tokens(self, labels: tuple[str, ...], out: forward.Outcome) -> None:
        """Meter a request's outcome (a seam: tests keep each outcome here)."""
        self.metrics.record(labels, out)

    def _collect_usage(self, labels: tuple[str, ...], out: forward.Outcome) -> None:
        """Meter a stream whose client left: its replica says what it generated up to
        the abort (:func:`forward.aborted_usage`), asked in the background."""
        if len(self._background) >= 256:
            self._observe_tokens(labels, out)  # bounded: past it, the count is lost
            return

        async def run() -> None:
            usage = await forward.aborted_usage(
                self.pool, out.target, out.upstream_id, self._internal
            )
            if usage is not None:
                out.usage, out.usage_known = usage, True
            self._observe_tokens(labels, out)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def all_ready(self) -> bool:
        """Ready once there are routes and every endpoint's champion has a replica."""
        routes = self.routes.routes
        return bool(routes) and all(self.directory.ready(n, r.champion) for n, r in routes.items())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await asgi.lifespan(receive, send, startup=self.keys.start, shutdown=self._shutdown)

    async def _shutdown(self) -> None:
        await self.keys.stop()
        self.pool.close()
