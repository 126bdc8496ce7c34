"""Raft safety invariants, checked over the peers of a cluster for the length of a run.

The checks follow the paper's Figure 3 ("Raft guarantees that each of these properties is true
at all times") plus the driver-level properties the simulator can see:

* **Election safety** — at most one leader per term, over the whole run.
* **Log matching** — if two logs hold an entry with the same index and term, the logs are
  identical (terms and data) up to that index, as far as both still retain entries.
* **Leader completeness** — an entry committed by any peer is present, with the same term, in
  the log of every leader of a later term (compacted into its snapshot counts as present).
* **State-machine safety** — no two peers apply different entries at one index; applied
  prefixes agree (compared through a digest of the applied prefix that snapshots carry too).
* **Monotonicity** — a peer's commit index never decreases during its lifetime; its persisted
  commit index and term never decrease across crashes; it never votes twice in one term.
* **Apply order** — each peer applies consecutive indexes (a snapshot may jump forward).

Two ways in:

* `ClusterChecker` is stateful and incremental: a driver reports what happened (an entry
  persisted, the commit index moved, an entry applied, a leader seen) and every report is
  checked in time proportional to the change, so a simulator can afford to check after every
  event. It remembers the run's history (leaders by term, committed and applied entries).
* `check_log_matching`, `check_leader_has_committed` and `ClusterChecker.check_logs` are
  full, stateless scans over whole logs, to cross-check the incremental bookkeeping against
  the peers' actual state.

Every broken invariant raises `InvariantViolation`, an `AssertionError` whose message names
the invariant, the peers, indexes and terms involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol, Sequence

from ruaft.core.types import NO_PEER, Entry, HardState, PeerId

__all__ = [
    "InvariantViolation",
    "LogView",
    "StaticLog",
    "ClusterChecker",
    "check_log_matching",
    "check_leader_has_committed",
]


class InvariantViolation(AssertionError):
    """A Raft safety invariant does not hold. `invariant` names which one."""

    def __init__(self, invariant: str, detail: str):
        super().__init__(f"{invariant} violated: {detail}")
        self.invariant = invariant
        self.detail = detail


class LogView(Protocol):
    """What the checks read of a log. `ruaft.core.log.RaftLog` satisfies it, as does
    `StaticLog`. `term(i)` is None for indexes neither retained nor the snapshot's."""

    @property
    def snapshot_index(self) -> int: ...

    @property
    def snapshot_term(self) -> int: ...

    @property
    def last_index(self) -> int: ...

    def term(self, index: int) -> int | None: ...

    def entry(self, index: int) -> Entry: ...


@dataclass(frozen=True)
class StaticLog:
    """An immutable log value (snapshot prefix + retained entries), for tests and dumps."""

    entries: tuple[Entry, ...] = ()
    snapshot_index: int = 0
    snapshot_term: int = 0

    @classmethod
    def of(cls, *terms: int, snapshot_index: int = 0, snapshot_term: int = 0) -> StaticLog:
        """A log whose entries after the snapshot have the given terms and data `b"i:t"`."""
        first = snapshot_index + 1
        return cls(
            tuple(Entry(t, first + k, f"{first + k}:{t}".encode()) for k, t in enumerate(terms)),
            snapshot_index,
            snapshot_term,
        )

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    def term(self, index: int) -> int | None:
        if index == self.snapshot_index:
            return self.snapshot_term
        offset = index - self.snapshot_index - 1
        if 0 <= offset < len(self.entries):
            return self.entries[offset].term
        return None

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.snapshot_index - 1]


# ------------------------------------------------------------------------------ stateless scans


def check_log_matching(logs: Mapping[PeerId, LogView]) -> None:
    """Log matching over every pair of logs, on the entries both retain.

    For each pair, scan their common retained range from the top down: below the highest index
    where both hold the same term, every index must hold the same term and the same data (the
    snapshot position compares terms only: its data is gone). O(pairs × common length).
    """
    peers = sorted(logs)
    for n, a in enumerate(peers):
        la = logs[a]
        for b in peers[n + 1:]:
            lb = logs[b]
            lo = max(la.snapshot_index, lb.snapshot_index)
            hi = min(la.last_index, lb.last_index)
            matched_at = 0  # highest index seen with equal terms (0: none yet)
            for index in range(hi, lo - 1, -1):
                ta, tb = la.term(index), lb.term(index)
                if ta is None or tb is None:
                    continue
                if ta == tb:
                    if matched_at == 0:
                        matched_at = index
                    if index > la.snapshot_index and index > lb.snapshot_index:
                        da, db = la.entry(index).data, lb.entry(index).data
                        if da != db:
                            raise InvariantViolation(
                                "log matching",
                                f"peers {a} and {b} both hold index {index} term {ta} "
                                f"with different data {da!r} / {db!r}",
                            )
                elif matched_at:
                    raise InvariantViolation(
                        "log matching",
                        f"peers {a} and {b} agree at index {matched_at} (term "
                        f"{la.term(matched_at)}) but differ below it at index {index}: "
                        f"term {ta} vs {tb}",
                    )


