"""The tabular model served over real HTTP, shared by the v2 tests of this package.

A small credit-risk model is trained once, loaded by :class:`TabularBackend` and
served by uvicorn on 127.0.0.1; the tests speak to it with Triton's
``tritonclient.http`` and with raw httpx.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton
import uvicorn

from bundled.credit_risk.data import make_splits
from bundled.credit_risk.model import CreditRiskModel, load
from pipelines.trainers.credit_risk import train
from serving.backends.base import BackendConfig
from serving.backends.tabular import TabularBackend

ENDPOINT = "credit"
VERSION = 3
MAX_ROWS = 64
MAX_CONCURRENCY = 2
ROWS = 1_000
NUMPY_DTYPES = {"FP32": np.float32, "BYTES": np.object_, "BOOL": np.bool_}


@dataclass
class Served:
    url: str
    backend: TabularBackend
    model: CreditRiskModel
    columns: dict[str, np.ndarray[Any, Any]]
    """Test-split feature columns as the client sends them (float32, str objects, bool)."""


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    threads_before = torch.get_num_threads()
    model_dir = tmp_path_factory.mktemp("credit") / "model"
    train(model_dir, seed=0, rows=ROWS, epochs=2)
    config = BackendConfig(
        endpoint=ENDPOINT,
        model_name="credit-risk",
        version=VERSION,
        model_dir=model_dir,
        max_batch_rows=MAX_ROWS,
        max_concurrency=MAX_CONCURRENCY,
    )
    backend = TabularBackend(config)
    asyncio.run(backend.start())
    model = load(model_dir)
    datatypes = {s.name: s.datatype for s in model.input_schema()}
    raw = make_splits(ROWS, seed=0).test.columns
    columns: dict[str, np.ndarray[Any, Any]] = {
        name: raw[name].astype(NUMPY_DTYPES[datatypes[name]])
        for name in datatypes  # the model's input order
    }

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(backend.app(), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during startup"
        assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
        time.sleep(0.02)
    try:
        yield Served(f"127.0.0.1:{port}", backend, model, columns)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        torch.set_num_threads(threads_before)


@pytest.fixture
def client(served: Served) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(url=served.url)
    yield c
    c.close()


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{served.url}", timeout=30) as c:
        yield c


def triton_inputs(served: Served, rows: slice, *, binary: bool = False) -> list[triton.InferInput]:
    """One tritonclient input per feature, in JSON or (``binary``) the binary extension."""
    inputs = []
    for spec in served.model.input_schema():
        values = served.columns[spec.name][rows]
        tensor = triton.InferInput(spec.name, list(values.shape), spec.datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def expected_scores(served: Served, rows: slice) -> np.ndarray[Any, Any]:
    """What the client must get back: ``model.predict_columns`` on the same rows, as FP32."""
    probs = served.model.predict_columns({k: v[rows] for k, v in served.columns.items()})
    return np.asarray(probs, dtype=np.float32)
