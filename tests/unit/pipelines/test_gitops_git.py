"""The git wrapper against the real git binary, in temporary repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from paved.errors import BackendError
from pipelines.gitops.git import Git, GitError, Identity
from tests.unit.pipelines.gitops_fakes import T0, git

pytestmark = pytest.mark.unit

ME = Identity.of("alice")
TOOL = Identity.of("pavedpath")


@pytest.fixture
def repo(tmp_path: Path) -> Git:
    g = Git.init(tmp_path / "r", branch="main")
    (g.workdir / "a.txt").write_text("one\n")
    g.add("a.txt")
    g.commit("first\n\nPaved-Action: init\n", author=ME, committer=TOOL, at=T0)
    return g


def test_commit_records_author_date_and_trailers(repo: Git) -> None:
    (repo.workdir / "a.txt").write_text("two\n")
    repo.add("a.txt")
    message = "second\n\nBody line.\n\nPaved-Action: promote\nPaved-Actor: key:0123abcd\n"
    sha = repo.commit(message, author=Identity.of("key:0123abcd"), committer=TOOL, at=T0)
    [c] = repo.log("main", max_count=1)
    assert c.sha == sha == repo.rev_parse("main")
    assert c.author == "key:0123abcd"
    assert c.committed_at == T0
    assert c.subject == "second"
    assert c.trailers == {"Paved-Action": "promote", "Paved-Actor": "key:0123abcd"}
    assert git(repo.workdir, "log", "-1", "--format=%ae") == "key-0123abcd@pavedpath.invalid"


def test_identity_cannot_break_the_author_line() -> None:
    ident = Identity.of("eve <root@x>\nInjected: yes")
    assert "<" not in ident.name
    assert "\n" not in ident.name
    assert ident.email.endswith("@pavedpath.invalid")
    assert " " not in ident.email


def test_reads_files_and_objects_at_a_commit(repo: Git) -> None:
    first = repo.rev_parse("main")
    assert first is not None
    (repo.workdir / "d").mkdir()
    (repo.workdir / "d" / "b.yaml").write_text("b: 1\n")
    repo.add("d/b.yaml")
    second = repo.commit("b\n", author=ME, committer=TOOL, at=T0)
    assert repo.show_file(first, "d/b.yaml") is None
    assert repo.show_file(second, "d/b.yaml") == "b: 1\n"
    assert repo.list_files(second, "d") == ["d/b.yaml"]
    found = repo.read_objects(
        [f"{second}:d", f"{first}:d/b.yaml", f"{second}:d/b.yaml", f"{second}:a.txt"]
    )
    assert found == {f"{second}:d/b.yaml": "b: 1\n", f"{second}:a.txt": "one\n"}
    assert repo.read_files(second, ["a.txt", "nope.txt"]) == {"a.txt": "one\n"}


def test_commit_tree_leaves_head_index_and_worktree_alone(repo: Git) -> None:
    head = repo.rev_parse("HEAD")
    assert head is not None
    sha = repo.commit_tree(
        head,
        {"x/new.yaml": "n: 1\n", "a.txt": None},
        message="side\n",
        author=ME,
        committer=TOOL,
        at=T0,
    )
    repo.create_branch("side/one", sha)
    assert repo.rev_parse("HEAD") == head
    assert repo.is_clean()
    assert (repo.workdir / "a.txt").exists()
    assert repo.show_file("side/one", "x/new.yaml") == "n: 1\n"
    assert repo.show_file("side/one", "a.txt") is None
    with pytest.raises(GitError):
        repo.create_branch("side/one", head)  # exists: refused atomically


def test_merge_no_ff_and_revert_of_a_merge(repo: Git) -> None:
    head = repo.rev_parse("HEAD")
    assert head is not None
    side = repo.commit_tree(
        head, {"a.txt": "side\n"}, message="side\n", author=ME, committer=TOOL, at=T0
    )
    repo.create_branch("side", side)
    merge = repo.merge("side", message="merge side\n", author=ME, committer=TOOL, at=T0)
    assert len(repo.log(merge, max_count=1)[0].parents) == 2
    assert (repo.workdir / "a.txt").read_text() == "side\n"
    repo.revert(merge, message="undo\n", author=ME, committer=TOOL, at=T0)
    assert (repo.workdir / "a.txt").read_text() == "one\n"
    assert [c.subject for c in repo.log("main", first_parent=True)] == [
        "undo",
        "merge side",
        "first",
    ]


def test_a_conflicting_merge_is_aborted(repo: Git) -> None:
    head = repo.rev_parse("HEAD")
    assert head is not None
    side = repo.commit_tree(
        head, {"a.txt": "theirs\n"}, message="s\n", author=ME, committer=TOOL, at=T0
    )
    repo.create_branch("side", side)
    (repo.workdir / "a.txt").write_text("ours\n")
    repo.add("a.txt")
    repo.commit("ours\n", author=ME, committer=TOOL, at=T0)
    with pytest.raises(GitError):
        repo.merge("side", message="m\n", author=ME, committer=TOOL, at=T0)
    assert repo.is_clean()
    assert (repo.workdir / "a.txt").read_text() == "ours\n"


def test_failures_carry_gits_stderr(repo: Git) -> None:
    with pytest.raises(BackendError) as info:
        repo.run("checkout", "no-such-branch")
    assert "no-such-branch" in info.value.message
    assert info.value.rule == "git"
    assert repo.rev_parse("no-such-branch") is None


def test_is_repository_only_at_the_top_of_its_own_repo(repo: Git, tmp_path: Path) -> None:
    inner = repo.workdir / "sub"
    inner.mkdir()
    assert repo.is_repository()
    assert not Git(inner).is_repository()  # inside another repo is not enough
    assert not Git(tmp_path / "missing").is_repository()


def test_git_dir_of_the_caller_does_not_leak_in(
    repo: Git, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Git.init(tmp_path / "other", branch="main")
    monkeypatch.setenv("GIT_DIR", str(other.workdir / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(other.workdir / ".git" / "index"))
    assert repo.rev_parse("main") is not None  # still answers for its own repository
    assert other.rev_parse("main") is None
