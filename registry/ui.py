"""The MLflow UI on the registry's store, read-only unless an admin opens it for writes.

MLflow's server answers its whole REST API without authentication: anyone who reaches
it could move ``champion``, rewrite the digest tags or delete versions, around every
check Pavedpath makes and with no history row. So ``paved ui`` serves MLflow's app
behind :class:`ReadOnly`, an ASGI filter that refuses every request that could write
(403, before MLflow sees it) and lets through only reads: GET/HEAD/OPTIONS, and the
few POST endpoints that are searches (MLflow sends search filters in a body).

This module and ``registry/store.py`` are the two places that touch MLflow: this one
only to start its server app.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# POST endpoints of MLflow 3.17 that only read (searches and batched gets), under both
# the REST prefix (/api/) and the UI's own (/ajax-api/). Checked against
# mlflow.server.handlers.get_endpoints(): every other POST there writes.
_READ_POSTS = (
    "2.0/mlflow/experiments/search",
    "2.0/mlflow/runs/search",
    "2.0/mlflow/logged-models/search",
    "2.0/mlflow/registered-models/get-latest-versions",
    "2.0/mlflow/experiments/search-datasets",
    "2.0mlflow/experiments/search-datasets",  # sic: MLflow registers this path too
    "3.0/mlflow/traces/search",
    "3.0/mlflow/traces/batchGetInfos",
    "3.0/mlflow/datasets/search",
    "3.0/mlflow/issues/search",
)
READ_POST_PATHS = frozenset(
    [f"/{prefix}/{path}" for prefix in ("api", "ajax-api") for path in _READ_POSTS]
    # MLflow's GraphQL schema (3.17) resolves only reads; its one "mutation" echoes.
    + ["/graphql"]
)
# Served by the same app but no part of the registry's view: an LLM gateway, an
# assistant that runs tools, trace ingestion. Refused whatever the method.
CLOSED_PREFIXES = ("/gateway/", "/ajax-api/3.0/mlflow/assistant/", "/v1/traces")

WRITES_BYPASS = (
    "writes through this UI go straight to MLflow: they bypass Pavedpath's roles and "
    "API keys, team ownership, the protected champion alias, the alias history and the "
    "name and file checks at registration. Git still pins what is served (a changed "
    "digest is refused) and the reconciler reports and puts back a champion moved here."
)


def is_read(method: str, path: str) -> bool:
    """Whether a request only reads; matched exactly, so no variant of a path slips by."""
    if path.startswith(CLOSED_PREFIXES):
        return False
    if method in READ_METHODS:
        return True
    return method == "POST" and path in READ_POST_PATHS


class ReadOnly:
    """ASGI filter: refuses with 403 every request that could write, before ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if kind == "http" and not is_read(str(scope.get("method", "")), str(scope["path"])):
            await _forbidden(send, str(scope.get("method", "")))
            return
        await self.app(scope, receive, send)


async def _forbidden(send: Send, method: str) -> None:
    body = json.dumps(
        {
            "error_code": "PERMISSION_DENIED",
            "message": f"paved ui is read-only: {method[:16]} to this path is refused "
            "(change the registry through the paved CLI; an admin may start "
            "`paved ui --allow-writes`)",
            "rule": "ui_read_only",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def mlflow_app(tracking_uri: str, artifact_root: str) -> ASGIApp:
    """MLflow's server app (the one `mlflow server` runs) on this store."""
    from mlflow.server import constants

    # MLflow's server takes its configuration from these variables (it is how
    # `mlflow server` hands them to its workers); set before its app is imported.
    os.environ[constants.BACKEND_STORE_URI_ENV_VAR] = tracking_uri
    os.environ[constants.REGISTRY_STORE_URI_ENV_VAR] = tracking_uri
    os.environ[constants.ARTIFACT_ROOT_ENV_VAR] = artifact_root
    from mlflow.server.handlers import initialize_backend_stores

    initialize_backend_stores(tracking_uri, tracking_uri, artifact_root)
    from mlflow.server.fastapi_app import app

    served: ASGIApp = app
    return served


def serve_ui(
    tracking_uri: str, artifact_root: str, *, host: str, port: int, allow_writes: bool = False
) -> None:
    """Serve the UI until interrupted; read-only unless ``allow_writes``."""
    import uvicorn

    app = mlflow_app(tracking_uri, artifact_root)
    uvicorn.run(app if allow_writes else ReadOnly(app), host=host, port=port, log_level="warning")
