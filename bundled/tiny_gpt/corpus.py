"""The tiny-gpt corpus: short templated facts and question/answer pairs made by code.

Nothing is downloaded: every example comes from the small fact tables below, so the
corpus (and its digest) is a pure function of the seed. Each fact appears as one
plain statement ("the sky is blue.") and as questions in several phrasings
("Q: what color is the sky? A: blue"). The split holds out some (fact, phrasing)
questions while the statement of every fact always stays in training, so held-out
exact match asks something a small model can learn here: answering a new phrasing
of a fact it has seen, rather than recalling a fact it never saw.

The text side of the model lives here too: the BPE tokenizer trained on the
training split, and the prompt profile drift detection compares traffic against.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from paved.errors import InvalidInput
from registry.profile import DataProfile, categorical_profile, numeric_profile

FORMAT = "pavedpath-tiny-gpt-corpus/v1"
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
OTHER_BUCKET = "<other>"  # profile bucket for prompt tokens outside the top tokens
# Chat turns as the corpus's Q/A format, so OpenAI-style chat requests work: a user
# message "what color is the sky?" becomes the prompt "<bos>Q: what color is the sky? A:".
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}Q: {{ m['content'] }} A:"
    "{% elif m['role'] == 'assistant' %} {{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)

_COLORS: tuple[tuple[str, str], ...] = (
    ("sky", "blue"), ("sea", "blue"), ("grass", "green"), ("leaf", "green"),
    ("snow", "white"), ("milk", "white"), ("cloud", "white"), ("coal", "black"),
    ("crow", "black"), ("banana", "yellow"), ("lemon", "yellow"), ("tomato", "red"),
    ("cherry", "red"), ("carrot", "orange"), ("pumpkin", "orange"), ("plum", "purple"),
    ("grape", "purple"), ("night", "black"),
)  # fmt: skip
_SOUNDS: tuple[tuple[str, str], ...] = (
    ("dog", "woof"), ("cat", "meow"), ("cow", "moo"), ("duck", "quack"), ("sheep", "baa"),
    ("pig", "oink"), ("lion", "roar"), ("owl", "hoot"), ("horse", "neigh"), ("frog", "croak"),
    ("bee", "buzz"), ("snake", "hiss"), ("mouse", "squeak"), ("wolf", "howl"),
    ("goat", "bleat"), ("crow", "caw"),
)  # fmt: skip
_OPPOSITE_PAIRS: tuple[tuple[str, str], ...] = (
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("happy", "sad"),
    ("day", "night"), ("open", "closed"), ("light", "dark"), ("wet", "dry"),
    ("full", "empty"), ("hard", "soft"), ("loud", "quiet"), ("early", "late"),
    ("left", "right"), ("old", "new"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Relation:
    """One kind of fact: its facts, the statement form and the question phrasings."""

    name: str
    facts: tuple[tuple[str, str], ...]
    statement: str  # "{s}" and "{a}" placeholders; the answer ends the sentence
    questions: tuple[str, ...]  # "{s}" placeholder; each ends with "A:"


def _relations() -> tuple[Relation, ...]:
    digits = range(10)
    opposites = _OPPOSITE_PAIRS + tuple((b, a) for a, b in _OPPOSITE_PAIRS)
    return (
        Relation(
            "color",
            _COLORS,
            "the {s} is {a}.",
            (
                "Q: what color is the {s}? A:",
                "Q: the {s} is what color? A:",
                "Q: name the color of the {s}. A:",
            ),
        ),
        Relation(
            "sound",
            _SOUNDS,
            "the {s} says {a}.",
            (
                "Q: what does the {s} say? A:",
                "Q: what sound does a {s} make? A:",
                "Q: the {s} says what? A:",
            ),
        ),
        Relation(
            "opposite",
            opposites,
            "the opposite of {s} is {a}.",
            ("Q: what is the opposite of {s}? A:", "Q: {s} is the opposite of what? A:"),
        ),
        Relation(
            "plus",
            tuple((f"{a} plus {b}", str(a + b)) for a in digits for b in digits),
            "{s} is {a}.",
            ("Q: {s}? A:", "Q: what is {s}? A:"),
        ),
        Relation(
            "minus",
            tuple((f"{a} minus {b}", str(a - b)) for a in digits for b in range(a + 1)),
            "{s} is {a}.",
            ("Q: {s}? A:", "Q: what is {s}? A:"),
        ),
        Relation(
            "successor",
            tuple((str(n), str(n + 1)) for n in range(30)),
            "the number after {s} is {a}.",
            ("Q: what comes after {s}? A:", "Q: what number follows {s}? A:"),
        ),
    )


@dataclass(frozen=True, slots=True)
class Example:
    """One training or evaluation text, split where a user's prompt would end.

    ``completion`` starts with a space so that ``prompt + completion`` is the natural
    sentence and the prompt's tokens are a prefix of the full text's tokens.
    """

    relation: str
    subject: str  # which fact of the relation this states or asks about
    prompt: str
    completion: str
    is_question: bool

    @property
    def text(self) -> str:
        return self.prompt + self.completion

    @property
    def answer(self) -> str:
        """The fact's answer; for questions, what exact match compares generations with."""
        return self.completion.strip().removesuffix(".")


