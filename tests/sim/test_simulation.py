"""Seed sweeps of the deterministic simulator, its determinism, and proof that the invariant
checkers can fail.

The sweep runs 500 seeds by default (see conftest.py for --sim-seeds / RUAFT_SIM_SEEDS), in
chunks, on a process pool as wide as the machine. A failing chunk names every failing seed
and prints the first failure in full, with the command that replays it.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Iterator

import pytest

from ruaft.core.log import RaftLog
from ruaft.core.types import Entry, HardState
from ruaft.testing.invariants import (
    ClusterChecker,
    InvariantViolation,
    StaticLog,
    check_log_matching,
)
from ruaft.testing.sim import (
    SimulationFailure,
    Simulation,
    World,
    run_seed,
    try_seed,
)

from .conftest import sim_faulty_range

# ------------------------------------------------------------------------------ the sweep


@pytest.fixture(scope="module")
def seed_pool() -> Iterator[Executor | None]:
    """A process pool over the machine's cores (None on a single core: run inline). The
    forkserver start method keeps the children clear of any threads other tests left."""
    workers = min(os.cpu_count() or 1, 8)
    if workers < 2:
        yield None
        return
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield pool


def test_seeds(seed_chunk: range, seed_pool: Executor | None) -> None:
    """Every seed's run keeps every invariant, and the healed cluster recovers in time."""
    faulty_range = sim_faulty_range()
    if seed_pool is None:
        outcomes = [try_seed(seed, faulty_range) for seed in seed_chunk]
    else:
        outcomes = list(
            seed_pool.map(try_seed, seed_chunk, [faulty_range] * len(seed_chunk))
        )
    failures = [(seed, message) for seed, message in zip(seed_chunk, outcomes) if message]
    if failures:
        seeds = ", ".join(str(seed) for seed, _ in failures)
        pytest.fail(
            f"{len(failures)} simulation seed(s) failed: {seeds}\n\n"
            f"First failure:\n{failures[0][1]}",
            pytrace=False,
        )


# ------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("seed", [3, 17, 2024])
def test_same_seed_same_trace(seed: int) -> None:
    first = run_seed(seed, record_trace=True)
    second = run_seed(seed, record_trace=True)
    assert first.trace == second.trace
    assert first.trace_hash == second.trace_hash
    assert first.summary() == second.summary()


def test_same_trace_in_another_interpreter() -> None:
    """Replays are reproducible across processes: nothing depends on hash randomisation
    (PYTHONHASHSEED), object ids or wall-clock time."""
    expected = run_seed(11, faulty_ticks=150).trace_hash
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c",
             "from ruaft.testing.sim import run_seed; "
             "print(run_seed(11, faulty_ticks=150).trace_hash)"],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        assert out.stdout.strip() == expected


def test_different_seeds_different_traces() -> None:
    hashes = {run_seed(seed).trace_hash for seed in range(8)}
    assert len(hashes) == 8


def test_trace_hash_covers_the_trace() -> None:
    """The hash is of the trace lines, so a replay that records the trace matches a sweep
    that only kept the hash."""
    assert run_seed(5, record_trace=True).trace_hash == run_seed(5).trace_hash


def test_run_counts_are_plausible() -> None:
    """A sanity check that the sweep exercises what it claims: elections, commits, reads,
    compaction and snapshot installs, crashes (summed over a few seeds)."""
    results = [run_seed(seed) for seed in range(12)]
    assert all(r.elections >= 1 and r.commit_index > 0 for r in results)
    assert all(0 <= r.commit_ticks <= r.recovery_ticks for r in results)
    assert sum(r.reads_confirmed for r in results) > 0
    assert sum(r.compactions for r in results) > 0
    assert sum(r.snapshots_installed for r in results) > 0
    assert sum(r.crashes for r in results) > 0
    assert sum(r.reads_failed for r in results) > 0


# ------------------------------------------------------------------------------ checkers can fail


def test_two_leaders_in_one_term_detected() -> None:
    checker = ClusterChecker(range(3))
    checker.observe_leader(0, 5)
    checker.observe_leader(0, 5)  # the same leader seen again is fine
    checker.observe_leader(1, 6)
    with pytest.raises(InvariantViolation, match="election safety.*term 5"):
        checker.observe_leader(2, 5)


def test_two_entries_applied_at_one_index_detected() -> None:
    checker = ClusterChecker(range(2))
    checker.on_apply_entry(0, Entry(1, 1, b"x"), b"d1")
    with pytest.raises(InvariantViolation, match="state-machine safety"):
        checker.on_apply_entry(1, Entry(1, 1, b"y"), b"d1")


def test_diverging_applied_prefixes_detected() -> None:
    checker = ClusterChecker(range(2))
    checker.on_apply_entry(0, Entry(1, 1, b"x"), b"digest-a")
    with pytest.raises(InvariantViolation, match="applied prefixes agree"):
        checker.on_apply_entry(1, Entry(1, 1, b"x"), b"digest-b")


