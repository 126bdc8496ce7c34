"""The checker agrees with an exhaustive brute-force oracle on random small histories."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from typing import Any

from orchestrator.checker import MODELS, UNKNOWN_OUTPUT, KeyedModel, Model, Verdict, check_events, events_to_operations, search

from .oracle import oracle_linearizable, random_history

HISTORIES_PER_MODEL = 2500


class WholeStore(Model):
    """A keyed model lifted to the whole store, with no partitioning.

    The state is a sorted tuple of (key, per-key state) pairs, so it stays hashable.
    Checking with it must agree with checking per key (P-compositionality).
    """

    def __init__(self, inner: KeyedModel) -> None:
        self.inner = inner

    def init(self) -> tuple[tuple[Any, Any], ...]:
        return ()

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        store = dict(state)
        legal, new = self.inner.step(store.get(input.key, self.inner.init()), input, output)
        store[input.key] = new
        return legal, tuple(sorted(store.items(), key=lambda item: str(item[0])))


@pytest.mark.parametrize("model_name", ["kv", "cas-register"])
def test_checker_agrees_with_oracle(model_name: str) -> None:
    model = MODELS[model_name]
    assert isinstance(model, KeyedModel)
    rng = random.Random(f"ruaft-checker-oracle-{model_name}")
    seen: Counter[Verdict] = Counter()
    indefinite = 0
    for number in range(HISTORIES_PER_MODEL):
        events = random_history(rng, model_name)
        operations = events_to_operations(events)
        indefinite += any(op.unknown for op in operations)
        expected = Verdict.OK if oracle_linearizable(operations, model_name) else Verdict.ILLEGAL
        result = check_events(model, events, parallel=False)
        assert result.verdict is expected, (
            f"history #{number} ({model_name}): checker says {result.verdict}, oracle says {expected}\n"
            + "\n".join(map(repr, events))
        )
        # Without partitioning the verdict is the same (P-compositionality).
        assert search(WholeStore(model), operations).verdict is expected
        seen[expected] += 1
    assert seen[Verdict.OK] >= HISTORIES_PER_MODEL // 10, seen
    assert seen[Verdict.ILLEGAL] >= HISTORIES_PER_MODEL // 10, seen
    assert indefinite >= HISTORIES_PER_MODEL // 10


@pytest.mark.parametrize("model_name", ["kv", "cas-register"])
def test_illegal_diagnostics_on_random_histories(model_name: str) -> None:
    """For every illegal partition, the prefix replays legally and the failed op is stuck."""
    model = MODELS[model_name]
    rng = random.Random(f"ruaft-checker-diagnostics-{model_name}")
    checked = 0
    while checked < 200:
        result = check_events(model, random_history(rng, model_name), parallel=False)
        for partition in result.with_verdict(Verdict.ILLEGAL):
            checked += 1
            state = model.init()
            for op in partition.prefix_operations():
                legal, state = model.step(state, op.input, UNKNOWN_OUTPUT if op.unknown else op.output)
                assert legal
            failed = partition.failed_operation
            assert failed is not None and not failed.unknown
            assert failed not in partition.prefix_operations()
            assert not model.step(state, failed.input, failed.output)[0]
            # Every operation that could have come next is illegal there too.
            assert partition.failed in partition.candidates()
            for index in partition.candidates():
                candidate = partition.operations[index]
                assert not candidate.unknown
                assert not model.step(state, candidate.input, candidate.output)[0]
