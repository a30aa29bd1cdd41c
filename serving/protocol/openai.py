"""OpenAI-compatible request models and the endpoint's per-request limits.

The same models validate what the gateway forwards and what a replica receives, so a
request is refused for the same reason wherever it enters. Unknown OpenAI fields are
ignored (clients send many optional ones), but the types of known fields are strict:
``"max_tokens": "16"`` is an error, not a silent conversion. Fields whose meaning this
platform does not implement (``echo``, ``suffix``, tools, ...) are refused with a 400
rather than ignored, because ignoring them would return a different answer from the
one the caller asked for.

Every number is bounded here, before the endpoint's own limits apply: integers to what
the engine's transport carries (``seed`` within signed 64 bits, token counts within 32
bits), floats finite and within OpenAI's ranges, ``logit_bias`` keys ASCII decimal token
ids. So no client number reaches the engine as something it cannot take (a 5xx there).

Response, chunk, usage and error models live in :mod:`serving.protocol.openai_responses`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, NoReturn, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from paved.errors import InvalidInput, LimitExceeded
from paved.manifest import Limits

MAX_STOP_SEQUENCES = 4  # OpenAI's own cap
MAX_LOGIT_BIAS_ENTRIES = 300  # OpenAI's own cap
MAX_CHOICES = 128  # OpenAI's own cap on n
MAX_TOKEN_COUNT = 2**31 - 1  # engines count tokens in int32
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # the engine's MessagePack transport: int64
LOGIT_BIAS_LIMIT = 100.0
MAX_TOKEN_ID_DIGITS = 10  # above any vocabulary; the replica checks the real size
MAX_QUOTED = 64  # an offending value is quoted up to this many characters

StopText = Annotated[str, Field(min_length=1, max_length=256)]


class _Wire(BaseModel):
    """Strict types for known fields, unknown fields ignored (OpenAI clients send extras)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, allow_inf_nan=False)


class StreamOptions(_Wire):
    include_usage: bool = Field(default=False, description="Usage in a final chunk.")


class TextPart(_Wire):
    """One part of a message's content; only text parts are served."""

    type: Literal["text"]
    text: str


class ChatMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = Field(default=None, max_length=64)

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            for part in value:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    raise PydanticCustomError(
                        "text_parts_only",
                        "only text content parts are supported, got type {kind}",
                        {"kind": repr(kind)},
                    )
        return value

    @property
    def text(self) -> str:
        """The message's text; text parts are joined by newlines, as OpenAI does."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class SamplingRequest(_Wire):
    """Fields completions and chat share. ``None`` means the OpenAI default."""

    # field -> the only value accepted besides null; anything else is a clear 400.
    UNSUPPORTED: ClassVar[dict[str, object]] = {}

    model: str = Field(min_length=1, max_length=256, description="The endpoint name.")
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKEN_COUNT)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(
        default=None,
        ge=0,
        le=MAX_TOKEN_COUNT,
        description="Sample from the k most likely tokens (vLLM's extension); 0: all.",
    )
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: StopText | list[StopText] | None = None
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    user: str | None = Field(default=None, max_length=256)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, allowed in cls.UNSUPPORTED.items():
                value = data.get(name)
                if value is not None and value != allowed:
                    raise PydanticCustomError(
                        "unsupported",
                        "{name}={value} is not supported by this endpoint",
                        {"name": name, "value": quote(value), "param": name},
                    )
        return data

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise PydanticCustomError(
                "too_many_stops",
                "stop accepts at most {max} sequences",
                {"max": MAX_STOP_SEQUENCES},
            )
        return value

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if len(value) > MAX_LOGIT_BIAS_ENTRIES:
            raise PydanticCustomError(
                "logit_bias",
                "logit_bias accepts at most {max} tokens",
                {"max": MAX_LOGIT_BIAS_ENTRIES},
            )
        for key, bias in value.items():
            # str.isdigit() holds for "²" and other Unicode digits int() refuses.
            if not (0 < len(key) <= MAX_TOKEN_ID_DIGITS and key.isascii() and key.isdigit()):
                raise PydanticCustomError(
                    "logit_bias",
                    "logit_bias keys are token ids in ASCII decimal digits, got {key}",
                    {"key": quote(key)},
                )
            if not -LOGIT_BIAS_LIMIT <= bias <= LOGIT_BIAS_LIMIT:
                raise PydanticCustomError(
                    "logit_bias",
                    "logit_bias maps token ids to a bias within -100..100, got {bias} for {key}",
                    {"bias": bias, "key": quote(key)},
                )
        return value

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> SamplingRequest:
        if self.stream_options is not None and not self.stream:
            raise PydanticCustomError(
                "stream_options",
                "stream_options is only allowed when stream is true",
                {"param": "stream_options"},
            )
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @property
    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def requested_max_tokens(self) -> int | None:
        """The completion budget the caller asked for, ``None`` when it asked for none."""
        return self.max_tokens

    @property
    def requested_logprobs(self) -> int | None:
        """How many top logprobs per token the caller asked for; ``None``: no logprobs."""
        return None


class CompletionRequest(SamplingRequest):
    """``POST /v1/completions``. Token-id prompts are refused: send text."""

    UNSUPPORTED: ClassVar[dict[str, object]] = {"echo": False, "suffix": "", "best_of": 1}
    DEFAULT_MAX_TOKENS: ClassVar[int] = 16  # OpenAI's default for completions

    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=20)

    @field_validator("prompt", mode="before")
    @classmethod
    def _text_prompts_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise PydanticCustomError("empty_prompt", "prompt list is empty", {})
            if any(isinstance(p, int | list) for p in value):
                raise PydanticCustomError(
                    "token_ids", "token-id prompts are not supported; send the prompt as text", {}
                )
        return value

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def requested_logprobs(self) -> int | None:
        return self.logprobs


class ChatCompletionRequest(SamplingRequest):
    """``POST /v1/chat/completions``: text messages in, one assistant message out."""

    UNSUPPORTED: ClassVar[dict[str, object]] = {
        "tools": [],
        "tool_choice": "none",
        "functions": [],
        "function_call": "none",
        "response_format": {"type": "text"},
    }

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKEN_COUNT)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise PydanticCustomError(
                "top_logprobs",
                "top_logprobs is only allowed when logprobs is true",
                {"param": "top_logprobs"},
            )
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        # max_completion_tokens replaced max_tokens in OpenAI's chat API; it wins.
        return self.max_completion_tokens if self.max_completion_tokens else self.max_tokens

    @property
    def requested_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


RequestT = TypeVar("RequestT", bound=SamplingRequest)


def quote(value: object) -> str:
    """``repr(value)``, cut to a bounded prefix: errors never echo a huge input back."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        return "<a number too long to quote>"
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "..."


