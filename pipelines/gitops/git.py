"""A small wrapper over the ``git`` command line: the only code that runs git.

The real ``git`` binary is used (never a re-implementation), always with an argument
list and never through a shell, so a name can not smuggle in an option or a command.
Every failure becomes :class:`BackendError` carrying git's own stderr. Commits take
the author identity and date explicitly, so history records the acting identity and
tests can inject a clock.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from paved.errors import BackendError

_TIMEOUT_S = 120
# One git log record: fields split by US (0x1f), records by RS (0x1e).
_LOG_FORMAT = "%H%x1f%P%x1f%cI%x1f%an%x1f%s%x1f%(trailers:only,unfold)%x1e"
_EMAIL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NAME_UNSAFE = re.compile(r"[<>\n\r\x00]+")
_REPO_LOCATION_VARS = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)
# No prompts (a missing credential fails at once), stable messages, and a committer
# for reflog entries written by checkout/reset on machines without a git identity.
_BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
    "GIT_COMMITTER_NAME": "pavedpath",
    "GIT_COMMITTER_EMAIL": "pavedpath@pavedpath.invalid",
}


@dataclass(frozen=True)
class Identity:
    """Who a commit is by; git needs a name and an e-mail address."""

    name: str
    email: str

    @classmethod
    def of(cls, identity: str) -> Identity:
        """An identity such as ``alice`` or ``key:0123`` as a git author."""
        name = _NAME_UNSAFE.sub(" ", identity).strip() or "unknown"
        local = _EMAIL_UNSAFE.sub("-", name).strip("-") or "unknown"
        return cls(name=name, email=f"{local}@pavedpath.invalid")


@dataclass(frozen=True)
class Commit:
    """One commit as ``git log`` describes it."""

    sha: str
    parents: tuple[str, ...]
    committed_at: datetime
    author: str
    subject: str
    trailers: Mapping[str, str] = field(default_factory=dict)


class GitError(BackendError):
    """git exited non-zero; ``stderr`` is what it said."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        said = stderr.strip() or f"exit status {returncode}"
        super().__init__(f"git {args[0]} failed: {said}", rule="git")
        self.returncode = returncode
        self.stderr = stderr


