"""The tiny-gpt trainer: a small GPT-2 causal LM with its own tokenizer, on the CPU.

It exists so that the whole platform (registry, vLLM serving, canaries, drift) runs
on a real language model without downloading one. The output directory is a plain
Hugging Face model: ``model.safetensors`` plus json files, no pickles, no remote
code, so vLLM's CPU engine and ``transformers`` both load it as it is. The same seed
on the same machine gives byte-identical weights, so a digest names a training run.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from bundled.tiny_gpt.corpus import (
    Corpus,
    Example,
    build_corpus,
    build_tokenizer,
    reference_profile,
)
from bundled.tiny_gpt.model import KIND, greedy_answers
from paved.errors import InvalidInput
from pipelines.trainers.base import TrainResult
from registry.safety import check_model_dir

# Head sizes vLLM's CPU attention backend (CPU_ATTN) accepts in vllm 0.32.
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


class TinyGPTParams(BaseModel):
    """Hyper-parameters; the defaults train in about a minute on one CPU core.

    One thread by default: the weights' bytes depend on the thread count, one thread
    gives the same bytes on any core count, and it does not stall when other
    processes share the CPU (two spinning OpenMP threads on two busy cores do).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(default=900, ge=1, le=100_000, description="Optimizer steps.")
    batch_size: int = Field(default=32, ge=1, le=1024, description="Examples per step.")
    lr: float = Field(default=3e-3, gt=0, le=1.0, description="Peak AdamW learning rate.")
    warmup_steps: int = Field(default=50, ge=0, description="Linear warm-up, then cosine.")
    weight_decay: float = Field(default=0.01, ge=0)
    n_layer: int = Field(default=4, ge=1, le=24, description="Transformer blocks.")
    n_embd: int = Field(default=128, ge=32, le=2048, description="Hidden size.")
    head_size: int = Field(default=64, description="Per-head dim; vLLM CPU needs one of a set.")
    n_positions: int = Field(default=128, ge=32, le=4096, description="Longest context.")
    max_vocab: int = Field(default=1024, ge=300, le=65_536, description="BPE vocab cap.")
    held_out_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="torch intra-op threads; part of what the weights' bytes depend on.",
    )

    @model_validator(mode="after")
    def _check_heads(self) -> TinyGPTParams:
        if self.head_size not in VLLM_CPU_HEAD_SIZES:
            raise ValueError(f"head_size must be one of {VLLM_CPU_HEAD_SIZES} (vLLM CPU)")
        if self.n_embd % self.head_size:
            raise ValueError("n_embd must be a multiple of head_size")
        return self


def train(
    out_dir: Path, *, seed: int = 0, steps: int | None = None, params: TinyGPTParams | None = None
) -> TrainResult:
    """Train tiny-gpt into ``out_dir`` (created; must be empty) and describe the run.

    ``steps`` overrides ``params.steps`` (tests use a few steps); training is fixed-step
    rather than time-boxed so that the result depends on the seed alone.
    """
    override = {} if steps is None else {"steps": steps}
    try:
        hp = TinyGPTParams.model_validate((params or TinyGPTParams()).model_dump() | override)
    except ValidationError as exc:
        raise InvalidInput(f"invalid tiny-gpt parameters: {exc}", rule="tiny_gpt_params") from exc
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InvalidInput(f"output directory {out_dir} is not empty", rule="empty_out_dir")

    corpus = build_corpus(seed, hp.held_out_fraction)
    tokenizer = build_tokenizer(corpus.train, hp.max_vocab, hp.n_positions)
    with _deterministic(seed, hp.threads):
        model = _new_model(tokenizer, hp)
        started = time.perf_counter()
        train_loss = _fit(model, _encode(tokenizer, corpus.train), tokenizer, hp, seed)
        train_seconds = time.perf_counter() - started
        model.train(False)
        metrics = _evaluate(model, tokenizer, corpus)
    metrics.update(train_loss=train_loss, train_seconds=train_seconds)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir, save_jinja_files=False)
    check_model_dir(out_dir)
    return TrainResult(
        kind=KIND,
        model_dir=out_dir,
        task="text-generation",
        framework="transformers",
        params=_params(hp, seed, model, tokenizer, corpus),
        metrics=metrics,
        dataset_digest=corpus.digest(),
        dataset_description=corpus.describe(),
        reference_profile=reference_profile(tokenizer, corpus.train),
        intended_use="Exercising the Pavedpath pipeline end to end: serving, canaries, "
        "drift and cost on a real causal LM that trains on a CPU in about a minute.",
        limitations="Knows only its generated toy facts (colors, animal sounds, opposites, "
        "single-digit arithmetic, counting to 30); English only; "
        f"{hp.n_positions}-token context; not for any real use.",
    )


