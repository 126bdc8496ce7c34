"""The golden Porcupine kv histories get their expected verdicts, quickly, either way."""

from __future__ import annotations

import time

import pytest

from orchestrator.checker import MODELS, Verdict, check_events, load_history

EXPECTED = {
    "c01-ok": Verdict.OK,
    "c01-bad": Verdict.ILLEGAL,
    "c10-ok": Verdict.OK,
    "c10-bad": Verdict.ILLEGAL,
}

from .conftest import FixturePath


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("parallel", [False, None])
def test_fixture_verdict_and_speed(fixture_path: FixturePath, name: str, parallel: bool | None) -> None:
    events = load_history(fixture_path(name))
    started = time.perf_counter()
    result = check_events(MODELS["kv"], events, timeout=30, parallel=parallel)
    elapsed = time.perf_counter() - started
    assert result.verdict is EXPECTED[name]
    assert elapsed < 10, f"{name} took {elapsed:.2f} s"
    # Every partition of a good history is linearized completely.
    if result.verdict is Verdict.OK:
        for partition in result.partitions:
            assert sorted(partition.linearization) == list(range(len(partition.operations)))


@pytest.mark.parametrize("name", ["c10-ok", "c10-bad"])
def test_worker_processes_agree_with_serial(fixture_path: FixturePath, name: str) -> None:
    events = load_history(fixture_path(name))
    serial = check_events(MODELS["kv"], events, parallel=False)
    parallel = check_events(MODELS["kv"], events, parallel=True, workers=2)
    assert parallel.verdict is serial.verdict
    assert [(p.label, p.verdict, p.linearization, p.failed) for p in parallel.partitions] == [
        (p.label, p.verdict, p.linearization, p.failed) for p in serial.partitions
    ]


def test_bad_histories_explain_the_violation(fixture_path: FixturePath) -> None:
    model = MODELS["kv"]
    result = check_events(model, load_history(fixture_path("c01-bad")))
    (illegal,) = result.with_verdict(Verdict.ILLEGAL)
    assert illegal.label == "key '7'"
    failed = illegal.failed_operation
    assert failed is not None and failed.input.f == "get"
    # The prefix is a genuine linearization prefix: replaying it is legal...
    state = model.init()
    for op in illegal.prefix_operations():
        legal, state = model.step(state, op.input, op.output)
        assert legal
    # ...and the operation that could not be placed is illegal right after it.
    assert not model.step(state, failed.input, failed.output)[0]
    assert failed.metadata == 59  # its invoke line in the fixture
