"""LLM benchmark: streamed tokens through Pavedpath vs vLLM's own server vs LiteLLM.

tiny-gpt is trained and registered in a temporary PAVED_HOME, then served two ways
from the same verified model directory, with the same engine settings:

- Pavedpath as ``paved serve`` deploys it (serving/deploy.py): a model replica running
  ``LLMBackend`` (vLLM ``AsyncLLM``) on Ray Serve, behind the gateway (API key, routing,
  admission, metering, metrics), the gateway placed in a Serve replica (what ships) and,
  for comparison, in its own process; plus the replica without the gateway;
- ``python -m vllm.entrypoints.openai.api_server`` directly, and a LiteLLM proxy
  (``litellm --model openai/chat --api_base <vLLM>/v1``) in front of it.

Each round, in shuffled order, every path serves TOTAL streams of 64 tokens, 16 at a
time (output tokens/s, time to first token), then a few streams one at a time (TTFT
without queueing). The EOS token is banned with ``logit_bias`` so every stream is
exactly 64 tokens on every path.

LiteLLM's proxy pins versions that clash with Pavedpath's environment, so it lives in
its own virtualenv:

    python -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]'
    python -m tests.bench.llm_bench [--rounds 3] [--total 96] \
        [--litellm /tmp/litellm-venv/bin/litellm] [--out results.json]

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
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from paved.manifest import Endpoint
from paved.schemas import Actor, Role
from paved.settings import Settings
from serving import deploy
from serving.backends.base import BackendConfig
from serving.backends.llm_engine import apply_environment, context_length, engine_arguments
from serving.gateway.deployment import GatewaySpec, RoutesConfig
from serving.gateway.directory import deployment_app_name
from serving.internal_auth import HEADER as INTERNAL_HEADER
from serving.internal_auth import new_token
from serving.keys import KeyStore
from serving.replica import ReplicaSpec
from tests.bench import harness
from tests.bench.harness import Measure, Row
from tests.bench.standalone_gateway import run_standalone
from tests.utils.servers import free_port

ENDPOINT = "chat"
COMPLETIONS = "/v1/completions"
PROMPT = "Q: what color is the sky? A:"
VLLM = "vLLM OpenAI server, direct"
GATEWAY_IN_SERVE = "Pavedpath: gateway in a Serve replica → LLM replica"
GATEWAY_OWN_PROCESS = "Pavedpath: gateway in its own process → LLM replica"
LITELLM = "LiteLLM proxy → vLLM server"
REPLICA = "Pavedpath LLM replica, no gateway"
# A Ray worker without num_cpus runs with OMP_NUM_THREADS=1 (Ray's default), and the
# replica's engine processes inherit it; the vLLM server gets the same.
RAY_WORKER_THREADS = {"OMP_NUM_THREADS": "1"}
GOAL_THROUGHPUT_RATIO = 0.95
GOAL_ADDED_TTFT_MS = 5.0


def bench_endpoint() -> Endpoint:
    """As examples/endpoints/chat.yaml."""
    return Endpoint.model_validate(
        {
            "metadata": {"name": ENDPOINT, "team": "bench"},
            "spec": {
                "model": "tiny-gpt",
                "champion": {"version": 1},
                "max_model_len": 256,
                "limits": {"max_tokens": 128, "max_n": 2, "max_logprobs": 5, "max_inflight": 64},
            },
        }
    )


def train_and_register(settings: Settings, work: Path) -> Path:
    """tiny-gpt v1 in the registry; its verified local directory."""
    from pipelines.train import train_and_log
    from registry.service import Registry

    registry = Registry.from_settings(settings)
    actor = Actor(identity="bench", roles=frozenset({Role.ML_ENGINEER}), team="bench")
    train_and_log(
        "tiny-gpt",
        registry=registry,
        work_dir=work,
        actor=actor,
        team="bench",
        register_as="tiny-gpt",
    )
    return registry.fetch("tiny-gpt/1")


def request_body(model_dir: Path, tokens: int) -> str:
    eos = json.loads((model_dir / "config.json").read_text())["eos_token_id"]
    return json.dumps(
        {
            "model": ENDPOINT,
            "prompt": PROMPT,
            "max_tokens": tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logit_bias": {str(eos): -100},
        }
    )


def vllm_command(spec: ReplicaSpec, model_dir: Path, port: int) -> list[str]:
    """vLLM's server with the engine arguments the Pavedpath replica uses."""
    config = BackendConfig(
        endpoint=spec.endpoint,
        model_name=spec.model_name,
        version=spec.version,
        model_dir=model_dir,
        max_model_len=spec.max_model_len,
        max_concurrency=spec.max_concurrency,
    )
    max_len = context_length(model_dir, spec.max_model_len)
    args = engine_arguments(config, "cpu", max_len, None, max_choices=spec.limits.max_n)
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-uvicorn-access-log",
    ]
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value is not False:
            cmd += [flag, str(value)]
    return cmd


