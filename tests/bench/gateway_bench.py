"""Gateway benchmark: what Pavedpath's gateway adds over calling a model replica directly.

A trivial model replica (tests/bench/serve_apps.chat_replica on its own HTTP server,
published through ``record_replica_metadata``, like serving/replica.py) runs as the
Ray Serve deployment "model" in apps ``bench--v1`` and ``bench--v2`` on a local Ray.
Measured side by side, in interleaved rounds, at 1 and 16 connections:

- direct: to the replicas' own addresses (connections spread over both);
- gateway in a Serve replica: the real ``GatewayIngress``, deployed by
  ``RayServeTarget.apply_routes`` as ``paved serve`` does, finding the replicas through
  the Serve controller; API-key auth, routing, request validation, a 50% challenger
  split (v1 champion, v2 challenger), admission and metrics all on;
- gateway in its own process: the same ``Gateway`` under uvicorn outside Ray, with a
  static directory of the same replica addresses;
- LiteLLM's proxy (its own virtualenv, ``--litellm``; one worker, master key on) in front
  of the same v1 replica, passing the replica's internal token as an extra header;

then, in a second phase with Serve's HTTP proxy switched on, direct vs Ray Serve's
own HTTP proxy in front of a deployment answering itself (DESIGN.md's peer row).

    python -m tests.bench.gateway_bench [--rounds 3] [--secs 4] [--out results.json]
        [--litellm /tmp/litellm-venv/bin/litellm]

Not run by CI; results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paved.manifest import Endpoint
from paved.schemas import Role
from paved.settings import Settings
from serving import ray_compat
from serving.deploy import Plan, RayServeTarget
from serving.gateway.deployment import RoutesConfig
from serving.gateway.directory import deployment_app_name
from serving.internal_auth import HEADER as INTERNAL_HEADER
from serving.internal_auth import new_token
from serving.keys import KeyStore
from tests.bench import harness
from tests.bench.harness import Measure, Row
from tests.bench.serve_apps import SelfAnswering, TrivialModel
from tests.bench.standalone_gateway import run_standalone
from tests.utils.servers import free_port

ENDPOINT = "bench"
CHAT = "/v1/chat/completions"
BODY = '{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":8}'
DIRECT = "direct to the replica"
LITELLM = "LiteLLM proxy → the replica"
GOAL_ADDED_P50_MS = 0.5
GOAL_RPS_16 = 3000.0


def endpoint(challenger_weight: int) -> Endpoint:
    spec: dict[str, Any] = {"model": "trivial", "champion": {"version": 1}}
    if challenger_weight:
        spec["challenger"] = {"version": 2, "weight": challenger_weight}
    return Endpoint.model_validate({"metadata": {"name": ENDPOINT, "team": "bench"}, "spec": spec})


def unary_pair(
    urls: list[str], headers: dict[str, str], secs: float, cpu_pid: int | None = None
) -> Measure:
    """Latency at 1 connection, then latency and throughput at 16 connections; with
    ``cpu_pid``, the CPU that process (the proxy) spends per request."""

    def measure() -> Row:
        row: Row = {}
        for conc, n in ((1, 2000), (16, 1_000_000)):
            r = harness.loadgen(
                "unary",
                urls,
                conc=conc,
                n=n,
                secs=secs,
                body=BODY,
                headers=headers,
                cpu={"proxy": cpu_pid} if cpu_pid else None,
            )
            keys = (
                *("p50_ms", "p99_ms", "rps", "errors", "warmup_errors", "failed"),
                "cpu_us_per_request_proxy",
            )
            row.update({f"{k}_c{conc}": r.get(k) for k in keys})
        return row

    return measure


@contextlib.contextmanager
def local_ray() -> Iterator[None]:
    import ray
    from ray import serve

    ray_compat.init_local(
        namespace="pavedpath-bench",
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(harness.ROOT)}},
    )
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def deploy_replicas(token: str, versions: list[int]) -> dict[int, str]:
    """One trivial "model" app per version; their HTTP addresses."""
    from ray import serve

    addresses = {}
    for v in versions:
        name = deployment_app_name(ENDPOINT, v)
        handle = serve.run(TrivialModel.bind(token), name=name, route_prefix=None)  # type: ignore[attr-defined]
        addresses[v] = handle.remote().result(timeout_s=60)
    return addresses


def make_keys(keys_uri: str) -> tuple[str, str]:
    """An app key (calls the endpoint) and a viewer key (reads /metrics)."""
    store = KeyStore(keys_uri)
    try:
        app, _ = store.create(team="bench", roles=frozenset({Role.APP}), created_by="bench")
        viewer, _ = store.create(team="bench", roles=frozenset({Role.VIEWER}), created_by="bench")
    finally:
        store.dispose()
    return app, viewer


@contextlib.contextmanager
def litellm_proxy(
    exe: str, replica: str, token: str, tmp: Path
) -> Iterator[tuple[str, dict[str, str], subprocess.Popen[bytes]]]:
    """LiteLLM's proxy in front of one trivial replica: (chat URL, client headers, process).

    The config names the replica as an OpenAI-compatible upstream and passes its internal
    token as an extra header, so the replica answers LiteLLM exactly as it answers the
    gateway. The proxy authenticates clients with a master key, as the gateway does.
    LiteLLM's retries (2 by default, with back-off) and cooldowns are off and a request
    is bounded at 10 s, so a failing upstream shows as errors, not as a stalled run (the
    gateway retries only a request that never reached a replica)."""
    config = tmp / "litellm.yaml"
    model = {
        "model_name": ENDPOINT,
        "litellm_params": {
            "model": f"openai/{ENDPOINT}",
            "api_base": f"http://{replica}/v1",
            "api_key": "sk-upstream-unused",
            "extra_headers": {INTERNAL_HEADER.decode(): token},
            "max_retries": 0,
            "timeout": 10,
        },
    }
    doc = {
        "model_list": [model],
        "litellm_settings": {"num_retries": 0, "request_timeout": 10},
        "router_settings": {"num_retries": 0, "timeout": 10, "disable_cooldowns": True},
    }
    config.write_text(json.dumps(doc))  # YAML is a superset of JSON
    master_key = "sk-" + secrets.token_hex(32)
    port = free_port()
    cmd = [exe, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    with harness.process(cmd, tmp / "litellm.log", harness.litellm_env(master_key)) as proc:
        base = f"http://127.0.0.1:{port}"
        harness.wait_http(base + "/health/liveliness", 180, proc)
        yield base + CHAT, {"Authorization": f"Bearer {master_key}"}, proc


def gateway_phase(args: argparse.Namespace, tmp: Path) -> list[Row]:
    keys_uri = f"sqlite:///{tmp / 'keys.db'}"
    app_key, viewer_key = make_keys(keys_uri)
    token = new_token()
    # The gateway deployed as `paved serve` deploys it, reading keys from keys_uri.
    settings = Settings(home=tmp / "paved", registry_uri=keys_uri)
    target = RayServeTarget(settings, host="127.0.0.1", port=free_port(), internal_token=token)
    target.start()
    replicas = deploy_replicas(token, [1, 2] if args.challenger_weight else [1])
    routes = RoutesConfig(
        endpoints=[endpoint(args.challenger_weight)], protocols={ENDPOINT: "openai"}
    )
    target.apply_routes(Plan(routes.endpoints, routes.protocols, [], token))
    in_serve = f"http://127.0.0.1:{target.gateway_spec.port}"
    harness.wait_http(in_serve + "/v2/health/ready", 60)
    own_spec = target.gateway_spec.model_copy(update={"port": free_port()})
    targets = {(ENDPOINT, v): [a] for v, a in replicas.items()}
    with contextlib.ExitStack() as stack:
        own = stack.enter_context(run_standalone(own_spec, routes, targets, tmp))
        auth = {"Authorization": f"Bearer {app_key}"}
        direct = [f"http://{a}{CHAT}" for a in replicas.values()]
        serve_pid = harness.ray_actor_pid("ServeReplica:paved-gateway")
        paths = {
            DIRECT: unary_pair(direct, {**auth, INTERNAL_HEADER.decode(): token}, args.secs),
            "gateway in a Serve replica": unary_pair([in_serve + CHAT], auth, args.secs, serve_pid),
            "gateway in its own process": unary_pair([own.url + CHAT], auth, args.secs, own.pid),
        }
        if args.litellm:
            url, headers, proc = stack.enter_context(
                litellm_proxy(args.litellm, replicas[1], token, tmp)
            )
            paths[LITELLM] = unary_pair([url], headers, args.secs, proc.pid)
        rows = tag(harness.interleave(paths, args.rounds), "gateway")
        for where, base in (("a Serve replica", in_serve), ("its own process", own.url)):
            print(f"requests by cohort, gateway in {where}:", cohorts(base, viewer_key))
    return rows


def cohorts(base_url: str, viewer_key: str) -> dict[str, float]:
    """Requests answered per cohort, from the gateway's own /metrics: the split ran."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(base_url + "/metrics", headers={"Authorization": f"Bearer {viewer_key}"}).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "paved_requests":
            for s in family.samples:
                if s.name == "paved_requests_total":
                    key = f"{s.labels['cohort']} {s.labels['status']}"
                    counts[key] = counts.get(key, 0) + s.value
    return counts


