"""The GitOps repository: layout, reading at commits, writing safely, remotes, history."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from paved.errors import Conflict, NotFound, PermissionDenied
from pipelines.gitops import trailers as t
from pipelines.gitops.layout import endpoint_path, render_manifest, team_path
from pipelines.gitops.repo import GitOpsRepo
from tests.unit.pipelines.gitops_fakes import ALICE, T0, VIC, StepClock, git, make_repo

pytestmark = pytest.mark.unit


def endpoint_doc(name: str = "risk", env: str = "staging", version: int = 1) -> dict[str, object]:
    return {
        "apiVersion": "pavedpath/v1",
        "kind": "Endpoint",
        "metadata": {"name": name, "env": env, "team": "risk"},
        "spec": {"model": "credit-risk", "champion": {"version": version}},
    }


def put(repo: GitOpsRepo, path: str, text: str | None, subject: str = "change") -> str:
    return repo.commit_files({path: text}, message=f"{subject}\n", actor=ALICE)


def test_init_writes_the_layout_and_schemas(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    files = git(repo.path, "ls-files").splitlines()
    assert set(files) == {
        "README.md",
        "environments/.gitkeep",
        "teams/.gitkeep",
        "schemas/endpoint.schema.json",
        "schemas/team.schema.json",
    }
    schema = json.loads((repo.path / "schemas/endpoint.schema.json").read_text())
    assert schema["title"] == "Endpoint"
    assert "spec" in schema["properties"]
    [c] = git(repo.path, "log", "--format=%H").splitlines()
    [first] = repo.git.log("main")
    assert first.sha == c
    assert first.trailers[t.ACTION] == "init"
    assert first.committed_at == T0
    assert git(repo.path, "branch", "--show-current") == "main"


def test_init_again_changes_nothing_and_open_finds_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    head = repo.head()
    again = GitOpsRepo.init(repo.path, actor=ALICE)
    assert again.head() == head
    assert GitOpsRepo.open(repo.path).head() == head
    with pytest.raises(NotFound) as info:
        GitOpsRepo.open(tmp_path / "elsewhere")
    assert "paved gitops init" in info.value.message


def test_init_needs_a_writer(tmp_path: Path) -> None:
    with pytest.raises(PermissionDenied) as info:
        GitOpsRepo.init(tmp_path / "g", actor=VIC)
    assert "'ml-engineer'" in info.value.message
    assert not (tmp_path / "g").exists()


def test_init_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(Conflict) as info:
        GitOpsRepo.init(target, actor=ALICE)
    assert info.value.rule == "gitops_path"
    assert not (target / ".git").exists()


def test_init_inside_another_repository_makes_its_own(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    outer.mkdir()
    git(outer, "init", "-q", "-b", "main")
    repo = GitOpsRepo.init(outer / "home" / "gitops", actor=ALICE)
    assert (repo.path / ".git").is_dir()
    assert git(outer, "status", "--porcelain") == "?? home/"  # the outer repo got no commit


def test_endpoints_are_read_at_a_commit_with_errors_per_file(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    first = put(repo, endpoint_path("staging", "risk"), render_manifest(endpoint_doc()))
    put(repo, endpoint_path("staging", "chat"), render_manifest(endpoint_doc(name="other")))
    put(repo, "environments/staging/bad.yaml", "apiVersion: pavedpath/v1\nkind: Endpoint\n")
    put(repo, "environments/prod/x/deep.yaml", "a: 1\n")
    put(repo, team_path("risk"), yaml.safe_dump({"kind": "Team", "metadata": {"name": "risk"}}))
    put(repo, "teams/ops.yaml", yaml.safe_dump({"kind": "Team", "metadata": {"name": "risk"}}))

    loaded = {item.path: item for item in repo.endpoints()}
    assert loaded["environments/staging/risk.yaml"].value is not None
    assert loaded["environments/staging/chat.yaml"].error.rule == "manifest_name"  # type: ignore[union-attr]
    assert loaded["environments/staging/bad.yaml"].error.rule == "manifest_schema"  # type: ignore[union-attr]
    assert loaded["environments/prod/x/deep.yaml"].error.rule == "manifest_path"  # type: ignore[union-attr]
    assert [e.path for e in repo.endpoints(first)] == ["environments/staging/risk.yaml"]
    assert [e.path for e in repo.endpoints(env="prod")] == ["environments/prod/x/deep.yaml"]
    teams = {item.path: item for item in repo.teams()}
    assert teams["teams/risk.yaml"].value is not None
    assert teams["teams/ops.yaml"].error.rule == "team_path"  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        repo.endpoints("0" * 40)


def test_a_dirty_clone_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo.path / "scratch.txt").write_text("mine")
    with pytest.raises(Conflict) as info:
        put(repo, endpoint_path("staging", "risk"), render_manifest(endpoint_doc()))
    assert info.value.rule == "gitops_dirty"
    assert (repo.path / "scratch.txt").read_text() == "mine"
    assert len(repo.git.log("main")) == 1


def test_what_was_serving_between_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)  # init at T0, then one hour per commit
    path = endpoint_path("staging", "risk")
    put(repo, path, render_manifest(endpoint_doc(version=1)), "v1")  # T0 + 1h
    put(repo, "README.md", "unrelated\n", "docs")  # T0 + 2h
    put(repo, path, render_manifest(endpoint_doc(version=2)), "v2")  # T0 + 3h
    put(repo, path, None, "remove")  # T0 + 4h

    def champion(hours: float) -> int | None:
        change = repo.what_was_serving("risk", "staging", T0 + timedelta(hours=hours))
        if change is None or change.manifest is None:
            return None
        return change.manifest.spec.champion.version

    assert [champion(h) for h in (0.5, 1, 2.5, 3.5, 9)] == [None, 1, 1, 2, None]
    assert [c.subject for c in repo.changes("risk", "staging")] == ["remove", "v2", "v1"]
    with pytest.raises(ValueError, match="timezone"):
        repo.what_was_serving("risk", "staging", T0.replace(tzinfo=None))


def bare(tmp_path: Path) -> str:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    return str(remote)


def test_a_clone_of_an_empty_remote_pushes_its_layout(tmp_path: Path) -> None:
    remote = bare(tmp_path)
    repo = make_repo(tmp_path, remote=remote)
    assert git(Path(remote), "rev-parse", "main") == repo.head()
    with pytest.raises(Conflict) as info:
        GitOpsRepo.init(repo.path, actor=ALICE, remote=str(tmp_path / "another.git"))
    assert info.value.rule == "gitops_remote"


def test_clones_see_each_others_changes(tmp_path: Path) -> None:
    remote = bare(tmp_path)
    one = GitOpsRepo.init(tmp_path / "one", actor=ALICE, remote=remote, clock=StepClock())
    two = GitOpsRepo.init(tmp_path / "two", actor=ALICE, remote=remote, clock=StepClock())
    assert two.head() == one.head()
    put(one, endpoint_path("staging", "risk"), render_manifest(endpoint_doc()))
    with two.lock():
        two.sync()
    assert two.read_endpoint("staging", "risk") is not None
    assert two.head() == one.head() == git(Path(remote), "rev-parse", "main")


def test_a_refused_push_undoes_the_local_commit(tmp_path: Path) -> None:
    remote = bare(tmp_path)
    one = GitOpsRepo.init(tmp_path / "one", actor=ALICE, remote=remote, clock=StepClock())
    two = GitOpsRepo.init(tmp_path / "two", actor=ALICE, remote=remote, clock=StepClock())
    put(one, "README.md", "one moved on\n")
    before = two.head()
    with pytest.raises(Conflict) as info:  # two did not sync first: the remote refuses
        put(two, endpoint_path("staging", "risk"), render_manifest(endpoint_doc()))
    assert info.value.rule == "gitops_push"
    assert two.head() == before
    assert two.git.is_clean()
    assert not (two.path / "environments/staging/risk.yaml").exists()
