"""Every use of Ray's private API, in one place (tested against ray==2.60.0).

A Ray upgrade that removes or renames one of these breaks this file and
tests/unit/serving/test_ray_compat.py, nothing else. Nothing here checks Ray's version
at import: a patch release that keeps these names keeps working. Each item, why, and
the public alternative:

- ``ray.serve._private.long_poll.LongPollClient`` / ``LongPollNamespace``,
  ``ray.serve._private.common.DeploymentID`` and
  ``ray.serve._private.constants.SERVE_CONTROLLER_NAME`` / ``SERVE_NAMESPACE``
  (:func:`watch_replicas`): the gateway follows the Serve controller's list of running
  replicas of a deployment, as Serve's own request routers do, so a replica gets traffic
  only once Serve considers it ready and none after Serve stops it. Public alternative:
  none (``serve.status()`` has no replica addresses; polling it would lag).
- ``serve._run(..., _blocking=False|True)`` (:func:`run_app`): deploy an application and
  return at once (``False``: several applications start side by side, the caller waits
  with its own deadline) or once it runs. Public alternative: ``serve.run``, which always
  waits and cannot start several applications together.
- ``serve.delete(name, _blocking=False|True)`` (:func:`delete_app`): delete without
  waiting for the replicas to stop (a failed application) or waiting (a retired one).
  Public alternative: ``serve.delete(name)``, which always waits.
- ``Deployment._version`` (:func:`pin_version`): a stable code version, so an update
  with the same version changes replicas in place (user_config, replica count) instead
  of replacing them. Ray 2.60 removed ``options(version=...)``; no public alternative.
- ``ray.serve.context._get_global_client`` and ``ServeControllerClient.
  get_deployment_info`` (:func:`deployment_target`): the version and replica count Serve
  targets for a deployment, so a spec change is applied, never skipped. Public
  alternative: none (``serve.status()`` has neither).
- ``ray.init(_node_ip_address=...)`` (:func:`init_local`): the node's address for a
  local cluster. Public alternative: none in ``ray.init``'s signature.
- ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` (:func:`loopback_only`): Ray reads
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` into it at import; set too in case Ray was
  imported already. Public alternative: the environment variable alone, before import.
- ``ray._common.tls_utils.add_port_to_grpc_server`` and the reference
  ``ray.serve._private.replica`` holds to it (:func:`worker_setup`): every Serve replica
  binds its inter-deployment gRPC server to ``[::]:0`` in code; the hook rewrites that
  to 127.0.0.1. Public alternative: none in Ray 2.60.

tests/integration/serving/test_ray_loopback.py and
tests/integration/pipelines/test_reconcile_live.py check the behaviour these give.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

TESTED_RAY = "2.60.0"  # the version pyproject.toml pins and the tests ran against

# Ray workers import this by name (``worker_process_setup_hook``): keep it importable
# without Ray or Pavedpath's other modules.
LOOPBACK_HOOK = "serving.ray_compat.worker_setup"
RAY_SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_ALL_INTERFACES = ("[::]:", "0.0.0.0:")


def init_local(**kwargs: Any) -> None:
    """``ray.init`` for a cluster on this machine, its node address 127.0.0.1."""
    import ray

    ray.init(_node_ip_address="127.0.0.1", **kwargs)


def loopback_only() -> None:
    """Make the local Ray this process starts listen on loopback only.

    Ray turns a node address of 127.0.0.1 into the machine's outward IP
    (``services.resolve_ip_for_localhost``), so ``_node_ip_address`` alone has no effect
    and its gRPC servers, agents and metrics exporters listen on all interfaces. The one
    switch that keeps a node on loopback is the one Ray uses for single-node clusters on
    macOS and Windows: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``. Ray's processes inherit
    the variable.
    """
    os.environ[RAY_SINGLE_NODE_ENV] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def worker_setup() -> None:
    """Ray worker setup hook: Serve replicas' own gRPC servers bind to loopback."""
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


def run_app(app: Any, name: str, *, wait: bool) -> None:
    """Deploy an application (no HTTP route); ``wait``: return once it runs."""
    from ray import serve

    serve._run(app, name=name, route_prefix=None, _blocking=wait)


def delete_app(name: str, *, wait: bool) -> None:
    """Delete an application; ``wait``: return once its replicas stopped."""
    from ray import serve

    serve.delete(name, _blocking=wait)


def pin_version(deployment: Any, version: str) -> Any:
    """Give a deployment a stable code version (returned, for chaining)."""
    deployment._version = version
    return deployment


def deployment_target(deployment: str, app_name: str) -> tuple[str | None, int] | None:
    """The version and replica count Serve targets for a deployment, if it has one."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        return None
    try:
        info, _ = client.get_deployment_info(deployment, app_name)
    except KeyError:
        return None
    return info.version, int(info.deployment_config.num_replicas or 0)


def watch_replicas(
    deployment: str,
    app_name: str,
    on_update: Callable[[list[dict[str, Any]]], None],
    *,
    loop: asyncio.AbstractEventLoop,
    client_id: str,
) -> object:
    """Call ``on_update`` (in ``loop``) with the metadata each running replica recorded
    (``record_replica_metadata``), every time Serve's set of running replicas changes.
    Returns the long-poll client; it runs as long as the process."""
    import ray
    from ray.serve._private.common import DeploymentID
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE
    from ray.serve._private.long_poll import LongPollClient, LongPollNamespace

    controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    dep = DeploymentID(name=deployment, app_name=app_name)

    def update(info: Any) -> None:
        on_update([dict(r.replica_metadata or {}) for r in info.running_replicas])

    return LongPollClient(
        controller,
        {(LongPollNamespace.DEPLOYMENT_TARGETS, dep): update},  # type: ignore[dict-item]
        call_in_event_loop=loop,
        client_id=client_id,
    )
