"""tiny-gpt: the corpus split, and a quickly trained model that is safe, deterministic
and loadable by transformers from its directory alone."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from bundled.tiny_gpt.corpus import build_corpus, build_tokenizer
from bundled.tiny_gpt.model import greedy_answers
from paved.errors import InvalidInput
from pipelines.trainers.base import TrainResult
from pipelines.trainers.tiny_gpt import TinyGPTParams, train
from registry.safety import check_model_dir

pytestmark = pytest.mark.unit

QUICK = TinyGPTParams(steps=8, batch_size=16)
MODEL_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
}


def weights_sha256(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(tmp_path_factory.mktemp("tiny") / "model", seed=0, params=QUICK)


def test_corpus_is_deterministic_and_split_disjoint() -> None:
    corpus = build_corpus(seed=0)
    assert build_corpus(seed=0) == corpus
    assert build_corpus(seed=0).digest() == corpus.digest()
    assert build_corpus(seed=1).digest() != corpus.digest()
    train_texts = {e.text for e in corpus.train}
    held_texts = {e.text for e in corpus.held_out}
    assert len(held_texts) == len(corpus.held_out)
    assert not train_texts & held_texts
    assert all(e.is_question and e.prompt.endswith("A:") for e in corpus.held_out)
    assert 0.08 < len(corpus.held_out) / (len(corpus.train) + len(corpus.held_out)) < 0.2
    assert {e.relation for e in corpus.held_out} == {e.relation for e in corpus.train}


def test_every_held_out_fact_is_stated_in_training() -> None:
    corpus = build_corpus(seed=3)
    stated = {(e.relation, e.subject, e.answer) for e in corpus.train if not e.is_question}
    asked = {(e.relation, e.subject) for e in corpus.train if e.is_question}
    for e in corpus.held_out:
        assert (e.relation, e.subject, e.answer) in stated
        assert (e.relation, e.subject) in asked


def test_prompt_tokens_are_a_prefix_of_the_text_tokens() -> None:
    # Exact match generates after the prompt's tokens; that only measures the answer
    # if the training text tokenizes as prompt tokens followed by answer tokens.
    corpus = build_corpus(seed=0)
    tokenizer = build_tokenizer(corpus.train, max_vocab=1024, model_max_length=128)
    for e in corpus.train + corpus.held_out:
        prompt = tokenizer(e.prompt)["input_ids"]
        assert tokenizer(e.text)["input_ids"][: len(prompt)] == prompt, e


def test_corpus_rejects_a_bad_fraction() -> None:
    with pytest.raises(InvalidInput):
        build_corpus(seed=0, held_out_fraction=0.9)


def test_model_dir_holds_only_safe_files(trained: TrainResult) -> None:
    files = {p.name for p in trained.model_dir.iterdir()}
    assert files == MODEL_FILES
    config = json.loads((trained.model_dir / "config.json").read_text())
    assert config["model_type"] == "gpt2"
    assert "auto_map" not in config
    assert "trust_remote_code" not in config
    assert config["n_embd"] // config["n_head"] == 64
    with safe_open(str(trained.model_dir / "model.safetensors"), framework="pt") as f:
        assert "transformer.wte.weight" in set(f.keys())
    check_model_dir(trained.model_dir)


def test_same_seed_same_weights_other_seed_other_weights(
    trained: TrainResult, tmp_path: Path
) -> None:
    again = train(tmp_path / "again", seed=0, params=QUICK)
    other = train(tmp_path / "other", seed=1, params=QUICK)
    assert weights_sha256(again.model_dir) == weights_sha256(trained.model_dir)
    assert again.dataset_digest == trained.dataset_digest
    assert again.metrics["heldout_perplexity"] == trained.metrics["heldout_perplexity"]
    assert weights_sha256(other.model_dir) != weights_sha256(trained.model_dir)
    assert other.dataset_digest != trained.dataset_digest


def test_transformers_loads_the_directory_and_generates(trained: TrainResult) -> None:
    model = AutoModelForCausalLM.from_pretrained(trained.model_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(trained.model_dir, local_files_only=True)
    ids = tokenizer("Q: 3 plus 4? A:", return_tensors="pt")["input_ids"]
    assert ids[0, 0].item() == tokenizer.bos_token_id
    out = model.generate(  # type: ignore[misc]
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=5,
        pad_token_id=tokenizer.pad_token_id,
    )
    assert isinstance(out, torch.Tensor)
    assert ids.shape[1] < out.shape[1] <= ids.shape[1] + 5
    # The trainer's own greedy loop agrees with transformers' generate.
    ours = greedy_answers(model, tokenizer, ["Q: 3 plus 4? A:"], max_new_tokens=5)
    new = out[0, ids.shape[1] :].tolist()
    if tokenizer.eos_token_id in new:
        new = new[: new.index(tokenizer.eos_token_id)]
    assert ours == [str(tokenizer.decode(new, skip_special_tokens=True)).strip()]


def test_chat_template_renders_the_corpus_qa_prompt(trained: TrainResult) -> None:
    tokenizer = AutoTokenizer.from_pretrained(trained.model_dir, local_files_only=True)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what color is the sky?"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<bos>Q: what color is the sky? A:"
    rendered = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert rendered == tokenizer("Q: what color is the sky? A:")["input_ids"]


def test_metrics_params_and_lineage(trained: TrainResult) -> None:
    corpus = build_corpus(seed=0)
    m = trained.metrics
    assert math.isfinite(m["heldout_perplexity"])
    vocab_size = trained.params["vocab_size"]
    assert isinstance(vocab_size, int)
    assert 1.0 <= m["heldout_perplexity"] < vocab_size
    assert 0.0 <= m["heldout_exact_match"] <= 1.0
    for relation in {e.relation for e in corpus.held_out}:
        assert 0.0 <= m[f"heldout_exact_match_{relation}"] <= 1.0
    assert math.isfinite(m["train_loss"])
    assert m["train_seconds"] > 0
    p = trained.params
    assert p["steps"] == QUICK.steps
    assert p["seed"] == 0
    assert p["train_rows"] == len(corpus.train)
    assert p["held_out_rows"] == len(corpus.held_out)
    tokenizer = AutoTokenizer.from_pretrained(trained.model_dir, local_files_only=True)
    assert vocab_size == len(tokenizer) <= QUICK.max_vocab
    assert trained.dataset_digest == hashlib.sha256(corpus.canonical_bytes()).hexdigest()
    assert (trained.kind, trained.task, trained.framework) == (
        "tiny-gpt",
        "text-generation",
        "transformers",
    )


def test_reference_profile_covers_every_prompt_token(trained: TrainResult) -> None:
    corpus = build_corpus(seed=0)
    profile = trained.reference_profile
    assert profile.rows == len(corpus.train)
    lengths = profile.features["prompt_tokens"]
    assert lengths.kind == "numeric"
    assert sum(lengths.counts) == len(corpus.train)
    tokens = profile.features["prompt_top_tokens"]
    assert tokens.kind == "categorical"
    assert len(tokens.frequencies) <= 51
    # Lengths count <bos> (as engines report usage); frequencies cover the rest.
    assert lengths.min >= 2
    total = round(lengths.mean * len(corpus.train)) - len(corpus.train)
    assert sum(tokens.frequencies.values()) == total
    assert "<bos>" not in tokens.frequencies


def test_training_leaves_torch_global_state_alone(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    rng = torch.random.get_rng_state()
    train(tmp_path / "m", seed=5, params=TinyGPTParams(steps=1, batch_size=4, threads=1))
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        train(tmp_path / "a", steps=0)
    with pytest.raises(InvalidInput):
        train(tmp_path / "b", params=TinyGPTParams.model_construct(head_size=48, n_embd=96))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(InvalidInput):
        train(tmp_path / "full", params=QUICK)
    with pytest.raises(ValueError, match="head_size"):
        TinyGPTParams(head_size=48)
