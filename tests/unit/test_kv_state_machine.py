"""The KV state machine's snapshot round trip: data, sessions and applied index survive, and
a malformed snapshot is refused."""

from __future__ import annotations

import pytest

from kv.state_machine import KVCommand, KVStateMachine


def test_snapshot_restore_round_trip_keeps_data_and_sessions() -> None:
    sm = KVStateMachine()
    sm.apply(1, KVCommand("a", 1, "put", "k", "x"))
    sm.apply(2, KVCommand("b", 1, "append", "k", "y"))
    restored = KVStateMachine()
    restored.restore(sm.snapshot())
    assert restored.applied_index == 2
    assert restored.data == {"k": "xy"} and type(restored.data) is dict
    assert restored.is_duplicate("a", 1) and not restored.is_duplicate("a", 2)
    restored.apply(3, KVCommand("b", 1, "append", "k", "y"))  # a retry: applied once only
    assert restored.get("k") == "xy"
    restored.apply(4, KVCommand("a", 2, "append", "k", "z"))
    assert restored.get("k") == "xyz" and sm.get("k") == "xy"  # no state shared with the source


def test_malformed_snapshot_is_refused() -> None:
    with pytest.raises(ValueError):
        KVStateMachine().restore(b"\xc1")
