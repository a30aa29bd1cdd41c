"""The credit-risk model: features, codec, network (loaded from safetensors, never
unpickled) and its generated dataset."""
