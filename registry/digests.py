"""sha256 digests of model directories, and their verification.

A :class:`DigestManifest` lists every file of a model directory with its sha256.
The manifest's own digest is recorded in the registry's database (a model version
tag), which makes the database the root of trust: the artifact store can be
tampered with, but a changed file, a missing file or an extra file is caught before
anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from paved.errors import DigestMismatch, UnsafeModel

_CHUNK = 1 << 20


class DigestManifest(BaseModel):
    """Relative path -> sha256 hex, for every regular file in a model directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: str = "sha256"
    files: dict[str, str] = Field(description="POSIX relative path -> hex digest.")

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        """Digest of the manifest itself: one value that pins every file."""
        return "sha256:" + hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @property
    def total_files(self) -> int:
        return len(self.files)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _model_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            raise UnsafeModel(
                f"model directory contains a symbolic link: {p.relative_to(root).as_posix()}",
                rule="no_symlinks",
            )
        if p.is_file():
            files.append(p)
    return files


def manifest_for(root: Path) -> DigestManifest:
    """Hash every file under ``root`` (symbolic links are refused)."""
    files = _model_files(root)
    if not files:
        raise UnsafeModel(f"model directory {root} contains no files", rule="not_empty")
    return DigestManifest(files={p.relative_to(root).as_posix(): sha256_file(p) for p in files})


def verify(root: Path, expected: DigestManifest) -> None:
    """Raise :class:`DigestMismatch` unless ``root`` holds exactly the expected files."""
    actual = manifest_for(root)
    missing = sorted(set(expected.files) - set(actual.files))
    extra = sorted(set(actual.files) - set(expected.files))
    changed = sorted(
        f for f in set(expected.files) & set(actual.files) if expected.files[f] != actual.files[f]
    )
    if missing or extra or changed:
        parts = []
        if changed:
            parts.append(f"changed: {', '.join(changed)}")
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected: {', '.join(extra)}")
        raise DigestMismatch(
            "model files do not match the digests recorded at registration ("
            + "; ".join(parts)
            + "); refusing to load",
            rule="artifact_digest",
            details={"changed": changed, "missing": missing, "unexpected": extra},
        )
