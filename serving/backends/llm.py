"""The LLM backend: OpenAI completions and chat over vLLM's AsyncLLM engine.

One :class:`LLMBackend` serves one model version. The engine lives in the same process
as the HTTP app (vLLM spawns its own engine-core and worker processes beside it), so a
token goes from the engine to the client without another hop. Requests past
``config.max_concurrency`` are refused at once with a 503 (:mod:`serving.admission`).

Layers: :mod:`llm_inputs` turns a request into engine inputs, this module admits it and
runs the engine, :mod:`llm_outputs` writes the OpenAI response or events,
:mod:`llm_stream` ties a generation to its connection, :mod:`llm_app` is the HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from paved.errors import BackendError, InvalidInput, NotFound, PavedError, Unavailable
from paved.manifest import Limits
from serving.admission import Gate
from serving.asgi import ASGIApp
from serving.backends.base import BackendConfig
from serving.backends.llm_app import build_app
from serving.backends.llm_engine import (
    apply_environment,
    build_engine,
    context_length,
    detect_device,
    engine_arguments,
)
from serving.backends.llm_inputs import (
    EncodedPrompt,
    Tokenizer,
    completion_budget,
    encode_chat,
    encode_completion,
    sampling_params,
)
from serving.backends.llm_outputs import (
    ResponseContext,
    Stream,
    UsageTally,
    chat_events,
    chat_response,
    completion_events,
    completion_response,
)
from serving.backends.llm_stream import merge_streams
from serving.backends.llm_usage import AbortedUsage
from serving.protocol.openai import ChatCompletionRequest, CompletionRequest, check_limits
from serving.protocol.openai_responses import (
    ChatCompletionResponse,
    CompletionResponse,
    ModelCard,
    ModelList,
)

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.outputs import RequestOutput
    from vllm.v1.engine.async_llm import AsyncLLM

log = logging.getLogger(__name__)

State = Literal["new", "starting", "ready", "stopping", "stopped", "failed"]
DRAIN_TIMEOUT_S = 30.0
RETRY_AFTER_S = 1.0


def _replica_full(limit: int) -> PavedError:
    return Unavailable(
        f"this replica is serving its limit of {limit} concurrent requests",
        rule="max_concurrency",
        retry_after_s=RETRY_AFTER_S,
    )


class LLMStats(BaseModel):
    """What ``/health`` reports besides readiness."""

    status: State
    in_flight: int
    max_concurrency: int
    engine_requests: int
    disconnects: int
    max_model_len: int


class LLMBackend:
    """OpenAI-compatible serving of one causal LM directory (Backend protocol, ``llm``).

    ``limits`` are the endpoint's per-request limits (the gateway checks them too; the
    replica checks again so it is safe to call directly). ``engine_options`` override
    the engine arguments of :func:`~serving.backends.llm_engine.engine_arguments`.
    """

    kind: Literal["llm"] = "llm"

    def __init__(
        self,
        config: BackendConfig,
        *,
        engine_options: dict[str, Any] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.config = config
        self.limits = limits or Limits()
        self.max_model_len = config.max_model_len  # capped to the model's at start()
        self.created = int(time.time())
        self.disconnects = 0
        self._engine_options = dict(engine_options or {})
        self._gate = Gate(config.max_concurrency, full=_replica_full)
        self.aborted = AbortedUsage()  # usage of streams whose client left, for the gateway
        self._state: State = "new"
        self._engine: AsyncLLM | None = None
        self._building: asyncio.Future[AsyncLLM] | None = None
        self._tokenizer: Tokenizer | None = None
        self._vocab_size = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the engine in a worker thread, so the app can answer 503 meanwhile."""
        if self._state != "new":
            raise RuntimeError(f"start() called in state {self._state}")
        self._state = "starting"
        try:
            device = detect_device()
            apply_environment(device)
            self.max_model_len = context_length(self.config.model_dir, self.config.max_model_len)
            args = engine_arguments(
                self.config,
                device,
                self.max_model_len,
                self._engine_options,
                max_choices=self.limits.max_n,
            )
            log.info("starting vLLM on %s for %s", device, self.config.endpoint)
            # A future, not a task: cancelling start() (or asyncio.run's cleanup) leaves
            # the build running, since a thread cannot be interrupted; stop() awaits it
            # and stops the engine, so its processes never outlive the backend.
            self._building = asyncio.get_running_loop().run_in_executor(None, build_engine, args)
            engine = await asyncio.shield(self._building)
        except BaseException:
            self._state = "failed"
            raise
        self._tokenizer = engine.get_tokenizer()  # type: ignore[assignment]
        self._vocab_size = engine.model_config.get_vocab_size()
        self._engine = engine
        self._state = "ready"

    async def stop(self) -> None:
        """Refuse new requests, let in-flight ones finish (bounded), then stop the engine."""
        if self._state in ("stopping", "stopped"):
            return
        self._state = "stopping"
        if not await self._gate.drained(DRAIN_TIMEOUT_S):
            log.warning("stopping with %d requests still in flight", self._gate.in_flight)
        engine, self._engine = self._engine, None
        building, self._building = self._building, None
        if engine is None and building is not None:
            with contextlib.suppress(Exception):
                engine = await building  # stopped while starting: wait for the engine
        if engine is not None:
            await asyncio.to_thread(engine.shutdown)
            log.info("engine of %s stopped", self.config.endpoint)
        self._state = "stopped"

    @property
    def ready(self) -> bool:
        return self._state == "ready" and self._engine is not None and not self._engine.errored

    def app(self) -> ASGIApp:
        return build_app(self)

    def stats(self) -> LLMStats:
        engine = self._engine
        return LLMStats(
            status="failed" if engine is not None and engine.errored else self._state,
            in_flight=self._gate.in_flight,
            max_concurrency=self._gate.limit,
            engine_requests=engine.get_num_unfinished_requests() if engine else 0,
            disconnects=self.disconnects,
            max_model_len=self.max_model_len,
        )

    def models(self) -> ModelList:
        card = ModelCard(
            id=self.config.endpoint,
            created=self.created,
            root=f"{self.config.model_name}/{self.config.version}",
            max_model_len=self.max_model_len,
        )
        return ModelList(data=[card])

    def stream_closed(self, stream: Stream, disconnected: bool, upstream_id: str | None) -> None:
        """Called once per stream when it ends, however it ended.

        A stream whose client left records its usage (what the engine generated up to
        the abort) under ``upstream_id``, for the gateway to collect.
        """
        stream.slot.release()
        if disconnected:
            self.client_left()
            if upstream_id is not None:
                self.aborted.record(upstream_id, stream.tally.usage())

    def client_left(self) -> None:
        """Count a client that went away before its response was complete."""
        self.disconnects += 1

    # -- requests --------------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> CompletionResponse | Stream:
        """``/v1/completions``: every prompt runs as its own engine request."""
        tokenizer = self._admit(request)
        slot = self._gate.acquire()
        streaming = False  # a stream releases its slot when it ends, not here
        try:
            prompts = encode_completion(tokenizer, request)
            budget = completion_budget(
                request.max_tokens,
                prompts,
                max_model_len=self.max_model_len,
                limits=self.limits,
                default=CompletionRequest.DEFAULT_MAX_TOKENS,
            )
            params = self._sampling(request, budget)
            ctx = self._context(request, f"cmpl-{uuid.uuid4().hex}")
            tally = UsageTally(
                prompt_tokens=sum(len(p.token_ids) for p in prompts),
                sequences=len(prompts) * ctx.n,
            )
            runs = [self._generate(f"{ctx.id}-{i}", p, params) for i, p in enumerate(prompts)]
            if request.stream:
                streaming = True
                return Stream(completion_events(ctx, merge_streams(runs), tally), slot, tally)
            finals = await asyncio.gather(*(_last(run) for run in runs))
            return completion_response(ctx, finals, tally)
        finally:
            if not streaming:
                slot.release()

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletionResponse | Stream:
        """``/v1/chat/completions``: the conversation rendered into one prompt."""
        tokenizer = self._admit(request)
        slot = self._gate.acquire()
        streaming = False  # a stream releases its slot when it ends, not here
        try:
            prompt = encode_chat(tokenizer, request)
            budget_param = (
                "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
            )
            budget = completion_budget(
                request.requested_max_tokens,
                [prompt],
                max_model_len=self.max_model_len,
                limits=self.limits,
                prompt_param="messages",
                budget_param=budget_param,
            )
            params = self._sampling(request, budget)
            ctx = self._context(request, f"chatcmpl-{uuid.uuid4().hex}")
            tally = UsageTally(prompt_tokens=len(prompt.token_ids), sequences=ctx.n)
            run = self._generate(ctx.id, prompt, params)
            if request.stream:
                streaming = True
                return Stream(chat_events(ctx, run, tally), slot, tally)
            return chat_response(ctx, await _last(run), tally)
        finally:
            if not streaming:
                slot.release()

    def _admit(self, request: CompletionRequest | ChatCompletionRequest) -> Tokenizer:
        """Checks that need no tokens: readiness, the model name, the endpoint's limits."""
        if not self.ready or self._tokenizer is None:
            raise Unavailable(
                f"model {self.config.endpoint} is {self._state}",
                rule="not_ready",
                retry_after_s=RETRY_AFTER_S,
            )
        if request.model != self.config.endpoint:
            raise NotFound(
                f"model {request.model!r} is not served here; this replica serves "
                f"{self.config.endpoint!r}",
                rule="model",
                details={"param": "model"},
            )
        check_limits(request, self.limits)
        return self._tokenizer

    def _sampling(
        self, request: CompletionRequest | ChatCompletionRequest, budget: int
    ) -> SamplingParams:
        return sampling_params(
            request, max_tokens=budget, vocab_size=self._vocab_size, stream=bool(request.stream)
        )

    def _context(
        self, request: CompletionRequest | ChatCompletionRequest, request_id: str
    ) -> ResponseContext:
        return ResponseContext(
            id=request_id,
            created=int(time.time()),
            model=self.config.endpoint,
            n=request.n or 1,
            logprobs=request.requested_logprobs,
            include_usage=request.include_usage,
        )

    async def _generate(
        self, request_id: str, prompt: EncodedPrompt, params: SamplingParams
    ) -> AsyncGenerator[RequestOutput, None]:
        """The engine's outputs for one prompt, its errors mapped to Pavedpath's.

        Closing or cancelling this iterator closes vLLM's, which aborts the request.
        """
        from vllm.exceptions import VLLMValidationError
        from vllm.inputs import tokens_input
        from vllm.v1.engine.exceptions import EngineDeadError

        engine = self._engine
        if engine is None:
            raise Unavailable(f"model {self.config.endpoint} is {self._state}", rule="not_ready")
        inputs = tokens_input(prompt.token_ids, prompt=prompt.text)
        try:
            async with aclosing(engine.generate(inputs, params, request_id)) as outputs:
                async for out in outputs:
                    yield out
        except VLLMValidationError as exc:
            raise InvalidInput(str(exc), rule="engine_validation") from exc
        except EngineDeadError as exc:
            raise Unavailable("the engine stopped; this replica is restarting") from exc
        except Exception as exc:
            log.exception("generation %s failed", request_id)
            raise BackendError("generation failed in the engine") from exc


async def _last(run: AsyncGenerator[RequestOutput, None]) -> RequestOutput:
    """The final output of a non-streaming run (the engine sends only that one)."""
    last: RequestOutput | None = None
    async with aclosing(run):
        async for out in run:
            last = out
    if last is None:
        raise BackendError("the engine returned no output")
    return last
