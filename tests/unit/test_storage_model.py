"""Property test: LmdbStorage behaves exactly like MemoryStorage on random operation sequences.

Every operation (valid or not) is applied to both; both must succeed or both refuse with the
same exception type, and afterwards every observable agrees. Reopening the LMDB store (a
restart) must change nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ruaft.core.types import Entry, HardState, Snapshot
from ruaft.storage import LmdbStorage, MemoryStorage, Storage

payloads = st.binary(max_size=40)


class StorageComparison(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="ruaft-model-")
        # A tiny map also exercises map growth inside random sequences.
        self.lmdb: Storage = LmdbStorage(self.dir, cluster_id="model", map_size=32 << 10,
                                         sync=False)
        self.mem = MemoryStorage()
        self.ops = 0

    def teardown(self) -> None:
        self.lmdb.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -------------------------------------------------------------------------- helpers

    def both(self, op: Callable[[Storage], object]) -> None:
        outcomes = []
        for store in (self.mem, self.lmdb):
            try:
                outcomes.append(("ok", op(store)))
            except (ValueError, KeyError) as e:
                outcomes.append((type(e).__name__, None))
        assert outcomes[0] == outcomes[1], outcomes
        self.ops += 1

    def term_or_zero(self, index: int) -> int:
        try:
            return self.mem.term(index)
        except KeyError:
            return 0

    # -------------------------------------------------------------------------- rules

    @rule(data=st.data())
    def append(self, data: st.DataObject) -> None:
        m = self.mem
        # Usually start at a legal index (overwrite a suffix or append); sometimes anywhere.
        lo = data.draw(st.one_of(
            st.integers(m.first_index(), m.last_index() + 1),
            st.integers(max(0, m.first_index() - 2), m.last_index() + 3),
        ), label="start")
        count = data.draw(st.integers(0, 8), label="count")
        term = max(self.term_or_zero(lo - 1), m.hard_state().term)
        entries = []
        for i in range(lo, lo + count):
            term += data.draw(st.integers(0, 1))
            entries.append(Entry(term, i, data.draw(payloads)))
        hs: HardState | None = None
        if data.draw(st.booleans(), label="with hard state"):
            last = entries[-1].index if entries else m.last_index()
            hs = HardState(max(term, m.hard_state().term), data.draw(st.integers(-1, 4)),
                           data.draw(st.integers(0, max(0, last)), label="commit"))
        self.both(lambda s: s.save(hs, entries))

    @rule(data=st.data())
    def install_snapshot(self, data: st.DataObject) -> None:
        m = self.mem
        index = data.draw(st.integers(max(0, m.first_index() - 2), m.last_index() + 4))
        matching = data.draw(st.booleans(), label="matching term")
        term = self.term_or_zero(index) if matching else data.draw(st.integers(0, 6))
        snap = Snapshot(index, term, data.draw(payloads))
        entries = []
        if data.draw(st.booleans(), label="with entries"):
            entries = [Entry(term, index + k, data.draw(payloads)) for k in range(1, 4)]
        commit = data.draw(st.integers(0, index + len(entries)))
        hs = HardState(max(term, m.hard_state().term), -1, commit)
        self.both(lambda s: s.save(hs, entries, snap))

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        m = self.mem
        index = data.draw(st.integers(max(0, m.first_index() - 2), m.last_index() + 1))
        term = self.term_or_zero(index) + data.draw(st.sampled_from([0, 0, 0, 1]))
        snap = Snapshot(index, term, data.draw(payloads))
        self.both(lambda s: s.compact(snap))

    @rule(data=st.data())
    def set_hard_state(self, data: st.DataObject) -> None:
        hs = HardState(data.draw(st.integers(0, 9)), data.draw(st.integers(-1, 4)),
                       data.draw(st.integers(0, self.mem.last_index() + 1)))
        self.both(lambda s: s.save(hs, []))

    @rule(data=st.data())
    def read_entries(self, data: st.DataObject) -> None:
        m = self.mem
        lo = data.draw(st.integers(max(0, m.first_index() - 1), m.last_index() + 2))
        hi = data.draw(st.integers(lo - 1, m.last_index() + 2))
        max_bytes = data.draw(st.one_of(st.none(), st.integers(0, 200)))
        self.both(lambda s: s.entries(lo, hi, max_bytes))

    @precondition(lambda self: self.ops > 0)
    @rule()
    def reopen(self) -> None:
        before = self.lmdb.initial_state()
        self.lmdb.close()
        self.lmdb = LmdbStorage(self.dir, cluster_id="model", map_size=32 << 10, sync=False)
        assert self.lmdb.initial_state() == before

    # -------------------------------------------------------------------------- invariants

    @invariant()
    def same_observables(self) -> None:
        m, d = self.mem, self.lmdb
        assert d.first_index() == m.first_index()
        assert d.last_index() == m.last_index()
        assert d.hard_state() == m.hard_state()
        assert d.snapshot() == m.snapshot()
        assert d.raft_state_size() == m.raft_state_size()
        assert d.snapshot_size() == m.snapshot_size()
        assert d.initial_state() == m.initial_state()
        lo, hi = m.first_index(), m.last_index() + 1
        assert d.entries(lo, hi) == m.entries(lo, hi)
        for i in range(lo - 1, hi):
            assert d.term(i) == m.term(i)
        assert m.hard_state().commit <= m.last_index()


StorageComparison.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStorageComparison = StorageComparison.TestCase
