"""Gateway metrics: computed per request, exported by one Prometheus registry.

Names follow ``paved_<what>_<unit>``. Every label value comes from a closed set (the
endpoints and versions in the route table, the teams of the key table, fixed cohorts,
route templates and status codes): a value outside it is recorded as ``other``, so no
client can grow the series count.

Several gateway replicas share one public port on a node (SO_REUSEPORT), and a scrape
lands on whichever replica the kernel picks. So that the scrape sees the whole
gateway, the replicas of one node run prometheus_client's multiprocess mode: each
replica writes its values to memory-mapped files in one directory, and ``/metrics`` on
any replica merges the directory (counters and histograms summed, the in-flight gauge
summed over live processes). The mode is chosen by ``PROMETHEUS_MULTIPROC_DIR`` before
prometheus_client is imported, which the gateway deployment sets in its process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as _values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"
LABELS = ("endpoint", "model", "version", "cohort", "team")
MAX_TEAM_LABELS = 256
"""Teams beyond this many (in the key table) share the ``other`` label."""
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)
_FIXED_ROUTES = {
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/metrics",
    "/healthz",
    "/v2/health/live",
    "/v2/health/ready",
}
_V2_TAILS = {"infer": "/v2/models/{name}/infer", "ready": "/v2/models/{name}/ready"}

Message = MutableMapping[str, Any]
SendFn = Callable[[Message], Awaitable[None]]


def route_label(path: str) -> str:
    """The route template of a request path, from a fixed set (else ``other``)."""
    if path in _FIXED_ROUTES:
        return path
    if path.startswith("/v2/models/"):
        parts = path.split("/")[4:]  # after ['', 'v2', 'models', name]
        if len(parts) >= 2 and parts[0] == "versions":
            parts = parts[2:]
        if not parts:
            return "/v2/models/{name}"
        if len(parts) == 1 and parts[0] in _V2_TAILS:
            return _V2_TAILS[parts[0]]
    return OTHER


def code_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


class _Tokens(Protocol):
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...


class Outcome(Protocol):
    """What :meth:`GatewayMetrics.record` reads of a relayed request
    (``serving.gateway.forward.Outcome`` is one)."""

    @property
    def ttft_s(self) -> float | None: ...
    @property
    def itl_s(self) -> float | None: ...
    @property
    def usage(self) -> _Tokens: ...


class GatewayMetrics:
    """The gateway's metric families and the closed label sets they draw from.

    ``multiprocess_dir`` shares the values with every gateway process writing to the
    same directory (the replicas on one node); it needs ``PROMETHEUS_MULTIPROC_DIR``
    set to that directory before prometheus_client was imported.
    """

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None:
            if not getattr(_values.ValueClass, "_multiprocess", False) or Path(
                os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
            ) != Path(multiprocess_dir):
                raise RuntimeError(
                    "prometheus_client is not in multiprocess mode for "
                    f"{multiprocess_dir}: set PROMETHEUS_MULTIPROC_DIR before importing it"
                )
            self.registry = CollectorRegistry()
            files = MultiProcessCollector(None, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
            self.registry.register(_OnlyPaved(files))
            r: CollectorRegistry | None = None  # values live in the files, not a registry
        else:
            self.registry = CollectorRegistry(auto_describe=True)
            r = self.registry
        self.requests = Counter(
            "paved_requests", "Requests answered, by status class.", [*LABELS, "status"], registry=r
        )
        self.errors = Counter(
            "paved_request_errors",
            "Requests answered with an error.",
            [*LABELS, "code"],
            registry=r,
        )
        self.responses = Counter(
            "paved_responses",
            "Every response the gateway sent, by route template and HTTP status code, "
            "refusals before routing included (401, 403, 404, 400, 429, 503).",
            ["route", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "paved_request_duration_seconds",
            "End-to-end latency at the gateway.",
            LABELS,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "paved_time_to_first_token_seconds",
            "Time to the first streamed token.",
            LABELS,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "paved_inter_token_latency_seconds",
            "Mean time between streamed tokens.",
            LABELS,
            buckets=_ITL_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "paved_prompt_tokens", "Prompt tokens processed.", LABELS, registry=r
        )
        self.completion_tokens = Counter(
            "paved_completion_tokens", "Completion tokens generated.", LABELS, registry=r
        )
        self.queue_depth = Gauge(
            "paved_queue_depth",
            "Requests in flight at the gateway (admitted, not yet answered).",
            ["endpoint"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self._endpoints: frozenset[str] = frozenset()
        self._teams: frozenset[str] = frozenset()
        self._team_source: Callable[[], frozenset[str]] | None = None
        self._versions: frozenset[str] = frozenset()

    def bound(
        self,
        *,
        endpoints: Iterable[str],
        teams: Iterable[str],
        versions: Iterable[int],
        team_source: Callable[[], frozenset[str]] | None = None,
    ) -> None:
        """Set the closed sets label values must come from.

        ``team_source`` returns the teams of the current key table: a team first seen
        after this call (a key made after start) gets its own label once it is there.
        """
        self._endpoints = frozenset(endpoints)
        self._teams = frozenset(list(teams)[:MAX_TEAM_LABELS])
        self._versions = frozenset(str(v) for v in versions)
        if team_source is not None:
            self._team_source = team_source

    def _team(self, team: str | None) -> str:
        if team is None:
            return OTHER
        if team in self._teams:
            return team
        if self._team_source is None or len(self._teams) >= MAX_TEAM_LABELS:
            return OTHER
        if team in self._team_source():
            self._teams = self._teams | {team}
            return team
        return OTHER

    def labels(
        self, endpoint: str, model: str, version: int | None, cohort: str, team: str | None
    ) -> tuple[str, str, str, str, str]:
        ep = endpoint if endpoint in self._endpoints else OTHER
        v = str(version) if version is not None and str(version) in self._versions else OTHER
        t = self._team(team)
        c = cohort if cohort in ("champion", "challenger", "shadow") else OTHER
        return ep, (model if ep != OTHER else OTHER), v, c, t

    def observe(self, labels: tuple[str, ...], status: int, started: float) -> None:
        """One answered request under ``labels``: its status and its latency since
        ``started`` (a ``time.perf_counter()`` reading)."""
        self.requests.labels(*labels, f"{status // 100}xx").inc()
        if status >= 400:
            self.errors.labels(*labels, str(status)).inc()
        self.latency.labels(*labels).observe(time.perf_counter() - started)

    def record(self, labels: tuple[str, ...], outcome: Outcome) -> None:
        """What a relayed request came to: time to first token, inter-token latency,
        tokens in and out."""
        if outcome.ttft_s is not None:
            self.ttft.labels(*labels).observe(outcome.ttft_s)
        if outcome.itl_s is not None:
            self.itl.labels(*labels).observe(outcome.itl_s)
        usage = outcome.usage
        if usage.prompt_tokens:
            self.prompt_tokens.labels(*labels).inc(usage.prompt_tokens)
        if usage.completion_tokens:
            self.completion_tokens.labels(*labels).inc(usage.completion_tokens)

    def inflight(self, endpoint: str) -> Callable[[], None]:
        """Count one request in flight on ``endpoint``; the returned call uncounts it."""
        child = self.queue_depth.labels(endpoint if endpoint in self._endpoints else OTHER)
        child.inc()
        return child.dec

    def counting(self, send: SendFn, path: str) -> SendFn:
        """``send`` that counts the response it starts, by route template and code."""
        route = route_label(path)

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.responses.labels(route, code_label(int(message["status"]))).inc()
            await send(message)

        return counted

    def exposition(self) -> bytes:
        if self.multiprocess_dir is not None:
            _forget_dead_processes(self.multiprocess_dir)
        return generate_latest(self.registry)


def enable_multiprocess(path: Path) -> None:
    """Put this process's prometheus_client in multiprocess mode over ``path``.

    Call before any metric is made. prometheus_client reads the mode when it is first
    imported; if something imported it already, its value class is switched here.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    if not getattr(_values.ValueClass, "_multiprocess", False):
        _values.ValueClass = _values.MultiProcessValue()  # type: ignore[no-untyped-call]


class _OnlyPaved:
    """The merged files, Pavedpath's families only (a library in the same process may
    have made metrics of its own in multiprocess mode)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def collect(self) -> Iterable[Any]:
        return [m for m in self._inner.collect() if m.name.startswith("paved_")]


def _forget_dead_processes(path: Path) -> None:
    """Drop the live gauges of gateway processes that are gone (a replaced replica)."""
    for f in path.glob("gauge_livesum_*.db"):
        pid = int(f.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
        except PermissionError:
            continue
