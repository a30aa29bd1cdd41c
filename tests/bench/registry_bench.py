"""Registry benchmark: Pavedpath's layer vs a bare MlflowClient, side by side in one run.

For each store (SQLite, PostgreSQL) a model is filled with N versions, then register,
set-alias and lookup-by-alias are timed through Pavedpath and through the bare client,
interleaved in rounds so load on the machine hits both alike.

    python -m tests.bench.registry_bench [--versions 1000] [--samples 200] [--rounds 3]

Not run by CI; results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from paved.schemas import Actor, Role
from paved.settings import Settings
from registry.schemas import ModelPackage
from registry.service import Registry
from tests.conftest import PG_ADMIN_DSN, write_model_dir

Op = Callable[[int], object]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def time_pair(paved: Op, bare: Op, n: int, start: int) -> tuple[list[float], list[float]]:
    """Alternate the two call by call, so drift in machine load hits both alike."""
    p_ms: list[float] = []
    b_ms: list[float] = []
    for i in range(n):
        for op, out in ((bare, b_ms), (paved, p_ms)) if i % 2 else ((paved, p_ms), (bare, b_ms)):
            t0 = time.perf_counter()
            op(start + i)
            out.append((time.perf_counter() - t0) * 1000)
    return p_ms, b_ms


def bench_backend(backend: str, uri: str | None, root: Path, args: argparse.Namespace) -> dict:
    settings = Settings(home=root / backend, registry_uri=uri, actor="bench")
    reg = Registry.from_settings(settings)
    client = reg.store.client  # type: ignore[attr-defined]
    actor = Actor(identity="bench", roles=frozenset({Role.ML_ENGINEER}))
    pkg = ModelPackage(
        model_dir=write_model_dir(root / f"model-{backend}"),
        team="bench",
        task="tabular-classification",
        framework="torch",
        git_commit="0" * 40,
        dataset_digest="sha256:0",
        dataset_description="bench",
    )
    logged = reg.log_package(pkg, experiment="paved/bench", actor=actor)
    run_id = logged.run_id
    run = client.get_run(run_id)
    source = f"{run.info.artifact_uri}/model"
    paved_name, bare_name = f"paved-{uuid.uuid4().hex[:6]}", f"bare-{uuid.uuid4().hex[:6]}"

    # Fill both models with N versions (the bare one with the same tags Pavedpath writes).
    first = reg.register_run(paved_name, logged, actor=actor)
    first_mv = client.get_model_version(paved_name, "1")
    tags, card = first_mv.tags, first_mv.description
    client.create_registered_model(bare_name)
    client.create_model_version(bare_name, source, run_id=run_id, tags=tags, description=card)
    for _ in range(args.versions - 1):
        reg.register_run(paved_name, logged, actor=actor)
        client.create_model_version(bare_name, source, run_id=run_id, tags=tags, description=card)
    assert first.version == 1

    ops: dict[str, tuple[Op, Op]] = {
        "register": (
            lambda i: reg.register_run(paved_name, logged, actor=actor),
            lambda i: client.create_model_version(
                bare_name, source, run_id=run_id, tags=tags, description=card
            ),
        ),
        "set_alias": (
            lambda i: reg.set_alias(paved_name, "challenger", 1 + i % args.versions, actor=actor),
            lambda i: client.set_registered_model_alias(
                bare_name, "challenger", str(1 + i % args.versions)
            ),
        ),
        "get_by_alias": (
            lambda i: reg.get(f"{paved_name}@challenger"),
            lambda i: client.get_model_version_by_alias(bare_name, "challenger"),
        ),
    }
    results: dict[str, dict[str, list[float]]] = {k: {"paved": [], "bare": []} for k in ops}
    per_round = max(1, args.samples // args.rounds)
    counter = 0
    for _ in range(args.rounds):
        for name, (paved_op, bare_op) in ops.items():
            p_ms, b_ms = time_pair(paved_op, bare_op, per_round, counter)
            results[name]["paved"] += p_ms
            results[name]["bare"] += b_ms
            counter += per_round
    summary = {}
    for name, r in results.items():
        p50_p, p50_b = statistics.median(r["paved"]), statistics.median(r["bare"])
        summary[name] = {
            "paved_p50_ms": round(p50_p, 2),
            "paved_p99_ms": round(pct(r["paved"], 0.99), 2),
            "bare_p50_ms": round(p50_b, 2),
            "bare_p99_ms": round(pct(r["bare"], 0.99), 2),
            "p50_ratio": round(p50_p / p50_b, 3),
        }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backends", default="sqlite,postgres")
    args = ap.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            uri = None
            if backend == "postgres":
                import psycopg

                db = f"paved_bench_{uuid.uuid4().hex[:8]}"
                with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{db}"')
                uri = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{db}"
            try:
                out[backend] = bench_backend(backend, uri, Path(tmp), args)
            finally:
                if uri:
                    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
                        conn.execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()",
                            (db,),
                        )
                        conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
            print(backend, json.dumps(out[backend], indent=1), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
