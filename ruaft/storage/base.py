"""The storage contract between the Raft runtime and a durable store."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from ruaft.core.types import Entry, HardState, InitialState, Snapshot


class StorageError(Exception):
    """Storage could not do what was asked (I/O error, full disk). The runtime stops the peer."""


class StorageFullError(StorageError):
    """The device (or the store's size limit) is full. Nothing was written; the same write may
    succeed once space returns, so the runtime retries it instead of stopping the peer."""


class CorruptStorageError(StorageError):
    """The data directory is damaged or belongs to something else; the peer refuses to start.

    The message names the directory (and file) and the problem found.
    """


@runtime_checkable
class Storage(Protocol):
    """Durable Raft state: hard state, the retained log, and the latest snapshot.

    Ownership: the runtime is the only writer; the core never touches storage (it is built
    from `initial_state()` and keeps its own view of the log). Reads are used at start-up, by
    tests and by status reports. Implementations need not be thread-safe: one thread (the
    runtime's event loop) owns a storage object.

    Index invariants: the retained entries are consecutive, from `first_index()` (the snapshot
    index + 1, or 1) to `last_index()`; `last_index() == first_index() - 1` means none.

    Errors: a write that breaks this contract raises ValueError and changes nothing (a caller
    bug, not a storage failure); StorageError means the storage itself failed.
    """

    def initial_state(self) -> InitialState:
        """Everything a restarted core needs: hard state, snapshot (with data), entries."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def term(self, index: int) -> int:
        """Term of entry `index`; the snapshot's term at the snapshot index; raises KeyError
        outside [snapshot index, last_index]. Index 0 has term 0."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi). With `max_bytes`, stop before exceeding it (always at least one).

        Each entry counts `len(data)` + a fixed 20 bytes (`ruaft.storage.common.entry_size`,
        the same measure as `raft_state_size`). Raises KeyError unless
        first_index() ≤ lo ≤ hi ≤ last_index() + 1 (ValueError if lo > hi).
        """
        ...

    def snapshot(self) -> Snapshot | None: ...

    def hard_state(self) -> HardState: ...

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        """Persist one `Ready` in ONE durable write (fsync'd when it returns).

        Order of effects: `snapshot` replaces the stored one and discards every entry at or
        below its index (and, unless the entry at `snapshot.index` has `snapshot.term`, every
        entry above too: paper §7); then `entries` are written, replacing any stored suffix
        from `entries[0].index` on (which must be ≤ last_index() + 1 and > snapshot index);
        then `hard_state`. Cost is O(len(entries) + entries discarded), never O(log).

        Refused with ValueError (nothing written): a snapshot older than the stored one;
        entries not consecutive or with decreasing terms; and a resulting hard state whose
        `commit` exceeds the resulting last index (it would drop committed entries).
        """
        ...

    def compact(self, snapshot: Snapshot) -> None:
        """Store an application snapshot and discard entries ≤ its index (one durable write).

        The entries after the snapshot are kept; the snapshot index must be ≤ last_index(),
        not below the stored snapshot's, and `snapshot.term` must equal `term(snapshot.index)`
        (else ValueError, nothing written).
        """
        ...

    def raft_state_size(self) -> int:
        """Bytes of hard state + retained entries (what TESTS.md's bounds measure).

        Exactly: 28 (hard state: term, vote, commit as 8 bytes each + a 4-byte CRC) plus, per
        retained entry, len(data) + 20 (8-byte index, 8-byte term, 4-byte CRC). O(1).
        """
        ...

    def snapshot_size(self) -> int:
        """Bytes of the stored snapshot's data (0 when none)."""
        ...

    def close(self) -> None: ...
