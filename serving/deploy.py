"""Put endpoints on Ray Serve: resolve versions through the registry, start one Serve
application per endpoint version, wait until its replicas are ready, then the gateway.

One application per endpoint version lets a new version come up beside the old one and
the old one go only after traffic has left it (the reconciler's job); unchanged
applications are never redeployed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import time
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from paved.errors import InvalidInput, NotFound, Unavailable
from paved.kinds import VLLM_ENV, kind_of
from paved.manifest import Endpoint
from paved.settings import Settings
from registry.service import Registry
from serving import ray_compat
from serving.gateway.directory import MODEL_DEPLOYMENT, deployment_app_name
from serving.gateway.routing import Protocol
from serving.replica import ReplicaSpec

if TYPE_CHECKING:
    from registry.schemas import ModelVersionInfo
    from serving.gateway.deployment import GatewaySpec

log = logging.getLogger(__name__)

GATEWAY_APP = "paved-gateway"

# The environment of a text-generation replica (vLLM's CPU engine), from the kind table;
# named here for the benchmarks that start replicas themselves.
LLM_ENV: dict[str, str] = dict(VLLM_ENV)


class ReplicasFailed(Unavailable):
    """Some endpoints' replicas did not start (by the deadline, or Serve said failed)."""

    def __init__(self, failed: dict[str, str]) -> None:
        super().__init__(
            "; ".join(f"{ep}: {why}" for ep, why in failed.items()), rule="replica_start"
        )
        self.failed = failed  # endpoint -> reason


@dataclass(frozen=True)
class Plan:
    endpoints: list[Endpoint]
    protocols: dict[str, Protocol]
    replicas: list[tuple[Endpoint, ReplicaSpec]]
    internal_token: str


class VersionLookup(typing.Protocol):
    """What :func:`plan` reads from the registry: one version's record."""

    def get(self, ref: str) -> ModelVersionInfo: ...


def plan(
    endpoints: list[Endpoint], registry: VersionLookup, settings: Settings, internal_token: str
) -> Plan:
    """Resolve every version an endpoint names; refuse the whole plan if one is unknown.

    Each replica spec carries the digest its files are verified against. Comparing a
    pinned digest with the registry's is the caller's check (the reconciler's
    ``digest_mismatch``, :func:`check_pins`), not the plan's: an endpoint kept on its
    last applied version must still plan while the registry disagrees.
    """
    protocols: dict[str, Protocol] = {}
    replicas: list[tuple[Endpoint, ReplicaSpec]] = []
    for ep in endpoints:
        versions = [ep.spec.champion.version]
        if ep.spec.challenger:
            versions.append(ep.spec.challenger.version)
        tasks = set()
        for v in versions:
            try:
                info = registry.get(f"{ep.spec.model}/{v}")
            except NotFound as exc:
                raise InvalidInput(
                    f"endpoint {ep.name!r}: {exc.message}", rule="unknown_version"
                ) from exc
            tasks.add(info.lineage.task)
            replicas.append(
                (
                    ep,
                    ReplicaSpec(
                        endpoint=ep.name,
                        model_name=ep.spec.model,
                        version=v,
                        # What Git pins; a --manifests folder without one pins the
                        # registry's digest as it is now, so replicas started later
                        # verify against the same value.
                        digest=ep.pinned_digest(v) or info.digest,
                        task=info.lineage.task,
                        home=settings.home,
                        registry_uri=settings.registry_uri,
                        artifact_root=settings.artifact_root,
                        bind_host=settings.replica_host,
                        max_model_len=ep.spec.max_model_len,
                        max_batch_rows=ep.spec.limits.max_batch_rows,
                        max_concurrency=ep.spec.limits.max_inflight,
                        limits=ep.spec.limits,
                        internal_token=internal_token,
                    ),
                )
            )
        kind = kind_of(tasks.pop())
        if tasks or kind is None:
            raise InvalidInput(
                f"endpoint {ep.name!r}: versions serve different or unknown tasks",
                rule="task",
            )
        protocols[ep.name] = kind.protocol
    return Plan(endpoints, protocols, replicas, internal_token)


def check_pins(p: Plan, registry: Registry) -> None:
    """Refuse (``digest_mismatch``) a plan whose registry digests differ from the pins."""
    for _, spec in p.replicas:
        registry.get_pinned(f"{spec.model_name}/{spec.version}", spec.digest)