def proxy_phase(args: argparse.Namespace) -> list[Row]:
    """Serve's own HTTP proxy needs Serve started with it: a phase of its own."""
    from ray import serve

    serve.shutdown()  # type: ignore[no-untyped-call]
    port = free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    token = new_token()
    replica = deploy_replicas(token, [1])[1]
    serve.run(SelfAnswering.bind(), name="self-answering", route_prefix="/")  # type: ignore[attr-defined]
    harness.wait_http(f"http://127.0.0.1:{port}/", 60)
    paths = {
        DIRECT: unary_pair(
            [f"http://{replica}{CHAT}"], {INTERNAL_HEADER.decode(): token}, args.secs
        ),
        "Ray Serve HTTP proxy, deployment answering itself": unary_pair(
            [f"http://127.0.0.1:{port}{CHAT}"], {}, args.secs, harness.ray_actor_pid("ProxyActor")
        ),
    }
    return tag(harness.interleave(paths, args.rounds, seed=100), "serve-proxy")


def tag(rows: list[Row], phase: str) -> list[Row]:
    for r in rows:
        r["phase"] = phase
    return rows


def added(rows: list[Row], name: str, field: str) -> float:
    return harness.paired(rows, name, DIRECT, field)


def summary_row(rows: list[Row], name: str, direct_rps: float) -> list[str]:
    p50_added = added(rows, name, "p50_ms_c1")
    rps = harness.median(rows, name, "rps_c16")
    errors = sum(
        r[f"{kind}_c{conc}"] or 0
        for r in rows
        if r["name"] == name
        for kind in ("errors", "warmup_errors")
        for conc in (1, 16)
    )
    meets = p50_added <= GOAL_ADDED_P50_MS and rps >= GOAL_RPS_16
    peer = name in (DIRECT, LITELLM) or name.startswith("Ray Serve")
    return [
        name,
        f"{harness.median(rows, name, 'p50_ms_c1'):.2f}",
        f"{harness.median(rows, name, 'p99_ms_c1'):.2f}",
        f"{p50_added:+.2f}",
        f"{harness.median(rows, name, 'p50_ms_c16'):.2f}",
        f"{harness.median(rows, name, 'p99_ms_c16'):.2f}",
        f"{added(rows, name, 'p50_ms_c16'):+.2f}",
        f"{rps:,.0f}",
        f"{rps / direct_rps:.2f}",
        _cpu(harness.median(rows, name, "cpu_us_per_request_proxy_c16")),
        str(errors),
        "" if peer else ("meets" if meets else "misses"),
    ]


