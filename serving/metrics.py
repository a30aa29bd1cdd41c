"""Gateway metrics: computed per request, exported by one Prometheus registry.

Names follow ``paved_<what>_<unit>``. Every label value comes from a closed set (the
endpoints and versions in the route table, the teams of known keys, fixed cohorts and
status classes): a value outside it is recorded as ``other``, so no client can grow
the series count.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"
LABELS = ("endpoint", "model", "version", "cohort", "team")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class GatewayMetrics:
    def __init__(self) -> None:
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
            "paved_queue_depth", "Requests in flight at the gateway.", ["endpoint"], registry=r
        )
        self._endpoints: frozenset[str] = frozenset()
        self._teams: frozenset[str] = frozenset()
        self._versions: frozenset[str] = frozenset()

    def bound(
        self, *, endpoints: Iterable[str], teams: Iterable[str], versions: Iterable[int]
    ) -> None:
        """Set the closed sets label values must come from."""
        self._endpoints = frozenset(endpoints)
        self._teams = frozenset(teams)
        self._versions = frozenset(str(v) for v in versions)

    def labels(
        self, endpoint: str, model: str, version: int | None, cohort: str, team: str | None
    ) -> tuple[str, str, str, str, str]:
        ep = endpoint if endpoint in self._endpoints else OTHER
        v = str(version) if version is not None and str(version) in self._versions else OTHER
        t = team if team in self._teams else OTHER
        c = cohort if cohort in ("champion", "challenger", "shadow") else OTHER
        return ep, (model if ep != OTHER else OTHER), v, c, t

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
