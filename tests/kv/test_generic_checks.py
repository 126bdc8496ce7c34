"""The KV driver's own checks, on made-up values and histories (no servers): a wrong value,
an ILLEGAL history and an UNKNOWN verdict must each be reported, never passed."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.checker import HistoryRecorder, Verdict

from .generic import LinearizabilityUnknown, check_clnt_appends, check_history


def test_clnt_appends_accepts_in_order_and_ignores_later_elements() -> None:
    check_clnt_appends(3, "x 3 0 yx 3 1 yx 3 2 y", 2)
    check_clnt_appends(1, "x 1 0 yx 1 1 yx 1 10 y", 2)  # "x 1 1 y" is not inside "x 1 10 y"


@pytest.mark.parametrize("value, message", [
    ("x 0 0 y", "missing element"),
    ("x 0 0 yx 0 1 yx 0 0 y", "duplicate element"),
    ("x 0 1 yx 0 0 y", "wrong order"),
])
def test_clnt_appends_rejects(value: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_clnt_appends(0, value, 2)


def _stale_read_history() -> HistoryRecorder:
    recorder = HistoryRecorder()
    recorder.invoke("a", "put", "k", "1")
    recorder.ok("a")
    recorder.invoke("b", "put", "k", "2")
    recorder.ok("b")
    recorder.invoke("c", "get", "k")
    recorder.ok("c", "1")  # reads a value overwritten before the read began
    recorder.invoke("d", "append", "k", "3")
    recorder.info("d")  # indefinite: may or may not have happened
    return recorder


def test_illegal_history_fails_and_writes_the_timeline(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="not linearizable"):
        check_history(_stale_read_history(), tmp_path)
    assert (tmp_path / "linearizability.html").stat().st_size > 0
    assert (tmp_path / "history.jsonl").exists()


def test_unknown_verdict_is_reported_loudly(tmp_path: Path) -> None:
    with pytest.warns(LinearizabilityUnknown, match="NOT verified"):
        verdict = check_history(_stale_read_history(), tmp_path, budget=0.0)
    assert verdict is Verdict.UNKNOWN


def test_linearizable_history_with_an_indefinite_write_passes(tmp_path: Path) -> None:
    recorder = HistoryRecorder()
    recorder.invoke("a", "append", "k", "x")
    recorder.info("a")
    recorder.invoke("b", "get", "k")
    recorder.ok("b", "x")  # the indefinite append happened
    recorder.invoke("c", "get", "k")
    recorder.fail("c")  # a definite failure is no operation at all
    assert check_history(recorder, tmp_path) is Verdict.OK
