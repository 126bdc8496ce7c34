"""The nemesis schedule is a pure function of the seed and respects its limits (no
processes here: this is what makes a chaos run's faults replayable)."""

from __future__ import annotations

from collections import Counter

import pytest

from orchestrator.chaos import (
    MAX_ACTIVE_FAULTS,
    WARMUP_S,
    check_durability,
    key_sets,
    max_down,
    parse_nemesis,
    plan_schedule,
    prune_unapplied_appends,
    ring_disabled,
    ChaosError,
)
from orchestrator.checker import Operation, OpInput


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("nodes", [3, 5, 7])
def test_schedule_limits(seed: int, nodes: int) -> None:
    steps = plan_schedule(seed, nodes, 120.0, ("kill", "partition", "lossy", "pause"))
    assert steps == plan_schedule(seed, nodes, 120.0, ("kill", "partition", "lossy", "pause"))
    assert steps[0].at >= WARMUP_S
    gaps = [b.at - a.at for a, b in zip(steps, steps[1:])]
    assert all(1.0 - 1e-3 <= g <= 3.0 + 1e-3 for g in gaps), gaps
    assert steps[-1].at < 120.0
    active: dict[int, str] = {}
    for step in steps:
        if step.action == "start":
            assert step.fault not in active
            active[step.fault] = step.kind
        else:
            assert active.pop(step.fault) == step.kind
        kinds = Counter(active.values())
        assert kinds["kill"] + kinds["pause"] <= max_down(nodes)
        assert kinds["partition"] <= 1 and kinds["lossy"] <= 1
        assert len(active) <= MAX_ACTIVE_FAULTS


def test_schedule_depends_on_seed_and_nemesis_list() -> None:
    a = plan_schedule(1, 5, 60.0, ("kill", "partition", "lossy", "pause"))
    b = plan_schedule(2, 5, 60.0, ("kill", "partition", "lossy", "pause"))
    assert a != b
    only_kills = plan_schedule(1, 5, 60.0, ("kill",))
    assert {s.kind for s in only_kills} == {"kill"}
    assert plan_schedule(1, 5, 60.0, ()) == []
    shapes = {s.detail["shape"] for seed in range(40)
              for s in plan_schedule(seed, 5, 60.0, ("partition",)) if s.action == "start"}
    assert shapes == {"isolate-leader", "isolate", "halves", "ring", "bridge"}


def test_ring_of_overlapping_majorities() -> None:
    order = [3, 0, 4, 1, 2]
    cut = set(ring_disabled(order))
    for i, peer in enumerate(order):
        sees = {peer} | {other for other in order if other != peer and (peer, other) not in cut}
        assert sees == {order[i - 1], peer, order[(i + 1) % 5]}  # itself and its two neighbours: 3 of 5
    assert all((b, a) in cut for a, b in cut)


def test_parse_nemesis() -> None:
    assert parse_nemesis("kill, pause,kill") == ("kill", "pause")
    assert parse_nemesis("none") == () and parse_nemesis("") == ()
    with pytest.raises(ChaosError):
        parse_nemesis("kill,fire")


def _op(f: str, key: str, value: str, call: int, ret: int, unknown: bool = False) -> Operation:
    return Operation(0, OpInput(f, key, value), call, None, ret, unknown)


def test_durability_rules() -> None:
    appends, puts = key_sets(6)
    assert appends == ["a0", "a1", "a2", "a3"] and puts == ["p0", "p1"]
    ops = [_op("append", "a0", "c1-1;", 0, 1), _op("append", "a0", "c11-1;", 2, 3),
           _op("append", "a0", "c2-1;", 2, 3, unknown=True), _op("put", "p0", "c3-1;", 0, 1),
           _op("put", "p0", "c4-1;", 0, 5, unknown=True)]
    # c1-1; is a suffix of c11-1; — tokens are compared whole, not as substrings
    report = check_durability(ops, {"values": {"a0": "c11-1;", "p0": "c4-1;"}}, ["a0"], ["p0"])
    assert [m["value"] for m in report["missing"]] == ["c1-1;"] and not report["ok"]
    # an indefinite put may win over an acknowledged one that it overlaps
    report = check_durability(ops, {"values": {"a0": "c1-1;c11-1;c2-1;", "p0": "c4-1;"}}, ["a0"], ["p0"])
    assert report["ok"], report
    report = check_durability(ops, {"values": {"a0": "c1-1;c11-1;c1-1;x;", "p0": ""}}, ["a0"], ["p0"])
    assert report["duplicated"] == [{"key": "a0", "token": "c1-1;", "times": 2}]
    assert report["phantom"] == [{"key": "a0", "token": "x;"}]
    assert [m["value"] for m in report["missing"]] == ["c3-1;"]
    assert check_durability(ops, None, ["a0"], ["p0"])["unread_keys"] == ["a0", "p0"]


def test_pruning_is_limited_to_append_keys_read_last() -> None:
    final = Operation("final", OpInput("get", "a0", None), 10, "c0-1;", 11)
    ops = [_op("append", "a0", "c0-1;", 0, 1), _op("append", "a0", "c1-1;", 0, 1, unknown=True),
           _op("append", "a0", "c0-1;", 0, 1, unknown=True), final]
    kept, dropped = prune_unapplied_appends(ops, ["a0"])
    assert dropped == 1 and ops[1] not in kept and ops[2] in kept
    assert prune_unapplied_appends(ops, [])[1] == 0  # not an append key
    late = Operation(5, OpInput("get", "a0", None), 9, "c0-1;", 12)  # returned after the final read began
    assert prune_unapplied_appends(ops + [late], ["a0"])[1] == 0
    assert prune_unapplied_appends(ops[:3], ["a0"])[1] == 0  # no final read
