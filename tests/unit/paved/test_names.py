from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paved.errors import InvalidName
from paved.names import ModelRef, validate_alias, validate_name, validate_version

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", "not_empty"),
        ("   ", "not_empty"),
        ("a" * 65, "max_length"),
        ("../etc", "no_path_traversal"),
        ("..", "no_path_traversal"),
        ("a/b", "no_path_traversal"),
        ("a\\b", "no_path_traversal"),
        ("..\\..\\windows", "no_path_traversal"),
        ("%2e%2e%2fetc", "no_path_traversal"),
        ("%252e%252e%252fetc", "no_path_traversal"),
        ("%25252e%25252e", "no_path_traversal"),
        ("a%2fb", "no_path_traversal"),
        ("a%5cb", "no_path_traversal"),
        ("name%00", "no_control"),
        ("na\x00me", "no_control"),
        ("na\nme", "no_control"),
        ("na\u202eme", "no_control"),
        ("a%20b", "no_encoding"),
        ("-leading", "name_charset"),
        ("trailing.", "name_charset"),
        ("sp ace", "name_charset"),
        ("semi;colon", "name_charset"),
        ("quote'", "name_charset"),
        ("uni\u00e9", "name_charset"),
        (123, "type"),
    ],
)
def test_bad_names_are_refused_with_the_rule(value: object, rule: str) -> None:
    with pytest.raises(InvalidName) as info:
        validate_name(value)
    assert info.value.rule == rule
    assert info.value.status == 400


@pytest.mark.parametrize("value", ["credit-risk", "tiny-gpt", "m1", "A.b_c-9", "x" * 64])
def test_good_names_pass_unchanged(value: str) -> None:
    assert validate_name(value) == value


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("Champion", "alias_charset"),
        ("1st", "alias_charset"),
        ("latest", "alias_reserved"),
        ("v3", "alias_reserved"),
        ("a/b", "no_path_traversal"),
        ("x" * 33, "max_length"),
    ],
)
def test_bad_aliases(value: str, rule: str) -> None:
    with pytest.raises(InvalidName) as info:
        validate_alias(value)
    assert info.value.rule == rule


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("0", "version_range"),
        ("-1", "version_format"),
        ("1.5", "version_format"),
        ("１", "version_format"),
        ("abc", "version_format"),
        (True, "version_format"),
        (10**10, "version_range"),
        ("", "not_empty"),
        ("%31", "no_encoding"),
    ],
)
def test_bad_versions(value: object, rule: str) -> None:
    with pytest.raises(InvalidName) as info:
        validate_version(value)
    assert info.value.rule == rule


def test_refs_parse() -> None:
    assert ModelRef.parse("m/3") == ModelRef(name="m", version=3)
    assert ModelRef.parse("m@champion") == ModelRef(name="m", alias="champion")
    assert ModelRef.parse("m") == ModelRef(name="m")
    with pytest.raises(InvalidName) as info:
        _ = ModelRef.parse("m").uri
    assert info.value.rule == "ref_incomplete"
    assert ModelRef.parse("m/3").uri == "models:/m/3"
    with pytest.raises(InvalidName):
        ModelRef.parse("m/3/4")
    with pytest.raises(InvalidName):
        ModelRef.parse("../m/3")


TRAVERSALS = ["../", "..\\", "/etc/passwd", "..", "a/../b", "\\\\server\\share"]


@settings(max_examples=300, deadline=None)
@given(
    payload=st.sampled_from(TRAVERSALS),
    prefix=st.text(alphabet="abc-_.", max_size=5),
    rounds=st.integers(min_value=1, max_value=5),
    safe=st.sampled_from(["", "/", "."]),
)
def test_encoded_traversal_is_always_refused(
    payload: str, prefix: str, rounds: int, safe: str
) -> None:
    value = prefix + payload
    for _ in range(rounds):
        value = quote(value, safe=safe)
    with pytest.raises(InvalidName) as info:
        validate_name(value)
    assert info.value.rule in {"no_path_traversal", "no_encoding", "name_charset", "max_length"}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_anything_accepted_is_a_plain_safe_name(value: str) -> None:
    try:
        name = validate_name(value)
    except InvalidName:
        return
    assert name == value
    assert "/" not in name
    assert "\\" not in name
    assert ".." not in name
    assert "%" not in name
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
