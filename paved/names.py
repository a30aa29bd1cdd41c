"""Validation of every identifier a user can type: names, versions, aliases, refs.

Identifiers end up in file paths, URLs, Git paths, MLflow keys and metric labels,
so they are checked against an allow-list before anything touches a store. Each
refusal names the rule it broke. Traversal attempts are recognised through any
depth of percent-encoding so the message says what was really attempted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from typing import Annotated, Literal
from urllib.parse import unquote

from pydantic import AfterValidator, BaseModel, ConfigDict

from paved.errors import InvalidInput, InvalidName
from paved.text import quote

MAX_NAME_LENGTH = 64
MAX_VERSION = 10**9
MAX_ALIAS_LENGTH = 32
_MAX_DECODE_ROUNDS = 8

_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_ALIAS_RE = re.compile(r"[a-z][a-z0-9_-]*")
_RESERVED_ALIAS_RE = re.compile(r"v\d+")
_RESERVED_ALIASES = frozenset({"latest"})

Kind = Literal["model name", "team", "endpoint", "environment", "alias", "version"]


def _decoded_forms(value: str) -> list[str]:
    """The value and every distinct form percent-decoding produces from it."""
    forms = [value]
    current = value
    for _ in range(_MAX_DECODE_ROUNDS):
        nxt = unquote(current)
        if nxt == current:
            break
        forms.append(nxt)
        current = nxt
    return forms


_RUN_ID_RE = re.compile(r"[0-9a-f]{32}")


def _show(value: str) -> str:
    """A value as quoted in an error message: repr, and cut short if long."""
    return quote(value)


def _check_common(value: object, kind: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidName(f"{kind} must be a string, got {type(value).__name__}", rule="type")
    if value == "" or value.strip() == "":
        raise InvalidName(f"{kind} must not be empty", rule="not_empty")
    for form in _decoded_forms(value[:4096]):
        if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in form):
            raise InvalidName(
                f"{kind} {_show(value)} contains control characters", rule="no_control"
            )
        if ".." in form or "/" in form or "\\" in form:
            encoded = " (after percent-decoding)" if form != value else ""
            raise InvalidName(
                f"{kind} {_show(value)} contains a path separator or '..'{encoded}",
                rule="no_path_traversal",
            )
    if len(value) > max_length:
        raise InvalidName(
            f"{kind} is {len(value)} characters; the limit is {max_length}", rule="max_length"
        )
    if "%" in value:
        raise InvalidName(f"{kind} {_show(value)} must not be percent-encoded", rule="no_encoding")
    return value


def validate_name(value: object, kind: str = "model name") -> str:
    """Names of models, teams, endpoints, environments: ``[A-Za-z0-9._-]``, max 64."""
    name = _check_common(value, kind, MAX_NAME_LENGTH)
    if not _NAME_RE.fullmatch(name):
        raise InvalidName(
            f"{kind} {_show(name)} may contain only letters, digits, '.', '_' and '-', "
            "and must start and end with a letter or digit",
            rule="name_charset",
        )
    return name


def validate_alias(value: object) -> str:
    """Aliases: lower-case ``[a-z][a-z0-9_-]*``, max 32, not ``latest`` or ``v<N>``."""
    alias = _check_common(value, "alias", MAX_ALIAS_LENGTH)
    if not _ALIAS_RE.fullmatch(alias):
        raise InvalidName(
            f"alias {_show(alias)} must start with a lower-case letter and contain only "
            "lower-case letters, digits, '_' and '-'",
            rule="alias_charset",
        )
    if alias in _RESERVED_ALIASES or _RESERVED_ALIAS_RE.fullmatch(alias):
        raise InvalidName(f"alias {_show(alias)} is reserved by MLflow", rule="alias_reserved")
    return alias


def validate_version(value: object) -> int:
    """Versions: a positive integer (``3``), given as int or decimal digits."""
    if isinstance(value, bool):
        raise InvalidName("version must be a positive integer", rule="version_format")
    if isinstance(value, int):
        version = value
    else:
        text = _check_common(value, "version", 10)
        if not text.isascii() or not text.isdigit():
            raise InvalidName(
                f"version {_show(text)} must be a positive integer", rule="version_format"
            )
        version = int(text)
    if not 1 <= version <= MAX_VERSION:
        raise InvalidName(f"version {version} is outside 1..{MAX_VERSION}", rule="version_range")
    return version


def validate_run_id(value: object) -> str:
    """MLflow run ids: 32 lower-case hex digits."""
    if not isinstance(value, str) or not _RUN_ID_RE.fullmatch(value):
        shown = _show(value) if isinstance(value, str) else type(value).__name__
        raise InvalidName(f"run id {shown} must be 32 lower-case hex digits", rule="run_id_format")
    return value


def validate_choice(value: object, choices: Collection[str], kind: str) -> str:
    """One of a fixed set of values (a task, a framework), named in the refusal."""
    if not isinstance(value, str) or value not in choices:
        shown = _show(value) if isinstance(value, str) else type(value).__name__
        raise InvalidInput(
            f"{kind} {shown} is not one Pavedpath knows; use one of: {', '.join(choices)}",
            rule=kind.replace(" ", "_"),
        )
    return value


ModelName = Annotated[str, AfterValidator(validate_name)]
TeamName = Annotated[str, AfterValidator(lambda v: validate_name(v, "team"))]
EndpointName = Annotated[str, AfterValidator(lambda v: validate_name(v, "endpoint"))]
EnvName = Annotated[str, AfterValidator(lambda v: validate_name(v, "environment"))]
AliasName = Annotated[str, AfterValidator(validate_alias)]


class ModelRef(BaseModel):
    """``NAME``, ``NAME/VERSION`` or ``NAME@ALIAS``, validated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        if not isinstance(text, str):
            raise InvalidName("model reference must be a string", rule="type")
        if "@" in text:
            name, _, alias = text.partition("@")
            return cls(name=validate_name(name), alias=validate_alias(alias))
        name, sep, version = text.partition("/")
        if sep and "/" in version:
            raise InvalidName(
                f"model reference {_show(text)} contains a path separator",
                rule="no_path_traversal",
            )
        if sep:
            return cls(name=validate_name(name), version=validate_version(version))
        return cls(name=validate_name(name))

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name

    @property
    def uri(self) -> str:
        """The MLflow ``models:/`` URI of this reference."""
        if self.version is not None:
            return f"models:/{self.name}/{self.version}"
        if self.alias is not None:
            return f"models:/{self.name}@{self.alias}"
        raise InvalidName(
            f"model reference {self.name!r} needs a version or an alias", rule="ref_incomplete"
        )