@dataclass(frozen=True, slots=True)
class Corpus:
    """A deterministic train / held-out split; held-out holds only questions."""

    seed: int
    train: tuple[Example, ...]
    held_out: tuple[Example, ...]

    def describe(self) -> str:
        return (
            f"generated templated facts and Q/A (colors, animal sounds, opposites, "
            f"arithmetic, counting), seed {self.seed}: {len(self.train)} train, "
            f"{len(self.held_out)} held-out examples"
        )

    def canonical_bytes(self) -> bytes:
        """The serialisation the dataset digest is taken over (stable across runs)."""

        def rows(examples: Sequence[Example]) -> list[list[str | bool]]:
            return [
                [e.relation, e.subject, e.prompt, e.completion, e.is_question] for e in examples
            ]

        doc = {"format": FORMAT, "train": rows(self.train), "held_out": rows(self.held_out)}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    def digest(self) -> str:
        """sha256 hex of :meth:`canonical_bytes`."""
        return hashlib.sha256(self.canonical_bytes()).hexdigest()


def _examples(relation: Relation) -> Iterator[Example]:
    """Every example of a relation: per fact, its statement then its questions."""
    for s, a in relation.facts:
        prompt, _, _ = relation.statement.format(s=s, a=a).rpartition(" ")
        yield Example(relation.name, s, prompt, f" {a}.", is_question=False)
        for q in relation.questions:
            yield Example(relation.name, s, q.format(s=s), f" {a}", is_question=True)


def build_corpus(seed: int = 0, held_out_fraction: float = 0.15) -> Corpus:
    """Generate the corpus and split it; the same arguments give the same corpus.

    A question is held out only while its fact keeps at least one training question,
    so every held-out answer was seen both as a statement and as a question.
    """
    if not 0.0 < held_out_fraction < 0.5:
        raise InvalidInput(
            f"held_out_fraction must be in (0, 0.5), got {held_out_fraction}",
            rule="held_out_fraction_range",
        )
    rng = random.Random(seed)
    train: list[Example] = []
    held_out: list[Example] = []
    for relation in _relations():
        examples = list(_examples(relation))
        train.extend(e for e in examples if not e.is_question)
        questions = [e for e in examples if e.is_question]
        rng.shuffle(questions)
        target = round(held_out_fraction * len(questions))
        left = {s: len(relation.questions) for s, _ in relation.facts}
        held = 0
        for example in questions:
            if held < target and left[example.subject] > 1:
                held_out.append(example)
                left[example.subject] -= 1
                held += 1
            else:
                train.append(example)
    rng.shuffle(train)
    return Corpus(seed=seed, train=tuple(train), held_out=tuple(held_out))


def build_tokenizer(
    examples: Sequence[Example], max_vocab: int, model_max_length: int
) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the corpus; it prepends ``<bos>`` to every input.

    Byte-level means no input is ever unknown; the post-processor adding ``<bos>`` lives
    in tokenizer.json so vLLM and transformers tokenize prompts identically. Save it
    with ``save_jinja_files=False``: the chat template then stays inside
    tokenizer_config.json and the model directory holds only json and safetensors.
    """
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max_vocab,
        special_tokens=[PAD, UNK, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([e.text for e in examples], trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        chat_template=CHAT_TEMPLATE,
    )


def reference_profile(
    tokenizer: PreTrainedTokenizerFast, examples: Sequence[Example]
) -> DataProfile:
    """Prompt length in tokens, and the frequency of the 50 commonest prompt tokens.

    Lengths count ``<bos>``, as the engine's usage reports do, so metered prompt
    tokens compare directly. Frequencies leave ``<bos>`` out; tokens outside the top
    50 count as ``<other>``, so they cover every prompt token and live traffic
    compares as a full distribution.
    """
    prompts = [e.prompt for e in examples]
    ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    lengths = [len(row) for row in tokenizer(prompts)["input_ids"]]
    tokens = [t for row in ids for t in tokenizer.convert_ids_to_tokens(row)]
    top = {t for t, _ in Counter(tokens).most_common(50)}
    return DataProfile(
        rows=len(prompts),
        features={
            "prompt_tokens": numeric_profile(lengths),
            "prompt_top_tokens": categorical_profile(
                [t if t in top else OTHER_BUCKET for t in tokens]
            ),
        },
    )
