"""Every suite and gate policy the kind table names exists in evaluation."""

from __future__ import annotations

import importlib

import pytest

from evaluation.policy import DEFAULT_POLICIES, default_policy
from evaluation.suites import SUITE_MODULES, suite_for
from paved.kinds import KINDS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("task", sorted(KINDS))
def test_every_kind_has_its_suite(task: str) -> None:
    kind = KINDS[task]
    assert kind.suite in SUITE_MODULES, f"{task}: no suite named {kind.suite!r}"
    module = importlib.import_module(SUITE_MODULES[kind.suite])
    assert suite_for(task) is module.evaluate


@pytest.mark.parametrize("task", sorted(KINDS))
def test_every_kind_has_its_default_gate(task: str) -> None:
    kind = KINDS[task]
    assert kind.gate_policy in DEFAULT_POLICIES, f"{task}: no policy {kind.gate_policy!r}"
    assert default_policy(task) == DEFAULT_POLICIES[kind.gate_policy]


def test_no_suite_or_policy_goes_unused() -> None:
    assert set(SUITE_MODULES) == {k.suite for k in KINDS.values()}
    assert set(DEFAULT_POLICIES) == {k.gate_policy for k in KINDS.values()}
