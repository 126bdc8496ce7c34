"""Pieces shared by every `Storage` implementation: size accounting and write planning.

Both `MemoryStorage` and `LmdbStorage` count `raft_state_size()` the same way and accept or
refuse exactly the same writes, so the simulator (memory) and real peers (LMDB) agree, and a
property test can compare the two operation by operation.

Size accounting (what `raft_state_size()` reports)::

    raft_state_size = HARD_STATE_BYTES + sum(entry_size(e) for e in retained entries)
    HARD_STATE_BYTES = 28            # term u64 + vote i64 + commit u64 + CRC32
    entry_size(e)    = len(e.data) + ENTRY_OVERHEAD_BYTES
    ENTRY_OVERHEAD_BYTES = 20        # 8-byte index key + 4-byte CRC32 + 8-byte term

These are exactly the bytes `LmdbStorage` hands to LMDB for the hard state and for each log
record (key + value). LMDB's own page/B-tree overhead and the snapshot are not counted (the
snapshot is `snapshot_size()`).

Write planning: `plan_save` / `check_compact` check a write against the stored state *before*
anything is modified, so a refused write (ValueError) leaves the storage untouched, and no
write can produce a state that `LmdbStorage`'s open-time validation would call corrupt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ruaft.core.types import Entry, HardState, Snapshot

ENTRY_OVERHEAD_BYTES = 20
"""Per-entry bytes counted on top of the payload: 8-byte key (index), 4-byte CRC, 8-byte term."""

HARD_STATE_BYTES = 28
"""Encoded hard state: term (8), vote (8, signed), commit (8), CRC32 (4)."""

_U64_MAX = (1 << 64) - 1


def entry_size(entry: Entry) -> int:
    """Bytes one retained entry contributes to `raft_state_size()` (and to `max_bytes`)."""
    return len(entry.data) + ENTRY_OVERHEAD_BYTES


def check_hard_state(hs: HardState) -> None:
    """Refuse hard states that cannot be encoded (negative terms/indexes, vote below -1)."""
    if not (0 <= hs.term <= _U64_MAX and 0 <= hs.commit <= _U64_MAX):
        raise ValueError(f"hard state term/commit out of range: {hs}")
    if not (-1 <= hs.vote < (1 << 63)):
        raise ValueError(f"hard state vote out of range: {hs}")


@dataclass(frozen=True, slots=True)
class SavePlan:
    """What a validated `save()` will do, in terms both implementations can carry out.

    The effects, in order: if `snapshot` is set, it replaces the stored snapshot and every
    stored entry ≤ `snapshot.index` is dropped, and also every entry above it unless
    `keep_after_snapshot`; then, if `truncate_from` is set, stored entries ≥ `truncate_from`
    are dropped and `entries` appended; finally `hard_state` is stored.
    """

    snapshot: Snapshot | None
    keep_after_snapshot: bool
    truncate_from: int | None
    hard_state: HardState
    snap_index: int
    snap_term: int
    last_index: int


def plan_save(
    *,
    snap_index: int,
    snap_term: int,
    last_index: int,
    term_at: Callable[[int], int],
    hard_state: HardState,
    new_hard_state: HardState | None,
    entries: Sequence[Entry],
    snapshot: Snapshot | None,
) -> SavePlan:
    """Validate one `save()` against the stored state; raise ValueError if it breaks the contract.

    `term_at(i)` must return the stored term of entry i for snap_index < i ≤ last_index; it is
    called at most twice, so the cost of planning is O(len(entries)).

    Refused (ValueError): a snapshot older than the stored one; entries not consecutive, with
    decreasing terms, starting at or below the (new) snapshot index, leaving a gap after the
    last index, or with a first term below the term of the entry before; a final hard state
    whose commit index lies beyond the resulting last index (that would discard committed
    entries, and a store in that state is refused as corrupt at open).
    """
    si, st, li = snap_index, snap_term, last_index
    keep = False
    if snapshot is not None:
        if snapshot.index < 0 or snapshot.term < 0:
            raise ValueError(f"snapshot index/term out of range: {snapshot.index}/{snapshot.term}")
        if snapshot.index < si:
            raise ValueError(
                f"snapshot at index {snapshot.index} is older than the stored one at {si}"
            )
        if snapshot.index == si:
            keep = snapshot.term == st
        elif snapshot.index <= li:
            keep = term_at(snapshot.index) == snapshot.term
        # Paper §7: if the log holds the snapshot's last entry (same index and term), the
        # entries after it are retained; otherwise the whole log is discarded.
        si, st = snapshot.index, snapshot.term
        if not keep:
            li = si

    truncate_from: int | None = None
    if entries:
        first = entries[0].index
        if first <= si:
            raise ValueError(f"entries start at {first}, at or below the snapshot index {si}")
        if first > li + 1:
            raise ValueError(f"entries start at {first}, leaving a gap after last index {li}")
        prev_term = st if first - 1 == si else term_at(first - 1)
        for offset, e in enumerate(entries):
            if e.index != first + offset:
                raise ValueError(f"entries not consecutive: {e.index} after {first + offset - 1}")
            if e.term < prev_term:
                raise ValueError(f"entry {e.index} has term {e.term} below preceding {prev_term}")
            if e.term > _U64_MAX:
                raise ValueError(f"entry {e.index} term out of range")
            prev_term = e.term
        truncate_from = first
        li = entries[-1].index

    hs = new_hard_state if new_hard_state is not None else hard_state
    check_hard_state(hs)
    if hs.commit > li:
        raise ValueError(f"commit index {hs.commit} would lie beyond the last index {li}")
    return SavePlan(
        snapshot=snapshot,
        keep_after_snapshot=keep,
        truncate_from=truncate_from,
        hard_state=hs,
        snap_index=si,
        snap_term=st,
        last_index=li,
    )


def check_compact(
    *, snap_index: int, snap_term: int, last_index: int, term_at: Callable[[int], int],
    snapshot: Snapshot,
) -> None:
    """Validate `compact(snapshot)`: snap_index ≤ snapshot.index ≤ last_index and the stored
    term at snapshot.index equals snapshot.term (an application snapshot covers entries this
    log holds). Raise ValueError otherwise."""
    if snapshot.index < snap_index:
        raise ValueError(
            f"snapshot at index {snapshot.index} is older than the stored one at {snap_index}"
        )
    if snapshot.index > last_index:
        raise ValueError(f"snapshot index {snapshot.index} beyond last index {last_index}")
    stored = snap_term if snapshot.index == snap_index else term_at(snapshot.index)
    if stored != snapshot.term:
        raise ValueError(
            f"snapshot term {snapshot.term} differs from the log's term {stored} "
            f"at index {snapshot.index}"
        )


def check_entries_range(lo: int, hi: int, first_index: int, last_index: int) -> None:
    """Shared argument check of `entries(lo, hi)`: KeyError outside the retained range."""
    if lo > hi:
        raise ValueError(f"entries(lo={lo}, hi={hi}): lo > hi")
    if lo < first_index:
        raise KeyError(f"entries from {lo} requested; compacted up to {first_index - 1}")
    if hi > last_index + 1:
        raise KeyError(f"entries up to {hi - 1} requested; last index is {last_index}")
