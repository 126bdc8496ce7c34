"""Indefinite writes that no read observed are dropped before the search (exactly)."""

from __future__ import annotations

import math
import random

from orchestrator.checker import MODELS, OpInput, Operation, Verdict, check_operations

KV = MODELS["kv"]


def busy_append_history(n: int, lost: int, seed: int = 1, clients: int = 8) -> list[Operation]:
    """A linearizable n-operation append/get history on one key (a sequential run with each
    interval stretched over its neighbours), plus `lost` indefinite appends never read."""
    rng = random.Random(seed)
    ops: list[Operation] = []
    value, t = "", 100
    for i in range(n):
        start, end = t - rng.randint(0, 6), t + rng.randint(1, 6)
        if rng.random() < 0.55:
            token = f"c{i % clients}-{i};"
            value += token
            ops.append(Operation(i, OpInput("append", "k", token), start, None, end))
        else:
            ops.append(Operation(i, OpInput("get", "k", None), start, value, end))
        t += 2
    for j in range(lost):
        ops.append(Operation(-1 - j, OpInput("append", "k", f"lost{j};"), 50 + j, None,
                             math.inf, unknown=True))
    return sorted(ops, key=lambda o: o.call)


def test_unobserved_indefinite_appends_do_not_blow_up_the_search() -> None:
    # Without the pruning, two such appends leave this key undecided after 30 s.
    result = check_operations(KV, busy_append_history(2000, lost=3), timeout=20, parallel=False)
    assert result.verdict is Verdict.OK
    assert result.partitions[0].operations.__len__() == 2000  # the three were dropped


def test_observed_indefinite_append_is_kept_and_must_fit() -> None:
    ops = [
        Operation(0, OpInput("append", "k", "x"), 0, None, math.inf, unknown=True),
        Operation(1, OpInput("get", "k", None), 5, "x", 6),
        Operation(1, OpInput("get", "k", None), 7, "", 8),  # x vanished: not linearizable
    ]
    result = check_operations(KV, ops, timeout=5, parallel=False)
    assert result.verdict is Verdict.ILLEGAL
    assert len(result.partitions[0].operations) == 3


def test_unobserved_indefinite_put_is_dropped_but_a_definite_one_is_not() -> None:
    ops = [
        Operation(0, OpInput("put", "k", "gone"), 0, None, math.inf, unknown=True),
        Operation(1, OpInput("put", "k", "seen"), 1, None, 2),
        Operation(2, OpInput("get", "k", None), 3, "seen", 4),
    ]
    pruned = KV.drop_unobservable(ops)
    assert [op.input.value for op in pruned] == ["seen", None]
    assert check_operations(KV, ops, timeout=5).verdict is Verdict.OK
