"""A time budget yields UNKNOWN, never a silent pass; ILLEGAL still wins."""

from __future__ import annotations

import time

import pytest

from orchestrator.checker import MODELS, OpInput, Operation, Verdict, check_operations, search


def hard_partition(key: str, appends: int = 30) -> list[Operation]:
    """Many fully concurrent appends, then a read no order can produce.

    Every interleaving of the appends is a distinct state, so the memo cannot prune
    and the search would need ``appends!`` steps to refute it.
    """
    ops = [Operation(i, OpInput("append", key, f"<{i}>"), 0, None, 10) for i in range(appends)]
    ops.append(Operation(appends, OpInput("get", key), 20, "impossible", 30))
    return ops


@pytest.mark.parametrize("timeout", [0.0, 1e-6, 0.2])
def test_budget_exhausted_is_unknown(timeout: float) -> None:
    started = time.monotonic()
    result = check_operations(MODELS["kv"], hard_partition("k"), timeout=timeout, parallel=False)
    assert result.verdict is Verdict.UNKNOWN
    assert time.monotonic() - started < timeout + 3
    (partition,) = result.partitions
    assert partition.verdict is Verdict.UNKNOWN and partition.failed is None


def test_search_checks_the_deadline_while_running() -> None:
    outcome = search(MODELS["kv"], hard_partition("k"), deadline=time.monotonic() + 0.3)
    assert outcome.verdict is Verdict.UNKNOWN
    assert outcome.steps > 1000  # it did search, then stopped


@pytest.mark.parametrize("parallel", [False, True, None])
def test_illegal_partition_beats_unknown_one(parallel: bool | None) -> None:
    illegal = [
        Operation(0, OpInput("put", "b", "x"), 0, None, 1),
        Operation(1, OpInput("get", "b"), 2, "y", 3),
    ]
    result = check_operations(MODELS["kv"], hard_partition("a") + illegal, timeout=0.5, parallel=parallel)
    verdicts = {p.label: p.verdict for p in result.partitions}
    assert verdicts == {"key 'a'": Verdict.UNKNOWN, "key 'b'": Verdict.ILLEGAL}
    assert result.verdict is Verdict.ILLEGAL


@pytest.mark.parametrize("parallel", [False, True])
def test_unknown_beats_ok(parallel: bool) -> None:
    fine = [Operation(0, OpInput("put", "b", "x"), 0, None, 1), Operation(1, OpInput("get", "b"), 2, "x", 3)]
    result = check_operations(MODELS["kv"], hard_partition("a") + fine, timeout=0.3, parallel=parallel)
    assert [p.verdict for p in result.partitions] == [Verdict.UNKNOWN, Verdict.OK]
    assert result.verdict is Verdict.UNKNOWN


def test_no_timeout_means_unlimited_and_empty_is_ok() -> None:
    assert check_operations(MODELS["kv"], [], timeout=0.0).verdict is Verdict.OK
    small = hard_partition("k", appends=4)
    assert check_operations(MODELS["kv"], small, timeout=None).verdict is Verdict.ILLEGAL


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_negative_timeout_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError):
        check_operations(MODELS["kv"], [], timeout=bad)
