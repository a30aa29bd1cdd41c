"""Pavedpath: the paved path for models, from the registry to production inference."""
