"""The LLM backend over real HTTP: vLLM's engine on a freshly trained tiny-gpt, spoken to
by the official ``openai`` SDK, and by raw httpx where the exact bytes matter.

One server for the module (engine start is the slow part): ``llm_server.py`` runs in a
subprocess, because vLLM spawns processes and must start under ``__main__``. The model
is trained for a few steps only; what it says does not matter here, only that serving
is faithful: usage counts the real tokens, greedy decoding repeats, streams say what the
whole response says, limits refuse with OpenAI-shaped 400s, and a client that leaves
frees its slot and stops its generation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from openai.types.chat import ChatCompletionMessageParam
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from paved.manifest import Endpoint
from paved.schemas import Role
from pipelines.trainers.tiny_gpt import TinyGPTParams, train
from serving.gateway.auth import KeyCache
from serving.gateway.directory import StaticDirectory
from serving.gateway.forward import Outcome
from serving.gateway.routing import RouteTable
from serving.keys import KeyStore
from tests.utils.json_numbers import body, numeric_fields
from tests.utils.recording import RecordingGateway
from tests.utils.servers import UvicornThread

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER = Path(__file__).with_name("llm_server.py")
REPO = Path(__file__).resolve().parents[3]
ENDPOINT = "chat"
VERSION = 7
MAX_CONCURRENCY = 2  # small, so that the limit is reachable with two streams
MODEL_CONTEXT = 128  # tiny-gpt's n_positions; the config asks for 256 and is capped
TRAIN_STEPS = 60
START_TIMEOUT_S = 420
PROMPT = "Q: what color is the sky? A:"
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "what color is the sky?"}]


@dataclass
class ServedLLM:
    url: str
    client: openai.OpenAI
    http: httpx.Client
    tokenizer: PreTrainedTokenizerBase
    log: Path

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get("/health").json()
        return body

    def wait_idle(self, timeout_s: float = 20.0) -> float:
        """Seconds until no request is in flight in the backend or the engine."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout_s:
            health = self.health()
            if health["in_flight"] == 0 and health["engine_requests"] == 0:
                return time.perf_counter() - started
            time.sleep(0.02)
        raise AssertionError(f"still busy after {timeout_s}s: {self.health()}")


