"""OpenAI request models, endpoint limits and the error body: what is accepted, what is
refused, and which rule and param every refusal names."""

from __future__ import annotations

import json
from typing import Any

import pytest

from paved.errors import InvalidInput, LimitExceeded, NotFound, PavedError, Unavailable
from paved.manifest import Limits
from serving.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    check_limits,
    parse_request,
    quote,
)
from serving.protocol.openai_responses import ErrorResponse, error_response

pytestmark = pytest.mark.unit

USER = {"role": "user", "content": "what color is the sky?"}


def completion(**fields: Any) -> bytes:
    return json.dumps({"model": "chat", "prompt": "the sky is", **fields}).encode()


def chat(**fields: Any) -> bytes:
    return json.dumps({"model": "chat", "messages": [USER], **fields}).encode()


# ---------------------------------------------------------------- accepted


def test_a_minimal_completion_takes_openai_defaults() -> None:
    req = parse_request(CompletionRequest, completion())
    assert req.prompts == ["the sky is"]
    assert (req.max_tokens, req.temperature, req.n, req.stream) == (None, None, None, None)
    assert req.requested_logprobs is None
    assert not req.include_usage
    assert req.stop_list == []


def test_a_full_completion_request_keeps_every_field() -> None:
    req = parse_request(
        CompletionRequest,
        completion(
            prompt=["a", "b"],
            max_tokens=8,
            temperature=0.5,
            top_p=0.9,
            n=2,
            stream=True,
            stream_options={"include_usage": True},
            stop=["\n", "."],
            seed=7,
            logprobs=3,
            presence_penalty=0.1,
            frequency_penalty=-0.1,
            logit_bias={"3": -100},
            user="u1",
            echo=False,
            best_of=1,
        ),
    )
    assert req.prompts == ["a", "b"]
    assert req.include_usage
    assert req.stop_list == ["\n", "."]
    assert req.requested_logprobs == 3
    assert req.logit_bias == {"3": -100.0}


def test_unknown_openai_fields_are_ignored() -> None:
    req = parse_request(CompletionRequest, completion(service_tier="auto", metadata={"k": "v"}))
    assert not hasattr(req, "service_tier")


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    assert parse_request(CompletionRequest, completion(temperature=1)).temperature == 1.0


def test_explicit_nulls_mean_the_default() -> None:
    req = parse_request(CompletionRequest, completion(temperature=None, n=None, stop=None))
    assert (req.temperature, req.n, req.stop_list) == (None, None, [])


def test_chat_messages_accept_text_parts_and_every_role() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": "really brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "ok", "name": "bot"},
    ]
    req = parse_request(ChatCompletionRequest, chat(messages=messages))
    assert [m.text for m in req.messages] == ["be brief", "really brief", "a\nb", "ok"]


def test_chat_max_completion_tokens_wins_over_max_tokens() -> None:
    req = parse_request(ChatCompletionRequest, chat(max_tokens=5, max_completion_tokens=9))
    assert req.requested_max_tokens == 9
    assert parse_request(ChatCompletionRequest, chat(max_tokens=5)).requested_max_tokens == 5


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, None), ({"logprobs": False}, None), ({"logprobs": True}, 0),
     ({"logprobs": True, "top_logprobs": 4}, 4)],
)  # fmt: skip
def test_chat_logprobs_map_to_a_top_count(fields: dict[str, Any], expected: int | None) -> None:
    assert parse_request(ChatCompletionRequest, chat(**fields)).requested_logprobs == expected


# ---------------------------------------------------------------- refused

