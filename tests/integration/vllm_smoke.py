"""Run the real vLLM CPU engine on a model directory; print what it generated as JSON.

A script, not a fixture, because vLLM's engine spawns worker processes and must be
started under ``if __name__ == "__main__":``. The test runs it in a subprocess with
the environment from :func:`engine_env` and reads one JSON object from the last line
of stdout::

    python tests/integration/vllm_smoke.py MODEL_DIR MAX_TOKENS PROMPT [PROMPT ...]

Output: ``fixed`` holds, per prompt, the ids of exactly MAX_TOKENS greedy tokens
(``ignore_eos``); ``greedy`` the ids of a greedy run that stops at ``<eos>``.
"""

from __future__ import annotations

import json
import os
import sys
import time

# vLLM engine arguments that work on a 2-core CPU without a GPU. float32 keeps the
# engine's numerics close to transformers', so greedy outputs can be compared.
ENGINE_ARGS: dict[str, object] = {
    "dtype": "float32",
    "max_model_len": 128,
    "max_num_seqs": 8,
    "enforce_eager": True,  # skip torch.compile: minutes on 2 cores, nothing gained here
    "trust_remote_code": False,
    "seed": 0,
}


def engine_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment vLLM's CPU engine needs here: a 1 GiB KV cache, no core binding."""
    env = dict(os.environ if base is None else base)
    env.update(
        VLLM_CPU_KVCACHE_SPACE="1",
        VLLM_CPU_OMP_THREADS_BIND="nobind",
        VLLM_TARGET_DEVICE="cpu",
        VLLM_NO_USAGE_STATS="1",
        VLLM_DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def main(argv: list[str]) -> dict[str, object]:
    model_dir, max_tokens, prompts = argv[0], int(argv[1]), argv[2:]
    from vllm import LLM, SamplingParams

    started = time.perf_counter()
    llm = LLM(model=model_dir, **ENGINE_ARGS)  # type: ignore[arg-type]
    start_s = time.perf_counter() - started
    fixed = llm.generate(
        prompts, SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    )
    greedy = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=max_tokens))
    return {
        "engine_start_s": start_s,
        "prompt_ids": [list(o.prompt_token_ids or []) for o in fixed],
        "fixed": [list(o.outputs[0].token_ids) for o in fixed],
        "greedy": [list(o.outputs[0].token_ids) for o in greedy],
        "greedy_text": [o.outputs[0].text for o in greedy],
    }


if __name__ == "__main__":
    result = main(sys.argv[1:])
    print(json.dumps(result), flush=True)
