"""Keep Ray Serve's per-replica gRPC server on loopback in the embedded default.

Every Serve replica starts an inter-deployment gRPC server bound to ``[::]:0`` (all
interfaces, no option to change it in Ray 2.60). :func:`worker_setup` runs in every Ray
worker of a cluster `paved serve` starts (``worker_process_setup_hook``) and rewrites
that bind address to 127.0.0.1 before the replica asks for it. The rest of Ray is kept
on loopback by :func:`serving.deploy.loopback_only`.
tests/integration/serving/test_ray_loopback.py fails if a Ray upgrade changes this.
"""

from __future__ import annotations

import sys
from typing import Any

_ALL_INTERFACES = ("[::]:", "0.0.0.0:")


def worker_setup() -> None:
    from ray._common import tls_utils

    original = tls_utils.add_port_to_grpc_server
    if getattr(original, "_paved_loopback", False):
        return

    def on_loopback(server: Any, address: str) -> Any:
        if address.startswith(_ALL_INTERFACES):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return original(server, address)  # type: ignore[no-untyped-call]

    on_loopback._paved_loopback = True  # type: ignore[attr-defined]
    tls_utils.add_port_to_grpc_server = on_loopback
    replica = sys.modules.get("ray.serve._private.replica")
    if replica is not None:  # imported already: it holds its own reference
        replica.add_port_to_grpc_server = on_loopback  # type: ignore[attr-defined]
