"""From OpenAI requests to engine inputs: chat rendering, token budgets, context checks.

The tokenizer is tiny-gpt's real one (trained on a slice of its corpus), once with
its chat template and once without, to cover the plain-text fallback.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from transformers import PreTrainedTokenizerFast

from bundled.tiny_gpt.corpus import build_corpus, build_tokenizer
from paved.errors import InvalidInput, LimitExceeded, PavedError
from paved.manifest import Limits
from serving.backends.llm_inputs import (
    EncodedPrompt,
    completion_budget,
    encode_chat,
    encode_completion,
    render_plain_chat,
    sampling_params,
)
from serving.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    check_limits,
    parse_request,
)
from tests.utils.json_numbers import body, numeric_fields

pytestmark = pytest.mark.unit

CONTEXT = 64


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer(build_corpus(0).train[:300], 400, CONTEXT)


@pytest.fixture
def plain_tokenizer(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    plain = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer.backend_tokenizer, bos_token="<bos>", eos_token="<eos>"
    )
    assert not plain.chat_template
    return plain


def chat(*messages: dict[str, Any]) -> ChatCompletionRequest:
    body = {"model": "chat", "messages": list(messages)}
    return parse_request(ChatCompletionRequest, json.dumps(body).encode())


def prompt(tokens: int) -> EncodedPrompt:
    return EncodedPrompt("x", list(range(tokens)))


def test_plain_chat_is_a_labelled_transcript_ending_in_the_assistants_turn() -> None:
    request = chat(
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what color is the sky?"},
        {"role": "assistant", "content": "blue"},
        {"role": "developer", "content": "one word"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "and"}, {"type": "text", "text": "b?"}],
        },
    )
    assert render_plain_chat(request.messages) == (
        "System: be brief\nUser: what color is the sky?\nAssistant: blue\n"
        "System: one word\nUser: and\nb?\nAssistant:"
    )


def test_a_tokenizer_without_a_template_gets_the_plain_transcript(
    plain_tokenizer: PreTrainedTokenizerFast,
) -> None:
    encoded = encode_chat(plain_tokenizer, chat({"role": "user", "content": "hi"}))
    assert encoded.text == "User: hi\nAssistant:"
    assert encoded.token_ids == plain_tokenizer.encode(encoded.text, add_special_tokens=True)
    assert encoded.token_ids[0] == plain_tokenizer.bos_token_id


def test_the_models_template_is_used_and_adds_no_second_bos(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    encoded = encode_chat(tokenizer, chat({"role": "user", "content": "what color is the sky?"}))
    assert encoded.text == "<bos>Q: what color is the sky? A:"
    assert encoded.token_ids == tokenizer.encode("Q: what color is the sky? A:")
    assert encoded.token_ids.count(tokenizer.bos_token_id) == 1


def test_completion_prompts_are_tokenized_each_with_bos(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    body = {"model": "chat", "prompt": ["the sky is", "hello"]}
    request = parse_request(CompletionRequest, json.dumps(body).encode())
    encoded = encode_completion(tokenizer, request)
    assert [e.text for e in encoded] == ["the sky is", "hello"]
    assert [e.token_ids for e in encoded] == [tokenizer.encode(t) for t in ("the sky is", "hello")]


BUDGETS: list[tuple[int | None, int, int | None, Limits, int]] = [
    # requested, prompt tokens, default, limits, budget
    (10, 20, None, Limits(), 10),
    (44, 20, None, Limits(), 44),  # exactly fills the context
    (None, 20, 16, Limits(), 16),  # completions' default
    (None, 60, 16, Limits(), 4),  # the default shrinks to the room left
    (None, 20, None, Limits(), 44),  # chat: all the room left
    (None, 20, None, Limits(max_tokens=8), 8),  # ... capped at the endpoint's limit
    (None, 20, 16, Limits(max_tokens=8), 8),
]


@pytest.mark.parametrize(("requested", "tokens", "default", "limits", "budget"), BUDGETS)
def test_completion_budget(
    requested: int | None, tokens: int, default: int | None, limits: Limits, budget: int
) -> None:
    got = completion_budget(
        requested, [prompt(tokens)], max_model_len=CONTEXT, limits=limits, default=default
    )
    assert got == budget


REFUSED: list[tuple[int | None, list[int], Limits, str, str, str]] = [
    # requested, prompt lengths, limits, rule, param, message
    (45, [20], Limits(), "prompt_tokens", "prompt",
     "the prompt has 20 tokens plus max_tokens 45, more than the model's context of 64 tokens"),
    (10, [5, 60], Limits(), "prompt_tokens", "prompt",
     "the prompt has 60 tokens plus max_tokens 10, more than the model's context of 64 tokens"),
    (None, [64], Limits(), "prompt_tokens", "prompt",
     "the prompt has 64 tokens, more than the model's context of 64 tokens"),
    (64, [1], Limits(), "max_tokens", "max_tokens",
     "max_tokens 64 leaves no room for a prompt in the model's context of 64 tokens"),
    (1, [30], Limits(max_prompt_tokens=29), "max_prompt_tokens", "prompt",
     "the prompt has 30 tokens, over this endpoint's limit of 29"),
]  # fmt: skip


@pytest.mark.parametrize(("requested", "lengths", "limits", "rule", "param", "message"), REFUSED)
def test_prompts_that_do_not_fit_are_refused_naming_the_rule(
    requested: int | None,
    lengths: list[int],
    limits: Limits,
    rule: str,
    param: str,
    message: str,
) -> None:
    with pytest.raises(LimitExceeded) as info:
        completion_budget(
            requested, [prompt(n) for n in lengths], max_model_len=CONTEXT, limits=limits
        )
    assert (info.value.rule, info.value.details["param"], info.value.message) == (
        rule,
        param,
        message,
    )


def test_chat_budget_errors_name_chat_fields() -> None:
    with pytest.raises(LimitExceeded) as info:
        completion_budget(
            70,
            [prompt(3)],
            max_model_len=CONTEXT,
            limits=Limits(),
            prompt_param="messages",
            budget_param="max_completion_tokens",
        )
    assert info.value.details["param"] == "max_completion_tokens"
    assert info.value.message.startswith("max_completion_tokens 70 leaves no room")


# ---------------------------------------------------------------- any number, never a 5xx

VOCAB = 400


def _engine_params(kind: type[CompletionRequest | ChatCompletionRequest], raw: bytes) -> None:
    """What the replica does before the engine: parse, check limits, build vLLM's params."""
    request = parse_request(kind, raw)
    check_limits(request, Limits())
    sampling_params(request, max_tokens=8, vocab_size=VOCAB, stream=False)


