"""HistoryRecorder: thread-safe recording, pairing, JSON Lines output."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.checker import MODELS, EventType, HistoryRecorder, Verdict, check_events, load_history


def test_records_a_checkable_history(tmp_path: Path) -> None:
    recorder = HistoryRecorder()
    store: dict[str, str] = {}
    store_lock = threading.Lock()

    def client(process: int) -> None:
        for i in range(50):
            key = f"k{i % 3}"
            if i % 4 == 0:
                recorder.invoke(process, "get", key)
                with store_lock:
                    value = store.get(key)
                recorder.ok(process, value)
            else:
                recorder.invoke(process, "append", key, f"<{process}.{i}>")
                with store_lock:
                    store[key] = store.get(key, "") + f"<{process}.{i}>"
                recorder.ok(process)

    threads = [threading.Thread(target=client, args=(p,)) for p in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    events = recorder.events()
    assert len(events) == len(recorder) == 4 * 50 * 2
    times = [e.time or 0 for e in events]
    assert times == sorted(times)  # event order and time order agree
    assert recorder.open_processes() == []
    assert recorder.check(MODELS["kv"]).verdict is Verdict.OK

    path = tmp_path / "history.jsonl"
    recorder.write_jsonl(path)
    assert check_events(MODELS["kv"], load_history(path)).verdict is Verdict.OK


def test_completion_kinds_and_misuse() -> None:
    ticks = iter(range(100))
    recorder = HistoryRecorder(clock=lambda: next(ticks))
    recorder.invoke(1, "cas", "r", [None, 1])
    recorder.ok(1, [None, 1, True])
    recorder.invoke(1, "write", "r", 5)
    recorder.fail(1)
    recorder.invoke(2, "read", "r")
    recorder.info(2)
    recorder.invoke(3, "read", "r")  # left open
    kinds = [e.type for e in recorder.events()]
    assert kinds == [EventType.INVOKE, EventType.OK, EventType.INVOKE, EventType.FAIL, EventType.INVOKE, EventType.INFO, EventType.INVOKE]
    assert recorder.events()[1].f == "cas" and recorder.events()[1].value == (None, 1, True)
    assert recorder.open_processes() == [3]
    ops = recorder.operations()
    assert [o.input.f for o in ops] == ["cas", "read", "read"] and ops[1].unknown and ops[2].unknown
    assert recorder.check(MODELS["cas-register"]).verdict is Verdict.OK
    with pytest.raises(ValueError):
        recorder.invoke(3, "read", "r")
    with pytest.raises(ValueError):
        recorder.ok(9)
