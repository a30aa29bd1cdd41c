"""The reconciler's read access to a GitOps repository, through the real ``git`` CLI.

Reads objects at a commit (``git show <commit>:<path>``), never the working tree, so
what is applied is exactly what was committed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from paved.errors import BackendError


class GitManifestSource:
    def __init__(self, repo: Path, branch: str = "HEAD") -> None:
        self.repo = repo
        self.branch = branch
        git = shutil.which("git")
        if git is None:
            raise BackendError("git is not installed")
        self._git_bin = git

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [self._git_bin, "-C", str(self.repo), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and r.returncode != 0:
            raise BackendError(f"git {args[0]} failed: {r.stderr.strip()}")
        return r

    def head(self) -> str:
        return self._git("rev-parse", self.branch).stdout.strip()

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self._git("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0

    def _ls(self, commit: str, directory: str) -> list[str]:
        r = self._git("ls-tree", "--name-only", f"{commit}:{directory}", check=False)
        return r.stdout.split() if r.returncode == 0 else []

    def endpoint_files(self, commit: str, env: str) -> dict[str, str]:
        base = f"environments/{env}"
        return {
            name: self._git("show", f"{commit}:{base}/{name}").stdout
            for name in self._ls(commit, base)
            if name.endswith((".yaml", ".yml"))
        }

    def teams(self, commit: str) -> set[str]:
        return {Path(n).stem for n in self._ls(commit, "teams") if n.endswith((".yaml", ".yml"))}