COMPLETION_REFUSALS: list[tuple[dict[str, Any], str, str]] = [
    # fields, param (and rule), words the message must contain
    ({"prompt": [1, 2, 3]}, "prompt", "token-id prompts are not supported"),
    ({"prompt": [[1, 2]]}, "prompt", "token-id prompts are not supported"),
    ({"prompt": []}, "prompt", "empty"),
    ({"prompt": 5}, "prompt", "prompt"),
    ({"model": ""}, "model", "at least 1"),
    ({"max_tokens": "16"}, "max_tokens", "valid integer"),
    ({"max_tokens": 16.0}, "max_tokens", "valid integer"),
    ({"max_tokens": True}, "max_tokens", "valid integer"),
    ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    ({"temperature": "0.5"}, "temperature", "valid number"),
    ({"temperature": 2.5}, "temperature", "less than or equal to 2"),
    ({"top_p": 0}, "top_p", "greater than 0"),
    ({"n": 0}, "n", "greater than or equal to 1"),
    ({"stream": "yes"}, "stream", "valid boolean"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed when stream"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ({"stop": [""]}, "stop", "at least 1"),
    ({"logprobs": 21}, "logprobs", "less than or equal to 20"),
    ({"presence_penalty": 3}, "presence_penalty", "less than or equal to 2"),
    ({"logit_bias": {"abc": 1}}, "logit_bias", "token ids"),
    ({"logit_bias": {"3": 101}}, "logit_bias", "-100..100"),
    ({"echo": True}, "echo", "echo=True is not supported"),
    ({"suffix": "x"}, "suffix", "not supported"),
    ({"best_of": 3}, "best_of", "not supported"),
    # Every number is bounded, so none reaches the engine as something it cannot take.
    ({"seed": 2**63}, "seed", "less than or equal to 9223372036854775807"),
    ({"seed": -(2**63) - 1}, "seed", "greater than or equal to -9223372036854775808"),
    ({"seed": 10**40}, "seed", "less than or equal to"),
    ({"logit_bias": {"\u00b2": 1}}, "logit_bias", "ASCII decimal digits, got '\u00b2'"),
    ({"logit_bias": {"\u0663": 1}}, "logit_bias", "ASCII decimal digits"),  # Arabic-Indic 3
    ({"logit_bias": {"": 1}}, "logit_bias", "ASCII decimal digits"),
    ({"logit_bias": {"-1": 1}}, "logit_bias", "ASCII decimal digits"),
    ({"logit_bias": {" 1": 1}}, "logit_bias", "ASCII decimal digits"),
    ({"logit_bias": {"1" * 11: 1}}, "logit_bias", "ASCII decimal digits"),
    ({"logit_bias": {"3": -100.5}}, "logit_bias", "-100..100, got -100.5 for '3'"),
    ({"logit_bias": {"3": True}}, "logit_bias", "valid number"),
    ({"logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias", "at most 300"),
    ({"n": 129}, "n", "less than or equal to 128"),
    ({"max_tokens": 2**31}, "max_tokens", "less than or equal to 2147483647"),
    ({"max_tokens": 10**4000}, "max_tokens", "less than or equal to"),
    ({"top_k": -1}, "top_k", "greater than or equal to 0"),
    ({"top_k": 2**31}, "top_k", "less than or equal to 2147483647"),
    ({"top_k": 1.5}, "top_k", "valid integer"),
    ({"temperature": -0.0001}, "temperature", "greater than or equal to 0"),
    ({"top_p": 1.0001}, "top_p", "less than or equal to 1"),
    ({"frequency_penalty": -2.5}, "frequency_penalty", "greater than or equal to -2"),
    ({"logprobs": -1}, "logprobs", "greater than or equal to 0"),
]


@pytest.mark.parametrize(("fields", "param", "words"), COMPLETION_REFUSALS)
def test_completion_refusals_name_the_field(fields: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_request(CompletionRequest, completion(**fields))
    assert info.value.rule == param
    assert info.value.details["param"] == param
    assert words in info.value.message
    assert error_response(info.value).error.param == param


CHAT_REFUSALS: list[tuple[dict[str, Any], str, str]] = [
    ({"messages": []}, "messages", "at least 1"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages", "role"),
    ({"messages": [{"role": "user"}]}, "messages", "required"),
    ({"messages": [{"role": "user", "content": None}]}, "messages", "content"),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        "messages",
        "only text content parts are supported",
    ),
    ({"max_completion_tokens": 0}, "max_completion_tokens", "greater than or equal to 1"),
    ({"logprobs": 2}, "logprobs", "valid boolean"),
    ({"top_logprobs": 2}, "top_logprobs", "only allowed when logprobs is true"),
    ({"tools": [{"type": "function"}]}, "tools", "not supported"),
    ({"response_format": {"type": "json_object"}}, "response_format", "not supported"),
]


@pytest.mark.parametrize(("fields", "param", "words"), CHAT_REFUSALS)
def test_chat_refusals_name_the_field(fields: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_request(ChatCompletionRequest, chat(**fields))
    assert info.value.rule == param
    assert words in info.value.message


@pytest.mark.parametrize(
    ("literal", "field"),
    [("NaN", "temperature"), ("Infinity", "top_p"), ("-Infinity", "presence_penalty"),
     ("1e999", "frequency_penalty"), ("NaN", "logit_bias")],
)  # fmt: skip
def test_floats_must_be_finite(literal: str, field: str) -> None:
    value = f'{{"3": {literal}}}' if field == "logit_bias" else literal
    raw = completion()[:-1] + f', "{field}": {value}}}'.encode()
    with pytest.raises(InvalidInput) as info:
        parse_request(CompletionRequest, raw)
    assert info.value.rule == field


def test_an_unsupported_value_is_quoted_only_in_part() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_request(CompletionRequest, completion(echo="x" * 100_000))
    assert info.value.rule == "echo"
    assert len(info.value.message) < 200
    assert quote(10**5000) == "<a number too long to quote>"


def test_top_k_is_kept() -> None:
    assert parse_request(CompletionRequest, completion(top_k=40)).top_k == 40
    assert parse_request(ChatCompletionRequest, chat(top_k=0)).top_k == 0


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'"text"', b"null"])
def test_a_body_that_is_not_a_json_object_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_request(CompletionRequest, raw)
    assert info.value.rule == "json"


def test_chat_accepts_the_neutral_values_of_unsupported_fields() -> None:
    req = parse_request(
        ChatCompletionRequest, chat(tools=[], tool_choice="none", response_format={"type": "text"})
    )
    assert req.messages[0].text == USER["content"]


# ---------------------------------------------------------------- limits

LIMITS = Limits(max_tokens=100, max_n=4, max_logprobs=5)

Kind = type[CompletionRequest | ChatCompletionRequest]
LIMIT_TABLE: list[tuple[Kind, dict[str, Any], str, str, str]] = [
    # request type, fields, rule, param, message
    (CompletionRequest, {"max_tokens": 101}, "max_tokens", "max_tokens",
     "max_tokens 101 exceeds this endpoint's limit of 100"),
    (ChatCompletionRequest, {"max_tokens": 500}, "max_tokens", "max_tokens",
     "max_tokens 500 exceeds this endpoint's limit of 100"),
    (ChatCompletionRequest, {"max_completion_tokens": 5000}, "max_tokens", "max_completion_tokens",
     "max_completion_tokens 5000 exceeds this endpoint's limit of 100"),
    (CompletionRequest, {"n": 5}, "max_n", "n", "n 5 exceeds this endpoint's limit of 4"),
    (CompletionRequest, {"n": 3, "prompt": ["a", "b"]}, "max_n", "n",
     "2 prompts x n 3 exceeds this endpoint's limit of 4"),
    (CompletionRequest, {"prompt": ["a"] * 5}, "max_n", "n",
     "5 prompts x n 1 exceeds this endpoint's limit of 4"),
    (ChatCompletionRequest, {"n": 9}, "max_n", "n", "n 9 exceeds this endpoint's limit of 4"),
    (CompletionRequest, {"logprobs": 6}, "max_logprobs", "logprobs",
     "logprobs 6 exceeds this endpoint's limit of 5"),
    (ChatCompletionRequest, {"logprobs": True, "top_logprobs": 7}, "max_logprobs", "top_logprobs",
     "top_logprobs 7 exceeds this endpoint's limit of 5"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "fields", "rule", "param", "message"), LIMIT_TABLE)
def test_limits_refuse_naming_the_limit(
    kind: Kind,
    fields: dict[str, Any],
    rule: str,
    param: str,
    message: str,
) -> None:
    raw = completion(**fields) if kind is CompletionRequest else chat(**fields)
    with pytest.raises(LimitExceeded) as info:
        check_limits(parse_request(kind, raw), LIMITS)
    assert (info.value.rule, info.value.details["param"], info.value.message) == (
        rule,
        param,
        message,
    )
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("kind", "fields"),
    [(CompletionRequest, {"max_tokens": 100, "n": 2, "prompt": ["a", "b"], "logprobs": 5}),
     (ChatCompletionRequest, {"max_completion_tokens": 100, "n": 4, "logprobs": True,
                              "top_logprobs": 5}),
     (ChatCompletionRequest, {"logprobs": True})],
)  # fmt: skip
def test_requests_at_the_limits_pass(kind: Kind, fields: dict[str, Any]) -> None:
    raw = completion(**fields) if kind is CompletionRequest else chat(**fields)
    check_limits(parse_request(kind, raw), LIMITS)


# ---------------------------------------------------------------- error body


@pytest.mark.parametrize(
    ("err", "status", "kind", "param", "code"),
    [
        (LimitExceeded("too many", rule="max_tokens", details={"param": "max_tokens"}), 400,
         "invalid_request_error", "max_tokens", "max_tokens"),
        (InvalidInput("bad", rule="prompt_tokens"), 400, "invalid_request_error",
         "prompt_tokens", "prompt_tokens"),
        (NotFound("no such model", rule="model", details={"param": "model"}), 404,
         "not_found_error", "model", "model"),
        (Unavailable("busy"), 503, "service_unavailable_error", None, "unavailable"),
        (PavedError("boom"), 500, "server_error", None, "internal_error"),
    ],
)  # fmt: skip
def test_error_body_has_openais_shape(
    err: PavedError, status: int, kind: str, param: str | None, code: str
) -> None:
    body = json.loads(error_response(err).model_dump_json())
    assert err.status == status
    assert body == {"error": {"message": err.message, "type": kind, "param": param, "code": code}}
    assert ErrorResponse.model_validate(body).error.code == code
