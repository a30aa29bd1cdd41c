"""The real gateway, keeping what it learned about each request, for tests to read."""

from __future__ import annotations

from typing import Any

from serving.gateway import forward
from serving.gateway.app import Gateway


class RecordingGateway(Gateway):
    """:class:`Gateway` that keeps each request's :class:`forward.Outcome` as it is metered
    (after the usage of an aborted stream has been collected)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.outcomes: list[forward.Outcome] = []

    def _observe_tokens(self, labels: tuple[str, ...], out: forward.Outcome) -> None:
        self.outcomes.append(out)
        super()._observe_tokens(labels, out)