@settings(max_examples=300, deadline=None)
@given(fields=numeric_fields(chat=False), chat_fields=numeric_fields(chat=True))
def test_any_json_number_is_accepted_or_refused_with_a_400(
    fields: dict[str, Any], chat_fields: dict[str, Any]
) -> None:
    for kind, base, drawn in (
        (CompletionRequest, {"model": "chat", "prompt": "x"}, fields),
        (ChatCompletionRequest, {"model": "chat", "messages": [{"role": "user", "content": "x"}]},
         chat_fields),
    ):  # fmt: skip
        try:
            _engine_params(kind, body(base, drawn))
        except PavedError as exc:
            status = exc.status
        else:
            status = 200
        assert status in (200, 400)


@pytest.mark.parametrize(
    "fields",
    [{"seed": 2**63 - 1}, {"seed": -(2**63)}, {"logit_bias": {"399": 100, "0": -100}},
     {"top_k": 2**31 - 1, "temperature": 2, "top_p": 5e-324}],
)  # fmt: skip
def test_the_bounds_themselves_reach_the_engine(fields: dict[str, Any]) -> None:
    _engine_params(CompletionRequest, body({"model": "chat", "prompt": "x"}, fields))


def test_a_token_id_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        _engine_params(CompletionRequest, body({"model": "chat", "prompt": "x"},
                                               {"logit_bias": {str(VOCAB): 1}}))  # fmt: skip
    assert info.value.rule == "logit_bias"
    assert "outside the vocabulary (size 400)" in info.value.message
