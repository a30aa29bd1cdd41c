"""What the serving benchmarks share: processes they start and always stop, the load
generator in its own process, interleaved rounds, medians and Markdown tables.

Every measured path runs once per round, in an order shuffled per round (seeded), so
load from other tenants of the machine falls on all paths alike; results are medians
over rounds. The load average is recorded beside every run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
Row = dict[str, Any]
Measure = Callable[[], Row]


def env_with_root(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment with the repository importable (``tests`` is no package)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


@contextlib.contextmanager
def process(
    cmd: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in its own session, output to ``log``; stopped (then killed) on exit.

    Its stdin is a pipe held open here: helpers that block on stdin exit by themselves
    if this process dies without cleaning up.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env or env_with_root(),
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            yield proc
        except BaseException:
            lines = log.read_text(errors="replace").splitlines()[-40:]
            print(f"--- {log} (last lines) ---", *lines, sep="\n", file=sys.stderr)
            raise
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it outlives ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_http(
    url: str,
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {url} was up")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f}s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants so far.

    CPU time per request or per token is the noise-robust measure of a proxy's own
    cost: it barely moves when other tenants load the machine, unlike latency.
    """
    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def ray_actor_pid(title: str) -> int:
    """PID of the Ray worker whose process title contains ``title``, among this
    process's descendants (the local Ray this process started, not a neighbour's)."""
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if title in " ".join(proc.cmdline()):
                return int(proc.pid)
    raise LookupError(f"no Ray worker titled {title!r} under this process")


def loadgen(
    mode: str,
    urls: Sequence[str],
    *,
    conc: int,
    n: int,
    secs: float,
    body: str,
    headers: dict[str, str] | None = None,
    warmup: int = 20,
    timeout: float | None = None,
    cpu: dict[str, int] | None = None,
) -> Row:
    """One load run in its own process (tests/bench/loadgen.py); its JSON result.

    ``timeout`` bounds each request (each stream), the load generator's default when
    None. ``cpu`` names processes (label -> PID; each with its descendants) whose CPU
    time per request (unary, warm-up requests included) or per output token (stream) is
    added to the result as ``cpu_us_per_<unit>_<label>``.

    A load generator that fails or outlives its own bounds does not stop the benchmark:
    the row has no samples, ``errors`` set to ``conc`` and the reason in ``failed``.
    """
    per_request = timeout if timeout is not None else (10.0 if mode == "unary" else secs + 30)
    cmd = [
        sys.executable,
        "-m",
        "tests.bench.loadgen",
        mode,
        *urls,
        "--conc",
        str(conc),
        "--n",
        str(n),
        "--secs",
        str(secs),
        "--warmup",
        str(warmup),
        "--timeout",
        str(per_request),
        "--body",
        body,
    ]
    for k, v in (headers or {}).items():
        cmd += ["--header", f"{k}: {v}"]
    cpu = cpu or {}
    cpu_before = {label: cpu_seconds(pid) for label, pid in cpu.items()}
    # The load generator bounds itself to about 2 * (secs + per_request); this is a backstop.
    bound = 2 * (secs + per_request) + 60
    try:
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=env_with_root(),
            cwd=ROOT,
            timeout=bound,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return _failed(mode, conc, f"load generator still running after {bound:.0f}s")
    if out.returncode != 0:
        return _failed(mode, conc, f"load generator exited {out.returncode}: {out.stderr[-2000:]}")
    row: Row = json.loads(out.stdout.strip().splitlines()[-1])
    units, field = (
        (row["n"] + conc * warmup, "request") if mode == "unary" else (row["tokens"], "token")
    )
    for label, pid in cpu.items():
        spent = cpu_seconds(pid) - cpu_before[label]
        row[f"cpu_us_per_{field}_{label}"] = round(1e6 * spent / max(1, units), 1)
    return row


def _failed(mode: str, conc: int, reason: str) -> Row:
    print(f"loadgen {mode} c={conc}: {reason}", file=sys.stderr, flush=True)
    row: Row = {"mode": mode, "conc": conc, "n": 0, "errors": conc, "failed": reason}
    if mode == "unary":
        return row | {"warmup_errors": 0, "rps": 0.0, "p50_ms": None, "p99_ms": None}
    return row | {"tokens": 0, "min_tokens": 0, "tok_per_s": 0.0, "ttft_p50_ms": None}


def interleave(paths: dict[str, Measure], rounds: int, seed: int = 0) -> list[Row]:
    """Run every path once per round, shuffled per round; rows tagged name/round/load."""
    rows: list[Row] = []
    names = list(paths)
    for rnd in range(rounds):
        random.Random(seed + rnd).shuffle(names)
        for name in names:
            row = paths[name]()
            row.update(name=name, round=rnd, loadavg_1m=round(os.getloadavg()[0], 2))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def median(rows: list[Row], name: str, field: str, **match: Any) -> float:
    vals = [
        r[field]
        for r in rows
        if r["name"] == name
        and r.get(field) is not None
        and all(r.get(k) == v for k, v in match.items())
    ]
    return statistics.median(vals) if vals else float("nan")


def paired(rows: list[Row], name: str, baseline: str, field: str, *, ratio: bool = False) -> float:
    """Median over rounds of ``name``'s field minus (or divided by) the baseline's, each
    compared with the baseline's run in the same round; rounds where either has no value
    (a failed run) are left out."""
    base = {r["round"]: r.get(field) for r in rows if r["name"] == baseline}
    vals = [
        r[field] / b if ratio else r[field] - b
        for r in rows
        if r["name"] == name
        and r.get(field) is not None
        and (b := base.get(r["round"])) is not None
        and not (ratio and b == 0)
    ]
    return statistics.median(vals) if vals else float("nan")


def table(header: Sequence[str], body: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Date, cores and load average: printed with every result table."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def save(rows: list[Row], meta: dict[str, Any], out: Path | None) -> None:
    if out is None:
        return
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print("raw results:", out)


def litellm_env(master_key: str) -> dict[str, str]:
    """LiteLLM's proxy authenticated by its master key (as Pavedpath by API key); no
    network: the bundled cost map, no telemetry; a dummy upstream key."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return env | {
        "LITELLM_MASTER_KEY": master_key,
        "OPENAI_API_KEY": "sk-upstream-unused",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
    }


def default_litellm() -> str:
    """The LiteLLM CLI of the side virtualenv the benchmark docs set up, if present."""
    exe = Path("/tmp/litellm-venv/bin/litellm")
    return str(exe) if exe.exists() else ""
