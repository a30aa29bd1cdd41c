"""The GitOps repository: the desired state of every endpoint, one YAML file each.

Readers work on commits, never on the working tree, so the reconciler sees exactly
what was committed while a promotion is being written. Writers hold a file lock,
start from a clean tree on the main branch, pull from the remote first and push
after, and undo their local commit when anything fails, so a refused or failed
change leaves the repository as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from paved.errors import Conflict, InvalidInput, NotFound, PavedError, PermissionDenied
from paved.manifest import Endpoint
from paved.names import validate_name
from paved.schemas import Actor, Role
from paved.team import Team
from pipelines.gitops import history
from pipelines.gitops import trailers as t
from pipelines.gitops.git import Git, GitError, Identity
from pipelines.gitops.history import Change
from pipelines.gitops.layout import (
    ENV_DIR,
    MAIN,
    TEAM_DIR,
    YAML_SUFFIXES,
    Loaded,
    endpoint_from_blob,
    endpoint_path,
    layout_files,
    load_blob,
    team_from_blob,
    team_path,
)

_TOOL = Identity(name="pavedpath", email="pavedpath@pavedpath.invalid")
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class GitOpsRepo:
    """A working clone of the GitOps repository, written only through this class."""

    def __init__(self, path: Path, *, clock: Clock = _utcnow, main: str = MAIN) -> None:
        self.path = path
        self.git = Git(path)
        self.main = main
        self.clock = clock

    # ---------------------------------------------------------------- setup

    @classmethod
    def open(cls, path: Path, *, clock: Clock = _utcnow, main: str = MAIN) -> GitOpsRepo:
        if not Git(path).is_repository():
            raise NotFound(
                f"no GitOps repository at {path}; run `paved gitops init`", rule="gitops_repo"
            )
        return cls(path, clock=clock, main=main)

    @classmethod
    def init(
        cls,
        path: Path,
        *,
        actor: Actor,
        remote: str | None = None,
        clock: Clock = _utcnow,
        main: str = MAIN,
    ) -> GitOpsRepo:
        """Create the repository (or clone ``remote``) and commit the layout.

        Running it again is harmless: an existing repository is kept and only the
        generated schemas are refreshed when the models changed.
        """
        if not (actor.has(Role.ML_ENGINEER) or actor.has(Role.APPROVER)):
            raise PermissionDenied(
                f"{actor.identity} may not initialize the GitOps repository: one of the "
                "roles 'ml-engineer' or 'approver' is needed",
                rule="role",
            )
        if Git(path).is_repository():
            repo = cls(path, clock=clock, main=main)
            if remote is not None and repo.git.remote_url() != remote:
                raise Conflict(
                    f"{path} already clones {repo.git.remote_url() or 'no remote'}, not {remote}",
                    rule="gitops_remote",
                )
        else:
            if path.exists() and any(path.iterdir()):
                raise Conflict(
                    f"{path} exists, is not empty and is not a Git repository", rule="gitops_path"
                )
            created = not path.exists()
            try:
                repo = cls._create(path, remote, clock=clock, main=main)
            except BaseException:
                if created:
                    shutil.rmtree(path, ignore_errors=True)
                raise
        with repo.lock():
            repo.sync()
            repo._commit_layout(actor)
        return repo

    @classmethod
    def _create(cls, path: Path, remote: str | None, *, clock: Clock, main: str) -> GitOpsRepo:
        if remote is None:
            Git.init(path, branch=main)
            return cls(path, clock=clock, main=main)
        git = Git.clone(remote, path)
        if git.rev_parse(f"origin/{main}") is not None:
            if git.current_branch() != main:
                git.checkout(main)
        elif git.rev_parse("HEAD") is None:  # an empty remote: the first push creates main
            git.set_head(main)
        else:
            raise InvalidInput(f"remote {remote} has no branch {main!r}", rule="gitops_branch")
        return cls(path, clock=clock, main=main)

    def _commit_layout(self, actor: Actor) -> None:
        wanted = layout_files()
        head = self.head()
        changed: dict[str, str | None] = {
            p: text
            for p, text in wanted.items()
            if head is None or self.git.show_file(head, p) != text
        }
        for folder in (ENV_DIR, TEAM_DIR):
            if head is None or not self.git.list_files(head, folder):
                changed[f"{folder}/.gitkeep"] = ""
        if not changed:
            return
        subject = "gitops: initialize the repository" if head is None else "gitops: update schemas"
        message = t.compose(subject, [], {t.ACTION: "init", t.ACTOR: actor.identity})
        self.commit_files(changed, message=message, actor=actor)

    # -------------------------------------------------------------- reading

    def head(self, branch: str | None = None) -> str | None:
        """The commit a branch (main by default) points at; None before the first commit."""
        return self.git.rev_parse(f"refs/heads/{branch or self.main}")

    def resolve(self, at: str | None) -> str | None:
        """A commit-ish as a sha (main when None); None only for an empty repository."""
        if at is None:
            return self.head()
        sha = self.git.rev_parse(at)
        if sha is None:
            raise NotFound(f"no commit {at!r} in the GitOps repository", rule="gitops_commit")
        return sha

    def endpoints(self, at: str | None = None, *, env: str | None = None) -> list[Loaded[Endpoint]]:
        """Every endpoint manifest at a commit, each valid or with the reason it is not."""
        rev = self.resolve(at)
        if rev is None:
            return []
        under = f"{ENV_DIR}/{validate_name(env, 'environment')}" if env else ENV_DIR
        paths = [p for p in self.git.list_files(rev, under) if p.endswith(YAML_SUFFIXES)]
        texts = self.git.read_files(rev, paths)
        return [load_blob(p, texts.get(p, ""), endpoint_from_blob) for p in paths]

    def teams(self, at: str | None = None) -> list[Loaded[Team]]:
        """Every team policy at a commit, each valid or with the reason it is not."""
        rev = self.resolve(at)
        if rev is None:
            return []
        paths = [p for p in self.git.list_files(rev, TEAM_DIR) if p.endswith(YAML_SUFFIXES)]
        texts = self.git.read_files(rev, paths)
        return [load_blob(p, texts.get(p, ""), team_from_blob) for p in paths]

    def has_team(self, team: str, at: str | None = None) -> bool:
        """Whether ``teams/<team>.yaml`` (or ``.yml``) exists at a commit."""
        rev = self.resolve(at)
        stem = team_path(team).rsplit(".", 1)[0]
        found = self.git.read_files(rev, [stem + s for s in YAML_SUFFIXES]) if rev else {}
        return bool(found)

    def read_endpoint(
        self, env: str, endpoint: str, at: str | None = None
    ) -> tuple[dict[str, Any], Endpoint] | None:
        """One manifest at a commit as (raw document, validated Endpoint), None if absent.

        The raw document is what a change edits, so fields a person wrote stay as written.
        An invalid manifest raises: nothing may be built on top of it.
        """
        rev = self.resolve(at)
        path = endpoint_path(env, endpoint)
        text = self.git.show_file(rev, path) if rev else None
        if text is None:
            return None
        loaded = load_blob(path, text, endpoint_from_blob)
        if loaded.error is not None:
            raise loaded.error
        assert loaded.value is not None
        return yaml.safe_load(text), loaded.value

    def changes(self, endpoint: str, env: str, *, limit: int | None = None) -> list[Change]:
        """Commits on main that changed an endpoint's manifest, newest first."""
        return history.changes(self.git, self.main, endpoint, env, limit=limit)

    def what_was_serving(self, endpoint: str, env: str, at: datetime) -> Change | None:
        """The manifest change in effect at ``at`` (None: nothing was declared then)."""
        return history.what_was_serving(self.git, self.main, endpoint, env, at)

    # -------------------------------------------------------------- writing

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time on this clone (other processes wait)."""
        with open(self.git.git_dir() / "paved.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def has_remote(self) -> bool:
        return self.git.remote_url() is not None

    def sync(self) -> None:
        """Fast-forward main to the remote's main (no-op without a remote)."""
        if not self.has_remote():
            return
        self.git.fetch()
        remote = self.git.rev_parse(f"origin/{self.main}")
        local = self.head()
        if remote is None or remote == local:
            return
        if local is None or self.git.is_ancestor(local, remote):
            self._prepare_write()
            self.git.fast_forward(f"origin/{self.main}")
        elif not self.git.is_ancestor(remote, local):
            raise Conflict(
                f"the GitOps clone at {self.path} and its remote have diverged; "
                "reconcile them by hand",
                rule="gitops_diverged",
            )

    def commit_files(
        self,
        files: Mapping[str, str | None],
        *,
        message: str,
        actor: Actor,
        branch: str | None = None,
    ) -> str:
        """Commit file contents (None deletes) on main, or on a new ``branch`` off main.

        A branch commit is built without checking the branch out, so HEAD stays on main
        for readers. The commit is pushed when there is a remote; on any failure the
        local commit or branch is undone, so nothing half-written is left behind.
        """
        self._prepare_write()
        before = self.head()
        if branch is not None:
            return self._commit_on_new_branch(branch, before, files, message, actor)
        try:
            for rel, text in files.items():
                target = self.path / rel
                if text is None:
                    target.unlink(missing_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text, encoding="utf-8")
            self.git.add(*files)
            sha = self._commit(message, actor)
            self._publish(self.main)
        except BaseException:
            self._undo(before, list(files))
            raise
        return sha

    def _commit_on_new_branch(
        self,
        branch: str,
        parent: str | None,
        files: Mapping[str, str | None],
        message: str,
        actor: Actor,
    ) -> str:
        if parent is None:
            raise NotFound("the GitOps repository has no commit yet", rule="gitops_repo")
        author, at = Identity.of(actor.identity), self.clock()
        sha = self.git.commit_tree(
            parent, files, message=message, author=author, committer=_TOOL, at=at
        )
        try:
            self.git.create_branch(branch, sha)
        except GitError as exc:
            raise Conflict(f"branch {branch!r} exists already", rule="gitops_branch") from exc
        try:
            self._publish(branch)
        except BaseException:
            self.git.delete_branch(branch)
            raise
        return sha

    def merge(self, ref: str, *, message: str, actor: Actor) -> str:
        """Merge ``ref`` into main with a merge commit by ``actor``, then push."""
        author, at = Identity.of(actor.identity), self.clock()
        return self._on_main(
            lambda: self.git.merge(ref, message=message, author=author, committer=_TOOL, at=at)
        )

    def revert(self, sha: str, *, message: str, actor: Actor) -> str:
        """A new commit on main that undoes ``sha``; history is never rewritten."""
        author, at = Identity.of(actor.identity), self.clock()
        return self._on_main(
            lambda: self.git.revert(sha, message=message, author=author, committer=_TOOL, at=at)
        )

    def delete_branch(self, branch: str) -> None:
        """Remove a branch here and on the remote (best effort on the remote)."""
        if self.git.rev_parse(f"refs/heads/{branch}") is not None:
            self.git.delete_branch(branch)
        if self.has_remote() and self.git.rev_parse(f"origin/{branch}") is not None:
            # A merged branch left on the remote is no longer pending anyway.
            with contextlib.suppress(GitError):
                self.git.push_delete(branch)

    def _on_main(self, change: Callable[[], str]) -> str:
        self._prepare_write()
        before = self.head()
        try:
            sha = change()
            self._publish(self.main)
        except BaseException:
            self._undo(before, [])
            raise
        return sha

    def _commit(self, message: str, actor: Actor) -> str:
        return self.git.commit(
            message, author=Identity.of(actor.identity), committer=_TOOL, at=self.clock()
        )

    def _prepare_write(self) -> None:
        if self.git.current_branch() != self.main:
            self.git.checkout(self.main)
        if not self.git.is_clean():
            raise Conflict(
                f"the GitOps clone at {self.path} has uncommitted changes; "
                "commit or discard them first",
                rule="gitops_dirty",
            )

    def _publish(self, branch: str) -> None:
        if not self.has_remote():
            return
        try:
            self.git.push(f"refs/heads/{branch}:refs/heads/{branch}")
        except GitError as exc:
            raise Conflict(
                f"the remote refused {branch} (it may have moved on; run the command again): "
                f"{exc.stderr.strip()}",
                rule="gitops_push",
            ) from exc

    def _undo(self, before: str | None, paths: list[str]) -> None:
        """Put main back at ``before`` after a failed write."""
        try:
            self.git.reset_hard(before or "HEAD")
            if paths:
                self.git.clean(*paths)
        except PavedError:
            pass  # the original failure is the one worth reporting
