"""The read-only filter in front of MLflow's app: only reads reach it."""

from __future__ import annotations

import asyncio
import json

import pytest

from registry.ui import READ_POST_PATHS, ReadOnly, is_read

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("method", "path", "read"),
    [
        ("GET", "/api/2.0/mlflow/model-versions/get", True),
        ("HEAD", "/", True),
        ("OPTIONS", "/api/2.0/mlflow/runs/search", True),
        ("POST", "/api/2.0/mlflow/runs/search", True),
        ("POST", "/ajax-api/2.0/mlflow/experiments/search", True),
        ("POST", "/graphql", True),
        ("POST", "/api/2.0/mlflow/registered-models/alias", False),
        ("POST", "/api/2.0/mlflow/model-versions/set-tag", False),
        ("POST", "/api/2.0/mlflow/runs/search/", False),
        ("POST", "/api/2.0/mlflow/runs/search/../../model-versions/set-tag", False),
        ("POST", "//api/2.0/mlflow/runs/search", False),
        ("POST", "/API/2.0/mlflow/runs/search", False),
        ("post", "/api/2.0/mlflow/runs/search", False),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/x", False),
        ("PATCH", "/api/2.0/mlflow/registered-models/update", False),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete", False),
        ("GET", "/gateway/mlflow/v1/models", False),
        ("GET", "/ajax-api/3.0/mlflow/assistant/sessions/1/stream", False),
        ("POST", "/v1/traces", False),
    ],
)
def test_only_reads_pass(method: str, path: str, read: bool) -> None:
    assert is_read(method, path) is read


def test_no_allowed_post_is_a_write() -> None:
    # Every allowed POST is a search, a batched get or GraphQL (reads in MLflow 3.17).
    for path in READ_POST_PATHS:
        tail = path.rsplit("/", 1)[-1]
        assert tail.startswith("search") or tail in {
            "batchGetInfos",
            "get-latest-versions",
            "graphql",
        }


def call(method: str, path: str, kind: str = "http") -> tuple[list[str], list[dict[str, object]]]:
    reached: list[str] = []
    sent: list[dict[str, object]] = []

    async def inner(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": kind, "method": method, "path": path}
    asyncio.run(ReadOnly(inner)(scope, receive, send))
    return reached, sent


def test_a_write_is_answered_403_and_never_reaches_mlflow() -> None:
    reached, sent = call("POST", "/api/2.0/mlflow/registered-models/alias")
    assert reached == []
    assert sent[0]["status"] == 403
    body = json.loads(sent[1]["body"])  # type: ignore[arg-type]
    assert (body["error_code"], body["rule"]) == ("PERMISSION_DENIED", "ui_read_only")


def test_reads_reach_mlflow_and_websockets_do_not() -> None:
    assert call("GET", "/api/2.0/mlflow/registered-models/search")[0] == [
        "/api/2.0/mlflow/registered-models/search"
    ]
    reached, sent = call("GET", "/ws", kind="websocket")
    assert reached == []
    assert sent == [{"type": "websocket.close", "code": 1008}]