def _cpu(us: float) -> str:
    return "" if math.isnan(us) else f"{us:,.0f}"  # NaN: no proxy on this path


def summarize(rows: list[Row]) -> str:
    header = [
        "path",
        "p50 c=1 ms",
        "p99 c=1 ms",
        "added p50 c=1 ms",
        "p50 c=16 ms",
        "p99 c=16 ms",
        "added p50 c=16 ms",
        "req/s c=16",
        "req/s vs direct",
        "proxy CPU µs/request (c=16)",
        "errors",
        f"goal (≤{GOAL_ADDED_P50_MS} ms, ≥{GOAL_RPS_16:,.0f}/s)",
    ]
    tables = []
    for phase in ("gateway", "serve-proxy"):
        prs = [r for r in rows if r["phase"] == phase]
        if not prs:
            continue
        names = [DIRECT, *sorted({r["name"] for r in prs} - {DIRECT})]
        direct_rps = harness.median(prs, DIRECT, "rps_c16")
        body = [summary_row(prs, name, direct_rps) for name in names]
        tables.append(f"{phase} phase\n\n" + harness.table(header, body))
    return "\n\n".join(tables)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=4.0, help="bound on each load run")
    ap.add_argument("--challenger-weight", type=int, default=50, help="0: no challenger")
    ap.add_argument("--skip-proxy", action="store_true", help="no Serve proxy phase")
    ap.add_argument(
        "--litellm",
        default=shutil.which("litellm") or harness.default_litellm(),
        help="LiteLLM CLI (its own virtualenv); empty: skip LiteLLM",
    )
    ap.add_argument("--out", type=Path, help="write raw rows as JSON here")
    args = ap.parse_args()
    before = harness.machine()
    with tempfile.TemporaryDirectory(prefix="paved-gw-bench-") as tmp, local_ray():
        rows = gateway_phase(args, Path(tmp))
        if not args.skip_proxy:
            rows += proxy_phase(args)
    meta = {"before": before, "after": harness.machine(), "args": vars(args) | {"out": None}}
    print(f"\n{meta}\n\n{summarize(rows)}")
    harness.save(rows, meta, args.out)


if __name__ == "__main__":
    main()
