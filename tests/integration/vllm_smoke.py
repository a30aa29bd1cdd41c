"""Run the real vLLM CPU engine on a model directory and write what it generated.

A script, not a fixture, because vLLM's engine spawns worker processes and must be
started under ``if __name__ == "__main__":``. The test runs it in a subprocess with
the environment from :func:`engine_env`::

    python tests/integration/vllm_smoke.py MODEL_DIR REQUEST_JSON RESULT_JSON

The request is ``{"max_tokens": N, "prompts": [...], "questions": [...]}``. The
result (a file, because vLLM logs to stdout even after the engine has answered):
``fixed``, per prompt, exactly N greedy token ids (``ignore_eos``); ``greedy``, a
greedy run that stops at ``<eos>``; ``chat``, greedy answers to each question sent
as one user message through the model's chat template; the ``*_prompt_ids`` the
engine tokenized; ``engine_start_s``, how long ``LLM(...)`` took.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# vLLM engine arguments that work on a 2-core CPU without a GPU. float32 keeps the
# engine's numerics close to transformers', so greedy outputs can be compared.
ENGINE_ARGS: dict[str, Any] = {
    "dtype": "float32",
    "max_model_len": 128,
    "max_num_seqs": 8,
    # 64 MiB: 16k tokens of tiny-gpt. VLLM_CPU_KVCACHE_SPACE only takes whole GiB.
    "kv_cache_memory_bytes": 64 * 2**20,
    "enforce_eager": True,  # skip torch.compile: slow to start on 2 cores, no gain here
    "trust_remote_code": False,
    "seed": 0,
}


def engine_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for vLLM's CPU engine here: CPU platform, no core pinning, offline.

    ``VLLM_CPU_KVCACHE_SPACE`` is removed because, when set, it overrides the engine's
    ``kv_cache_memory_bytes``. ``nobind`` leaves placement to the OS, which copes
    better than pinning to core 0 when other processes share the two cores.
    """
    env = dict(os.environ if base is None else base)
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    env.update(
        VLLM_TARGET_DEVICE="cpu",
        VLLM_CPU_OMP_THREADS_BIND="nobind",
        VLLM_NO_USAGE_STATS="1",
        VLLM_DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def run(model_dir: str, request: dict[str, Any]) -> dict[str, Any]:
    """Start the engine on ``model_dir`` and answer ``request`` (see the module doc)."""
    from vllm import LLM, SamplingParams

    started = time.perf_counter()
    llm = LLM(model=model_dir, **ENGINE_ARGS)
    start_s = time.perf_counter() - started
    n, prompts = int(request["max_tokens"]), list(request["prompts"])
    greedy_params = SamplingParams(temperature=0.0, max_tokens=n)
    fixed = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True))
    greedy = llm.generate(prompts, greedy_params)
    conversations: list[list[Any]] = [
        [{"role": "user", "content": q}] for q in request["questions"]
    ]
    chat = llm.chat(conversations, greedy_params)
    return {
        "engine_start_s": start_s,
        "prompt_ids": [list(o.prompt_token_ids or []) for o in fixed],
        "fixed": [list(o.outputs[0].token_ids) for o in fixed],
        "greedy": [list(o.outputs[0].token_ids) for o in greedy],
        "greedy_text": [o.outputs[0].text for o in greedy],
        "chat_prompt_ids": [list(o.prompt_token_ids or []) for o in chat],
        "chat": [list(o.outputs[0].token_ids) for o in chat],
        "chat_text": [o.outputs[0].text for o in chat],
    }


if __name__ == "__main__":
    model, request_path, result_path = sys.argv[1:4]
    result = run(model, json.loads(Path(request_path).read_text(encoding="utf-8")))
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")
