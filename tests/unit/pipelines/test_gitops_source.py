"""The reconciler's ManifestSource over the GitOps repository (real git, at commits)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from paved.errors import BackendError
from pipelines.gitops.source import GitSource
from tests.unit.pipelines.gitops_fakes import ALICE, make_repo

pytestmark = pytest.mark.unit


def test_reads_direct_yaml_files_at_a_commit_not_the_working_tree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    first = repo.commit_files(
        {
            "environments/staging/risk.yaml": "a: 1\n",
            "environments/staging/chat.yml": "b: 2\n",
            "environments/staging/notes.txt": "not a manifest\n",
            "environments/staging/deep/x.yaml": "below the folder\n",
            "environments/prod/risk.yaml": "c: 3\n",
            "teams/risk.yaml": "kind: Team\n",
            "teams/ops.yml": "kind: Team\n",
            "teams/README.md": "x\n",
        },
        message="layout\n",
        actor=ALICE,
    )
    source = GitSource(repo.path)
    assert source.head() == first
    assert source.endpoint_files(first, "staging") == {"risk.yaml": "a: 1\n", "chat.yml": "b: 2\n"}
    assert source.endpoint_files(first, "dev") == {}
    assert source.teams(first) == {"risk", "ops"}

    second = repo.commit_files(
        {"environments/staging/risk.yaml": None}, message="remove\n", actor=ALICE
    )
    assert source.head() == second
    assert set(source.endpoint_files(second, "staging")) == {"chat.yml"}
    assert set(source.endpoint_files(first, "staging")) == {"risk.yaml", "chat.yml"}
    assert source.is_ancestor(first, second)
    assert not source.is_ancestor(second, first)
    (repo.path / "environments/staging/chat.yml").write_text("uncommitted\n")
    assert source.endpoint_files(second, "staging") == {"chat.yml": "b: 2\n"}


def test_an_empty_repository_has_no_head(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with pytest.raises(BackendError) as info:
        GitSource(tmp_path).head()
    assert info.value.rule == "git"
