"""What the registry refuses before anything is written: unsafe model directories and
source URIs outside the stores it accepts.

A model directory holds regular files of the admitted formats only (``registry.formats``:
safetensors, JSON, plain text, SentencePiece), each checked by content: no code, no
pickles, no configuration asking for remote code (``auto_map``, ``trust_remote_code``),
no symbolic links, FIFOs, sockets or devices. Loading a registered model never
executes anything that came with it, and no check waits on a special file.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from paved.errors import InvalidSourceURI, UnsafeModel
from paved.text import quote
from registry.digests import DigestManifest
from registry.formats import check_file, check_name

MAX_FILES = 10_000
MAX_DEPTH = 32
_RUN_ID_RE = re.compile(r"[0-9a-f]{32}")
_METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata", "instance-data", "metadata.azure.com"}
)


def check_model_dir(root: Path) -> DigestManifest:
    """Admit a model directory, or refuse it naming the file and the rule.

    Every name is checked before any content is read; then each file is read once,
    checked and hashed. The manifest returned holds the sha256 of exactly the bytes
    that were checked.
    """
    if not root.is_dir():
        raise UnsafeModel(f"model path {quote(str(root))} is not a directory", rule="model_dir")
    files = _regular_files(root)
    if not files:
        raise UnsafeModel(f"model directory {quote(str(root))} is empty", rule="not_empty")
    formats = {rel: check_name(rel) for rel in files}
    return DigestManifest(
        files={rel: check_file(root / rel, rel, formats[rel]) for rel in sorted(files)}
    )


def _regular_files(root: Path) -> list[str]:
    """Relative POSIX paths of every file under ``root``; anything else is refused."""
    found: list[str] = []
    pending: list[tuple[Path, str, int]] = [(root, "", 0)]
    while pending:
        directory, prefix, depth = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise UnsafeModel(
                f"model directory {quote(prefix or str(root))} cannot be listed ({exc.strerror})",
                rule="readable",
            ) from exc
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            if entry.is_symlink():
                raise UnsafeModel(
                    f"model directory contains a symbolic link: {quote(rel)}", rule="no_symlinks"
                )
            if entry.is_dir(follow_symlinks=False):
                if depth + 1 > MAX_DEPTH:
                    raise UnsafeModel(
                        f"model directory nests deeper than {MAX_DEPTH} levels at {quote(rel)}",
                        rule="max_depth",
                    )
                pending.append((Path(entry.path), f"{rel}/", depth + 1))
            elif entry.is_file(follow_symlinks=False):
                found.append(rel)
                if len(found) > MAX_FILES:
                    raise UnsafeModel(
                        f"model directory has more than {MAX_FILES} files", rule="max_files"
                    )
            else:
                raise UnsafeModel(
                    f"model directory contains {quote(rel)}, which is not a regular file "
                    "(a FIFO, socket or device)",
                    rule="regular_files",
                )
    return found


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
            f"source URI {quote(uri)} contains a path traversal", rule="no_path_traversal"
        )
    parts = urlsplit(decoded)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or re.match(r"[A-Za-z]:", decoded):
        raise InvalidSourceURI(
            f"source {quote(uri)} is a local path; register a local directory with --path, which "
            "uploads it into the registry's own store",
            rule="source_local_path",
        )
    if parts.hostname and _is_internal_host(parts.hostname):
        raise InvalidSourceURI(
            f"source {quote(uri)} points at an internal or metadata address",
            rule="source_internal_host",
        )
    if scheme == "runs":
        rest = decoded[len("runs:/") :].lstrip("/")
        run_id, _, path = rest.partition("/")
        if not _RUN_ID_RE.fullmatch(run_id) or not path:
            raise InvalidSourceURI(
                f"source {quote(uri)} must look like runs:/<32 hex run id>/<artifact path>",
                rule="source_runs_format",
            )
        return f"runs:/{run_id}/{path}"
    for prefix in allowed_prefixes:
        if uri.startswith(prefix) and decoded == uri:
            return uri
    raise InvalidSourceURI(
        f"source {quote(uri)} is outside the allowed stores (runs:/ URIs of this registry"
        + (", " + ", ".join(allowed_prefixes) if allowed_prefixes else "")
        + ")",
        rule="source_scheme",
    )
