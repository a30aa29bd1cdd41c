"""The tiny-gpt offline suite: held-out perplexity, exact match and greedy latency.

The held-out prompts are the ones the version's own training run held out. The
corpus is regenerated from the seed and fraction the run recorded, and its digest
must equal the dataset digest in the version's lineage before anything is scored:
that proves the split is the one training saw, so no evaluated prompt was trained on.
A version whose run recorded neither is refused rather than scored on prompts it
may have learned.

Perplexity is over whole held-out texts (prompt, answer, ``<eos>``), as the trainer
computes it, but rows are batched by token length so no padding can move a digit;
exact match compares greedy answers with the fact's answer. Both run on the CPU with
a pinned thread count, so a version always gets the same numbers. Latency is one
prompt at a time, greedy, the way a single user would see it from this model alone.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from bundled.tiny_gpt.corpus import Corpus, Example, build_corpus
from bundled.tiny_gpt.model import KIND, greedy_answers
from evaluation.metrics import latency_percentiles, perplexity
from evaluation.report import EvalReport
from evaluation.suites.common import int_param, json_digest, require_kind, torch_threads
from paved.errors import InvalidInput
from registry.schemas import ModelVersionDetail

SUITE: Final = "tiny-gpt-offline"
SUITE_VERSION: Final = 1
HELDOUT_FORMAT: Final = "pavedpath-tiny-gpt-heldout/v1"


class TextGenerationSuite(BaseModel):
    """Settings of the tiny-gpt suite; all of them are recorded with the report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: int = Field(default=1, ge=1, le=256, description="torch intra-op threads.")
    max_new_tokens: int = Field(
        default=8, ge=1, le=64, description="Greedy tokens per answer (answers are 1-3 tokens)."
    )
    latency_prompts: int = Field(
        default=32, ge=1, le=10_000, description="Prompts timed one at a time."
    )
    warmup: int = Field(default=2, ge=0, le=100, description="Untimed generations first.")


def held_out_corpus(detail: ModelVersionDetail) -> Corpus:
    """Regenerate the version's training corpus and prove it is the one it trained on."""
    seed = int_param(detail, "seed")
    raw_fraction = detail.params.get("held_out_fraction")
    if seed is None or raw_fraction is None:
        raise InvalidInput(
            f"{detail.ref}'s training run recorded no seed or held_out_fraction, so its "
            "held-out prompts cannot be regenerated",
            rule="heldout_split_unknown",
        )
    try:
        fraction = float(raw_fraction)
    except ValueError as exc:
        raise InvalidInput(
            f"{detail.ref}'s training run recorded held_out_fraction {raw_fraction!r}, "
            "not a number",
            rule="heldout_split_unknown",
        ) from exc
    corpus = build_corpus(seed, fraction)
    recorded = detail.lineage.dataset_digest.removeprefix("sha256:")
    if corpus.digest() != recorded:
        raise InvalidInput(
            f"the corpus regenerated for {detail.ref} (seed {seed}) has digest "
            f"{corpus.digest()[:16]}…, but its lineage records {recorded[:16]}…; the held-out "
            "split cannot be trusted to exclude training prompts",
            rule="heldout_split_digest",
        )
    return corpus


def evaluate(
    model_dir: Path, detail: ModelVersionDetail, config: TextGenerationSuite | None = None
) -> EvalReport:
    """Score a verified tiny-gpt directory on its own held-out prompts."""
    cfg = config or TextGenerationSuite()
    require_kind(detail, KIND, SUITE)
    corpus = held_out_corpus(detail)
    held_out = corpus.held_out
    model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(
        model_dir, local_files_only=True, trust_remote_code=False, use_safetensors=True
    )
    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
        model_dir, local_files_only=True
    )
    model.train(False)
    with torch_threads(cfg.threads), torch.inference_mode():
        nll, tokens = _total_nll(model, tokenizer, [e.text for e in held_out])
        answers = greedy_answers(model, tokenizer, [e.prompt for e in held_out], cfg.max_new_tokens)
        timings = _greedy_latencies(model, tokenizer, held_out, cfg)
    metrics = {"perplexity": perplexity(nll, tokens), **_exact_match(held_out, answers)}
    metrics.update(latency_percentiles(timings, prefix="greedy_latency"))
    return EvalReport(
        suite=SUITE,
        suite_version=SUITE_VERSION,
        model=detail.name,
        version=detail.version,
        model_digest=detail.digest,
        task=detail.lineage.task,
        metrics=metrics,
        samples={"prompts": len(held_out), "tokens": tokens, "latency_prompts": len(timings)},
        dataset=(
            f"held-out questions of the tiny-gpt corpus (seed {corpus.seed}): "
            f"{len(held_out)} prompts the version never trained on"
        ),
        dataset_digest=_heldout_digest(corpus),
        params=cfg.model_dump(),
    )


def _total_nll(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]
) -> tuple[float, int]:
    """Summed next-token NLL (nats) over ``<bos> text <eos>`` rows, and the token count."""
    eos = int(tokenizer.eos_token_id)
    encoded: list[list[int]] = tokenizer(list(texts))["input_ids"]
    by_len: defaultdict[int, list[list[int]]] = defaultdict(list)
    for row in encoded:
        by_len[len(row) + 1].append([*row, eos])
    total, count = 0.0, 0
    for _, rows in sorted(by_len.items()):
        ids = torch.tensor(rows)
        logits = model(input_ids=ids).logits[:, :-1]
        target = ids[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="sum")
        total += float(loss)
        count += int(target.numel())
    return total, count


def _exact_match(examples: Sequence[Example], answers: Sequence[str]) -> dict[str, float]:
    """Overall exact match, and per relation so a regression can be located."""
    hits: defaultdict[str, list[bool]] = defaultdict(list)
    for example, answer in zip(examples, answers, strict=True):
        hits[example.relation].append(answer == example.answer)
    every = [h for rel in hits.values() for h in rel]
    out = {"exact_match": sum(every) / len(every)}
    out.update({f"exact_match_{r}": sum(h) / len(h) for r, h in sorted(hits.items())})
    return out


def _greedy_latencies(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    cfg: TextGenerationSuite,
) -> list[float]:
    prompts = [examples[i % len(examples)].prompt for i in range(cfg.latency_prompts)]
    for prompt in prompts[: cfg.warmup]:
        greedy_answers(model, tokenizer, [prompt], cfg.max_new_tokens)
    timings: list[float] = []
    for prompt in prompts:
        started = time.perf_counter()
        greedy_answers(model, tokenizer, [prompt], cfg.max_new_tokens)
        timings.append(time.perf_counter() - started)
    return timings


def _heldout_digest(corpus: Corpus) -> str:
    rows = [[e.relation, e.subject, e.prompt, e.completion] for e in corpus.held_out]
    return json_digest({"format": HELDOUT_FORMAT, "seed": corpus.seed, "rows": rows})
