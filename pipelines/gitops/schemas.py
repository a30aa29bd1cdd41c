"""JSON Schema of the documents in the GitOps repository, for editors and CI.

The schemas are generated from the same pydantic models that validate the manifests,
so an editor, a CI check and the reconciler can never disagree about what is valid.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from paved.manifest import Endpoint
from paved.team import Team

_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMAS: dict[str, type[BaseModel]] = {
    "endpoint.schema.json": Endpoint,
    "team.schema.json": Team,
}


def schema_documents() -> dict[str, str]:
    """File name -> JSON text of each schema (stable bytes: same models, same file)."""
    docs = {}
    for filename, model in SCHEMAS.items():
        schema = {"$schema": _DIALECT, **model.model_json_schema()}
        docs[filename] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return docs


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema into ``directory``; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in schema_documents().items():
        path = directory / filename
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