@contextmanager
def _deterministic(seed: int, threads: int) -> Iterator[None]:
    """Seeded, deterministic torch with a fixed thread count; restored afterwards."""
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det)
            torch.set_num_threads(prev_threads)


def _new_model(tokenizer: PreTrainedTokenizerFast, hp: TinyGPTParams) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=hp.n_positions,
        n_embd=hp.n_embd,
        n_layer=hp.n_layer,
        n_head=hp.n_embd // hp.head_size,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(config)  # type: ignore[no-untyped-call]


def _encode(tokenizer: PreTrainedTokenizerFast, examples: Sequence[Example]) -> list[list[int]]:
    """``<bos> text <eos>`` token ids per example: the model learns where answers end."""
    ids: list[list[int]] = tokenizer([e.text for e in examples])["input_ids"]
    return [[*row, tokenizer.eos_token_id] for row in ids]


def _pad(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and labels (-100 on padding)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask, ids.masked_fill(mask == 0, -100)


def _fit(
    model: GPT2LMHeadModel,
    rows: list[list[int]],
    tokenizer: PreTrainedTokenizerFast,
    hp: TinyGPTParams,
    seed: int,
) -> float:
    """AdamW with warm-up and cosine decay over shuffled epochs; mean loss of the tail."""
    opt = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)

    warmup = min(hp.warmup_steps, hp.steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, hp.steps - warmup)
        return 0.1 + 0.45 * (1.0 + math.cos(math.pi * done))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    for _ in range(hp.steps):
        if len(order) < hp.batch_size:
            order += torch.randperm(len(rows), generator=gen).tolist()
        batch, order = order[: hp.batch_size], order[hp.batch_size :]
        ids, mask, labels = _pad([rows[i] for i in batch], tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    tail = losses[-max(1, len(losses) // 10) :]
    return sum(tail) / len(tail)


@torch.no_grad()
def _evaluate(
    model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, corpus: Corpus
) -> dict[str, float]:
    """Held-out perplexity over whole texts, and greedy exact match per relation."""
    rows = _encode(tokenizer, corpus.held_out)
    nll, count = 0.0, 0
    for start in range(0, len(rows), 64):
        ids, mask, labels = _pad(rows[start : start + 64], tokenizer.pad_token_id)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        target = labels[:, 1:]
        nll += float(
            torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="sum")
        )
        count += int((target != -100).sum())
    answers = greedy_answers(model, tokenizer, [e.prompt for e in corpus.held_out])
    hits: defaultdict[str, list[bool]] = defaultdict(list)
    for example, answer in zip(corpus.held_out, answers, strict=True):
        hits[example.relation].append(answer == example.answer)
    metrics = {"heldout_perplexity": math.exp(nll / count)}
    every = [h for rel in hits.values() for h in rel]
    metrics["heldout_exact_match"] = sum(every) / len(every)
    metrics.update({f"heldout_exact_match_{r}": sum(h) / len(h) for r, h in sorted(hits.items())})
    return metrics


def _params(
    hp: TinyGPTParams,
    seed: int,
    model: GPT2LMHeadModel,
    tokenizer: PreTrainedTokenizerFast,
    corpus: Corpus,
) -> dict[str, str | int | float | bool]:
    params: dict[str, str | int | float | bool] = dict(hp.model_dump())
    params.update(
        seed=seed,
        n_head=hp.n_embd // hp.head_size,
        vocab_size=len(tokenizer),
        parameters=sum(p.numel() for p in model.parameters()),
        train_rows=len(corpus.train),
        held_out_rows=len(corpus.held_out),
        torch_version=torch.__version__,
    )
    return params
