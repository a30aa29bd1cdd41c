"""Real Git repositories and a real registry for reconciler tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from paved.schemas import Actor, Role
from paved.settings import Settings
from pipelines.train import train_and_log
from registry.service import Registry


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def init_repo(path: Path, teams: tuple[str, ...] = ("risk",)) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@pavedpath.invalid")
    git(path, "config", "user.name", "test")
    (path / "teams").mkdir()
    for t in teams:
        (path / "teams" / f"{t}.yaml").write_text(
            yaml.safe_dump({"apiVersion": "pavedpath/v1", "kind": "Team", "metadata": {"name": t}})
        )
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "teams")
    return path


def endpoint_doc(
    name: str,
    env: str,
    version: int,
    *,
    team: str = "risk",
    model: str = "credit-risk",
    pins: Registry | None = None,
    **spec: object,
) -> dict[str, object]:
    """A manifest; with ``pins`` each version carries its registry digest, as a promotion
    commit writes it (the reconciler refuses an unpinned version: ``digest_required``)."""
    champion: dict[str, object] = {"version": version}
    challenger = spec.get("challenger")
    if pins is not None:
        champion["digest"] = pins.get(f"{model}/{version}").digest
        if isinstance(challenger, dict) and "digest" not in challenger:
            digest = pins.get(f"{model}/{challenger['version']}").digest
            spec["challenger"] = {**challenger, "digest": digest}
    return {
        "apiVersion": "pavedpath/v1",
        "kind": "Endpoint",
        "metadata": {"name": name, "env": env, "team": team},
        "spec": {"model": model, "champion": champion, **spec},
    }


def commit_manifest(repo: Path, env: str, filename: str, doc: object | str, msg: str) -> str:
    d = repo / "environments" / env
    d.mkdir(parents=True, exist_ok=True)
    (d / filename).write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", msg)
    return git(repo, "rev-parse", "HEAD")


def registry_with_versions(home: Path, versions: int = 2) -> tuple[Settings, Registry]:
    """A SQLite registry with `credit-risk` versions 1..N (small, quick models)."""
    settings = Settings(home=home, actor="tester", team="risk")
    reg = Registry.from_settings(settings)
    actor = Actor(identity="tester", roles=frozenset({Role.ML_ENGINEER}), team="risk")
    for seed in range(versions):
        train_and_log(
            "credit-risk",
            registry=reg,
            work_dir=settings.work_dir,
            actor=actor,
            team="risk",
            seed=seed,
            register_as="credit-risk",
            rows=600,
            epochs=2,
        )
    return settings, reg