def check_leader_has_committed(
    leader: PeerId, leader_term: int, log: LogView, committed: Mapping[int, int]
) -> None:
    """Leader completeness for one leader: every index in `committed` (index → term of the
    committed entry) is in `log` with that term; indexes at or below the log's snapshot count
    as present (only the snapshot's own index still has a term to compare)."""
    for index, term in committed.items():
        if index < log.snapshot_index:
            continue
        held = log.term(index)
        if held != term:
            raise InvariantViolation(
                "leader completeness",
                f"leader {leader} of term {leader_term} holds "
                f"{'no entry' if held is None else f'term {held}'} at index {index}, "
                f"where an entry of term {term} was committed",
            )


# ------------------------------------------------------------------------------ the run's history


@dataclass(slots=True)
class _Committed:
    """The entry known committed at one index. `data` is None when only a snapshot covering
    the index was seen. `threshold`: leaders of terms above it must hold the entry — the term
    the observing peer was in (≥ the term the entry was committed in, so never too strict)."""

    term: int
    data: bytes | None
    threshold: int


@dataclass(slots=True)
class _PeerRecord:
    """What the checker remembers of one peer. `commit` and `applied` are per lifetime;
    `persisted` survives crashes, as the disk does."""

    alive: bool = True
    commit: int = 0
    applied: int = 0
    persisted: HardState = field(default_factory=HardState)
    leader_term: int = 0  # the term it is leader in, 0 when it is not leader
    leader_log: LogView | None = None


