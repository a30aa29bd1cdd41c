"""The tiny-gpt model: its generated corpus, tokenizer and greedy decoding."""
