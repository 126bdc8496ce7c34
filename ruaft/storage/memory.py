"""`MemoryStorage`: the `Storage` contract on plain Python lists.

Used by the deterministic simulator and by unit tests. "Durable" here means "held by this
object": a simulated crash keeps the object and rebuilds the core from `initial_state()`, so
the object plays the role of the disk and outlives any number of simulated restarts.
"""

from __future__ import annotations

from typing import Sequence

from ruaft.core.types import Entry, HardState, InitialState, Snapshot
from ruaft.storage.common import (
    HARD_STATE_BYTES,
    check_compact,
    check_entries_range,
    check_hard_state,
    entry_size,
    plan_save,
)


class MemoryStorage:
    """In-memory `Storage`.

    Costs: `save()` is O(new entries + entries discarded); `compact()` is amortized
    O(discarded) (the list keeps a dead prefix and is trimmed once that prefix is at least
    half the list); `term()` O(1); `entries(lo, hi)` O(hi - lo); `raft_state_size()` O(1).

    `close()` is a no-op: the object stays usable so a simulated peer can be restarted on it.
    """

    __slots__ = ("_hard", "_snapshot", "_snap_index", "_snap_term", "_log", "_start",
                 "_entry_bytes")

    def __init__(self) -> None:
        self._hard = HardState()
        self._snapshot: Snapshot | None = None
        self._snap_index = 0
        self._snap_term = 0
        # Retained entry with index i lives at self._log[self._start + i - self._snap_index - 1].
        # Entries in self._log[:self._start] are dead (compacted) and trimmed lazily.
        self._log: list[Entry] = []
        self._start = 0
        self._entry_bytes = 0  # sum(entry_size(e)) over retained entries

    # ---------------------------------------------------------------------------- reads

    def initial_state(self) -> InitialState:
        return InitialState(
            hard_state=self._hard,
            snapshot=self._snapshot,
            entries=tuple(self._log[self._start:]),
        )

    def first_index(self) -> int:
        return self._snap_index + 1

    def last_index(self) -> int:
        return self._snap_index + len(self._log) - self._start

    def _pos(self, index: int) -> int:
        return self._start + index - self._snap_index - 1

    def _term_of_stored(self, index: int) -> int:
        return self._log[self._pos(index)].term

    def term(self, index: int) -> int:
        if index == self._snap_index:
            return self._snap_term
        if self._snap_index < index <= self.last_index():
            return self._term_of_stored(index)
        raise KeyError(
            f"no term for index {index}: retained range is "
            f"[{self._snap_index}, {self.last_index()}]"
        )

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        check_entries_range(lo, hi, self.first_index(), self.last_index())
        if lo == hi:
            return []
        window = self._log[self._pos(lo):self._pos(hi)]
        if max_bytes is None:
            return window
        total = 0
        for n, e in enumerate(window):
            total += entry_size(e)
            if total > max_bytes and n > 0:  # always return at least one entry
                return window[:n]
        return window

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def hard_state(self) -> HardState:
        return self._hard

    def raft_state_size(self) -> int:
        """HARD_STATE_BYTES + Σ entry_size(e) over retained entries (see `storage.common`)."""
        return HARD_STATE_BYTES + self._entry_bytes

    def snapshot_size(self) -> int:
        return len(self._snapshot.data) if self._snapshot is not None else 0

    # ---------------------------------------------------------------------------- writes

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        """See `Storage.save`. Raises ValueError (and changes nothing) on a contract breach."""
        plan = plan_save(
            snap_index=self._snap_index,
            snap_term=self._snap_term,
            last_index=self.last_index(),
            term_at=self._term_of_stored,
            hard_state=self._hard,
            new_hard_state=hard_state,
            entries=entries,
            snapshot=snapshot,
        )
        if plan.snapshot is not None:
            if plan.keep_after_snapshot:
                self._drop_through(plan.snapshot.index)
            else:
                self._log = []
                self._start = 0
                self._entry_bytes = 0
            self._snapshot = plan.snapshot
            self._snap_index = plan.snap_index
            self._snap_term = plan.snap_term
        if plan.truncate_from is not None:
            cut = self._pos(plan.truncate_from)
            for e in self._log[cut:]:
                self._entry_bytes -= entry_size(e)
            del self._log[cut:]
            self._log.extend(entries)
            for e in entries:
                self._entry_bytes += entry_size(e)
        self._hard = plan.hard_state

    def compact(self, snapshot: Snapshot) -> None:
        """See `Storage.compact`. Raises ValueError unless snapshot index ≤ last index, not
        older than the stored snapshot, and its term matches the log's term at its index."""
        check_compact(
            snap_index=self._snap_index,
            snap_term=self._snap_term,
            last_index=self.last_index(),
            term_at=self._term_of_stored,
            snapshot=snapshot,
        )
        self._drop_through(snapshot.index)
        self._snapshot = snapshot
        self._snap_index = snapshot.index
        self._snap_term = snapshot.term

    def _drop_through(self, index: int) -> None:
        """Discard retained entries ≤ index (index ≥ snapshot index, ≤ last index)."""
        new_start = self._pos(index + 1)
        for e in self._log[self._start:new_start]:
            self._entry_bytes -= entry_size(e)
        self._start = new_start
        # Trim the dead prefix only once it is at least half the list: amortized O(discarded).
        if self._start and self._start * 2 >= len(self._log):
            del self._log[:self._start]
            self._start = 0

    def close(self) -> None:
        """No-op: the in-memory "disk" survives, so a simulated peer can restart on it."""
