"""The gateway in its own process instead of a Ray Serve replica, for the benchmarks.

    python -m tests.bench.standalone_gateway SPEC.json

``SPEC.json`` holds ``{"gateway": <GatewaySpec>, "routes": <RoutesConfig>,
"targets": {"<endpoint>/<version>": ["host:port", ...]}}``. The process builds the
same :class:`~serving.gateway.app.Gateway` as ``GatewayIngress`` (keys from the same
database, same limits, internal token, metrics), with a :class:`StaticDirectory` of
the replica addresses instead of the Serve controller's long-poll, and serves it on
uvicorn (uvloop, httptools) until its stdin closes or it gets SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from serving.gateway.app import Gateway
from serving.gateway.auth import KeyCache
from serving.gateway.deployment import GatewaySpec, RoutesConfig
from serving.gateway.directory import StaticDirectory
from serving.gateway.limits import GatewayLimits
from serving.gateway.routing import RouteTable
from serving.keys import KeyStore
from tests.bench import harness
from tests.utils.servers import UvicornThread

Targets = dict[tuple[str, int], list[str]]


def write_spec(path: Path, spec: GatewaySpec, routes: RoutesConfig, targets: Targets) -> None:
    doc = {
        "gateway": spec.model_dump(mode="json"),
        "routes": routes.model_dump(mode="json"),
        "targets": {f"{ep}/{v}": addrs for (ep, v), addrs in targets.items()},
    }
    path.write_text(json.dumps(doc))
    path.chmod(0o600)  # it holds the internal token


@dataclass(frozen=True)
class Running:
    url: str
    pid: int


@contextlib.contextmanager
def run_standalone(
    spec: GatewaySpec, routes: RoutesConfig, targets: Targets, workdir: Path
) -> Iterator[Running]:
    """Run this module in a subprocess for ``spec``; yields its base URL and PID once
    ready."""
    spec_path = workdir / f"gateway-{spec.port}.json"
    write_spec(spec_path, spec, routes, targets)
    cmd = [sys.executable, "-m", "tests.bench.standalone_gateway", str(spec_path)]
    with harness.process(cmd, workdir / f"gateway-{spec.port}.log") as proc:
        base = f"http://{spec.host}:{spec.port}"
        harness.wait_http(base + "/v2/health/ready", 60, proc)
        yield Running(base, proc.pid)


def build(path: Path) -> tuple[Gateway, GatewaySpec]:
    doc = json.loads(path.read_text())
    spec = GatewaySpec.model_validate(doc["gateway"])
    routes = RoutesConfig.model_validate(doc["routes"])
    targets = {
        (ep, int(v)): addrs
        for key, addrs in doc["targets"].items()
        for ep, _, v in [key.rpartition("/")]
    }
    gateway = Gateway(
        routes=RouteTable.from_endpoints(routes.endpoints, routes.protocols),
        directory=StaticDirectory(targets),
        keys=KeyCache(KeyStore(spec.keys_uri).snapshot),
        limits=GatewayLimits(
            max_body_bytes=spec.max_body_bytes,
            max_header_bytes=spec.max_header_bytes,
            max_inflight=spec.max_inflight,
        ),
        internal_token=spec.internal_token,
    )
    return gateway, spec


def _exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    gateway, spec = build(Path(sys.argv[1]))
    signal.signal(signal.SIGTERM, _exit)
    with UvicornThread(gateway, port=spec.port, lifespan="on", backlog=2048):
        sys.stdin.buffer.read()  # until the parent closes the pipe or goes away


if __name__ == "__main__":
    main()
