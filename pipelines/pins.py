"""Git pins the digest: what the reconciler checks before a version may serve.

A promotion commit writes each version's manifest digest into the endpoint manifest
(``champion: {version: 3, digest: "sha256:..."}``). The registry's tags are a view
that anyone with write access to MLflow can rewrite, so on every pass the reconciler
compares the registry's digest for each version with the one Git holds and refuses the
endpoint (``digest_mismatch``) when they differ; a manifest in Git without a digest is
refused too (``digest_required``).

Comparing digests is a metadata read. Hashing the files is not (minutes for a
multi-GB LLM), so the files are downloaded and hashed once per (version, digest) in
this process; replicas hash them again when they load.
"""

from __future__ import annotations

from typing import Protocol

from paved.errors import InvalidInput
from paved.manifest import Endpoint

_MAX_REMEMBERED = 4096


class PinRegistry(Protocol):
    """The registry as the pin checks need it."""

    def get_pinned(self, ref: str, digest: str) -> object: ...

    def fetch(self, ref: str, *, digest: str | None = None) -> object: ...


def pinned_versions(ep: Endpoint) -> list[tuple[int, str]]:
    """Each version the manifest serves with its pinned digest; refuse an unpinned one."""
    versions = [ep.spec.champion.version]
    if ep.spec.challenger:
        versions.append(ep.spec.challenger.version)
    pins = []
    for v in versions:
        digest = ep.pinned_digest(v)
        if digest is None:
            raise InvalidInput(
                f"{ep.spec.model} v{v} has no digest in Git; a GitOps manifest pins every "
                "version it serves (`paved promote` writes it)",
                rule="digest_required",
            )
        pins.append((v, digest))
    return pins


class VerifiedVersions:
    """Checks pins against the registry; hashes each (model, version, digest) once."""

    def __init__(self, registry: PinRegistry) -> None:
        self.registry = registry
        self._verified: set[tuple[str, int, str]] = set()

    def check(self, ep: Endpoint) -> None:
        """Refuse the endpoint unless every version's registry digest is Git's and its
        files matched that digest once (in this process)."""
        for version, digest in pinned_versions(ep):
            ref = f"{ep.spec.model}/{version}"
            key = (ep.spec.model, version, digest)
            if key in self._verified:
                self.registry.get_pinned(ref, digest)  # a rewritten tag is seen every pass
                continue
            self.registry.fetch(ref, digest=digest)  # pin first, then every file's hash
            if len(self._verified) >= _MAX_REMEMBERED:
                self._verified.clear()
            self._verified.add(key)

    def __contains__(self, key: tuple[str, int, str]) -> bool:
        return key in self._verified