def test_apply_order_detected() -> None:
    checker = ClusterChecker(range(1))
    checker.on_apply_entry(0, Entry(1, 1, b"a"), b"1")
    with pytest.raises(InvariantViolation, match="apply order"):
        checker.on_apply_entry(0, Entry(1, 3, b"c"), b"3")
    checker.on_apply_snapshot(0, 5, 1, b"5")  # a snapshot may jump ahead ...
    with pytest.raises(InvariantViolation, match="apply order"):
        checker.on_apply_snapshot(0, 4, 1, b"4")  # ... but never back


def test_log_matching_violation_detected() -> None:
    same = StaticLog.of(1, 1, 2)
    # Same term at index 3, different term below it.
    other = StaticLog.of(1, 3, 2)
    check_log_matching({0: same, 1: StaticLog.of(1, 1, 2, 2)})
    with pytest.raises(InvariantViolation, match="log matching"):
        check_log_matching({0: same, 1: other})
    # Same index and term, different data.
    forged = StaticLog((Entry(1, 1, b"1:1"), Entry(1, 2, b"forged")))
    with pytest.raises(InvariantViolation, match="different data"):
        check_log_matching({0: StaticLog.of(1, 1), 1: forged})
    # Incrementally, from what peers persist.
    checker = ClusterChecker(range(2))
    checker.on_persist(0, HardState(2), [Entry(1, 1, b"a"), Entry(2, 2, b"b")], 0)
    with pytest.raises(InvariantViolation, match="log matching"):
        checker.on_persist(1, HardState(2), [Entry(2, 2, b"b")], 7)


def test_leader_missing_committed_entry_detected() -> None:
    checker = ClusterChecker(range(3))
    committed_log = RaftLog(None, [Entry(1, 1, b"a"), Entry(1, 2, b"b")], 0)
    checker.on_state(0, 1, True, 2, committed_log)
    # A leader of a later term whose log lacks index 2.
    with pytest.raises(InvariantViolation, match="leader completeness"):
        checker.on_state(1, 2, True, 0, RaftLog(None, [Entry(1, 1, b"a")], 0))
    # Compacted into a snapshot counts as present.
    from ruaft.core.types import Snapshot

    compacted = RaftLog(Snapshot(2, 1, b""), [], 2)
    checker.on_state(2, 3, True, 2, compacted)


def test_commit_going_back_detected() -> None:
    checker = ClusterChecker(range(1))
    log = RaftLog(None, [Entry(1, 1, b"a"), Entry(1, 2, b"b")], 0)
    checker.on_state(0, 1, False, 2, log)
    with pytest.raises(InvariantViolation, match="commit index monotonic"):
        checker.on_state(0, 1, False, 1, log)


def test_persisted_state_going_back_detected() -> None:
    checker = ClusterChecker(range(1))
    checker.on_persist(0, HardState(term=3, vote=1, commit=4))
    with pytest.raises(InvariantViolation, match="persisted commit"):
        checker.on_persist(0, HardState(term=3, vote=1, commit=2))
    with pytest.raises(InvariantViolation, match="persisted term"):
        checker.on_persist(0, HardState(term=2, vote=1, commit=4))
    with pytest.raises(InvariantViolation, match="one vote per term"):
        checker.on_persist(0, HardState(term=3, vote=2, commit=4))


# ------------------------------------------------------------------------------ the whole pipeline


def _votes_for_anyone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core mutant: voters skip the up-to-date check of paper §5.4.1, so a candidate with a
    stale log can win and overwrite committed entries."""
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)


def test_simulation_catches_a_broken_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the election restriction removed, some seed must break a safety invariant, and
    the failure must name the seed and the replay command."""
    _votes_for_anyone(monkeypatch)
    failures: list[SimulationFailure] = []
    for seed in range(40):
        try:
            run_seed(seed)
        except SimulationFailure as failure:
            failures.append(failure)
            break
    assert failures, "a core without the election restriction passed 40 seeds"
    message = str(failures[0])
    assert f"seed {failures[0].seed}" in message
    assert f"python -m ruaft.testing.sim --seed {failures[0].seed}" in message


def test_failure_message_for_a_violation_names_seed_and_replay() -> None:
    sim = Simulation(World.calm(seed=77), autopilot=False)
    failure = sim._failure("made up", None)
    assert "seed 77" in str(failure)
    assert "python -m ruaft.testing.sim --seed 77" in str(failure)


def test_simulation_catches_a_follower_committing_unverified_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A subtler mutant: a follower treats its whole log as matching the leader's (paper
    Figure 2, AppendEntries rule 5 says: only as far as the message proved), so it may commit
    stale entries a new leader is about to overwrite. State-machine safety must catch it."""
    original = RaftLog.maybe_append

    def claims_whole_log(self: RaftLog, prev_log_index: int, entries: tuple[Entry, ...]) -> int:
        original(self, prev_log_index, entries)
        return self.last_index

    monkeypatch.setattr(RaftLog, "maybe_append", claims_whole_log)
    for seed in range(80):
        try:
            run_seed(seed)
        except SimulationFailure as failure:
            assert isinstance(failure.cause, InvariantViolation), failure
            return
    pytest.fail("a follower committing unverified entries passed 80 seeds")
