"""From vLLM's outputs to OpenAI responses and SSE events, with the usage tally.

Every path that produces tokens goes through a :class:`UsageTally`, so what the client
sees in ``usage`` and what the gateway meters from ``: paved-usage`` are the same
numbers, whether the request streamed, asked for usage, failed or finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from paved.errors import BackendError, PavedError
from serving.admission import Slot
from serving.backends.llm_stream import DONE, sse_data, usage_comment
from serving.protocol.openai_responses import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatDelta,
    ChatLogprobs,
    CompletionChoice,
    CompletionLogprobs,
    CompletionResponse,
    FinishReason,
    TokenLogprob,
    TopLogprob,
    Usage,
    error_response,
)

if TYPE_CHECKING:
    from vllm.logprobs import Logprob, SampleLogprobs
    from vllm.outputs import CompletionOutput, RequestOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResponseContext:
    """What every response and chunk of one request repeats."""

    id: str
    created: int
    model: str
    n: int
    logprobs: int | None  # top logprobs per token; None: none asked for
    include_usage: bool = False


@dataclass(slots=True)
class UsageTally:
    """Tokens of one request: prompts counted once each, every choice's completion."""

    prompt_tokens: int
    completion_tokens: int = 0
    _cached: dict[int, int] = field(default_factory=dict)
    sequences: int = 1  # generated side by side (prompts x choices), for per-token timing
    started: float = field(default_factory=time.perf_counter)
    first_token_s: float | None = None  # from the tally's start (the engine's) to a token

    def add(self, prompt_index: int, out: RequestOutput) -> None:
        """Count an output; deltas and final outputs alike carry only their new tokens."""
        new = sum(len(o.token_ids) for o in out.outputs)
        if new and self.first_token_s is None:
            self.first_token_s = time.perf_counter() - self.started
        self.completion_tokens += new
        if out.num_cached_tokens:
            self._cached[prompt_index] = out.num_cached_tokens

    def usage(self) -> Usage:
        return Usage.of(self.prompt_tokens, self.completion_tokens, sum(self._cached.values()))


@dataclass(slots=True)
class Stream:
    """A streamed response: its SSE events, the slot to release when it ends, and the
    tally of its tokens (what the engine generated so far, should the client leave)."""

    events: AsyncGenerator[bytes, None]
    slot: Slot
    tally: UsageTally


def finish_reason(reason: str | None) -> FinishReason | None:
    """OpenAI knows ``stop`` and ``length``; an engine-side stop of any kind is ``stop``."""
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"


def _top(position: Mapping[int, Logprob], k: int) -> list[Logprob]:
    ranked = sorted(position.values(), key=lambda lp: lp.rank if lp.rank is not None else 1 << 30)
    return ranked[:k]


def completion_logprobs(
    output: CompletionOutput, k: int, text_offset: int = 0
) -> CompletionLogprobs | None:
    """The completions layout for ``output``'s tokens, offsets counted from ``text_offset``."""
    if output.logprobs is None:
        return None
    result = CompletionLogprobs()
    for token_id, position in zip(output.token_ids, _positions(output.logprobs), strict=False):
        chosen = position.get(token_id)
        token = (chosen.decoded_token if chosen else None) or ""
        result.tokens.append(token)
        result.token_logprobs.append(chosen.logprob if chosen else None)
        result.top_logprobs.append({lp.decoded_token or "": lp.logprob for lp in _top(position, k)})
        result.text_offset.append(text_offset)
        text_offset += len(token)
    return result


def chat_logprobs(output: CompletionOutput, k: int) -> ChatLogprobs | None:
    """The chat layout: one entry per token with its UTF-8 bytes and top alternatives."""
    if output.logprobs is None:
        return None
    content: list[TokenLogprob] = []
    for token_id, position in zip(output.token_ids, _positions(output.logprobs), strict=False):
        chosen = position.get(token_id)
        token = (chosen.decoded_token if chosen else None) or ""
        content.append(
            TokenLogprob(
                token=token,
                logprob=chosen.logprob if chosen else float("-inf"),
                bytes=list(token.encode()),
                top_logprobs=[
                    TopLogprob(
                        token=lp.decoded_token or "",
                        logprob=lp.logprob,
                        bytes=list((lp.decoded_token or "").encode()),
                    )
                    for lp in _top(position, k)
                ],
            )
        )
    return ChatLogprobs(content=content)


def _positions(logprobs: SampleLogprobs) -> list[Mapping[int, Logprob]]:
    return [position or {} for position in logprobs]