def litellm_command(exe: str, vllm_base: str, port: int) -> list[str]:
    return [
        exe,
        "--model",
        f"openai/{ENDPOINT}",
        "--api_base",
        f"{vllm_base}/v1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


@dataclass(frozen=True)
class Target:
    """One way to reach the model: URL, headers, and the processes whose CPU counts
    (``proxy``: what sits in front of the engine's server; ``engine``: that server with
    its engine processes)."""

    url: str
    headers: dict[str, str]
    cpu: dict[str, int]


def streams(t: Target, body: str, args: argparse.Namespace) -> Measure:
    """``args.total`` streams 16 at a time, then ``args.probes`` streams one at a time."""

    def measure() -> Row:
        row: Row = {}
        for conc, n, suffix in ((args.conc, args.total, ""), (1, args.probes, "_c1")):
            r = harness.loadgen(
                "stream",
                [t.url],
                conc=conc,
                n=n,
                secs=args.secs,
                body=body,
                headers=t.headers,
                cpu=t.cpu if suffix == "" else None,
            )
            row.update({f"{k}{suffix}": v for k, v in r.items() if k not in ("mode", "conc")})
        return row

    return measure


def summary_row(rows: list[Row], name: str) -> list[str]:
    def m(field: str) -> float:
        return harness.median(rows, name, field)

    def vs(baseline: str, field: str, ratio: bool = False) -> float:
        return harness.paired(rows, name, baseline, field, ratio=ratio)

    ratio, added_ttft = vs(VLLM, "tok_per_s", ratio=True), vs(VLLM, "ttft_p50_ms")
    goal = ""
    if name in (GATEWAY_IN_SERVE, GATEWAY_OWN_PROCESS):
        meets = ratio >= GOAL_THROUGHPUT_RATIO and added_ttft <= GOAL_ADDED_TTFT_MS
        goal = "meets" if meets else "misses"
    proxy_cpu = m("cpu_us_per_token_proxy")
    mine = [r for r in rows if r["name"] == name]
    errors = sum(r["errors"] + r["errors_c1"] for r in mine)
    fewest = min(min(r["min_tokens"], r["min_tokens_c1"]) for r in mine)
    return [
        name,
        f"{m('tok_per_s'):,.0f}",
        f"{ratio:.2f}",
        f"{vs(REPLICA, 'tok_per_s', ratio=True):.2f}",
        f"{m('ttft_p50_ms'):.1f}",
        f"{added_ttft:+.1f}",
        f"{m('ttft_p99_ms'):.1f}",
        f"{m('ttft_p50_ms_c1'):.1f}",
        f"{vs(VLLM, 'ttft_p50_ms_c1'):+.1f}",
        f"{vs(REPLICA, 'ttft_p50_ms_c1'):+.1f}",
        _cpu(proxy_cpu),
        _cpu((0.0 if math.isnan(proxy_cpu) else proxy_cpu) + m("cpu_us_per_token_engine")),
        str(errors),
        str(fewest),
        goal,
    ]


def _cpu(us: float) -> str:
    return "" if math.isnan(us) else f"{us:,.0f}"  # NaN: no proxy on this path


def summarize(rows: list[Row]) -> str:
    header = [
        "path",
        "tokens/s (16 streams)",
        "vs vLLM direct",
        "vs replica alone",
        "TTFT p50 ms",
        "added TTFT vs vLLM ms",
        "TTFT p99 ms",
        "TTFT p50 ms, 1 stream",
        "added vs vLLM, 1 stream",
        "added vs replica, 1 stream",
        "proxy CPU µs/token",
        "total CPU µs/token",
        "errors",
        "fewest tokens in a stream",
        f"goal (≥{GOAL_THROUGHPUT_RATIO}, ≤+{GOAL_ADDED_TTFT_MS:g} ms)",
    ]
    names = [VLLM, *sorted({r["name"] for r in rows} - {VLLM})]
    return harness.table(header, [summary_row(rows, n) for n in names])


@dataclass(frozen=True)
class Prepared:
    settings: Settings
    model_dir: Path
    app_key: str
    plan: deploy.Plan


def prepare(tmp: Path) -> Prepared:
    """Train and register tiny-gpt, create an app key, plan the endpoint like paved serve."""
    from registry.service import Registry

    settings = Settings(home=tmp / "paved", actor="bench", team="bench")
    model_dir = train_and_register(settings, tmp)
    store = KeyStore(settings.tracking_uri)
    key, _ = store.create(team="bench", roles=frozenset({Role.APP}), created_by="bench")
    store.dispose()
    registry = Registry.from_settings(settings)
    plan = deploy.plan([bench_endpoint()], registry, settings, internal_token=new_token())
    return Prepared(settings, model_dir, key, plan)


def serve_pavedpath(p: Prepared, port: int, stack: contextlib.ExitStack) -> dict[str, Target]:
    """Ray Serve with the LLM replica and the gateway, as ``paved serve`` starts them;
    the gateway, and the replica reached directly."""
    token = p.plan.internal_token
    target = deploy.RayServeTarget(p.settings, host="127.0.0.1", port=port, internal_token=token)
    stack.callback(target.shutdown)
    target.start()
    target.ensure_replicas(p.plan)
    target.apply_routes(p.plan)
    engine = {"engine": harness.ray_actor_pid(f"ServeReplica:{deployment_app_name(ENDPOINT, 1)}")}
    gateway = harness.ray_actor_pid(f"ServeReplica:{deploy.GATEWAY_APP}")
    return {
        GATEWAY_IN_SERVE: Target(
            f"http://127.0.0.1:{port}{COMPLETIONS}",
            {"Authorization": f"Bearer {p.app_key}"},
            {"proxy": gateway} | engine,
        ),
        REPLICA: Target(
            f"http://{replica_address()}{COMPLETIONS}",
            {INTERNAL_HEADER.decode(): token},
            engine,
        ),
    }


def serve_standalone_gateway(
    p: Prepared, replica: Target, port: int, tmp: Path, stack: contextlib.ExitStack
) -> Target:
    """The same gateway as the Serve one (spec as RayServeTarget builds it), own process."""
    spec = GatewaySpec(
        port=port, keys_uri=p.settings.tracking_uri, internal_token=p.plan.internal_token
    )
    routes = RoutesConfig(endpoints=p.plan.endpoints, protocols=p.plan.protocols)
    targets = {(ENDPOINT, 1): [urlsplit(replica.url).netloc]}
    gateway = stack.enter_context(run_standalone(spec, routes, targets, tmp))
    return Target(
        gateway.url + COMPLETIONS,
        {"Authorization": f"Bearer {p.app_key}"},
        {"proxy": gateway.pid} | replica.cpu,
    )


def serve_vllm(
    p: Prepared, port: int, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Target, subprocess.Popen[bytes]]:
    """vLLM's OpenAI server on the same model directory and engine settings; it loads
    while the caller goes on (wait for its /health before use)."""
    cmd = vllm_command(p.plan.replicas[0][1], p.model_dir, port)
    env = harness.env_with_root(deploy.LLM_ENV | RAY_WORKER_THREADS)
    proc = stack.enter_context(harness.process(cmd, tmp / "vllm.log", env))
    return Target(f"http://127.0.0.1:{port}{COMPLETIONS}", {}, {"engine": proc.pid}), proc


def serve_litellm(
    exe: str, vllm: Target, port: int, tmp: Path, stack: contextlib.ExitStack
) -> Target:
    """LiteLLM's proxy in front of the vLLM server, authenticating with a master key."""
    master_key = "sk-" + secrets.token_hex(32)
    vllm_base = vllm.url.removesuffix(COMPLETIONS)
    cmd = litellm_command(exe, vllm_base, port)
    proc = stack.enter_context(
        harness.process(cmd, tmp / "litellm.log", harness.litellm_env(master_key))
    )
    base = f"http://127.0.0.1:{port}"
    harness.wait_http(base + "/health/liveliness", 180, proc)
    auth = {"Authorization": f"Bearer {master_key}"}
    return Target(base + COMPLETIONS, auth, {"proxy": proc.pid} | vllm.cpu)


def run(args: argparse.Namespace, tmp: Path) -> list[Row]:
    p = prepare(tmp)
    apply_environment("cpu")  # what the replica sets for its engine; the vLLM server inherits
    ports = {name: free_port() for name in ("vllm", "gateway", "standalone", "litellm")}
    with contextlib.ExitStack() as stack:
        # vLLM's server starts first: its engine loads while Ray and the replica come up.
        vllm, vllm_proc = serve_vllm(p, ports["vllm"], tmp, stack)
        targets = {VLLM: vllm, **serve_pavedpath(p, ports["gateway"], stack)}
        targets[GATEWAY_OWN_PROCESS] = serve_standalone_gateway(
            p, targets[REPLICA], ports["standalone"], tmp, stack
        )
        harness.wait_http(vllm.url.removesuffix(COMPLETIONS) + "/health", 600, vllm_proc)
        if args.litellm:
            targets[LITELLM] = serve_litellm(args.litellm, vllm, ports["litellm"], tmp, stack)
        body = request_body(p.model_dir, args.tokens)
        measures = {name: streams(t, body, args) for name, t in targets.items()}
        for measure in measures.values():  # warm every path once, unmeasured
            measure()
        return harness.interleave(measures, args.rounds)


def replica_address() -> str:
    from ray import serve

    handle = serve.get_app_handle(deployment_app_name(ENDPOINT, 1))
    address: str = handle.remote().result(timeout_s=60)
    return address


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conc", type=int, default=16, help="concurrent streams")
    ap.add_argument("--total", type=int, default=96, help="streams per measurement")
    ap.add_argument("--probes", type=int, default=8, help="streams one at a time")
    ap.add_argument("--tokens", type=int, default=64, help="tokens per stream")
    ap.add_argument("--secs", type=float, default=180.0, help="bound on each load run")
    ap.add_argument(
        "--litellm",
        default=shutil.which("litellm") or harness.default_litellm(),
        help="LiteLLM CLI; empty: skip LiteLLM",
    )
    ap.add_argument("--out", type=Path, help="write raw rows as JSON here")
    args = ap.parse_args()
    before = harness.machine()
    with tempfile.TemporaryDirectory(prefix="paved-llm-bench-") as tmp:
        rows = run(args, Path(tmp))
    meta: dict[str, Any] = {
        "before": before,
        "after": harness.machine(),
        "args": vars(args) | {"out": None},
    }
    print(f"\n{meta}\n\n{summarize(rows)}")
    harness.save(rows, meta, args.out)


if __name__ == "__main__":
    main()
