"""The serving golden path, as a user runs it: train, register, create keys, `paved serve
--manifests examples/endpoints/`, then real clients (the openai SDK, tritonclient)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import tritonclient.http as triton
import yaml

from tests.utils.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PAVED = [sys.executable, "-m", "cli.main"]


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "PAVED_HOME": str(home), "PAVED_TEAM": "default"}
    env.pop("PAVED_REGISTRY_URI", None)
    return env


def _paved(home: Path, *args: str, timeout: float = 900, key: str | None = None) -> str:
    env = _env(home) if key is None else {**_env(home), "PAVED_API_KEY": key}
    r = subprocess.run(
        [*PAVED, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


HELD = 4  # chat's in-flight bound in the served copy of the examples


def _manifests(folder: Path) -> Path:
    """The shipped examples/endpoints, with chat's in-flight bound lowered to ``HELD``, so
    the 429 test can hold every slot with a few long streams."""
    folder.mkdir()
    for src in (ROOT / "examples" / "endpoints").glob("*.yaml"):
        doc = yaml.safe_load(src.read_text())
        if doc["metadata"]["name"] == "chat":
            doc["spec"]["limits"]["max_inflight"] = HELD
        (folder / src.name).write_text(yaml.safe_dump(doc))
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    home = tmp_path_factory.mktemp("serve") / "paved"
    _paved(home, "models", "train", "credit-risk", "--register", "credit-risk")
    _paved(home, "models", "train", "tiny-gpt", "--register", "tiny-gpt")
    admin = _paved(home, "keys", "bootstrap", "--holder", "ops").strip()

    def mint(team: str, role: str, holder: str) -> str:
        args = ("keys", "create", "--team", team, "--role", role, "--holder", holder)
        return _paved(home, *args, key=admin).strip()

    keys = {
        "app": mint("default", "app", "chat-app"),
        "other": mint("other", "app", "other-app"),
        "viewer": mint("default", "viewer", "sre"),
    }
    manifests = _manifests(home.parent / "endpoints")
    port = free_port()
    log = (home / "serve.log").open("w")
    proc = subprocess.Popen(
        [*PAVED, "serve", "--manifests", str(manifests), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(home),
        cwd=ROOT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert proc.poll() is None, (home / "serve.log").read_text()
            try:
                if httpx.get(base + "/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail("paved serve did not become ready:\n" + (home / "serve.log").read_text())
        yield {"base": base, **keys, "proc": proc, "log": str(home / "serve.log")}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_openai_sdk_completions_and_chat(stack) -> None:
    client = openai.OpenAI(base_url=stack["base"] + "/v1", api_key=stack["app"])
    assert [m.id for m in client.models.list().data] == ["chat"]
    raw = client.completions.with_raw_response.create(
        model="chat", prompt="Q: what color is the sky? A:", max_tokens=8, temperature=0
    )
    assert raw.headers["x-paved-model-version"] == "1"
    assert raw.headers["x-paved-cohort"] == "champion"
    first = raw.parse()
    assert first.choices[0].text.strip()
    assert first.usage is not None
    assert first.usage.completion_tokens >= 1
    again = client.completions.create(
        model="chat", prompt="Q: what color is the sky? A:", max_tokens=8, temperature=0
    )
    assert again.choices[0].text == first.choices[0].text
    chat = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "what color is the sky?"}],
        max_tokens=8,
        temperature=0,
    )
    assert chat.choices[0].message.content


def test_openai_sdk_streaming_with_usage(stack) -> None:
    client = openai.OpenAI(base_url=stack["base"] + "/v1", api_key=stack["app"])
    chunks = list(
        client.completions.create(
            model="chat",
            prompt="Q: what does a cow say? A:",
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens >= 1
    chat = list(
        client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "what does a cow say?"}],
            max_tokens=8,
            stream=True,
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chat if c.choices)


def test_tritonclient_predictions(stack) -> None:
    from bundled.credit_risk.data import generate

    client = triton.InferenceServerClient(stack["base"].removeprefix("http://"))
    headers = {"authorization": f"Bearer {stack['app']}"}
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_model_metadata("risk", headers=headers)
    frame = generate(100, seed=11)
    inputs = []
    for spec in meta["inputs"]:
        arr = np.asarray(frame.columns[spec["name"]][:8])
        arr = arr.astype({"BYTES": object, "FP32": np.float32, "BOOL": bool}[spec["datatype"]])
        tensor = triton.InferInput(spec["name"], list(arr.shape), spec["datatype"])
        tensor.set_data_from_numpy(arr)  # tritonclient's default: binary tensors
        inputs.append(tensor)
    binary = client.infer(
        "risk",
        inputs,
        headers=headers,
        outputs=[triton.InferRequestedOutput("default_probability")],
    )
    probs = binary.as_numpy("default_probability")
    assert probs.shape == (8,)
    assert np.all((probs > 0) & (probs < 1))
    as_json = client.infer(
        "risk",
        inputs,
        headers=headers,
        outputs=[triton.InferRequestedOutput("default_probability", binary_data=False)],
    )
    assert np.allclose(as_json.as_numpy("default_probability"), probs)


def test_errors_as_described(stack) -> None:
    base = stack["base"]
    body = {"model": "chat", "prompt": "Q: 2 plus 2? A:", "max_tokens": 4}
    assert httpx.post(base + "/v1/completions", json=body).status_code == 401
    r = httpx.post(
        base + "/v1/completions", json=body, headers={"authorization": f"Bearer {stack['other']}"}
    )
    assert r.status_code == 404  # another team's endpoint looks like no endpoint at all
    assert r.json()["error"]["code"] == "model_not_found"
    r = httpx.post(
        base + "/v1/completions",
        json={**body, "max_tokens": 100000},
        headers={"authorization": f"Bearer {stack['app']}"},
    )
    assert r.status_code == 400
    assert "max_tokens" in r.json()["error"]["message"]
    r = httpx.post(
        base + "/v1/completions",
        json={**body, "prompt": "word " * 400},
        headers={"authorization": f"Bearer {stack['app']}"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["message"]
    r = httpx.get(base + "/metrics", headers={"authorization": f"Bearer {stack['viewer']}"})
    assert r.status_code == 200
    assert "paved_requests_total" in r.text


EOS_ID = 3  # <eos>: the fourth of tiny-gpt's special tokens (bundled/tiny_gpt/corpus.py)


def test_429_past_the_endpoints_inflight_bound(stack) -> None:
    """With every one of the endpoint's in-flight slots held, the next request is refused at
    once with 429 and Retry-After; the held streams complete."""
    base, key = stack["base"], stack["app"]
    auth = {"authorization": f"Bearer {key}"}
    # EOS banned: every stream generates all 100 tokens (tiny-gpt's context is 128), so the
    # slots stay held for a while.
    body = {
        "model": "chat",
        "prompt": "Q: 3 plus 4? A:",
        "max_tokens": 100,
        "n": 2,
        "stream": True,
        "temperature": 1.0,
        "logit_bias": {str(EOS_ID): -100},
    }

    async def run() -> tuple[httpx.Response, list[int | bytes]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=300, limits=limits) as client:
            started = [asyncio.Event() for _ in range(HELD)]

            async def hold(first_bytes: asyncio.Event) -> int | bytes:
                async with client.stream(
                    "POST", base + "/v1/completions", json=body, headers=auth
                ) as r:
                    data = b""
                    async for chunk in r.aiter_bytes():
                        data += chunk
                        first_bytes.set()
                    return r.status_code if data.endswith(b"data: [DONE]\n\n") else data[-300:]

            held = [asyncio.create_task(hold(e)) for e in started]
            # Every stream has produced bytes and none has ended: all slots are held now.
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 120)
            ended = [t.result() for t in held if t.done()]
            assert not ended, f"a stream ended before all were held: {ended}"
            extra = await client.post(
                base + "/v1/completions", json={**body, "stream": False}, headers=auth
            )
            still_held = not any(t.done() for t in held)
            codes = await asyncio.gather(*held)
            assert still_held, "a held stream ended before the extra request was answered"
            return extra, codes

    extra, held_codes = asyncio.run(run())
    assert extra.status_code == 429, extra.text
    assert extra.json()["error"]["code"]
    assert int(extra.headers["retry-after"]) >= 1
    assert held_codes == [200] * HELD


def test_sigterm_drains_in_flight_requests_and_exits(stack) -> None:
    proc: subprocess.Popen[bytes] = stack["proc"]
    base, key = stack["base"], stack["app"]
    body = {
        "model": "chat",
        "prompt": "Q: 5 plus 2? A:",
        "max_tokens": 96,
        "stream": True,
        "temperature": 1.0,
    }

    async def streams_during_shutdown() -> list[int]:
        async with httpx.AsyncClient(timeout=300) as client:
            started = [asyncio.Event() for _ in range(4)]

            async def one(first_bytes: asyncio.Event) -> int:
                async with client.stream(
                    "POST",
                    base + "/v1/completions",
                    json=body,
                    headers={"authorization": f"Bearer {key}"},
                ) as r:
                    data = b""
                    async for chunk in r.aiter_bytes():
                        data += chunk
                        first_bytes.set()
                    return r.status_code if data.endswith(b"data: [DONE]\n\n") else -1

            tasks = [asyncio.create_task(one(e)) for e in started]
            # SIGTERM once every stream is provably in flight (its first bytes arrived).
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 120)
            proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks)

    assert asyncio.run(streams_during_shutdown()) == [200, 200, 200, 200]
    assert proc.wait(timeout=120) == 0
    assert "stopped" in Path(stack["log"]).read_text()
