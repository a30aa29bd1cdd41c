"""From a validated OpenAI request to engine inputs: prompt tokens, budget, sampling.

Prompts are tokenized here, with the engine's own tokenizer, rather than by vLLM, so
the length check happens before a request is admitted to the engine and the usage the
gateway meters counts exactly the tokens the engine saw.

Chat messages go through the model's chat template when its tokenizer has one. When it
has none, :func:`render_plain_chat` writes a plain-text transcript instead::

    System: be brief
    User: what color is the sky?
    Assistant: blue
    User: and the grass?
    Assistant:

so the model continues the assistant's turn. It is a fallback for small or base models
that were never taught a chat format; such a model answers as well as its training lets
it, and a model that matters should ship a template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from jinja2 import TemplateError

from paved.errors import InvalidInput, LimitExceeded
from paved.manifest import Limits
from serving.protocol.openai import ChatCompletionRequest, ChatMessage, CompletionRequest

if TYPE_CHECKING:
    from vllm import SamplingParams

_PLAIN_ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}
_GREEDY_EPS = 1e-5  # vLLM treats a temperature below this as greedy decoding


class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer the backend uses."""

    chat_template: str | None

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class EncodedPrompt:
    text: str
    token_ids: list[int]


def render_plain_chat(messages: Sequence[ChatMessage]) -> str:
    """A role-labelled transcript ending in an open ``Assistant:`` turn."""
    lines = [f"{_PLAIN_ROLES[m.role]}: {m.text}" for m in messages]
    return "\n".join([*lines, "Assistant:"])


def encode_completion(tokenizer: Tokenizer, request: CompletionRequest) -> list[EncodedPrompt]:
    """Each prompt with the tokenizer's special tokens (a ``<bos>``, where it adds one)."""
    return [
        EncodedPrompt(text, tokenizer.encode(text, add_special_tokens=True))
        for text in request.prompts
    ]


def encode_chat(tokenizer: Tokenizer, request: ChatCompletionRequest) -> EncodedPrompt:
    """The conversation through the model's chat template, or the plain transcript.

    A chat template writes its own special tokens, so its output is tokenized without
    adding more; the plain transcript gets the tokenizer's usual ones.
    """
    if not tokenizer.chat_template:
        text = render_plain_chat(request.messages)
        return EncodedPrompt(text, tokenizer.encode(text, add_special_tokens=True))
    conversation = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text}
        for m in request.messages
    ]
    try:
        text = tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True
        )
    except (TemplateError, ValueError, TypeError) as exc:
        raise InvalidInput(
            f"messages: the model's chat template refused them: {exc}",
            rule="chat_template",
            details={"param": "messages"},
        ) from exc
    return EncodedPrompt(str(text), tokenizer.encode(str(text), add_special_tokens=False))


def completion_budget(
    requested: int | None,
    prompts: Sequence[EncodedPrompt],
    *,
    max_model_len: int,
    limits: Limits,
    default: int | None = None,
    prompt_param: str = "prompt",
    budget_param: str = "max_tokens",
) -> int:
    """The ``max_tokens`` to run after checking the prompts and the budget fit the context.

    A requested budget must fit beside the longest prompt, or the request is refused
    (rule ``prompt_tokens``). Without one, the budget is ``default`` (completions: 16,
    as OpenAI), capped at the endpoint's ``max_tokens`` and at the room left.
    """
    if requested is not None and requested >= max_model_len:
        raise LimitExceeded(
            f"{budget_param} {requested} leaves no room for a prompt in the model's "
            f"context of {max_model_len} tokens",
            rule="max_tokens",
            details={"param": budget_param, "limit": max_model_len - 1},
        )
    longest = max(len(p.token_ids) for p in prompts)
    if limits.max_prompt_tokens is not None and longest > limits.max_prompt_tokens:
        raise LimitExceeded(
            f"the prompt has {longest} tokens, over this endpoint's limit of "
            f"{limits.max_prompt_tokens}",
            rule="max_prompt_tokens",
            details={"param": prompt_param, "limit": limits.max_prompt_tokens},
        )
    room = max_model_len - longest
    if room < 1 or (requested is not None and requested > room):
        with_budget = "" if requested is None else f" plus {budget_param} {requested}"
        raise LimitExceeded(
            f"the prompt has {longest} tokens{with_budget}, more than the model's context "
            f"of {max_model_len} tokens",
            rule="prompt_tokens",
            details={"param": prompt_param, "limit": max_model_len},
        )
    if requested is not None:
        return requested
    return min(default or limits.max_tokens, limits.max_tokens, room)


def sampling_params(
    request: CompletionRequest | ChatCompletionRequest,
    *,
    max_tokens: int,
    vocab_size: int,
    stream: bool,
) -> SamplingParams:
    """vLLM sampling parameters; ``None`` request fields take OpenAI's defaults.

    Streams get deltas (each chunk carries only new text); non-streaming requests get
    only the final output, which spares the engine building intermediate ones. The
    request models bound every number already; should vLLM still refuse a combination,
    that is the caller's input (400, rule ``engine_validation``), never a 500.
    """
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError
    from vllm.sampling_params import RequestOutputKind

    temperature = 1.0 if request.temperature is None else request.temperature
    n = request.n or 1
    if n > 1 and temperature < _GREEDY_EPS:
        raise InvalidInput(
            f"n {n} needs a temperature above 0: greedy decoding gives {n} identical choices",
            rule="n",
            details={"param": "n"},
        )
    logit_bias = _logit_bias(request.logit_bias, vocab_size)
    try:
        return SamplingParams(
            n=n,
            temperature=temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            top_k=request.top_k or 0,
            presence_penalty=request.presence_penalty or 0.0,
            frequency_penalty=request.frequency_penalty or 0.0,
            seed=request.seed,
            stop=request.stop_list or None,
            max_tokens=max_tokens,
            logprobs=request.requested_logprobs,
            logit_bias=logit_bias,
            skip_special_tokens=True,
            output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
        )
    except (VLLMValidationError, ValueError) as exc:
        raise InvalidInput(
            f"the engine refused the sampling parameters: {str(exc)[:200]}",
            rule="engine_validation",
        ) from exc


def _logit_bias(bias: dict[str, float] | None, vocab_size: int) -> dict[int, float] | None:
    if not bias:
        return None
    out = {int(token): value for token, value in bias.items()}
    outside = [t for t in out if t >= vocab_size]
    if outside:
        raise InvalidInput(
            f"logit_bias token {outside[0]} is outside the vocabulary (size {vocab_size})",
            rule="logit_bias",
            details={"param": "logit_bias"},
        )
    return out
