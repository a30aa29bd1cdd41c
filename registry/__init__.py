"""MLflow-backed model registry: versions with lineage and digests, protected aliases, history."""