# -- whole responses ---------------------------------------------------------------------


def completion_response(
    ctx: ResponseContext, finals: Sequence[RequestOutput], tally: UsageTally
) -> CompletionResponse:
    """One choice per (prompt, sample), indexed ``prompt_index * n + sample``."""
    choices: list[CompletionChoice] = []
    for prompt_index, final in enumerate(finals):
        tally.add(prompt_index, final)
        for output in final.outputs:
            choices.append(
                CompletionChoice(
                    index=prompt_index * ctx.n + output.index,
                    text=output.text,
                    logprobs=completion_logprobs(output, ctx.logprobs or 0),
                    finish_reason=finish_reason(output.finish_reason),
                )
            )
    choices.sort(key=lambda c: c.index)
    return CompletionResponse(
        id=ctx.id, created=ctx.created, model=ctx.model, choices=choices, usage=tally.usage()
    )


def chat_response(
    ctx: ResponseContext, final: RequestOutput, tally: UsageTally
) -> ChatCompletionResponse:
    tally.add(0, final)
    choices = [
        ChatChoice(
            index=output.index,
            message=AssistantMessage(content=output.text),
            logprobs=chat_logprobs(output, ctx.logprobs or 0),
            finish_reason=finish_reason(output.finish_reason),
        )
        for output in sorted(final.outputs, key=lambda o: o.index)
    ]
    return ChatCompletionResponse(
        id=ctx.id, created=ctx.created, model=ctx.model, choices=choices, usage=tally.usage()
    )


# -- streams -------------------------------------------------------------------------------


async def completion_events(
    ctx: ResponseContext,
    outputs: AsyncGenerator[tuple[int, RequestOutput], None],
    tally: UsageTally,
) -> AsyncGenerator[bytes, None]:
    """SSE events of a streamed completion, ending with usage and ``[DONE]``."""
    offsets: dict[int, int] = {}
    try:
        async with aclosing(outputs):
            async for prompt_index, out in outputs:
                tally.add(prompt_index, out)
                choices = []
                for output in out.outputs:
                    index = prompt_index * ctx.n + output.index
                    if not (output.text or output.finish_reason):
                        continue
                    offset = offsets.get(index, 0)
                    offsets[index] = offset + len(output.text)
                    choices.append(
                        CompletionChoice(
                            index=index,
                            text=output.text,
                            logprobs=completion_logprobs(output, ctx.logprobs or 0, offset),
                            finish_reason=finish_reason(output.finish_reason),
                        )
                    )
                if choices:
                    yield sse_data(
                        CompletionResponse(
                            id=ctx.id, created=ctx.created, model=ctx.model, choices=choices
                        )
                    )
    except Exception as exc:
        yield _error_event(exc)
    usage = tally.usage()
    if ctx.include_usage:
        yield sse_data(
            CompletionResponse(
                id=ctx.id, created=ctx.created, model=ctx.model, choices=[], usage=usage
            )
        )
    yield usage_comment(usage, tally.first_token_s, tally.sequences)
    yield DONE


async def chat_events(
    ctx: ResponseContext, outputs: AsyncGenerator[RequestOutput, None], tally: UsageTally
) -> AsyncGenerator[bytes, None]:
    """SSE events of a streamed chat completion: the assistant role first, as OpenAI."""

    def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> bytes:
        return sse_data(
            ChatCompletionChunk(
                id=ctx.id, created=ctx.created, model=ctx.model, choices=choices, usage=usage
            )
        )

    for index in range(ctx.n):
        yield chunk([ChatChunkChoice(index=index, delta=ChatDelta(role="assistant", content=""))])
    try:
        async with aclosing(outputs):
            async for out in outputs:
                tally.add(0, out)
                choices = [
                    ChatChunkChoice(
                        index=output.index,
                        delta=ChatDelta(content=output.text),
                        logprobs=chat_logprobs(output, ctx.logprobs or 0),
                        finish_reason=finish_reason(output.finish_reason),
                    )
                    for output in out.outputs
                    if output.text or output.finish_reason
                ]
                if choices:
                    yield chunk(choices)
    except Exception as exc:
        yield _error_event(exc)
    usage = tally.usage()
    if ctx.include_usage:
        yield chunk([], usage)
    yield usage_comment(usage, tally.first_token_s, tally.sequences)
    yield DONE


def _error_event(exc: Exception) -> bytes:
    if not isinstance(exc, PavedError):
        log.exception("generation failed mid-stream")
        exc = BackendError("generation failed; the stream ended early")
    return sse_data(error_response(exc))
