"""Contract tests of `ruaft.storage.Storage`, run against MemoryStorage and LmdbStorage alike."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from ruaft.core.types import Entry, HardState, InitialState, Snapshot
from ruaft.storage import LmdbStorage, MemoryStorage, Storage
from ruaft.storage.common import ENTRY_OVERHEAD_BYTES, HARD_STATE_BYTES, entry_size


class Harness:
    """Opens a storage of one kind and "restarts" it (LMDB: close + reopen; memory: keep)."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.store: Storage = self._open()

    def _open(self) -> Storage:
        if self.kind == "memory":
            return MemoryStorage()
        return LmdbStorage(self.path, cluster_id="test", sync=False)

    def reopen(self) -> Storage:
        if self.kind == "lmdb":
            self.store.close()
            self.store = self._open()
        return self.store

    def close(self) -> None:
        self.store.close()


@pytest.fixture(params=["memory", "lmdb"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(request.param, tmp_path / "peer")
    yield h
    h.close()


@pytest.fixture
def store(harness: Harness) -> Storage:
    return harness.store


def ents(lo: int, hi: int, term: int = 1, tag: bytes = b"") -> list[Entry]:
    """Entries lo..hi inclusive, payload naming the index (and a tag, to tell versions apart)."""
    return [Entry(term, i, b"e%d%s" % (i, tag)) for i in range(lo, hi + 1)]


def log_of(store: Storage) -> list[Entry]:
    return store.entries(store.first_index(), store.last_index() + 1)


def expected_size(entries: list[Entry]) -> int:
    return HARD_STATE_BYTES + sum(len(e.data) + ENTRY_OVERHEAD_BYTES for e in entries)


def assert_consistent(store: Storage) -> None:
    """Every read agrees with `initial_state()` and with the size accounting."""
    init = store.initial_state()
    log = log_of(store)
    assert list(init.entries) == log
    assert init.hard_state == store.hard_state()
    assert init.snapshot == store.snapshot()
    assert store.raft_state_size() == expected_size(log)
    assert store.snapshot_size() == (len(init.snapshot.data) if init.snapshot else 0)
    if log:
        assert log[0].index == store.first_index()
        assert log[-1].index == store.last_index()
    else:
        assert store.last_index() == store.first_index() - 1
    for e in log:
        assert store.term(e.index) == e.term


# ------------------------------------------------------------------------------ basics


def test_implements_protocol(store: Storage) -> None:
    assert isinstance(store, Storage)


def test_empty_store(store: Storage) -> None:
    assert store.first_index() == 1
    assert store.last_index() == 0
    assert store.term(0) == 0
    with pytest.raises(KeyError):
        store.term(1)
    assert store.hard_state() == HardState()
    assert store.snapshot() is None
    assert store.snapshot_size() == 0
    assert store.raft_state_size() == HARD_STATE_BYTES
    assert store.initial_state() == InitialState()
    assert store.entries(1, 1) == []


def test_append_and_read(store: Storage) -> None:
    store.save(HardState(1, 0, 0), ents(1, 5))
    store.save(None, ents(6, 10, term=2))
    assert store.first_index() == 1
    assert store.last_index() == 10
    assert store.term(5) == 1 and store.term(6) == 2
    assert store.entries(3, 7) == ents(3, 5) + ents(6, 6, term=2)
    assert store.hard_state() == HardState(1, 0, 0)
    with pytest.raises(KeyError):
        store.term(11)
    assert_consistent(store)


def test_overwrite_suffix(store: Storage) -> None:
    store.save(HardState(1, 1, 3), ents(1, 10))
    # A new leader's entries replace the stored suffix from index 6 on, even the ones past 7.
    store.save(HardState(2, 2, 3), ents(6, 7, term=2, tag=b"new"))
    assert store.last_index() == 7
    assert store.entries(1, 8) == ents(1, 5) + ents(6, 7, term=2, tag=b"new")
    assert store.raft_state_size() == expected_size(ents(1, 5) + ents(6, 7, term=2, tag=b"new"))
    # Replacing the whole log from index 1.
    store.save(None, ents(1, 3, term=3, tag=b"x"))
    assert log_of(store) == ents(1, 3, term=3, tag=b"x")
    assert_consistent(store)


def test_overwrite_with_longer_suffix(store: Storage) -> None:
    store.save(None, ents(1, 4))
    store.save(None, ents(3, 9, term=2))
    assert log_of(store) == ents(1, 2) + ents(3, 9, term=2)
    assert_consistent(store)


@pytest.mark.parametrize(
    "bad",
    [
        ents(7, 8),  # gap after last index 5
        [Entry(1, 6, b""), Entry(1, 8, b"")],  # not consecutive
        [Entry(2, 6, b""), Entry(1, 7, b"")],  # decreasing terms
        ents(3, 4, term=0),  # term below the preceding entry's
    ],
)
def test_bad_appends_are_refused_and_change_nothing(store: Storage, bad: list[Entry]) -> None:
    store.save(HardState(1, 0, 2), ents(1, 5))
    before = store.initial_state()
    with pytest.raises(ValueError):
        store.save(HardState(9, 9, 0), bad)
    assert store.initial_state() == before
    assert_consistent(store)


def test_commit_beyond_last_index_refused(store: Storage) -> None:
    store.save(HardState(1, 0, 0), ents(1, 3))
    with pytest.raises(ValueError):
        store.save(HardState(1, 0, 4), [])
    store.save(HardState(1, 0, 3), [])
    # Truncating below the stored commit index would discard committed entries.
    with pytest.raises(ValueError):
        store.save(None, ents(2, 2, term=2))
    assert store.hard_state() == HardState(1, 0, 3)
    assert_consistent(store)


def test_hard_state_round_trip(harness: Harness) -> None:
    store = harness.store
    store.save(HardState(term=7, vote=2, commit=0), [])
    store.save(HardState(term=8, vote=-1, commit=3), ents(1, 3, term=8))
    store = harness.reopen()
    assert store.hard_state() == HardState(term=8, vote=-1, commit=3)
    assert store.initial_state().hard_state == HardState(term=8, vote=-1, commit=3)


def test_save_with_nothing_is_a_no_op(store: Storage) -> None:
    store.save(HardState(1, 0, 0), ents(1, 2))
    store.save(None, [])
    assert log_of(store) == ents(1, 2)


# ------------------------------------------------------------------------------ entries()


def test_entries_max_bytes_returns_at_least_one(store: Storage) -> None:
    log = [Entry(1, i, b"x" * 100) for i in range(1, 11)]
    store.save(None, log)
    one = entry_size(log[0])  # 120
    assert store.entries(1, 11, max_bytes=0) == log[:1]
    assert store.entries(1, 11, max_bytes=1) == log[:1]
    assert store.entries(1, 11, max_bytes=one) == log[:1]
    assert store.entries(1, 11, max_bytes=one * 3) == log[:3]
    assert store.entries(1, 11, max_bytes=one * 3 + one - 1) == log[:3]
    assert store.entries(4, 11, max_bytes=one * 2) == log[3:5]
    assert store.entries(1, 11, max_bytes=10**9) == log
    assert store.entries(5, 6, max_bytes=0) == log[4:5]


def test_entries_range_errors(store: Storage) -> None:
    store.save(None, ents(1, 10))
    store.compact(Snapshot(4, 1, b"s"))
    assert store.entries(5, 5) == []
    assert store.entries(10, 11) == ents(10, 10)
    with pytest.raises(KeyError):
        store.entries(4, 6)  # compacted
    with pytest.raises(KeyError):
        store.entries(5, 12)  # beyond last
    with pytest.raises(ValueError):
        store.entries(7, 6)


# ------------------------------------------------------------------------------ snapshots


def test_snapshot_matching_entry_keeps_the_suffix(store: Storage) -> None:
    store.save(HardState(1, 0, 5), ents(1, 10))
    snap = Snapshot(index=5, term=1, data=b"state@5")
    store.save(None, [], snap)
    assert store.snapshot() == snap
    assert store.first_index() == 6
    assert store.term(5) == 1
    assert log_of(store) == ents(6, 10)
    with pytest.raises(KeyError):
        store.term(4)
    assert_consistent(store)


def test_snapshot_conflicting_entry_discards_the_whole_log(store: Storage) -> None:
    store.save(HardState(1, 0, 2), ents(1, 10))
    snap = Snapshot(index=5, term=2, data=b"other history")
    store.save(HardState(2, 0, 5), [], snap)
    assert store.first_index() == 6
    assert store.last_index() == 5
    assert store.term(5) == 2
    assert log_of(store) == []
    assert store.raft_state_size() == HARD_STATE_BYTES
    assert_consistent(store)


def test_snapshot_beyond_the_log_discards_it(store: Storage) -> None:
    store.save(None, ents(1, 3))
    store.save(HardState(3, 1, 20), [], Snapshot(20, 3, b"far ahead"))
    assert (store.first_index(), store.last_index()) == (21, 20)
    assert store.term(20) == 3
    store.save(None, ents(21, 22, term=3))
    assert log_of(store) == ents(21, 22, term=3)
    assert_consistent(store)


def test_snapshot_and_entries_in_one_save(harness: Harness) -> None:
    store = harness.store
    store.save(None, ents(1, 4))
    snap = Snapshot(8, 2, b"snap8")
    store.save(HardState(2, 0, 9), ents(9, 12, term=2), snap)
    assert store.first_index() == 9
    assert log_of(store) == ents(9, 12, term=2)
    with pytest.raises(ValueError):
        store.save(None, ents(8, 8, term=2), None)  # at the snapshot index
    store = harness.reopen()
    assert store.snapshot() == snap
    assert log_of(store) == ents(9, 12, term=2)
    assert_consistent(store)


def test_older_snapshot_refused(store: Storage) -> None:
    store.save(None, ents(1, 10))
    store.compact(Snapshot(6, 1, b"s6"))
    with pytest.raises(ValueError):
        store.save(None, [], Snapshot(5, 1, b"s5"))
    with pytest.raises(ValueError):
        store.compact(Snapshot(5, 1, b"s5"))
    assert store.snapshot() == Snapshot(6, 1, b"s6")


def test_compact_keeps_later_entries(harness: Harness) -> None:
    store = harness.store
    store.save(HardState(3, 0, 10), ents(1, 5) + ents(6, 10, term=3))
    store.compact(Snapshot(7, 3, b"app@7"))
    assert store.first_index() == 8
    assert log_of(store) == ents(8, 10, term=3)
    assert store.term(7) == 3
    assert store.snapshot_size() == len(b"app@7")
    # Compacting again, up to the last entry, then appending after it.
    store.compact(Snapshot(10, 3, b"app@10!"))
    assert log_of(store) == []
    assert (store.first_index(), store.last_index()) == (11, 10)
    store.save(None, ents(11, 12, term=4))
    store = harness.reopen()
    assert store.snapshot() == Snapshot(10, 3, b"app@10!")
    assert log_of(store) == ents(11, 12, term=4)
    assert_consistent(store)


@pytest.mark.parametrize(
    "snap",
    [Snapshot(11, 1, b""), Snapshot(5, 2, b""), Snapshot(0, 0, b"")],
    ids=["beyond-last", "term-mismatch", "older"],
)
def test_compact_refusals(store: Storage, snap: Snapshot) -> None:
    store.save(None, ents(1, 10))
    store.compact(Snapshot(2, 1, b"s2"))
    before = store.initial_state()
    with pytest.raises(ValueError):
        store.compact(snap)
    assert store.initial_state() == before


def test_compact_same_index_replaces_the_data(store: Storage) -> None:
    store.save(None, ents(1, 4))
    store.compact(Snapshot(3, 1, b"v1"))
    store.compact(Snapshot(3, 1, b"version two"))
    assert store.snapshot() == Snapshot(3, 1, b"version two")
    assert log_of(store) == ents(4, 4)


# ------------------------------------------------------------------------------ sizes


def test_raft_state_size_tracks_the_log(store: Storage) -> None:
    base = store.raft_state_size()
    assert base == HARD_STATE_BYTES
    store.save(HardState(1, 0, 0), ents(1, 10))
    grown = store.raft_state_size()
    assert grown == expected_size(ents(1, 10))
    store.save(None, [Entry(1, 11, b"z" * 1000)])
    assert store.raft_state_size() == grown + 1000 + ENTRY_OVERHEAD_BYTES
    store.save(None, ents(11, 11))  # replaces the big entry
    assert store.raft_state_size() == expected_size(ents(1, 11))
    store.compact(Snapshot(6, 1, b"x" * 5000))
    assert store.raft_state_size() == expected_size(ents(7, 11))
    assert store.snapshot_size() == 5000
    store.save(None, [], Snapshot(20, 2, b"y" * 10))
    assert store.raft_state_size() == HARD_STATE_BYTES
    assert store.snapshot_size() == 10


def test_raft_state_size_is_small_for_small_entries(store: Storage) -> None:
    # TESTS.md bounds raft state for ~10 small entries to < 2000 bytes.
    store.save(HardState(5, 1, 10), [Entry(5, i, b"put k%d v%d" % (i, i)) for i in range(1, 11)])
    assert store.raft_state_size() < 400


# ------------------------------------------------------------------------------ restart


def test_reopen_yields_identical_state(harness: Harness) -> None:
    store = harness.store
    store.save(HardState(2, 1, 4), ents(1, 4) + ents(5, 9, term=2))
    store.compact(Snapshot(3, 1, b"snap"))
    store.save(HardState(3, 2, 6), ents(8, 12, term=3))
    before = (store.initial_state(), store.raft_state_size(), store.snapshot_size(),
              store.first_index(), store.last_index())
    store = harness.reopen()
    after = (store.initial_state(), store.raft_state_size(), store.snapshot_size(),
             store.first_index(), store.last_index())
    assert after == before
    assert_consistent(store)


def test_initial_state_after_writes_is_fresh(harness: Harness) -> None:
    store = harness.reopen()
    first = store.initial_state()
    store.save(HardState(1, 0, 0), ents(1, 2))
    assert store.initial_state() != first
    assert store.initial_state().entries == tuple(ents(1, 2))

