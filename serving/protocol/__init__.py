"""Wire protocols: OpenAI-compatible and KServe Open Inference Protocol v2 models."""
