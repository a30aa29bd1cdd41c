"""A folder of Endpoint manifests as a ``ManifestSource`` (for ``paved serve --manifests``).

A folder has no history, so its "commit" is a hash of its manifests: the sorted names
and bytes of the ``*.yaml``/``*.yml`` files directly in it. :meth:`DirectorySource.head`
takes a snapshot and :meth:`DirectorySource.endpoint_files` answers from that snapshot
only, so a pass applies exactly the files it hashed even while someone edits the folder
(an edit is the next pass's head). Every head descends from every other: a folder is
changed by editing it, never rolled back by the reconciler's ancestry rule.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from paved.errors import Conflict, InvalidInput
from paved.manifest import parse_endpoint

_SUFFIXES = (".yaml", ".yml")


class DirectorySource:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._snapshot: tuple[str, dict[str, str]] | None = None

    def _read(self) -> dict[str, str]:
        if not self.folder.is_dir():
            raise InvalidInput(f"{self.folder} is not a directory", rule="manifest_dir")
        files = {}
        for p in sorted(self.folder.iterdir()):
            if p.suffix in _SUFFIXES and p.is_file():
                try:
                    files[p.name] = p.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise InvalidInput(
                        f"{p}: cannot read manifest: {exc}", rule="manifest_yaml"
                    ) from exc
        if not files:
            raise InvalidInput(f"no endpoint manifests in {self.folder}", rule="manifest_dir")
        return files

    def head(self) -> str:
        """The hash of the folder's manifests now (and a snapshot of them)."""
        files = self._read()
        h = hashlib.sha256()
        for name, text in files.items():
            for part in (name, text):
                data = part.encode()
                h.update(len(data).to_bytes(8, "big") + data)
        self._snapshot = (h.hexdigest(), files)
        return self._snapshot[0]

    def is_ancestor(self, older: str, newer: str) -> bool:
        return True

    def _files(self, commit: str) -> dict[str, str]:
        if self._snapshot is None or self._snapshot[0] != commit:
            raise Conflict(
                f"{self.folder}: no snapshot {commit[:12]} (the folder is read at head)",
                rule="manifest_snapshot",
            )
        return self._snapshot[1]

    def endpoint_files(self, commit: str, env: str) -> dict[str, str]:
        """The snapshot's files; each manifest's metadata.env must be ``env`` (checked by
        the reconciler)."""
        return dict(self._files(commit))

    def teams(self, commit: str) -> set[str]:
        """The owners the snapshot's manifests name: a folder has no team policies."""
        owners = set()
        for name, text in self._files(commit).items():
            try:
                owners.add(parse_endpoint(text, source=name).metadata.team)
            except InvalidInput:
                continue  # refused by the reconciler with its own rule
        return owners
