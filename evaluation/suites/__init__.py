"""Offline evaluation suites: one per task, each run on a verified local model directory.

``run_suite`` is the entry point: it resolves the reference to an exact version,
fetches it through the registry (every file's digest checked before anything loads
it) and hands the directory to the suite for the version's lineage task. Suites are
imported on first use, so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from evaluation.report import EvalReport
from paved.errors import InvalidInput
from paved.kinds import KINDS, kind_of
from paved.names import ModelRef
from registry.schemas import ModelVersionDetail

if TYPE_CHECKING:
    from registry.service import Registry

Suite = Callable[[Path, ModelVersionDetail], EvalReport]

# suite name (the kind table's ``suite``) -> module whose ``evaluate(model_dir, detail)``
# implements it
SUITE_MODULES: Mapping[str, str] = MappingProxyType(
    {
        "text_generation": "evaluation.suites.text_generation",
        "tabular": "evaluation.suites.tabular",
    }
)


def suite_for(task: str) -> Suite:
    """The suite that evaluates versions of ``task`` (its row in :mod:`paved.kinds`)."""
    kind = kind_of(task)
    if kind is None:
        raise InvalidInput(
            f"no offline evaluation suite for task {task!r}; suites exist for "
            f"{', '.join(sorted(KINDS))}",
            rule="suite_task",
        )
    suite: Suite = importlib.import_module(SUITE_MODULES[kind.suite]).evaluate
    return suite


def run_suite(registry: Registry, ref: ModelRef | str) -> EvalReport:
    """Fetch and verify a version, then evaluate it with the suite for its task."""
    detail = registry.describe(ref)
    suite = suite_for(detail.lineage.task)
    return suite(registry.fetch(detail.ref), detail)
