"""The tiny-gpt model's identity and greedy decoding, shared by its trainer and suite.

The model itself is a plain Hugging Face GPT-2 directory (``model.safetensors`` plus
json files); what is specific to it is its kind and the reference decoding loop that
training metrics and the offline evaluation both measure exact match with.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

KIND = "tiny-gpt"


@torch.no_grad()
def greedy_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int = 8,
) -> list[str]:
    """Greedy completions, cut at ``<eos>`` and stripped.

    Prompts of equal token length are batched together, so no padding can change the
    result, and the loop is plain argmax so it is easy to compare with any engine.
    """
    encoded = tokenizer(list(prompts))["input_ids"]
    by_len: defaultdict[int, list[int]] = defaultdict(list)
    for i, row in enumerate(encoded):
        by_len[len(row)].append(i)
    out = [""] * len(prompts)
    for width, idx in sorted(by_len.items()):
        ids = torch.tensor([encoded[i] for i in idx])
        for _ in range(max_new_tokens):
            next_ids = model(input_ids=ids).logits[:, -1].argmax(dim=-1, keepdim=True)
            ids = torch.cat([ids, next_ids], dim=1)
            if bool((ids[:, width:] == tokenizer.eos_token_id).any(dim=1).all()):
                break
        for i, row in zip(idx, ids[:, width:].tolist(), strict=True):
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id)]
            out[i] = str(tokenizer.decode(row, skip_special_tokens=True)).strip()
    return out
