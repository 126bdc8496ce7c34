"""The core's view of the replicated log: a snapshot prefix plus retained entries in memory.

The log is kept whole in memory (compaction keeps it short), so the core never reads
storage after start-up and stays a pure function of its inputs. What has not yet been handed
to the driver for persistence is tracked by `unstable_from`.
"""

from __future__ import annotations

from typing import Sequence

from ruaft.core.types import Entry, RaftInvariantError, Snapshot


class RaftLog:
    """Log entries `snapshot_index + 1 .. last_index`, and the commit and apply cursors.

    Invariants (checked where they could break): entries are consecutive from
    `snapshot_index + 1`; `snapshot_index <= applied_index <= commit_index <= last_index` once
    the start-up snapshot has been handed out; `commit_index` never decreases.
    """

    __slots__ = (
        "snapshot",
        "snapshot_index",
        "snapshot_term",
        "_entries",
        "commit_index",
        "applied_index",
        "unstable_from",
    )

    def __init__(self, snapshot: Snapshot | None, entries: Sequence[Entry], commit_index: int):
        self.snapshot = snapshot
        self.snapshot_index = snapshot.index if snapshot else 0
        self.snapshot_term = snapshot.term if snapshot else 0
        self._entries: list[Entry] = list(entries)
        for offset, entry in enumerate(self._entries):
            if entry.index != self.snapshot_index + 1 + offset:
                raise RaftInvariantError(
                    f"log entries not consecutive after snapshot {self.snapshot_index}: "
                    f"entry {offset} has index {entry.index}"
                )
        self.commit_index = max(commit_index, self.snapshot_index)
        if self.commit_index > self.last_index:
            raise RaftInvariantError(
                f"commit index {self.commit_index} beyond last index {self.last_index}"
            )
        self.applied_index = self.snapshot_index
        self.unstable_from = self.last_index + 1  # everything given to us is already durable

    # ---------------------------------------------------------------------------- reading

    @property
    def first_index(self) -> int:
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot_term

    def term(self, index: int) -> int | None:
        """Term of the entry at `index`, or None when it is compacted away or not there yet."""
        if index == self.snapshot_index:
            return self.snapshot_term
        offset = index - self.snapshot_index - 1
        if offset < 0 or offset >= len(self._entries):
            return None
        return self._entries[offset].term

    def entry(self, index: int) -> Entry:
        return self._entries[index - self.snapshot_index - 1]

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi), capped at `max_bytes` of data but always at least one entry."""
        start = lo - self.snapshot_index - 1
        stop = hi - self.snapshot_index - 1
        if start < 0:
            raise RaftInvariantError(f"slice from {lo} reaches into snapshot {self.snapshot_index}")
        if max_bytes is None:
            return self._entries[start:stop]
        out: list[Entry] = []
        size = 0
        for entry in self._entries[start:stop]:
            size += len(entry.data)
            if out and size > max_bytes:
                break
            out.append(entry)
        return out

    def is_up_to_date(self, last_log_index: int, last_log_term: int) -> bool:
        """Paper §5.4.1: a candidate's log is at least as up-to-date as ours."""
        return last_log_term > self.last_term or (
            last_log_term == self.last_term and last_log_index >= self.last_index
        )

    def first_index_of_term(self, index: int) -> int:
        """The first retained index whose term equals the term at `index` (for the back-off
        hint of paper §5.3)."""
        term = self.term(index)
        while index - 1 > self.snapshot_index and self.term(index - 1) == term:
            index -= 1
        return index

    def last_index_of_term(self, term: int, at_most: int) -> int | None:
        """The last retained index ≤ `at_most` holding `term`, or None."""
        index = min(at_most, self.last_index)
        while index > self.snapshot_index:
            entry_term = self.term(index)
            assert entry_term is not None
            if entry_term == term:
                return index
            if entry_term < term:
                return None
            index -= 1
        return None

    def unstable_entries(self) -> list[Entry]:
        return self._entries[self.unstable_from - self.snapshot_index - 1:]

    def entries_to_apply(self) -> list[Entry]:
        if self.commit_index <= self.applied_index:
            return []
        return self.slice(self.applied_index + 1, self.commit_index + 1)

    # ---------------------------------------------------------------------------- writing

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries that continue the log (a leader's proposals)."""
        if entries and (
            entries[0].index != self.last_index + 1
            or entries[-1].index != entries[0].index + len(entries) - 1
        ):
            raise RaftInvariantError(
                f"append of {entries[0].index}..{entries[-1].index} ({len(entries)} entries) "
                f"does not continue log ending at {self.last_index}"
            )
        self._entries.extend(entries)

    def maybe_append(self, prev_log_index: int, entries: Sequence[Entry]) -> int:
        """Merge a leader's entries that follow `prev_log_index` (already known to match).

        Paper Figure 2, AppendEntries receiver rules 3 and 4: an existing entry that conflicts
        (same index, different term) is deleted with all that follow; entries not already in
        the log are appended. Entries that already match are left alone, so a stale,
        reordered AppendEntries never truncates what a newer one appended.
        Returns the index of the last entry the message covered (now known to match).
        """
        for position, entry in enumerate(entries):
            existing = self.term(entry.index)
            if existing == entry.term:
                continue
            if existing is not None:
                if entry.index <= self.commit_index:
                    raise RaftInvariantError(
                        f"leader's entry {entry.index} (term {entry.term}) conflicts with "
                        f"committed entry of term {existing}"
                    )
                self._truncate_from(entry.index)
            self.append(entries[position:])
            break
        return prev_log_index + len(entries)

    def _truncate_from(self, index: int) -> None:
        del self._entries[index - self.snapshot_index - 1:]
        self.unstable_from = min(self.unstable_from, index)

    def commit_to(self, index: int) -> bool:
        """Advance the commit index; returns whether it moved. Never moves it back."""
        if index <= self.commit_index:
            return False
        if index > self.last_index:
            raise RaftInvariantError(f"commit {index} beyond last index {self.last_index}")
        self.commit_index = index
        return True

    def restore(self, snapshot: Snapshot) -> None:
        """Install a leader's snapshot (paper §7, InstallSnapshot receiver rules 6 and 7):
        keep the entries after it if the log has the snapshot's last entry, else drop all."""
        if self.term(snapshot.index) == snapshot.term:
            del self._entries[: snapshot.index - self.snapshot_index]
        else:
            self._entries = []
        self.snapshot = snapshot
        self.snapshot_index = snapshot.index
        self.snapshot_term = snapshot.term
        self.commit_index = max(self.commit_index, snapshot.index)
        self.applied_index = max(self.applied_index, snapshot.index)
        self.unstable_from = max(self.unstable_from, snapshot.index + 1)
        if not self._entries:
            self.unstable_from = snapshot.index + 1

    def compact(self, snapshot: Snapshot) -> None:
        """Drop entries up to an application snapshot at an applied index."""
        if snapshot.index > self.applied_index:
            raise RaftInvariantError(
                f"snapshot at {snapshot.index} beyond applied index {self.applied_index}"
            )
        if self.term(snapshot.index) != snapshot.term:
            raise RaftInvariantError(f"snapshot term {snapshot.term} differs from log's")
        del self._entries[: snapshot.index - self.snapshot_index]
        self.snapshot = snapshot
        self.snapshot_index = snapshot.index
        self.snapshot_term = snapshot.term
