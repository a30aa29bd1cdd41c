"""Where things live in the GitOps repository and how its documents are read and written.

Layout::

    environments/<env>/<endpoint>.yaml   Endpoint manifests (paved.manifest.Endpoint)
    teams/<team>.yaml                    Team policies (paved.team.Team)
    schemas/*.schema.json                JSON Schema of both, for editors and CI

A document's path and its metadata must agree (``environments/prod/chat.yaml`` holds
``metadata: {env: prod, name: chat}``), so a copied file can never silently take over
another endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import yaml

from paved.errors import InvalidInput
from paved.manifest import Endpoint, parse_endpoint
from paved.names import validate_name
from paved.team import Team, team_from_yaml
from pipelines.gitops.schemas import schema_documents

MAIN = "main"
ENV_DIR = "environments"
TEAM_DIR = "teams"
SCHEMA_DIR = "schemas"
YAML_SUFFIXES = (".yaml", ".yml")
README = """\
# Pavedpath GitOps repository

The desired state of every inference endpoint. `paved promote`, `paved approve` and
`paved rollback` write here; `paved reconcile` makes serving match the main branch.

- `environments/<env>/<endpoint>.yaml`: one Endpoint manifest per endpoint and environment
- `teams/<team>.yaml`: team policy (budget per window, GPU quota, endpoints it may call)
- `schemas/`: JSON Schema of both (generated; `paved gitops schema` writes them)

Every change is a commit whose `Paved-*` trailers say who did what, from which version
to which, and what the promotion gate said. Production changes wait on a
`promotion/<id>` branch for an approval by a different identity.
"""

T = TypeVar("T")


def endpoint_path(env: str, endpoint: str) -> str:
    """Where an endpoint's manifest lives (both names validated: they become a path)."""
    env, endpoint = validate_name(env, "environment"), validate_name(endpoint, "endpoint")
    return f"{ENV_DIR}/{env}/{endpoint}.yaml"


def team_path(team: str) -> str:
    return f"{TEAM_DIR}/{validate_name(team, 'team')}.yaml"


def render_document(doc: Mapping[str, Any], schema_file: str, depth: int) -> str:
    """YAML for a manifest or policy, with the schema hint editors pick up."""
    hint = f"# yaml-language-server: $schema={'../' * depth}{SCHEMA_DIR}/{schema_file}\n"
    return hint + yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=None)


def render_manifest(doc: Mapping[str, Any]) -> str:
    return render_document(doc, "endpoint.schema.json", depth=2)


def default_team(team: str) -> str:
    """A team policy with every default (no budget, no GPU quota), as YAML.

    Written beside a team's first endpoint so the reconciler, which refuses endpoints of
    unknown teams, can apply it; the team then edits the policy through Git.
    """
    doc = {"apiVersion": "pavedpath/v1", "kind": "Team", "metadata": {"name": team}, "spec": {}}
    return render_document(doc, "team.schema.json", depth=1)


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """One document read from a commit: its value, or why it is invalid."""

    path: str
    value: T | None = None
    error: InvalidInput | None = None


def layout_files() -> dict[str, str]:
    """The generated files every GitOps repository holds: README and schemas."""
    files = {"README.md": README}
    files |= {f"{SCHEMA_DIR}/{n}": text for n, text in schema_documents().items()}
    return files


def endpoint_from_blob(path: str, text: str) -> Endpoint:
    """A manifest read from ``environments/<env>/<endpoint>.yaml``: the path gives the
    environment and the name its metadata must carry (:func:`paved.manifest.parse_endpoint`)."""
    parts = path.split("/")
    if len(parts) != 3:
        where = f"{ENV_DIR}/<env>/<endpoint>.yaml"
        raise InvalidInput(f"{path}: manifests live at {where}", rule="manifest_path")
    return parse_endpoint(text, source=path, name=parts[2].rsplit(".", 1)[0], env=parts[1])


def team_from_blob(path: str, text: str) -> Team:
    """A team policy read from ``teams/<team>.yaml``; the name must match the path."""
    team = team_from_yaml(text, source=path)
    if path.rsplit(".", 1)[0] != f"{TEAM_DIR}/{team.name}":
        raise InvalidInput(
            f"{path}: metadata.name {team.name!r} does not match the path", rule="team_path"
        )
    return team


def load_blob(path: str, text: str, parse: Callable[[str, str], T]) -> Loaded[T]:
    """Parse one document; an invalid one is returned with its error, not raised, so a
    reader of the whole repository can refuse it and still use the others."""
    try:
        return Loaded(path=path, value=parse(path, text))
    except InvalidInput as exc:
        return Loaded(path=path, error=exc)
