"""The table of what a model kind means: one row per task, each complete."""

from __future__ import annotations

from typing import get_args

import pytest

from paved.kinds import KINDS, TASKS, Protocol, Task, kind_of

pytestmark = pytest.mark.unit


def test_one_row_per_task_keyed_by_its_task() -> None:
    assert set(TASKS) == set(get_args(Task))
    assert all(k.task == task for task, k in KINDS.items())


def test_every_row_names_a_protocol_the_gateway_speaks() -> None:
    assert {k.protocol for k in KINDS.values()} <= set(get_args(Protocol))


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        KINDS["image-segmentation"] = KINDS["text-generation"]  # type: ignore[index]
    with pytest.raises(TypeError):
        KINDS["text-generation"].replica_env["X"] = "1"  # type: ignore[index]


def test_an_unknown_task_has_no_row() -> None:
    assert kind_of("image-segmentation") is None
    assert kind_of("tabular-classification") is KINDS["tabular-classification"]
