"""The reconciler's counters, in Prometheus' text format.

Label values come from closed sets: the environment the reconciler runs for, the
models Git's manifests name, and the rules the code refuses with (a fixed set), so
nothing a registry user types can grow the series count.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

from pipelines.promotion.champion import ChampionStatus


class ReconcilerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.outside_flow = Counter(
            "paved_reconciler_champion_outside_flow",
            "Champion alias moves made around the promotion flow, found and put back.",
            ["env", "model"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "paved_reconciler_refusals",
            "Endpoints refused by a pass, by the rule that refused them.",
            ["env", "rule"],
            registry=self.registry,
        )
        self._outside_total = 0

    def record_refusal(self, env: str, rule: str | None) -> None:
        self.refusals.labels(env, rule or "unknown").inc()

    def record_champions(self, env: str, statuses: list[ChampionStatus]) -> None:
        for s in statuses:
            if s.outside_flow and s.status == "put_back":
                self.outside_flow.labels(env, s.model).inc()
                self._outside_total += 1

    @property
    def outside_flow_total(self) -> int:
        """Moves around the flow this reconciler found, all models together."""
        return self._outside_total

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