def _wait_until_ready(proc: subprocess.Popen[bytes], port_file: Path, log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        if url is None and port_file.exists() and port_file.read_text():
            url = f"http://127.0.0.1:{json.loads(port_file.read_text())['port']}"
        if url is not None:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
        time.sleep(0.5)
    pytest.fail(f"engine not ready in {START_TIMEOUT_S}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLLM]:
    root = tmp_path_factory.mktemp("llm-backend")
    model_dir = train(root / "model", seed=0, params=TinyGPTParams(steps=TRAIN_STEPS)).model_dir
    spec = {
        "config": {
            "endpoint": ENDPOINT,
            "model_name": "tiny-gpt",
            "version": VERSION,
            "model_dir": str(model_dir),
            "max_model_len": 256,
            "max_concurrency": MAX_CONCURRENCY,
        },
        "limits": {},  # the defaults: max_tokens 512, max_n 4, max_logprobs 5
        "engine_options": {"kv_cache_memory_bytes": 32 * 2**20},
    }
    (root / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"}
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(SERVER), str(root / "spec.json"), str(root / "port.json")],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = _wait_until_ready(proc, root / "port.json", log)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        with httpx.Client(base_url=url, timeout=60) as http:
            yield ServedLLM(url, client, http, tokenizer, log)
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    assert code == 0, log.read_text()[-4000:]


def sse_lines(response: httpx.Response) -> list[str]:
    return [line for line in response.iter_lines() if line]


def data_events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


def no_eos(llm: ServedLLM) -> dict[str, int]:
    """A logit bias that keeps the model from ending: generations run to max_tokens."""
    return {str(llm.tokenizer.eos_token_id): -100}


# ---------------------------------------------------------------- the basics


def test_health_and_models_describe_the_endpoint(llm: ServedLLM) -> None:
    health = llm.health()
    assert health["status"] == "ready"
    assert health["max_concurrency"] == MAX_CONCURRENCY
    (model,) = llm.client.models.list().data
    assert model.id == ENDPOINT
    assert model.to_dict()["max_model_len"] == MODEL_CONTEXT
    assert model.to_dict()["root"] == f"tiny-gpt/{VERSION}"


def test_completion_reports_the_tokens_it_used(llm: ServedLLM) -> None:
    raw = llm.client.completions.with_raw_response.create(
        model=ENDPOINT, prompt=PROMPT, max_tokens=8, temperature=0
    )
    assert raw.headers["x-paved-model-version"] == str(VERSION)
    response = raw.parse()
    assert response.model == ENDPOINT
    assert response.id.startswith("cmpl-")
    (choice,) = response.choices
    assert choice.finish_reason in ("stop", "length")
    assert response.usage is not None
    assert response.usage.prompt_tokens == len(llm.tokenizer(PROMPT)["input_ids"])
    assert 1 <= response.usage.completion_tokens <= 8
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_greedy_completion_repeats_and_its_stream_says_the_same(llm: ServedLLM) -> None:
    def ask() -> Any:
        return llm.client.completions.create(
            model=ENDPOINT, prompt="the sky is", max_tokens=12, temperature=0
        )

    first, second = ask(), ask()
    assert first.choices[0].text == second.choices[0].text
    chunks = list(
        llm.client.completions.create(
            model=ENDPOINT,
            prompt="the sky is",
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == first.choices[0].text
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump() == first.usage.model_dump()


def test_chat_uses_the_models_template_and_its_stream_says_the_same(llm: ServedLLM) -> None:
    response = llm.client.chat.completions.create(
        model=ENDPOINT, messages=QUESTION, max_completion_tokens=8, temperature=0
    )
    assert response.id.startswith("chatcmpl-")
    assert response.model == ENDPOINT
    (choice,) = response.choices
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    conversation = [{"role": "user", "content": "what color is the sky?"}]
    prompt = llm.tokenizer.apply_chat_template(
        conversation, tokenize=False, add_generation_prompt=True
    )
    assert response.usage is not None
    assert response.usage.prompt_tokens == len(
        llm.tokenizer(str(prompt), add_special_tokens=False)["input_ids"]
    )
    again = llm.client.chat.completions.create(
        model=ENDPOINT, messages=QUESTION, max_completion_tokens=8, temperature=0
    )
    assert again.choices[0].message.content == choice.message.content

    chunks = list(
        llm.client.chat.completions.create(
            model=ENDPOINT,
            messages=QUESTION,
            max_completion_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump() == response.usage.model_dump()


def test_every_stream_ends_with_the_usage_comment_then_done(llm: ServedLLM) -> None:
    body = {"model": ENDPOINT, "prompt": PROMPT, "max_tokens": 10, "temperature": 0}
    whole = llm.http.post("/v1/completions", json=body).json()
    with llm.http.stream("POST", "/v1/completions", json=body | {"stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = sse_lines(response)
    assert lines[-1] == "data: [DONE]"
    assert lines[-2].startswith(": paved-usage ")
    metered = json.loads(lines[-2].removeprefix(": paved-usage "))
    assert metered.pop("first_token_s") > 0  # the replica's own time to first token
    assert metered == {
        "prompt_tokens": whole["usage"]["prompt_tokens"],
        "completion_tokens": whole["usage"]["completion_tokens"],
        "cached_tokens": whole["usage"]["prompt_tokens_details"]["cached_tokens"],
    }
    assert all("usage" not in event for event in data_events(lines))  # none asked for


def test_several_choices_and_logprobs(llm: ServedLLM) -> None:
    response = llm.client.completions.create(
        model=ENDPOINT, prompt=["the sky is", "hello"], n=2, max_tokens=6, seed=3, logprobs=2
    )
    assert sorted(c.index for c in response.choices) == [0, 1, 2, 3]
    assert response.usage is not None
    tokens = 0
    for choice in response.choices:
        assert choice.logprobs is not None
        assert choice.logprobs.tokens is not None
        assert choice.logprobs.top_logprobs is not None
        tokens += len(choice.logprobs.tokens)
        assert all(len(top) == 2 for top in choice.logprobs.top_logprobs)
    assert tokens == response.usage.completion_tokens

    chat = llm.client.chat.completions.create(
        model=ENDPOINT, messages=QUESTION, max_tokens=5, logprobs=True, top_logprobs=3, n=2
    )
    assert chat.usage is not None
    assert len(chat.choices) == 2
    content = [t for c in chat.choices for t in (c.logprobs.content if c.logprobs else None) or []]
    assert len(content) == chat.usage.completion_tokens
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content)


# ---------------------------------------------------------------- refusals


def test_an_over_long_prompt_is_refused_before_it_runs(llm: ServedLLM) -> None:
    long_prompt = "the sky is blue. " * 60
    with pytest.raises(openai.BadRequestError) as info:
        llm.client.completions.create(model=ENDPOINT, prompt=long_prompt, max_tokens=8)
    assert (info.value.code, info.value.param) == ("prompt_tokens", "prompt")
    assert f"context of {MODEL_CONTEXT} tokens" in info.value.message

    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": long_prompt}]
    with pytest.raises(openai.BadRequestError) as chat_info:
        llm.client.chat.completions.create(model=ENDPOINT, messages=messages, stream=True)
    assert (chat_info.value.code, chat_info.value.param) == ("prompt_tokens", "messages")


@pytest.mark.parametrize(
    ("max_tokens", "code", "words"),
    [(200, "max_tokens", f"leaves no room for a prompt in the model's context of {MODEL_CONTEXT}"),
     (120, "prompt_tokens", f"more than the model's context of {MODEL_CONTEXT} tokens"),
     (600, "max_tokens", "exceeds this endpoint's limit of 512")],
)  # fmt: skip
def test_max_tokens_beyond_the_context_or_the_limit_is_refused(
    llm: ServedLLM, max_tokens: int, code: str, words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        llm.client.completions.create(model=ENDPOINT, prompt=PROMPT, max_tokens=max_tokens)
    assert info.value.code == code
    assert words in info.value.message


def test_refusals_have_openais_error_shape(llm: ServedLLM) -> None:
    response = llm.http.post("/v1/completions", json={"model": ENDPOINT, "prompt": [1, 2]})
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "prompt: token-id prompts are not supported; send the prompt as text",
            "type": "invalid_request_error",
            "param": "prompt",
            "code": "prompt",
        }
    }
    with pytest.raises(openai.NotFoundError) as info:
        llm.client.completions.create(model="other", prompt=PROMPT, max_tokens=2)
    assert info.value.param == "model"
    wrong_method = llm.http.get("/v1/chat/completions")
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")
    assert wrong_method.json()["error"]["code"] == "http_method"
    nowhere = llm.http.post("/v1/embeddings", json={})
    assert (nowhere.status_code, nowhere.json()["error"]["code"]) == (404, "route")
    greedy_n = llm.http.post(
        "/v1/chat/completions",
        json={"model": ENDPOINT, "messages": QUESTION, "n": 2, "temperature": 0},
    )
    assert (greedy_n.status_code, greedy_n.json()["error"]["param"]) == (400, "n")


# ---------------------------------------------------------------- concurrency


def long_stream(llm: ServedLLM) -> dict[str, Any]:
    return {
        "model": ENDPOINT,
        "prompt": "the sky is",
        "n": 4,
        "max_tokens": 100,
        "logit_bias": no_eos(llm),
        "stream": True,
    }


def test_past_max_concurrency_the_answer_is_503_at_once(llm: ServedLLM) -> None:
    with (
        llm.http.stream("POST", "/v1/completions", json=long_stream(llm)) as first,
        llm.http.stream("POST", "/v1/completions", json=long_stream(llm)) as second,
    ):
        assert (first.status_code, second.status_code) == (200, 200)
        # Keep the line iterators: dropping one closes its connection (a disconnect).
        readers = [first.iter_lines(), second.iter_lines()]
        assert all(next(reader).startswith("data: {") for reader in readers)
        assert llm.health()["in_flight"] == MAX_CONCURRENCY
        refused = llm.http.post("/v1/completions", json=long_stream(llm))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "max_concurrency"
        assert refused.json()["error"]["param"] == "max_concurrency"
        # Refused without waiting for a slot: both streams are still generating.
        assert llm.health()["in_flight"] == MAX_CONCURRENCY
    llm.wait_idle()
    ok = llm.client.completions.create(model=ENDPOINT, prompt=PROMPT, max_tokens=2)
    assert ok.choices


def test_a_client_leaving_mid_stream_stops_its_generation(llm: ServedLLM) -> None:
    started = time.perf_counter()
    llm.http.post("/v1/completions", json=long_stream(llm) | {"stream": False})
    whole_s = time.perf_counter() - started  # how long the full generation takes
    before = llm.health()["disconnects"]

    with llm.http.stream("POST", "/v1/completions", json=long_stream(llm)) as response:
        reader = response.iter_lines()
        assert next(reader).startswith("data: {")
        assert llm.health()["engine_requests"] == 4
    freed_s = llm.wait_idle()  # the connection is closed here

    assert llm.health()["disconnects"] == before + 1
    assert freed_s < whole_s / 2, (freed_s, whole_s)


def test_a_client_leaving_before_a_plain_response_stops_its_generation(llm: ServedLLM) -> None:
    before = llm.health()["disconnects"]
    body = long_stream(llm) | {"stream": False}
    with (
        httpx.Client(base_url=llm.url, timeout=0.3) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post("/v1/completions", json=body)
    llm.wait_idle(timeout_s=5)
    assert llm.health()["disconnects"] == before + 1


# ---------------------------------------------------------------- hostile numbers


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [({"seed": 2**63}, 400, "seed"), ({"seed": -(2**63) - 1}, 400, "seed"),
     ({"seed": 2**63 - 1}, 200, None), ({"seed": -(2**63)}, 200, None),
     ({"logit_bias": {"\u00b2": 5}}, 400, "logit_bias"),
     ({"logit_bias": {"99999999": 5}}, 400, "logit_bias"),
     ({"top_k": 2**31 - 1, "top_p": 5e-324, "temperature": 2}, 200, None),
     ({"top_k": 1}, 200, None)],
)  # fmt: skip
def test_numbers_at_the_edges_reach_the_engine_or_are_400s(
    llm: ServedLLM, fields: dict[str, Any], status: int, code: str | None
) -> None:
    for path, base in (
        ("/v1/completions", {"prompt": PROMPT}),
        ("/v1/chat/completions", {"messages": QUESTION}),
    ):
        body = {"model": ENDPOINT, "max_tokens": 3, **base, **fields}
        response = llm.http.post(path, json=body)
        assert response.status_code == status, response.text
        if code is not None:
            assert response.json()["error"]["code"] == code


def test_a_seed_gives_the_same_sample(llm: ServedLLM) -> None:
    def sample(seed: int) -> str:
        body = {"model": ENDPOINT, "prompt": PROMPT, "max_tokens": 8, "seed": seed, "top_k": 5}
        text: str = llm.http.post("/v1/completions", json=body).json()["choices"][0]["text"]
        return text

    assert sample(2**63 - 1) == sample(2**63 - 1)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fields=numeric_fields(chat=False), chat_fields=numeric_fields(chat=True))
def test_any_json_number_is_answered_with_a_2xx_or_4xx(
    llm: ServedLLM, fields: dict[str, Any], chat_fields: dict[str, Any]
) -> None:
    base = {"model": ENDPOINT, "max_tokens": 4}
    for path, extra, drawn in (
        ("/v1/completions", {"prompt": PROMPT}, fields),
        ("/v1/chat/completions", {"messages": QUESTION}, chat_fields),
    ):
        raw = body(base | extra, drawn)
        response = llm.http.post(path, content=raw, headers={"content-type": "application/json"})
        assert response.status_code < 500, (raw[:300], response.text[:300])
        if response.status_code >= 400:
            assert response.json()["error"]["code"]  # a named rule, in OpenAI's shape


# ---------------------------------------------------------------- through the gateway


@dataclass
class Gatewayed:
    url: str
    gateway: RecordingGateway
    auth: dict[str, str]

    def outcome(self, n: int) -> Outcome:
        """The ``n``-th request's outcome (0-based), once metered."""
        deadline = time.monotonic() + 20
        while len(self.gateway.outcomes) <= n:
            assert time.monotonic() < deadline, "the gateway metered nothing"
            time.sleep(0.02)
        return self.gateway.outcomes[n]


@pytest.fixture(scope="module")
def gateway(llm: ServedLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatewayed]:
    """The real gateway under uvicorn in front of the engine's replica."""
    store = KeyStore(f"sqlite:///{tmp_path_factory.mktemp('gw-keys') / 'keys.db'}")
    key = store.create(team="search", roles=frozenset({Role.APP}), created_by="t")[0]
    endpoint = Endpoint.model_validate(
        {
            "metadata": {"name": ENDPOINT, "team": "search"},
            "spec": {"model": "tiny-gpt", "champion": {"version": VERSION}},
        }
    )
    gw = RecordingGateway(
        routes=RouteTable.from_endpoints([endpoint], {ENDPOINT: "openai"}),
        directory=StaticDirectory({(ENDPOINT, VERSION): [llm.url.removeprefix("http://")]}),
        keys=KeyCache(store.snapshot),
    )
    with UvicornThread(gw) as server:
        yield Gatewayed(server.url, gw, {"authorization": f"Bearer {key}"})


def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_through_the_gateway_a_client_leaving_mid_stream_aborts_and_is_metered(
    llm: ServedLLM, gateway: Gatewayed
) -> None:
    llm.wait_idle()
    before = llm.health()["disconnects"]
    n = len(gateway.gateway.outcomes)
    with httpx.stream(
        "POST", gateway.url + "/v1/completions", headers=gateway.auth, json=long_stream(llm)
    ) as response:
        reader = response.iter_lines()  # kept: dropping it closes the connection
        assert next(reader).startswith("data: {")
        assert llm.health()["engine_requests"] == 4
        assert gateway.gateway.admission.in_flight == 1
    _until(lambda: gateway.gateway.admission.in_flight == 0, "the admission slot was kept")
    llm.wait_idle()
    assert llm.health()["disconnects"] == before + 1  # the replica aborted the generation
    out = gateway.outcome(n)
    assert (out.client_gone, out.status, out.usage_known) == (True, 499, True)
    # what the engine generated up to the abort: some tokens, fewer than the whole 4 x 100
    assert out.usage.prompt_tokens == len(llm.tokenizer("the sky is").input_ids)
    assert 0 < out.usage.completion_tokens < 400


def test_through_the_gateway_a_client_leaving_a_plain_request_aborts_it(
    llm: ServedLLM, gateway: Gatewayed
) -> None:
    llm.wait_idle()
    before = llm.health()["disconnects"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gateway.url + "/v1/completions",
            headers=gateway.auth,
            json=long_stream(llm) | {"stream": False},
            timeout=httpx.Timeout(30, read=0.3),
        )
    _until(lambda: gateway.gateway.admission.in_flight == 0, "the admission slot was kept")
    llm.wait_idle()
    assert llm.health()["disconnects"] == before + 1


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/completions", {"prompt": PROMPT}),
        ("/v1/chat/completions", {"messages": QUESTION}),
    ],
)
@pytest.mark.parametrize(
    "ending",
    [{"max_tokens": 7, "logit_bias": "no_eos"}, {"max_tokens": 40, "stop": [" the", "."]}],
    ids=["max_tokens", "stop"],
)
def test_through_the_gateway_usage_is_the_engines_for_every_ending(
    llm: ServedLLM, gateway: Gatewayed, path: str, extra: dict[str, Any], ending: dict[str, Any]
) -> None:
    ending = dict(ending)
    if ending.get("logit_bias") == "no_eos":
        ending["logit_bias"] = no_eos(llm)
    req = {"model": ENDPOINT, "temperature": 0} | extra | ending
    n = len(gateway.gateway.outcomes)
    whole = httpx.post(gateway.url + path, headers=gateway.auth, json=req, timeout=60)
    assert whole.status_code == 200
    streamed = httpx.post(
        gateway.url + path,
        headers=gateway.auth,
        json=req | {"stream": True, "stream_options": {"include_usage": True}},
        timeout=60,
    )
    engine_usage = [e for e in data_events(streamed.text.splitlines()) if e.get("usage")]
    assert len(engine_usage) == 1
    for i, usage in ((n, whole.json()["usage"]), (n + 1, engine_usage[0]["usage"])):
        metered = gateway.outcome(i).usage
        assert (metered.prompt_tokens, metered.completion_tokens) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
    if "max_tokens" in ending and ending["max_tokens"] == 7:
        assert gateway.outcome(n).usage.completion_tokens == 7


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/completions", {"prompt": PROMPT}),
        ("/v1/chat/completions", {"messages": QUESTION}),
    ],
)
def test_through_the_gateway_time_to_first_token_contains_the_engines(
    llm: ServedLLM, gateway: Gatewayed, path: str, extra: dict[str, Any]
) -> None:
    """The gateway's interval (request in to first content out) holds the replica's
    (engine request in to first token out): a first token stamped on chat's role-only
    chunk, sent before the engine starts, would come out shorter."""
    req = {"model": ENDPOINT, "max_tokens": 16, "logit_bias": no_eos(llm), "stream": True}
    n = len(gateway.gateway.outcomes)
    streamed = httpx.post(gateway.url + path, headers=gateway.auth, json=req | extra, timeout=60)
    assert streamed.status_code == 200
    out = gateway.outcome(n)
    assert out.replica_ttft_s is not None
    assert out.ttft_s is not None
    assert out.ttft_s >= out.replica_ttft_s > 0
    assert out.usage.completion_tokens == 16
    assert out.itl_s is not None
    assert out.itl_s > 0
