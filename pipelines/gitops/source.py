"""The reconciler's read access to the GitOps repository (its ``ManifestSource``).

Reads objects at a commit through :class:`pipelines.gitops.git.Git`, never the working
tree, so what is applied is exactly what was committed.
"""

from __future__ import annotations

from pathlib import Path

from paved.errors import BackendError
from pipelines.gitops.git import Git
from pipelines.gitops.layout import ENV_DIR, TEAM_DIR, YAML_SUFFIXES


class GitSource:
    """Manifests and team names at a commit of one branch (``HEAD`` by default)."""

    def __init__(self, repo: Path, branch: str = "HEAD") -> None:
        self.git = Git(repo)
        self.branch = branch

    def head(self) -> str:
        sha = self.git.rev_parse(self.branch)
        if sha is None:
            raise BackendError(
                f"the GitOps repository {self.git.workdir} has no commit at {self.branch}",
                rule="git",
            )
        return sha

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.git.is_ancestor(older, newer)

    def _documents(self, commit: str, folder: str) -> list[str]:
        """Paths of the YAML files directly in ``folder`` at ``commit`` (not below it)."""
        prefix = folder + "/"
        return [
            p
            for p in self.git.list_files(commit, folder)
            if p.startswith(prefix) and "/" not in p[len(prefix) :] and p.endswith(YAML_SUFFIXES)
        ]

    def endpoint_files(self, commit: str, env: str) -> dict[str, str]:
        """``{file name: text}`` of the manifests in ``environments/<env>/``."""
        paths = self._documents(commit, f"{ENV_DIR}/{env}")
        texts = self.git.read_files(commit, paths)
        return {p.rsplit("/", 1)[1]: texts[p] for p in paths if p in texts}

    def teams(self, commit: str) -> set[str]:
        """Names of the teams with a policy file in ``teams/``."""
        return {Path(p).stem for p in self._documents(commit, TEAM_DIR)}
