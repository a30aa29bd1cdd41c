"""OpenAI-compatible response, streaming chunk, usage, model-list and error models.

Field names and nesting follow OpenAI's API reference so the official SDKs parse them;
``model`` is always the endpoint name the client called, never a file path.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from paved.errors import PavedError

FinishReason = Literal["stop", "length"]


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(default=0, description="Prompt tokens served from the cache.")


class Usage(BaseModel):
    """Token counts as the engine reports them; the unit every charge is computed from."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached_tokens),
        )

    @property
    def cached_tokens(self) -> int:
        return self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else 0


# -- /v1/completions -------------------------------------------------------------------


class CompletionLogprobs(BaseModel):
    """The legacy completions logprobs layout: parallel lists, one entry per token."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


# -- /v1/chat/completions ----------------------------------------------------------------


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


# -- /v1/models ----------------------------------------------------------------------------


class ModelCard(BaseModel):
    id: str = Field(description="The endpoint name, what clients send as `model`.")
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "pavedpath"
    root: str = Field(description="Registered model and version: `name/version`.")
    max_model_len: int = Field(description="Context length the engine serves.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- errors ---------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


def error_response(err: PavedError) -> ErrorResponse:
    """The OpenAI error body for a Pavedpath error.

    ``code`` is the rule that refused the request when there is one (``max_tokens``,
    ``model_not_found``, as specific as OpenAI's own codes), else the stable Pavedpath
    code (``unauthenticated``); ``param`` the request field to change when known.
    """
    param = err.details.get("param", err.rule)
    return ErrorResponse(
        error=ErrorDetail(
            message=err.message,
            type=_ERROR_TYPES.get(err.status, "server_error"),
            param=param if isinstance(param, str) else None,
            code=err.rule or err.code,
        )
    )
