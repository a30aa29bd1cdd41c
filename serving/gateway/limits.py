"""The gateway's own bounds: request size, in-flight requests, stream silence, retries.

Per endpoint bounds (tokens, choices, in-flight) come from the manifest; these hold for
the whole gateway, whatever the endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GatewayLimits:
    max_body_bytes: int = 1 << 20
    max_header_bytes: int = 16 << 10
    max_inflight: int = 1024  # whole gateway; past it: 503 at once
    stream_idle_timeout_s: float = 60.0  # a stream silent this long ends with an error event
    max_attempts: int = 3  # replicas tried when connections fail (nothing sent to them)