class ClusterChecker:
    """Incremental checker of the safety invariants of one run of a cluster.

    Contract for the driver, per peer, in the order events happen:

    * `on_start(peer, log, commit)` when a peer (re)starts from its storage;
    * `on_persist(peer, hard_state, entries, prev_term)` after each durable write, with the
      entries written and the term of the entry just before the first of them;
    * `on_state(peer, term, is_leader, commit, log)` after each event that touched the peer
      (the log object may be the live one: leaders' logs are re-read when entries commit);
    * `on_apply_entry(peer, entry, digest)` / `on_apply_snapshot(peer, index, term, digest)`
      for what the state machine applies, `digest` being the application's digest of its
      state after applying (equal prefixes ⇒ equal digests);
    * `on_crash(peer)` when the peer loses its volatile state.

    Everything raises `InvariantViolation` at the first report that breaks an invariant.
    """

    def __init__(self, peers: Iterable[PeerId]):
        self.peers: tuple[PeerId, ...] = tuple(sorted(peers))
        self.leaders: dict[int, PeerId] = {}
        """term → the peer that was leader in it (election safety, over the whole run)."""
        self.committed: dict[int, _Committed] = {}
        """index → the entry committed there, as first observed by any peer."""
        self.max_commit = 0
        """The highest commit index any peer has reached so far."""
        self.applied: dict[int, tuple[int, bytes]] = {}
        """index → (term, data) applied there by the first peer that applied it."""
        self.digests: dict[int, bytes] = {}
        """index → the application digest after applying through it."""
        self._entries: dict[tuple[int, int], tuple[bytes, int]] = {}
        # (index, term) → (data, term of index - 1) of every entry ever persisted by any peer:
        # two logs holding (index, term) agree on both, inductively the whole prefix matches.
        self._peers: dict[PeerId, _PeerRecord] = {p: _PeerRecord() for p in self.peers}

    # -------------------------------------------------------------------- lifecycle

    def on_start(self, peer: PeerId, log: LogView, commit: int) -> None:
        """A peer starts from durable state. Its committed prefix must agree with what the
        cluster committed (so a restart cannot resurrect a different history)."""
        record = self._peers[peer]
        record.alive = True
        record.commit = commit
        record.applied = 0
        record.leader_term = 0
        record.leader_log = None
        self._record_commit(peer, log, 0, commit, threshold=self._term_hint(peer))

    def on_crash(self, peer: PeerId) -> None:
        record = self._peers[peer]
        record.alive = False
        record.leader_term = 0
        record.leader_log = None

    def _term_hint(self, peer: PeerId) -> int:
        return self._peers[peer].persisted.term

    # -------------------------------------------------------------------- persistence

    def on_persist(
        self,
        peer: PeerId,
        hard_state: HardState,
        entries: Sequence[Entry] = (),
        prev_term: int = 0,
    ) -> None:
        """A durable write finished: `hard_state` is what storage now holds, `entries` what it
        appended (consecutive), `prev_term` the term of the entry before `entries[0]`."""
        record = self._peers[peer]
        old = record.persisted
        if hard_state.term < old.term:
            raise InvariantViolation(
                "persisted term monotonic",
                f"peer {peer} persisted term {hard_state.term} after {old.term}",
            )
        if hard_state.commit < old.commit:
            raise InvariantViolation(
                "persisted commit monotonic",
                f"peer {peer} persisted commit {hard_state.commit} after {old.commit}",
            )
        if (
            hard_state.term == old.term
            and old.vote != NO_PEER
            and hard_state.vote != old.vote
        ):
            raise InvariantViolation(
                "one vote per term",
                f"peer {peer} voted for {old.vote} and then {hard_state.vote} "
                f"in term {old.term}",
            )
        record.persisted = hard_state
        for entry in entries:
            self._check_entry(peer, entry, prev_term)
            prev_term = entry.term

    def _check_entry(self, peer: PeerId, entry: Entry, prev_term: int) -> None:
        key = (entry.index, entry.term)
        seen = self._entries.get(key)
        if seen is None:
            self._entries[key] = (entry.data, prev_term)
            return
        data, seen_prev = seen
        if data != entry.data:
            raise InvariantViolation(
                "log matching",
                f"peer {peer} persisted index {entry.index} term {entry.term} with data "
                f"{entry.data!r}, another peer holds {data!r} there",
            )
        if seen_prev != prev_term:
            raise InvariantViolation(
                "log matching",
                f"peer {peer} holds index {entry.index} term {entry.term} after an entry of "
                f"term {prev_term}, another peer after one of term {seen_prev}",
            )

    # -------------------------------------------------------------------- role and commit

    def on_state(
        self, peer: PeerId, term: int, is_leader: bool, commit: int, log: LogView
    ) -> None:
        """The peer's volatile state after an event that touched it."""
        record = self._peers[peer]
        if is_leader:
            if record.leader_term != term:
                self.observe_leader(peer, term, log)
            record.leader_log = log
        else:
            record.leader_term = 0
            record.leader_log = None
        if commit < record.commit:
            raise InvariantViolation(
                "commit index monotonic",
                f"peer {peer}'s commit index went from {record.commit} back to {commit}",
            )
        if commit > record.commit:
            self._record_commit(peer, log, record.commit, commit, threshold=term)
            record.commit = commit

    def observe_leader(self, peer: PeerId, term: int, log: LogView | None = None) -> None:
        """`peer` is leader in `term`. Checks election safety and, given its log, leader
        completeness against everything committed in earlier terms."""
        other = self.leaders.setdefault(term, peer)
        if other != peer:
            raise InvariantViolation(
                "election safety", f"peers {other} and {peer} were both leader in term {term}"
            )
        record = self._peers.get(peer)
        if record is not None:
            record.leader_term = term
            record.leader_log = log
        if log is not None:
            check_leader_has_committed(peer, term, log, self._committed_before(term, log))

    def _committed_before(self, term: int, log: LogView) -> dict[int, int]:
        """index → term of the committed entries a leader of `term` must hold, from its
        snapshot index on (below it they are compacted, which counts as present)."""
        must_hold: dict[int, int] = {}
        committed = self.committed
        for index in range(log.snapshot_index, self.max_commit + 1):
            c = committed.get(index)
            if c is not None and c.threshold < term:
                must_hold[index] = c.term
        return must_hold

    def _record_commit(
        self, peer: PeerId, log: LogView, old: int, new: int, *, threshold: int
    ) -> None:
        """Entries old+1..new are committed according to `peer`. Record them (index → term,
        data), check they agree with what others committed, and that current leaders of later
        terms hold them."""
        self.max_commit = max(self.max_commit, new)
        start = max(old + 1, log.snapshot_index)
        for index in range(start, new + 1):
            term = log.term(index)
            if term is None:
                raise InvariantViolation(
                    "commit within log",
                    f"peer {peer} has commit index {new} but no entry at index {index} "
                    f"(snapshot {log.snapshot_index}, last {log.last_index})",
                )
            data = log.entry(index).data if index > log.snapshot_index else None
            known = self.committed.get(index)
            if known is None:
                known = self.committed[index] = _Committed(term, data, threshold)
                self._check_leaders_hold(index, known)
                continue
            if known.term != term or (
                data is not None and known.data is not None and known.data != data
            ):
                raise InvariantViolation(
                    "state-machine safety",
                    f"peer {peer} committed index {index} term {term} data {data!r}; "
                    f"term {known.term} data {known.data!r} was committed there before",
                )
            if known.data is None:
                known.data = data
            if threshold < known.threshold:
                known.threshold = threshold
                self._check_leaders_hold(index, known)

    def _check_leaders_hold(self, index: int, committed: _Committed) -> None:
        for peer, record in self._peers.items():
            log = record.leader_log
            if log is not None and record.leader_term > committed.threshold:
                if index >= log.snapshot_index:
                    check_leader_has_committed(
                        peer, record.leader_term, log, {index: committed.term}
                    )

    # -------------------------------------------------------------------- application

    def on_apply_entry(self, peer: PeerId, entry: Entry, digest: bytes) -> None:
        """`peer`'s state machine applied `entry`; `digest` is its state's digest after it."""
        record = self._peers[peer]
        if entry.index != record.applied + 1:
            raise InvariantViolation(
                "apply order",
                f"peer {peer} applied index {entry.index} right after {record.applied}",
            )
        record.applied = entry.index
        seen = self.applied.setdefault(entry.index, (entry.term, entry.data))
        if seen != (entry.term, entry.data):
            raise InvariantViolation(
                "state-machine safety",
                f"peer {peer} applied index {entry.index} term {entry.term} data "
                f"{entry.data!r}; another peer applied term {seen[0]} data {seen[1]!r}",
            )
        self._check_digest(peer, entry.index, digest)

    def on_apply_snapshot(self, peer: PeerId, index: int, term: int, digest: bytes) -> None:
        """`peer`'s state machine was replaced by a snapshot through `index` (of `term`)."""
        record = self._peers[peer]
        if index <= record.applied:
            raise InvariantViolation(
                "apply order",
                f"peer {peer} installed a snapshot at {index} after applying {record.applied}",
            )
        record.applied = index
        seen = self.applied.get(index)
        if seen is not None and seen[0] != term:
            raise InvariantViolation(
                "state-machine safety",
                f"peer {peer} installed a snapshot at index {index} term {term}; "
                f"an entry of term {seen[0]} was applied there",
            )
        self._check_digest(peer, index, digest)

    def _check_digest(self, peer: PeerId, index: int, digest: bytes) -> None:
        seen = self.digests.setdefault(index, digest)
        if seen != digest:
            raise InvariantViolation(
                "applied prefixes agree",
                f"peer {peer}'s state after applying through index {index} differs from "
                f"another peer's ({digest.hex()} vs {seen.hex()})",
            )

    # -------------------------------------------------------------------- full scans

    def check_logs(self, logs: Mapping[PeerId, LogView], commits: Mapping[PeerId, int]) -> None:
        """Full cross-check of live peers' actual logs (slower; call now and then): pairwise
        log matching, every retained committed entry agrees with the run's record, and
        current leaders hold everything committed below their term."""
        check_log_matching(logs)
        for peer, log in logs.items():
            for index in range(log.snapshot_index + 1, min(commits[peer], log.last_index) + 1):
                known = self.committed.get(index)
                entry = log.entry(index)
                if known is None or known.term != entry.term or (
                    known.data is not None and known.data != entry.data
                ):
                    raise InvariantViolation(
                        "state-machine safety",
                        f"peer {peer}'s committed entry {index} (term {entry.term}) is not the "
                        f"one recorded as committed there ({known})",
                    )
            record = self._peers[peer]
            if record.leader_log is not None:
                check_leader_has_committed(
                    peer, record.leader_term, log, self._committed_before(record.leader_term, log)
                )
