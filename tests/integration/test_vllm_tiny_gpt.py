"""The real vLLM CPU engine loads a freshly trained tiny-gpt and agrees with transformers.

Greedy decoding is deterministic, so if the weights, config and tokenizer were saved
and loaded correctly, vLLM and transformers pick the same tokens. The model is the
default one (about a minute of training): it is what the platform ships, it answers
its facts, and its greedy choices are not near-ties, which float32 rounding
differences between the two implementations could flip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bundled.tiny_gpt.corpus import build_corpus
from pipelines.trainers.base import TrainResult
from pipelines.trainers.tiny_gpt import train
from tests.integration.vllm_smoke import engine_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMOKE = Path(__file__).with_name("vllm_smoke.py")
MAX_TOKENS = 12
ENGINE_TIMEOUT_S = 600
QUESTIONS = ["what color is the sky?", "what does the cow say?", "what is 2 plus 5?"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    model_dir = tmp_path_factory.mktemp("vllm") / "model"
    return train(model_dir, seed=0)


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    held_out = build_corpus(seed=0).held_out
    return [held_out[0].prompt, held_out[1].prompt, "Q: 2 plus 5? A:", "the sky is", "hello"]


@pytest.fixture(scope="module")
def vllm_out(
    trained: TrainResult, prompts: list[str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("vllm-run")
    request = {"max_tokens": MAX_TOKENS, "prompts": prompts, "questions": QUESTIONS}
    (work / "request.json").write_text(json.dumps(request))
    proc = subprocess.run(
        [
            sys.executable,
            str(SMOKE),
            str(trained.model_dir),
            str(work / "request.json"),
            str(work / "result.json"),
        ],
        env=engine_env(),
        capture_output=True,
        text=True,
        timeout=ENGINE_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads((work / "result.json").read_text())
    return result


def hf_generate(model_dir: Path, prompts: list[str]) -> list[list[int]]:
    """transformers' ``generate`` (greedy, stops at ``<eos>``), one prompt at a time."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    out: list[list[int]] = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        gen = model.generate(  # type: ignore[misc]
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=MAX_TOKENS,
            pad_token_id=tokenizer.pad_token_id,
        )
        assert isinstance(gen, torch.Tensor)
        out.append(gen[0, ids.shape[1] :].tolist())
    return out


@torch.no_grad()
def hf_argmax(model_dir: Path, prompts: list[str]) -> list[list[int]]:
    """Exactly MAX_TOKENS argmax tokens from the transformers model, ``<eos>`` or not,
    like vLLM's ``ignore_eos`` (which does not suppress ``<eos>``, only stopping)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    out: list[list[int]] = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        width = ids.shape[1]
        for _ in range(MAX_TOKENS):
            next_id = model(input_ids=ids).logits[:, -1].argmax(dim=-1, keepdim=True)
            ids = torch.cat([ids, next_id], dim=1)
        out.append(ids[0, width:].tolist())
    return out


def test_vllm_tokenizes_prompts_like_transformers(
    trained: TrainResult, prompts: list[str], vllm_out: dict[str, Any]
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(trained.model_dir, local_files_only=True)
    assert vllm_out["prompt_ids"] == [tokenizer(p)["input_ids"] for p in prompts]
    assert all(ids[0] == tokenizer.bos_token_id for ids in vllm_out["prompt_ids"])


def test_vllm_generates_the_requested_number_of_tokens(
    vllm_out: dict[str, Any], prompts: list[str]
) -> None:
    assert len(vllm_out["fixed"]) == len(prompts)
    assert all(len(ids) == MAX_TOKENS for ids in vllm_out["fixed"])


def test_vllm_greedy_equals_transformers_greedy(
    trained: TrainResult, prompts: list[str], vllm_out: dict[str, Any]
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(trained.model_dir, local_files_only=True)
    assert vllm_out["fixed"] == hf_argmax(trained.model_dir, prompts)
    assert vllm_out["greedy"] == hf_generate(trained.model_dir, prompts)
    # Questions are answered in a few tokens and then the model ends the answer.
    assert all(ids[-1] == tokenizer.eos_token_id for ids in vllm_out["greedy"][:3])
    assert all(len(ids) < MAX_TOKENS for ids in vllm_out["greedy"][:3])


def test_vllm_chat_renders_the_models_qa_template(
    trained: TrainResult, vllm_out: dict[str, Any]
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(trained.model_dir, local_files_only=True)
    as_prompts = [f"Q: {q} A:" for q in QUESTIONS]
    # A user message becomes the corpus's own Q/A prompt, with <bos> exactly once.
    assert vllm_out["chat_prompt_ids"] == [tokenizer(p)["input_ids"] for p in as_prompts]
    assert vllm_out["chat"] == hf_generate(trained.model_dir, as_prompts)
    assert [t.strip() for t in vllm_out["chat_text"]] == ["blue", "moo", "7"]


def test_engine_started_in_reasonable_time(vllm_out: dict[str, Any]) -> None:
    # About 20-40 s on 2 shared cores; far more means something (compile?) changed.
    assert 0 < vllm_out["engine_start_s"] < 300