class RayServeTarget:
    """Ray Serve as the thing the desired state is applied to.

    Every method is idempotent: running applications with the same spec are left alone,
    so re-applying after a crash converges instead of restarting replicas.
    """

    def __init__(self, settings: Settings, *, host: str, port: int, internal_token: str) -> None:
        from serving.gateway.deployment import GatewaySpec

        self.settings = settings
        self.gateway_spec = GatewaySpec(
            host=host,
            port=port,
            keys_uri=settings.tracking_uri,
            internal_token=internal_token,
            stream_idle_timeout_s=settings.gateway_stream_idle_timeout_s,
            header_timeout_s=settings.gateway_header_timeout_s,
            body_timeout_s=settings.gateway_body_timeout_s,
            keep_alive_timeout_s=settings.gateway_keep_alive_timeout_s,
            max_connections=settings.gateway_max_connections,
        )

    @classmethod
    def join(cls, settings: Settings) -> RayServeTarget:
        """Attach to the cluster a running `paved serve` started (or PAVED_RAY_ADDRESS)."""
        import ray
        from ray import serve

        if not ray.is_initialized():
            try:
                ray.init(
                    address=settings.ray_address or "auto",
                    namespace="pavedpath",
                    log_to_driver=False,
                )
            except ConnectionError as exc:
                raise Unavailable(
                    "no running Ray cluster: start `paved serve --env ENV` first "
                    "(or set PAVED_RAY_ADDRESS)"
                ) from exc
        try:
            gateway = serve.get_app_handle(GATEWAY_APP)
            token = str(gateway.internal_token.remote().result(timeout_s=30))
        except Exception as exc:
            raise Unavailable("no Pavedpath gateway is running in this Ray cluster") from exc
        target = cls(settings, host="127.0.0.1", port=0, internal_token=token)
        target.gateway_spec = serve_gateway_spec(gateway)
        return target

    def start(self) -> None:
        import ray
        from ray import serve

        if not ray.is_initialized():
            if self.settings.ray_address:
                ray.init(
                    address=self.settings.ray_address, namespace="pavedpath", log_to_driver=False
                )
            else:
                ray_compat.loopback_only()
                # Ray's processes inherit an ignored SIGINT, so Ctrl-C in a terminal (sent
                # to the whole process group) reaches only `paved serve`, which then drains.
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    ray_compat.init_local(
                        namespace="pavedpath",
                        include_dashboard=False,
                        dashboard_host="127.0.0.1",
                        log_to_driver=False,
                        runtime_env={"worker_process_setup_hook": ray_compat.LOOPBACK_HOOK},
                    )
                finally:
                    signal.signal(signal.SIGINT, previous)
        serve.start(
            proxy_location="Disabled",
            logging_config={"enable_access_log": False, "log_level": "WARNING"},
        )

    def running_apps(self) -> dict[str, str]:
        from ray import serve

        # ApplicationStatus is a str enum: its value, not str(), is "RUNNING"
        return {name: st.status.value for name, st in serve.status().applications.items()}

    def ensure_replicas(self, p: Plan, timeout_s: float | None = None) -> list[str]:
        """Make every application the plan needs run with the plan's spec; wait for all.

        An absent application is started. One running with the same spec but another
        replica count is scaled in place (same version: Serve keeps its replicas). One
        running with another spec (limits, context length, resources) gets a new replica
        set beside the old one: the new version is deployed at twice the count, so Serve's
        rolling update stops an old replica only once a new one runs, and the count goes
        back when the new set runs. Applications whose spec did not change are left alone.

        Every application has the same deadline (``PAVED_REPLICA_START_TIMEOUT_S``);
        those that miss it or that Serve reports failed raise :class:`ReplicasFailed`,
        naming their endpoints, after the others finished. A failed application that
        served nothing before is deleted (its replicas and resources freed); one that
        served keeps its old replicas for the caller to put its old spec back.
        """
        deadline = time.monotonic() + (
            self.settings.replica_start_timeout_s if timeout_s is None else timeout_s
        )
        running = self.running_apps()
        wanted: dict[str, tuple[ReplicaSpec, Any, str, int]] = {}
        for ep, spec in p.replicas:
            dep, version = replica_deployment(ep, spec)
            n = max(1, ep.spec.replicas.min)
            wanted[deployment_app_name(spec.endpoint, spec.version)] = (spec, dep, version, n)

        def deploy(name: str, count: int) -> None:
            spec, dep, version, _ = wanted[name]
            log.info("deploying %s (version %s, %d replicas)", name, version, count)
            app = ray_compat.pin_version(dep.options(num_replicas=count), version).bind(spec)
            ray_compat.run_app(app, name, wait=False)

        served = {n for n in wanted if running.get(n) in ("RUNNING", "DEPLOYING")}
        surging: list[str] = []
        for name, (_, _, version, n) in wanted.items():
            current = deployed_model(name) if running.get(name, "DELETING") != "DELETING" else None
            if current is None:
                count = n
            elif current[0] != version:
                count = 2 * n  # the new replica set comes up before the old one leaves
                surging.append(name)
            elif current[1] != n:
                count = n  # in place
            else:
                continue
            deploy(name, count)
        failed = wait_running(list(wanted), deadline)
        settled = [n for n in surging if n not in failed]
        for name in settled:
            deploy(name, wanted[name][3])
        failed |= wait_running(settled, deadline)
        if failed:
            for name in sorted(failed):
                if name not in served:  # its replicas stop in the background
                    log.warning("deleting %s, which did not start: %s", name, failed[name])
                    ray_compat.delete_app(name, wait=False)
            raise ReplicasFailed({wanted[n][0].endpoint: why for n, why in sorted(failed.items())})
        return list(wanted)

    def apply_routes(self, p: Plan) -> None:
        """Point every gateway replica at the plan's versions (in place, no restart).

        Starts the gateway the first time. Returns once every gateway replica took the
        routes, which it does only after the versions they name are reachable.
        """
        from serving.gateway.deployment import GatewayIngress, RoutesConfig

        routes = RoutesConfig(endpoints=p.endpoints, protocols=p.protocols)
        dep = GatewayIngress.options(  # type: ignore[attr-defined]
            user_config=routes.model_dump(mode="json"), graceful_shutdown_timeout_s=60
        )
        # Same spec, same version: Serve applies the new routes (user_config) to the
        # running gateway replicas in place instead of replacing them.
        app = ray_compat.pin_version(dep, spec_version(self.gateway_spec)).bind(self.gateway_spec)
        ray_compat.run_app(app, GATEWAY_APP, wait=True)

    def remove(self, names: list[str]) -> None:
        """Delete applications; their replicas drain in-flight requests before stopping."""
        for name in names:
            ray_compat.delete_app(name, wait=True)

    def model_apps(self) -> list[str]:
        """Model applications, leaving out those already being deleted."""
        return [n for n, st in self.running_apps().items() if n != GATEWAY_APP and st != "DELETING"]

    def shutdown(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking requests, let those in flight finish, then stop Serve and Ray."""
        import ray
        from ray import serve

        if not ray.is_initialized():
            return
        try:
            handle = serve.get_app_handle(GATEWAY_APP)
            handle.drain.remote(drain_timeout_s).result(timeout_s=drain_timeout_s + 5)
        except Exception:  # nothing to drain if the gateway never started, or Ray is gone
            log.info("no gateway to drain")
        serve.shutdown()
        ray.shutdown()


def spec_version(spec: BaseModel) -> str:
    """A deployment version derived from its init spec (Pavedpath's version included)."""
    from importlib.metadata import version

    payload = f"{version('pavedpath')}:{spec.model_dump_json()}"
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def serve_gateway_spec(gateway: object) -> GatewaySpec:
    """The spec the running gateway was started with, so a re-apply changes only routes."""
    from serving.gateway.deployment import GatewaySpec

    raw = gateway.spec.remote().result(timeout_s=30)  # type: ignore[attr-defined]
    return GatewaySpec.model_validate(raw)


def wait_running(names: list[str], deadline: float) -> dict[str, str]:
    """Wait until every named application runs, or fails, or ``deadline`` (monotonic)
    passes; return the ones that did not run, each with Serve's message or the deadline."""
    from ray import serve

    failed: dict[str, str] = {}
    pending = set(names)
    while pending:
        apps = serve.status().applications
        for name in sorted(pending):
            st = apps.get(name)
            if st is None:
                continue
            if st.status == "RUNNING":
                pending.discard(name)
            elif st.status in ("DEPLOY_FAILED", "UNHEALTHY"):
                failed[name] = f"application {name} failed to start: {st.message}"[:1000]
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            for name in pending:
                failed[name] = f"application {name} was not running by its start deadline"
            break
        if pending:
            time.sleep(0.5)
    return failed


def deployed_model(app_name: str) -> tuple[str | None, int] | None:
    """The version and replica count Serve targets for an application's model, if any."""
    return ray_compat.deployment_target(MODEL_DEPLOYMENT, app_name)


def replica_deployment(ep: Endpoint, spec: ReplicaSpec) -> tuple[Any, str]:
    """The model deployment for one endpoint version and its version string.

    The version covers everything that needs new replicas when it changes (the replica
    spec: limits, context length, batch rows; and the actor options: GPUs); the replica
    count is left out, so Serve changes it in place.
    """
    from serving.replica import ModelReplica

    kind = kind_of(spec.task)
    env = dict(kind.replica_env) if kind else {}
    actor_options = {
        "num_cpus": 0,
        "num_gpus": ep.spec.resources.gpu,
        "runtime_env": {"env_vars": env},
    }
    dep = ModelReplica.options(  # type: ignore[attr-defined]
        max_ongoing_requests=spec.max_concurrency,
        graceful_shutdown_timeout_s=60,
        ray_actor_options=actor_options,
    )
    payload = f"{spec_version(spec)}:{json.dumps(actor_options, sort_keys=True)}"
    return dep, hashlib.sha256(payload.encode()).hexdigest()[:16]
