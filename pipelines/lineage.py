"""Which code trained a model: the Git commit of the Pavedpath checkout, or its version."""

from __future__ import annotations

import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def code_version(root: Path = _ROOT) -> str:
    """``<sha>`` or ``<sha>-dirty`` inside a Git checkout, else ``pavedpath==<version>``."""
    git = shutil.which("git")
    if git and (root / ".git").exists():
        try:
            sha = subprocess.run(
                [git, "-C", str(root), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
            dirty = subprocess.run(
                [git, "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
            return f"{sha}-dirty" if dirty else sha
        except (subprocess.SubprocessError, OSError):
            pass
    try:
        return f"pavedpath=={version('pavedpath')}"
    except PackageNotFoundError:
        return "unknown"
