"""The GitOps repository: manifests in Git, written by promotions, read by the reconciler."""

from pipelines.gitops.history import Change
from pipelines.gitops.layout import Loaded, endpoint_path, team_path
from pipelines.gitops.repo import GitOpsRepo

__all__ = ["Change", "GitOpsRepo", "Loaded", "endpoint_path", "team_path"]
