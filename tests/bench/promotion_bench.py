"""Register-to-serving time: from a promotion commit to the first response the new
version serves, with a client loop running the whole time (failed requests counted).

    python -m tests.bench.promotion_bench [--switches 4]

Each switch commits a manifest naming the other credit-risk version to the GitOps
repository, runs one reconcile pass (what `paved reconcile --once` and the watch loop
do) and stops the clock at the first response carrying the new version's header.
Not run by CI; results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from paved.schemas import Role
from pipelines.gitops.source import GitSource
from pipelines.reconciler import Reconciler, StateStore
from serving.deploy import RayServeTarget
from serving.internal_auth import new_token
from serving.keys import KeyStore
from tests.integration.pipelines.gitops_helpers import (
    commit_manifest,
    endpoint_doc,
    init_repo,
    registry_with_versions,
)
from tests.integration.pipelines.test_reconcile_live import _infer_body
from tests.utils.servers import free_port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--switches", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings, reg = registry_with_versions(root / "home", versions=2)
        repo = init_repo(root / "repo")
        commit_manifest(
            repo, "staging", "risk.yaml", endpoint_doc("risk", "staging", 1, pins=reg), "v1"
        )
        key, _ = KeyStore(settings.tracking_uri).create(
            team="risk", roles=frozenset({Role.APP}), created_by="bench"
        )
        port = free_port()
        target = RayServeTarget(settings, host="127.0.0.1", port=port, internal_token=new_token())
        target.start()
        rec = Reconciler(
            source=GitSource(repo),
            registry=reg,
            target=target,
            state=StateStore(root / "state"),
            settings=settings,
            env="staging",
            internal_token=target.gateway_spec.internal_token,
        )
        body = _infer_body(reg.fetch("credit-risk/1"))
        outcomes: Counter[str] = Counter()
        latest = {"version": "", "at": 0.0}
        stop = threading.Event()

        def client_loop() -> None:
            url = f"http://127.0.0.1:{port}/v2/models/risk/infer"
            deadline = time.monotonic() + 1800
            with httpx.Client(timeout=30, headers={"authorization": f"Bearer {key}"}) as c:
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        r = c.post(url, json=body)
                        outcomes[str(r.status_code)] += 1
                        v = r.headers.get("x-paved-model-version", "")
                        if v != latest["version"]:
                            latest.update(version=v, at=time.monotonic())
                    except httpx.HTTPError as exc:
                        outcomes[type(exc).__name__] += 1

        times = []
        try:
            rec.once()
            loop = threading.Thread(target=client_loop)
            loop.start()
            time.sleep(2)
            for i in range(args.switches):
                version = 2 if i % 2 == 0 else 1
                t0 = time.monotonic()
                commit_manifest(
                    repo,
                    "staging",
                    "risk.yaml",
                    endpoint_doc("risk", "staging", version, pins=reg),
                    f"to v{version}",
                )
                rec.once()
                while latest["version"] != str(version) and time.monotonic() - t0 < 300:
                    time.sleep(0.01)
                times.append(latest["at"] - t0)
                print(f"switch to v{version}: {times[-1]:.1f} s", flush=True)
                time.sleep(2)
        finally:
            stop.set()
            target.shutdown()
        print(
            json.dumps(
                {
                    "switches_s": [round(t, 2) for t in times],
                    "p50_s": round(statistics.median(times), 2),
                    "requests": dict(outcomes),
                }
            )
        )


if __name__ == "__main__":
    main()
