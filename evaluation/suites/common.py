"""What every offline suite shares: a pinned thread count and data digests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from paved.errors import InvalidInput
from registry.schemas import ModelVersionDetail


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with a fixed intra-op thread count, restoring the caller's afterwards.

    The order of floating-point reductions depends on the thread count, so pinning it
    is what makes a suite's numbers repeat exactly; it also keeps latency figures
    comparable between a candidate and its champion measured on the same machine.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def json_digest(doc: Any) -> str:
    """``sha256:<hex>`` of a canonical JSON serialisation (sorted keys, no spaces)."""
    data = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def require_kind(detail: ModelVersionDetail, kind: str, suite: str) -> None:
    """Refuse a version the suite has no held-out data for.

    A suite's data is the bundled model's own generated data; a version of another
    kind (say, a directory registered with ``--path``) would be scored on data it was
    never meant for, and the number would look meaningful when it is not.
    """
    if detail.lineage.kind != kind:
        raise InvalidInput(
            f"{detail.ref} is a {detail.lineage.kind or 'custom'} model; the {suite} suite "
            f"evaluates only bundled {kind} models",
            rule="suite_model_kind",
        )


def int_param(detail: ModelVersionDetail, name: str) -> int | None:
    """A training-run param as an int, or None when the run did not record it."""
    raw = detail.params.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None
