"""The delivery pipeline: trainers for the bundled models, GitOps promotion, the reconciler."""
