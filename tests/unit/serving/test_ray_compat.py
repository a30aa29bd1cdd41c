"""Each private Ray name serving/ray_compat.py uses exists with the signature it relies
on (tested with ray==2.60.0, ``ray_compat.TESTED_RAY``): a Ray upgrade that removes or
renames one fails here first, in one place."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from serving import ray_compat

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def _params(fn: Any) -> set[str]:
    return set(inspect.signature(fn).parameters)


def test_the_tested_version_is_the_pinned_one() -> None:
    pin = re.search(r'"ray\[serve\]==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin is not None
    assert pin.group(1) == ray_compat.TESTED_RAY


def test_serve_run_and_delete_take_blocking() -> None:
    from ray import serve

    assert {"target", "_blocking", "name", "route_prefix"} <= _params(serve._run)
    assert {"name", "_blocking"} <= _params(serve.delete)


def test_the_long_poll_names() -> None:
    from ray.serve._private.common import DeploymentID, RunningReplicaInfo
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE
    from ray.serve._private.long_poll import LongPollClient, LongPollNamespace

    assert isinstance(SERVE_CONTROLLER_NAME, str)
    assert isinstance(SERVE_NAMESPACE, str)
    assert {"name", "app_name"} <= _params(DeploymentID)
    dep = DeploymentID(name="model", app_name="risk--v1")
    assert (dep.name, dep.app_name) == ("model", "risk--v1")
    assert {"host_actor", "key_listeners", "call_in_event_loop", "client_id"} <= _params(
        LongPollClient.__init__
    )
    assert LongPollNamespace.DEPLOYMENT_TARGETS in LongPollNamespace
    assert "replica_metadata" in RunningReplicaInfo.__dataclass_fields__


def test_the_deployment_info_names() -> None:
    from ray.serve._private.client import ServeControllerClient
    from ray.serve._private.config import DeploymentConfig
    from ray.serve._private.deployment_info import DeploymentInfo
    from ray.serve.context import _get_global_client

    assert callable(_get_global_client)
    assert {"name", "app_name"} <= _params(ServeControllerClient.get_deployment_info)
    assert {"version", "deployment_config"} <= _params(DeploymentInfo.__init__)
    assert "num_replicas" in DeploymentConfig.model_fields


def test_a_pinned_version_is_the_deployments_version() -> None:
    from ray import serve

    @serve.deployment
    class Echo:
        def __call__(self) -> str:
            return "echo"

    dep = Echo.options(num_replicas=2)  # type: ignore[attr-defined]
    assert ray_compat.pin_version(dep, "abc123") is dep
    assert dep.version == "abc123"  # what Serve's deploy path reads


def test_ray_init_takes_a_node_address() -> None:
    import ray

    assert "_node_ip_address" in inspect.getsource(ray._private.worker.init)


def test_loopback_only_sets_rays_single_node_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray._private import ray_constants

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    monkeypatch.setenv(ray_compat.RAY_SINGLE_NODE_ENV, "1")
    ray_compat.loopback_only()
    assert ray_constants.ENABLE_RAY_CLUSTER is False
    assert ray_compat.RAY_SINGLE_NODE_ENV in inspect.getsource(ray_constants)  # its source


def test_the_worker_hook_binds_serves_grpc_server_to_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import grpc

    tls_utils: Any = importlib.import_module("ray._common.tls_utils")
    replica: Any = importlib.import_module("ray.serve._private.replica")
    assert {"server", "address"} <= _params(tls_utils.add_port_to_grpc_server)
    assert replica.add_port_to_grpc_server is tls_utils.add_port_to_grpc_server
    monkeypatch.setattr(tls_utils, "add_port_to_grpc_server", tls_utils.add_port_to_grpc_server)
    monkeypatch.setattr(replica, "add_port_to_grpc_server", replica.add_port_to_grpc_server)
    module, name = ray_compat.LOOPBACK_HOOK.rsplit(".", 1)
    assert getattr(sys.modules[module], name) is ray_compat.worker_setup
    ray_compat.worker_setup()
    ray_compat.worker_setup()  # idempotent: wraps once
    assert replica.add_port_to_grpc_server is tls_utils.add_port_to_grpc_server
    bound: list[str] = []

    def add_insecure_port(address: str) -> int:
        bound.append(address)
        return 1

    server = grpc.server(thread_pool=None)
    monkeypatch.setattr(server, "add_insecure_port", add_insecure_port)
    tls_utils.add_port_to_grpc_server(server, "[::]:0")
    tls_utils.add_port_to_grpc_server(server, "10.1.2.3:5")
    assert bound == ["127.0.0.1:0", "10.1.2.3:5"]
