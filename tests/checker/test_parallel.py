"""Partitions searched in worker processes: same verdicts, graceful fallbacks."""

from __future__ import annotations

import os
from typing import Any

import pytest

from orchestrator.checker import MODELS, Model, OpInput, Operation, Verdict, check_operations

from .test_timeout import hard_partition


def small_history(keys: int = 6) -> list[Operation]:
    ops = []
    for k in range(keys):
        key = f"k{k}"
        ops.append(Operation(0, OpInput("put", key, "a"), 0, None, 2))
        ops.append(Operation(1, OpInput("append", key, "b"), 1, None, 3))
        # Key k3 reads a value no order can produce.
        ops.append(Operation(2, OpInput("get", key), 4, "ba" if k == 3 else "ab", 5))
    return ops


@pytest.mark.parametrize("parallel", [True, False, None])
def test_modes_agree(parallel: bool | None) -> None:
    result = check_operations(MODELS["kv"], small_history(), parallel=parallel, workers=2)
    assert result.verdict is Verdict.ILLEGAL
    assert [p.verdict for p in result.partitions] == [Verdict.OK] * 3 + [Verdict.ILLEGAL] + [Verdict.OK] * 2
    assert [p.label for p in result.partitions] == [f"key 'k{k}'" for k in range(6)]


def test_unpicklable_model_falls_back_to_serial() -> None:
    class LocalRegister(Model):  # defined in a function: cannot be pickled
        def init(self) -> Any:
            return None

        def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
            return MODELS["cas-register"].step(state, input, output)

        def partition(self, history: Any) -> list[list[Operation]]:
            return MODELS["cas-register"].partition(history)

    ops = [
        Operation(0, OpInput("write", "a", 1), 0, None, 1),
        Operation(1, OpInput("read", "a"), 2, 2, 3),
        Operation(0, OpInput("write", "b", 1), 0, None, 1),
        Operation(1, OpInput("read", "b"), 2, 1, 3),
    ]
    result = check_operations(LocalRegister(), ops, parallel=True)
    assert [p.verdict for p in result.partitions] == [Verdict.ILLEGAL, Verdict.OK]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to run partitions side by side")
def test_auto_mode_hands_hard_partitions_to_workers() -> None:
    """Two hard keys under a budget: searched serially, the second would get no time
    at all; in automatic mode both get searched, side by side."""
    result = check_operations(MODELS["kv"], hard_partition("a") + hard_partition("b"), timeout=0.8)
    assert result.verdict is Verdict.UNKNOWN
    assert all(p.steps > 10_000 for p in result.partitions), [p.steps for p in result.partitions]
    serial = check_operations(MODELS["kv"], hard_partition("a") + hard_partition("b"), timeout=0.4, parallel=False)
    assert [p.steps > 0 for p in serial.partitions] == [True, False]
