"""Serve an LLMBackend on 127.0.0.1, for the integration tests.

A script, not a fixture, because vLLM spawns processes and must be started under
``if __name__ == "__main__":``. The server binds a free port itself (no port race)
and writes ``{"port": N}`` to PORT_FILE once it listens; the engine starts after
that, so ``/health`` answers 503 until it is ready, as in a replica::

    python tests/integration/serving/llm_server.py SPEC_JSON PORT_FILE

SPEC_JSON holds ``{"config": BackendConfig, "limits": Limits, "engine_options": {}}``.
SIGTERM or SIGINT stops the HTTP server, then the backend, which stops the engine and
its processes. The exit status is 1 when the engine failed to start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from paved.manifest import Limits
from serving.backends.base import BackendConfig
from serving.backends.llm import LLMBackend
from serving.http_server import EmbeddedServer

log = logging.getLogger("llm_server")


async def serve(backend: LLMBackend, port_file: Path) -> int:
    server = EmbeddedServer(backend.app(), "127.0.0.1", 0)
    server.start()
    await server.wait_started()
    port_file.write_text(json.dumps({"port": server.port}), encoding="utf-8")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(backend.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
    failed = starting.done() and starting.exception() is not None
    if failed:
        log.error("the engine failed to start", exc_info=starting.exception())
    else:
        await stopping
    await server.stop()
    starting.cancel()
    await backend.stop()
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    backend = LLMBackend(
        BackendConfig.model_validate(spec["config"]),
        limits=Limits.model_validate(spec.get("limits", {})),
        engine_options=spec.get("engine_options") or None,
    )
    return asyncio.run(serve(backend, Path(argv[1])))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main(sys.argv[1:]))
