"""What the registry refuses before anything is written: unsafe model directories and
source URIs outside the stores it accepts.

A model directory may hold weights in safetensors and plain JSON/text files only:
no Python code, no pickled weights, and no configuration asking for remote code
(``auto_map``, ``trust_remote_code``), so loading a registered model never executes
anything that came with it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from paved.errors import InvalidSourceURI, UnsafeModel

MAX_FILES = 10_000
MAX_JSON_BYTES = 64 * 1024 * 1024
CODE_SUFFIXES = frozenset({".py", ".pyc", ".pyo", ".so", ".dll", ".dylib", ".sh", ".ipynb"})
PICKLE_SUFFIXES = frozenset(
    {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".h5"}
)
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_RUN_ID_RE = re.compile(r"[0-9a-f]{32}")
_METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata", "instance-data", "metadata.azure.com"}
)


def _walk_json(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k), v
            yield from _walk_json(v)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_json(item)


def check_model_dir(root: Path) -> None:
    """Refuse a model directory that could make loading it run foreign code."""
    if not root.is_dir():
        raise UnsafeModel(f"model path {root} is not a directory", rule="model_dir")
    files = [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]
    if not files:
        raise UnsafeModel(f"model directory {root} is empty", rule="not_empty")
    if len(files) > MAX_FILES:
        raise UnsafeModel(
            f"model directory has {len(files)} files; the limit is {MAX_FILES}", rule="max_files"
        )
    for path in files:
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise UnsafeModel(
                f"model directory contains a symbolic link: {rel}", rule="no_symlinks"
            )
        suffix = path.suffix.lower()
        if suffix in CODE_SUFFIXES:
            raise UnsafeModel(
                f"model directory contains code ({rel}); models are loaded by Pavedpath's "
                "own code only",
                rule="no_code",
            )
        if suffix in PICKLE_SUFFIXES or _looks_pickled(path):
            raise UnsafeModel(
                f"model directory contains pickled or pickle-capable weights ({rel}); "
                "store weights as safetensors",
                rule="no_pickle",
            )
        if suffix == ".json":
            _check_json(path, rel)


def _looks_pickled(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(2)
    return head in _PICKLE_MAGIC


def _check_json(path: Path, rel: str) -> None:
    if path.stat().st_size > MAX_JSON_BYTES:
        raise UnsafeModel(f"{rel} is larger than {MAX_JSON_BYTES} bytes", rule="max_json_size")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsafeModel(f"{rel} is not valid JSON: {exc}", rule="json_format") from exc
    for key, value in _walk_json(doc):
        if key == "auto_map":
            raise UnsafeModel(
                f"{rel} declares auto_map (custom model code); remote code is never loaded",
                rule="no_remote_code",
            )
        if key == "trust_remote_code" and value:
            raise UnsafeModel(
                f"{rel} sets trust_remote_code; remote code is never loaded",
                rule="no_remote_code",
            )


def _is_internal_host(host: str) -> bool:
    if host.lower().rstrip(".") in _METADATA_HOSTS:
        return True
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return addr.is_link_local or addr.is_loopback or addr.is_private or addr.is_unspecified


def validate_source_uri(uri: str, allowed_prefixes: Sequence[str] = ()) -> str:
    """Accept ``runs:/<run_id>/<path>`` of this registry, or a configured store prefix.

    Local paths, ``file:`` URIs, other schemes and cloud metadata addresses are
    refused: the registry generates artifact locations itself and never reads from a
    place the caller picks.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidSourceURI("source URI must not be empty", rule="not_empty")
    if len(uri) > 1024:
        raise InvalidSourceURI("source URI is longer than 1024 characters", rule="max_length")
    decoded = uri
    for _ in range(8):
        nxt = unquote(decoded)
        if nxt == decoded:
            break
        decoded = nxt
    if any(ord(c) < 32 or ord(c) == 127 for c in decoded):
        raise InvalidSourceURI("source URI contains control characters", rule="no_control")
    if "\\" in decoded or "/../" in f"{decoded}/" or "/./" in f"{decoded}/":
        raise InvalidSourceURI(
            f"source URI {uri!r} contains a path traversal", rule="no_path_traversal"
        )
    parts = urlsplit(decoded)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or re.match(r"[A-Za-z]:", decoded):
        raise InvalidSourceURI(
            f"source {uri!r} is a local path; register a local directory with --path, which "
            "uploads it into the registry's own store",
            rule="source_local_path",
        )
    if parts.hostname and _is_internal_host(parts.hostname):
        raise InvalidSourceURI(
            f"source {uri!r} points at an internal or metadata address", rule="source_internal_host"
        )
    if scheme == "runs":
        rest = decoded[len("runs:/") :].lstrip("/")
        run_id, _, path = rest.partition("/")
        if not _RUN_ID_RE.fullmatch(run_id) or not path:
            raise InvalidSourceURI(
                f"source {uri!r} must look like runs:/<32 hex run id>/<artifact path>",
                rule="source_runs_format",
            )
        return f"runs:/{run_id}/{path}"
    for prefix in allowed_prefixes:
        if uri.startswith(prefix) and decoded == uri:
            return uri
    raise InvalidSourceURI(
        f"source {uri!r} is outside the allowed stores (runs:/ URIs of this registry"
        + (", " + ", ".join(allowed_prefixes) if allowed_prefixes else "")
        + ")",
        rule="source_scheme",
    )
