"""The one way from a manifest's text to an Endpoint, and the rule each refusal names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from paved.errors import InvalidInput
from paved.manifest import load_endpoint, load_endpoints, parse_endpoint
from pipelines.gitops.layout import endpoint_from_blob

pytestmark = pytest.mark.unit


def manifest(name: str = "risk", env: str = "staging", **spec: object) -> str:
    doc = {
        "apiVersion": "pavedpath/v1",
        "kind": "Endpoint",
        "metadata": {"name": name, "env": env, "team": "risk"},
        "spec": {"model": "credit-risk", "champion": {"version": 1}, **spec},
    }
    return yaml.safe_dump(doc)


def refusal(text: str, **where: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_endpoint(text, source="environments/staging/risk.yaml", **where)
    return info.value


def test_a_valid_manifest_parses_with_or_without_the_file_checks() -> None:
    ep = parse_endpoint(manifest(), source="x.yaml", name="risk", env="staging")
    assert (ep.name, ep.metadata.env, ep.spec.champion.version) == ("risk", "staging", 1)
    assert parse_endpoint(manifest(name="other", env="prod"), source="x.yaml").name == "other"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("spec: [unclosed", "manifest_yaml"),
        ("apiVersion: pavedpath/v1\nkind: Endpoint\n", "manifest_schema"),
        (manifest(surprise=True), "manifest_schema"),
        ("- a list\n", "manifest_schema"),
        (manifest(name="other"), "manifest_name"),
        (manifest(env="prod"), "manifest_env"),
    ],
)
def test_each_refusal_names_its_rule_and_the_file(text: str, rule: str) -> None:
    exc = refusal(text, name="risk", env="staging")
    assert exc.rule == rule
    assert exc.message.startswith("environments/staging/risk.yaml: ")
    assert exc.status == 400


def test_schema_refusals_carry_every_error() -> None:
    exc = refusal(manifest(surprise=True, replicas={"min": 3, "max": 1}))
    assert exc.rule == "manifest_schema"
    locs = [tuple(e["loc"]) for e in exc.details["errors"]]
    assert ("spec", "surprise") in locs
    assert ("spec", "replicas") in locs


def test_the_gitops_path_gives_name_and_environment() -> None:
    assert endpoint_from_blob("environments/staging/risk.yaml", manifest()).name == "risk"
    for path, text, rule in [
        ("environments/prod/risk.yaml", manifest(), "manifest_env"),
        ("environments/staging/chat.yaml", manifest(), "manifest_name"),
        ("environments/staging/x/risk.yaml", manifest(), "manifest_path"),
        ("environments/staging/risk.yaml", "spec: [unclosed", "manifest_yaml"),
    ]:
        with pytest.raises(InvalidInput) as info:
            endpoint_from_blob(path, text)
        assert info.value.rule == rule, path


def test_a_folder_file_is_parsed_the_same_way(tmp_path: Path) -> None:
    (tmp_path / "risk.yaml").write_text(manifest())
    (tmp_path / "notes.txt").write_text("ignored")
    assert [e.name for e in load_endpoints(tmp_path)] == ["risk"]
    (tmp_path / "bad.yml").write_text("spec: [unclosed")
    with pytest.raises(InvalidInput) as info:
        load_endpoint(tmp_path / "bad.yml")
    assert info.value.rule == "manifest_yaml"
    assert str(tmp_path / "bad.yml") in info.value.message
    (tmp_path / "bad.yml").write_bytes(b"\xff\xfe")
    with pytest.raises(InvalidInput) as info:
        load_endpoint(tmp_path / "bad.yml")
    assert info.value.rule == "manifest_yaml"
