"""One gateway process sharing a port with its siblings (SO_REUSEPORT), as the gateway
replicas on one node do. Run as ``python -m tests.utils.gateway_process PORT KEYS_URI
REPLICA METRICS_DIR``; ``PROMETHEUS_MULTIPROC_DIR`` must name METRICS_DIR (the parent sets
it). Prints ``ready`` once serving; stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from paved.manifest import Endpoint
from serving.gateway.app import Gateway
from serving.gateway.auth import KeyCache
from serving.gateway.directory import StaticDirectory
from serving.gateway.routing import RouteTable
from serving.http_server import EmbeddedServer
from serving.keys import KeyStore
from serving.metrics import GatewayMetrics

ENDPOINT = Endpoint.model_validate(
    {
        "metadata": {"name": "ok", "team": "search"},
        "spec": {"model": "m", "champion": {"version": 1}},
    }
)


async def main(port: int, keys_uri: str, replica: str, metrics_dir: str) -> None:
    gateway = Gateway(
        routes=RouteTable.from_endpoints([ENDPOINT], {"ok": "openai"}),
        directory=StaticDirectory({("ok", 1): [replica]}),
        keys=KeyCache(KeyStore(keys_uri).snapshot),
        metrics=GatewayMetrics(multiprocess_dir=Path(metrics_dir)),
    )
    server = EmbeddedServer(gateway, "127.0.0.1", port, reuse_port=True)
    server.start()
    await server.wait_started()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
