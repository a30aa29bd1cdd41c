"""Model code for the bundled models, loaded from safetensors (never unpickled)."""
