"""Verified downloads: a model version reaches a loader only after every digest matched."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from paved.errors import DigestMismatch
from registry.digests import verify
from registry.safety import check_model_dir
from registry.schemas import ModelVersionInfo
from registry.store import ModelStore


def cache_path(cache_dir: Path, info: ModelVersionInfo) -> Path:
    # The digest is part of the path: a version whose files changed can never be
    # mistaken for a cached copy of what was registered.
    return cache_dir / info.name / f"{info.version}-{info.digest.removeprefix('sha256:')[:16]}"


def fetch_verified(store: ModelStore, info: ModelVersionInfo, cache_dir: Path) -> Path:
    """Return a local directory with exactly the registered files, verified.

    A cached copy is re-verified on every call; a corrupt one is evicted and fetched
    again. A download that does not match is deleted and refused.
    """
    target = cache_path(cache_dir, info)
    if target.is_dir():
        try:
            verify(target, info.manifest)
            check_model_dir(target)
            return target
        except DigestMismatch:
            shutil.rmtree(target, ignore_errors=True)
    staging = cache_dir / ".staging" / uuid.uuid4().hex
    try:
        downloaded = store.download(info.source, staging)
        verify(downloaded, info.manifest)
        check_model_dir(downloaded)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(downloaded, target)
        except OSError:
            if not target.is_dir():  # lost a race to an identical verified copy otherwise
                raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