class Git:
    """Runs git in one working tree."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    # ------------------------------------------------------------- plumbing

    def run(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Run ``git ARGS`` and return stdout; a non-zero exit raises :class:`GitError`."""
        try:
            proc = subprocess.run(
                ["git", *args],
                cwd=self.workdir,
                input=input,
                capture_output=True,
                text=True,
                env=_environment(env),
                timeout=_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError as exc:
            raise BackendError("the git command is not installed", rule="git") from exc
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"git {args[0]} took longer than {_TIMEOUT_S}s", rule="git") from exc
        if proc.returncode != 0:
            raise GitError(args, proc.returncode, proc.stderr)
        return proc.stdout

    def succeeds(self, *args: str) -> bool:
        """Whether ``git ARGS`` exits zero (for questions git answers by exit status)."""
        try:
            self.run(*args)
        except GitError:
            return False
        return True

    # ------------------------------------------------------------ repository

    @classmethod
    def init(cls, path: Path, *, branch: str) -> Git:
        path.mkdir(parents=True, exist_ok=True)
        git = cls(path)
        git.run("init", "--quiet", f"--initial-branch={branch}")
        return git

    @classmethod
    def clone(cls, url: str, path: Path) -> Git:
        path.parent.mkdir(parents=True, exist_ok=True)
        # "--" ends the options: a URL starting with "-" is a URL, not an option.
        cls(path.parent).run("clone", "--quiet", "--", url, str(path))
        return cls(path)

    def is_repository(self) -> bool:
        """Whether the working directory is the top of its own repository.

        Being somewhere inside another repository (PAVED_HOME under a checkout) is not
        enough: writing there would commit into someone else's project.
        """
        if not (self.workdir / ".git").exists():
            return False
        try:
            return self.toplevel().resolve() == self.workdir.resolve()
        except GitError:
            return False

    def toplevel(self) -> Path:
        return Path(self.run("rev-parse", "--show-toplevel").strip())

    def git_dir(self) -> Path:
        return Path(self.run("rev-parse", "--absolute-git-dir").strip())

    def remote_url(self, remote: str = "origin") -> str | None:
        try:
            return self.run("remote", "get-url", remote).strip()
        except GitError:
            return None

    def is_clean(self) -> bool:
        return self.run("status", "--porcelain", "--untracked-files=all").strip() == ""

    def current_branch(self) -> str | None:
        try:
            return self.run("symbolic-ref", "--quiet", "--short", "HEAD").strip()
        except GitError:
            return None

    def set_head(self, branch: str) -> None:
        """Point HEAD at ``branch`` (also for an empty repository, where checkout can not)."""
        self.run("symbolic-ref", "HEAD", f"refs/heads/{branch}")

    # ----------------------------------------------------------------- refs

    def rev_parse(self, rev: str) -> str | None:
        """The commit sha ``rev`` names, or None when it names nothing."""
        try:
            return self.run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
        except GitError:
            return None

    def branches(self, pattern: str, *, remote: bool = False) -> list[str]:
        """Branch names matching a glob such as ``promotion/*`` (local or remote)."""
        refs = f"refs/remotes/origin/{pattern}" if remote else f"refs/heads/{pattern}"
        out = self.run("for-each-ref", "--format=%(refname:short)", refs)
        names = [line.strip() for line in out.splitlines() if line.strip()]
        return [n.removeprefix("origin/") for n in names] if remote else names

    def branch(self, name: str, start: str) -> None:
        self.run("branch", "--quiet", "--", name, start)

    def delete_branch(self, name: str) -> None:
        self.run("branch", "--quiet", "-D", "--", name)

    def checkout(self, ref: str) -> None:
        self.run("checkout", "--quiet", ref, "--")

    def reset_hard(self, rev: str) -> None:
        """Make the index and working tree match ``rev`` (used to undo a failed operation)."""
        self.run("reset", "--quiet", "--hard", rev)

    def merge_base(self, a: str, b: str) -> str | None:
        try:
            return self.run("merge-base", a, b).strip() or None
        except GitError:
            return None

    def is_ancestor(self, a: str, b: str) -> bool:
        return self.succeeds("merge-base", "--is-ancestor", a, b)

    # -------------------------------------------------------------- changes

    def add(self, *paths: str) -> None:
        self.run("add", "--all", "--", *paths)

    def commit(self, message: str, *, author: Identity, committer: Identity, at: datetime) -> str:
        """Commit what is staged; return the new commit's sha."""
        env = _identity_env(author, committer, at)
        self.run("commit", "--quiet", "-F", "-", input=message, env=env)
        return self._head()

    def commit_tree(
        self,
        parent: str,
        files: Mapping[str, str | None],
        *,
        message: str,
        author: Identity,
        committer: Identity,
        at: datetime,
    ) -> str:
        """A commit of ``parent`` with ``files`` changed (None deletes), made with a
        private index: HEAD, the index and the working tree are never touched, so a
        reader of HEAD can not see a change meant for another branch."""
        with tempfile.TemporaryDirectory(prefix="paved-index-") as tmp:
            index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.run("read-tree", parent, env=index)
            for path, text in files.items():
                if text is None:
                    self.run("update-index", "--force-remove", "--", path, env=index)
                    continue
                blob = self.run("hash-object", "-w", "--stdin", f"--path={path}", input=text)
                entry = f"100644,{blob.strip()},{path}"
                self.run("update-index", "--add", "--cacheinfo", entry, env=index)
            tree = self.run("write-tree", env=index).strip()
        env = _identity_env(author, committer, at)
        return self.run(
            "commit-tree", tree, "-p", parent, "-F", "-", input=message, env=env
        ).strip()

    def create_branch(self, name: str, sha: str) -> None:
        """Create ``refs/heads/NAME`` at ``sha``; fails if it exists (an atomic check)."""
        self.run("update-ref", "--stdin", input=f"create refs/heads/{name} {sha}\n")

    def fast_forward(self, ref: str) -> None:
        """``merge --ff-only``: move the current branch forward to ``ref``, or fail."""
        self.run("merge", "--quiet", "--ff-only", ref)

    def merge(
        self, ref: str, *, message: str, author: Identity, committer: Identity, at: datetime
    ) -> str:
        """``merge --no-ff``: always a merge commit, which records who merged and when.

        A conflict aborts the merge (the tree is left as it was) and raises.
        """
        env = _identity_env(author, committer, at)
        try:
            self.run("merge", "--quiet", "--no-ff", "-m", message, ref, env=env)
        except GitError:
            self.succeeds("merge", "--abort")
            raise
        return self._head()

    def clean(self, *paths: str) -> None:
        """Delete untracked files among ``paths`` (after an interrupted write)."""
        self.run("clean", "--quiet", "--force", "--", *paths)

    def changed_files(self, a: str, b: str) -> list[str]:
        """Paths that differ between two commits."""
        return [p for p in self.run("diff", "--name-only", a, b, "--").splitlines() if p]

    def revert(
        self, sha: str, *, message: str, author: Identity, committer: Identity, at: datetime
    ) -> str:
        """Commit the inverse of ``sha`` (of its first-parent diff for a merge)."""
        args = ["revert", "--no-commit"]
        if len(self.run("rev-list", "--parents", "-n", "1", sha).split()) > 2:
            args += ["-m", "1"]
        try:
            self.run(*args, sha)
        except GitError:
            self.succeeds("revert", "--abort")
            raise
        return self.commit(message, author=author, committer=committer, at=at)

    # -------------------------------------------------------------- reading

    def log(
        self,
        rev: str,
        *,
        paths: Sequence[str] = (),
        first_parent: bool = False,
        max_count: int | None = None,
        grep: str | None = None,
    ) -> list[Commit]:
        """Commits reachable from ``rev``, newest first, with their trailers parsed.

        ``grep`` keeps the commits whose message contains that exact text.
        """
        args = ["log", f"--format={_LOG_FORMAT}"]
        if first_parent:
            args.append("--first-parent")
        if max_count is not None:
            args.append(f"--max-count={max_count}")
        if grep is not None:
            args += ["--fixed-strings", f"--grep={grep}"]
        out = self.run(*args, rev, "--", *paths)
        return [_parse_commit(rec) for rec in out.split("\x1e") if rec.strip()]

    def show_file(self, rev: str, path: str) -> str | None:
        """A file's text at a commit, or None when the file is not there."""
        try:
            return self.run("show", f"{rev}:{path}")
        except GitError:
            return None

    def list_files(self, rev: str, under: str) -> list[str]:
        """Paths of the files under a folder at a commit."""
        out = self.run("ls-tree", "-r", "--name-only", rev, "--", under)
        return [line for line in out.splitlines() if line]

    def read_files(self, rev: str, paths: Sequence[str]) -> dict[str, str]:
        """Several files' text at one commit; files that are not there are left out."""
        found = self.read_objects([f"{rev}:{p}" for p in paths])
        return {p: found[f"{rev}:{p}"] for p in paths if f"{rev}:{p}" in found}

    def read_objects(self, specs: Sequence[str]) -> dict[str, str]:
        """Blobs named ``REV:PATH``, read by one git process (``cat-file --batch``)."""
        if not specs:
            return {}
        out = subprocess.run(
            ["git", "cat-file", "--batch"],
            cwd=self.workdir,
            input="".join(f"{spec}\n" for spec in specs).encode(),
            capture_output=True,
            env=_environment(),
            timeout=_TIMEOUT_S,
            check=False,
        )
        if out.returncode != 0:
            raise GitError(["cat-file"], out.returncode, out.stderr.decode(errors="replace"))
        data, pos, found = out.stdout, 0, {}
        for spec in specs:
            end = data.index(b"\n", pos)
            header = data[pos:end].split()
            pos = end + 1
            if header[-1] in (b"missing", b"ambiguous"):
                continue
            size = int(header[2])  # "<sha> <type> <size>", then the object's bytes
            if header[1] == b"blob":
                found[spec] = data[pos : pos + size].decode("utf-8", errors="replace")
            pos += size + 1
        return found

    # --------------------------------------------------------------- remote

    def fetch(self, remote: str = "origin") -> None:
        self.run("fetch", "--quiet", "--prune", remote)

    def push(self, *refspecs: str, remote: str = "origin") -> None:
        self.run("push", "--quiet", "--porcelain", remote, *refspecs)

    def push_delete(self, branch: str, remote: str = "origin") -> None:
        self.run("push", "--quiet", remote, "--delete", branch)

    def _head(self) -> str:
        return self.run("rev-parse", "HEAD").strip()


def _environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without variables that would point git at another
    repository (a test run from inside a git hook has GIT_DIR and GIT_INDEX_FILE set)."""
    env = {k: v for k, v in os.environ.items() if k not in _REPO_LOCATION_VARS}
    return {**env, **_BASE_ENV, **(extra or {})}


def _identity_env(author: Identity, committer: Identity, at: datetime) -> dict[str, str]:
    stamp = f"@{int(at.timestamp())} +0000"
    return {
        "GIT_AUTHOR_NAME": author.name,
        "GIT_AUTHOR_EMAIL": author.email,
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_NAME": committer.name,
        "GIT_COMMITTER_EMAIL": committer.email,
        "GIT_COMMITTER_DATE": stamp,
    }


def _parse_commit(record: str) -> Commit:
    sha, parents, when, author, subject, trailers = record.strip("\n").split("\x1f", 5)
    parsed: dict[str, str] = {}
    for line in trailers.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            parsed[key.strip()] = value.strip()
    return Commit(
        sha=sha,
        parents=tuple(parents.split()),
        committed_at=datetime.fromisoformat(when).astimezone(UTC),
        author=author,
        subject=subject,
        trailers=parsed,
    )