def parse_request(model: type[RequestT], body: bytes) -> RequestT:
    """Validate a JSON body; the first problem becomes an :class:`InvalidInput`.

    ``rule`` and the OpenAI ``param`` name the top-level field at fault (``json`` when
    the body is not a JSON object), so clients can point at what to change.
    """
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        # Of a union's failed branches, the deepest error is the most specific one.
        first = max(exc.errors(include_url=False), key=lambda e: len(e["loc"]))
        if first["type"] in ("json_invalid", "model_type"):
            raise InvalidInput("request body must be a JSON object", rule="json") from exc
        loc = [str(part) for part in first["loc"] if _is_field_or_index(part)]
        where = ".".join(loc)
        message = f"{where}: {first['msg']}" if where else first["msg"]
        # Model-level checks carry the field they are about in their context.
        field = loc[0] if loc else str(first.get("ctx", {}).get("param", "body"))
        raise InvalidInput(message, rule=field, details={"param": field}) from exc


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict"})


def _is_field_or_index(part: str | int) -> bool:
    """Drop pydantic's union-branch tags (``str``, ``list[TextPart]``) from an error path."""
    return isinstance(part, int) or (
        part.isidentifier() and part.islower() and part not in _TYPE_TAGS
    )


def check_limits(request: SamplingRequest, limits: Limits) -> None:
    """Refuse a request over the endpoint's per-request limits, naming the limit.

    Runs before any tokenization (the prompt-token limit is checked by the backend once
    the prompt is tokenized). Choices count once per prompt: ``n`` completions of each
    of 2 prompts are ``2 * n`` choices against ``max_n``.
    """
    max_tokens = request.requested_max_tokens
    if max_tokens is not None and max_tokens > limits.max_tokens:
        field = "max_completion_tokens" if _uses_max_completion_tokens(request) else "max_tokens"
        _over("max_tokens", field, max_tokens, limits.max_tokens)
    prompts = len(request.prompts) if isinstance(request, CompletionRequest) else 1
    choices = prompts * (request.n or 1)
    if choices > limits.max_n:
        what = f"n {request.n or 1}" if prompts == 1 else f"{prompts} prompts x n {request.n or 1}"
        _over("max_n", "n", choices, limits.max_n, what=what)
    logprobs = request.requested_logprobs
    if logprobs is not None and logprobs > limits.max_logprobs:
        field = "top_logprobs" if isinstance(request, ChatCompletionRequest) else "logprobs"
        _over("max_logprobs", field, logprobs, limits.max_logprobs)


def _uses_max_completion_tokens(request: SamplingRequest) -> bool:
    return isinstance(request, ChatCompletionRequest) and bool(request.max_completion_tokens)


def _over(rule: str, field: str, value: int, limit: int, *, what: str | None = None) -> NoReturn:
    raise LimitExceeded(
        f"{what or f'{field} {value}'} exceeds this endpoint's limit of {limit}",
        rule=rule,
        details={"param": field, "limit": limit},
    )
