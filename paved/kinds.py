"""What a model kind means: one row per task, read by every domain that acts on it.

A registered version's lineage task (``text-generation``, ``tabular-classification``)
decides how it is served (wire protocol, backend, the replica's environment) and how it
is judged (offline evaluation suite, default promotion gate). This table says so once;
each domain keeps a small dict from the names here to its own implementation
(``serving.replica.BACKENDS``, ``evaluation.suites.SUITE_MODULES``,
``evaluation.policy.DEFAULT_POLICIES``), and a unit test per domain checks that every
name the table uses has one. Adding a kind is a row here plus, where it needs a new
one, an implementation in those dicts.

Not to be confused with the bundled model's ``kind`` in lineage (``tiny-gpt``,
``credit-risk``), which names the trainer that produced a version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args

# The tasks Pavedpath can evaluate and serve; anything else is refused at registration
# rather than written into a model card nobody can serve. One value per row below.
Task = Literal["text-generation", "tabular-classification"]
# The wire protocols the gateway speaks to clients (OpenAI chat/completions, Open
# Inference Protocol v2).
Protocol = Literal["openai", "v2"]

# vLLM's CPU engine inside a replica: leave thread placement to the OS (other
# processes share the cores), never contact a hub, never phone home.
VLLM_ENV: Mapping[str, str] = MappingProxyType(
    {
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
)


@dataclass(frozen=True, kw_only=True)
class ModelKind:
    """One task and everything that follows from it.

    A frozen dataclass rather than a pydantic model so ``replica_env`` stays a read-only
    mapping (pydantic would copy it into a plain, mutable dict).
    """

    task: Task  # the lineage task a version is registered with
    protocol: Protocol  # the protocol its endpoint speaks at the gateway
    backend: str  # the serving backend that loads it (serving.replica.BACKENDS)
    suite: str  # the offline evaluation suite that scores it (evaluation.suites)
    gate_policy: str  # the gate used when none is given (evaluation.policy)
    # environment variables of the Ray worker that runs its replica
    replica_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


KINDS: Mapping[str, ModelKind] = MappingProxyType(
    {
        k.task: k
        for k in (
            ModelKind(
                task="text-generation",
                protocol="openai",
                backend="llm",
                replica_env=VLLM_ENV,
                suite="text_generation",
                gate_policy="language-model",
            ),
            ModelKind(
                task="tabular-classification",
                protocol="v2",
                backend="tabular",
                suite="tabular",
                gate_policy="classifier",
            ),
        )
    }
)
TASKS: tuple[str, ...] = tuple(KINDS)

if set(TASKS) != set(get_args(Task)):  # pragma: no cover - a table edit gone wrong
    raise RuntimeError(f"paved.kinds: rows {TASKS} do not match Task {get_args(Task)}")


def kind_of(task: str) -> ModelKind | None:
    """The row for ``task``, or None: each caller refuses an unknown task its own way."""
    return KINDS.get(task)
