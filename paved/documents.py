"""YAML documents validated by a pydantic model, with errors that name the file and field.

Manifests and team policies arrive as files on disk, as blobs read from a Git commit,
or as request bodies; each path turns into the same :class:`InvalidInput` so the CLI,
the reconciler and the API report a bad document the same way.
"""

from __future__ import annotations

from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from paved.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def parse_yaml_document(model: type[M], text: str, *, source: str, rule: str) -> M:
    """Parse ``text`` as YAML and validate it as ``model``.

    ``rule`` prefixes the error's rule: ``<rule>_yaml`` for unreadable YAML,
    ``<rule>_schema`` for a document that breaks the schema (all errors are in details).
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: cannot read YAML: {exc}", rule=f"{rule}_yaml") from exc
    return validate_document(model, doc, source=source, rule=rule)


def validate_document(model: type[M], doc: object, *, source: str, rule: str) -> M:
    """Validate an already-parsed document; errors as :func:`parse_yaml_document`'s."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise InvalidInput(
            f"{source}: {where}: {first['msg']}",
            rule=f"{rule}_schema",
            details={"errors": [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]},
        ) from exc
