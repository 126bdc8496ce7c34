"""Values that cross the core's boundary: log entries, persistent state, messages, `Ready`.

Every type here is a frozen, slotted dataclass: the core, the storage, the transport codec and
the simulator all share these values and none may mutate what another handed it. Field names
follow the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable Consensus
Algorithm", Figure 2) and the thesis (Ongaro, "Consensus: Bridging Theory and Practice").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Union

PeerId = int
"""Peers are named by small non-negative integers, as in the original Ruaft."""

NO_PEER: PeerId = -1
"""Stands for "nobody": no vote cast, no leader known."""


class Role(Enum):
    """A peer's role (paper §5.1). PRE_CANDIDATE is the pre-vote phase (thesis §9.6)."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class RaftInvariantError(Exception):
    """A Raft safety invariant was broken inside this peer.

    Raised only for local bugs or corrupted local state, never for remote nonsense (which is
    dropped and counted). The runtime records it and `kill()` re-raises it, as etcd panics.
    """


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. `data` holds the encoded command; empty bytes mark a leader's no-op."""

    term: int
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class HardState:
    """The state that must be on stable storage before a peer answers any RPC (Figure 2).

    `commit` is persisted too (as etcd does) so a restarted peer does not re-apply from zero
    only to learn its commit index again; it is a hint, never trusted beyond the log.
    """

    term: int = 0
    vote: PeerId = NO_PEER
    commit: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state-machine snapshot covering the log up to and including `index` (paper §7)."""

    index: int
    term: int
    data: bytes


@dataclass(frozen=True, slots=True)
class InitialState:
    """What a (re)started core is built from; `Storage.initial_state()` returns it.

    `entries` are the retained log entries, consecutive, starting right after the snapshot
    (or at index 1 when there is no snapshot).
    """

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()


# --------------------------------------------------------------------------------------------
# Messages. Messages are one-way; a response is a message routed back to `from_peer`.


class MessageKind(IntEnum):
    """Wire tags of the Raft messages (stable: the codec writes them)."""

    REQUEST_VOTE = 1
    REQUEST_VOTE_RESPONSE = 2
    APPEND_ENTRIES = 3
    APPEND_ENTRIES_RESPONSE = 4
    INSTALL_SNAPSHOT = 5
    INSTALL_SNAPSHOT_RESPONSE = 6
    TIMEOUT_NOW = 7


@dataclass(frozen=True, slots=True)
class RequestVote:
    """RequestVote RPC (Figure 2), also used for the pre-vote round (thesis §9.6).

    For a pre-vote, `term` is the term the candidate *would* campaign in; the sender has not
    incremented its own term. `leadership_transfer` marks a campaign started by TimeoutNow
    (thesis §3.10), which voters grant even while they believe a leader is alive.
    """

    from_peer: PeerId
    to_peer: PeerId
    term: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    leadership_transfer: bool = False

    kind = MessageKind.REQUEST_VOTE


@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    from_peer: PeerId
    to_peer: PeerId
    term: int
    vote_granted: bool
    pre_vote: bool = False

    kind = MessageKind.REQUEST_VOTE_RESPONSE


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """AppendEntries RPC (Figure 2); with no entries it is a heartbeat.

    `seq` numbers the leader's broadcast rounds within its term; followers echo it, which lets
    the leader confirm its leadership for ReadIndex (thesis §6.4) without a log write.
    """

    from_peer: PeerId
    to_peer: PeerId
    term: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    seq: int = 0

    kind = MessageKind.APPEND_ENTRIES


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    """Reply to AppendEntries.

    `prev_log_index` echoes the request's, so the leader can tell a fresh answer from a stale
    one. On success `match_index` is the index of the last entry the follower now holds that is
    known to match the leader's log. On rejection the follower gives the fast back-off hint of
    the paper's §5.3 note: `conflict_term` is the term of its entry at `prev_log_index` (0 when
    its log is too short) and `conflict_index` the first index it holds of that term (or its
    last index + 1 when too short).
    """

    from_peer: PeerId
    to_peer: PeerId
    term: int
    success: bool
    prev_log_index: int = 0
    match_index: int = 0
    conflict_index: int = 0
    conflict_term: int = 0
    seq: int = 0

    kind = MessageKind.APPEND_ENTRIES_RESPONSE


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """InstallSnapshot RPC (Figure 13), sent in chunks: `data` is the bytes at `offset`."""

    from_peer: PeerId
    to_peer: PeerId
    term: int
    last_included_index: int
    last_included_term: int
    offset: int
    data: bytes
    done: bool
    seq: int = 0

    kind = MessageKind.INSTALL_SNAPSHOT


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse:
    """Reply to one InstallSnapshot chunk.

    `next_offset` is how many bytes of the snapshot at `last_included_index` the follower holds
    now, i.e. where the leader should resume; after the last chunk it is the snapshot's length
    and `match_index` is the snapshot's index. A follower that holds no transfer in progress
    answers `next_offset=0` so the leader restarts the transfer from the beginning.
    """

    from_peer: PeerId
    to_peer: PeerId
    term: int
    last_included_index: int
    next_offset: int
    done: bool = False
    match_index: int = 0
    seq: int = 0

    kind = MessageKind.INSTALL_SNAPSHOT_RESPONSE


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer (thesis §3.10): the receiver starts an election at once."""

    from_peer: PeerId
    to_peer: PeerId
    term: int

    kind = MessageKind.TIMEOUT_NOW


Message = Union[
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    TimeoutNow,
]

MESSAGE_TYPES: dict[MessageKind, type] = {
    MessageKind.REQUEST_VOTE: RequestVote,
    MessageKind.REQUEST_VOTE_RESPONSE: RequestVoteResponse,
    MessageKind.APPEND_ENTRIES: AppendEntries,
    MessageKind.APPEND_ENTRIES_RESPONSE: AppendEntriesResponse,
    MessageKind.INSTALL_SNAPSHOT: InstallSnapshot,
    MessageKind.INSTALL_SNAPSHOT_RESPONSE: InstallSnapshotResponse,
    MessageKind.TIMEOUT_NOW: TimeoutNow,
}

REQUEST_KINDS = frozenset(
    {MessageKind.REQUEST_VOTE, MessageKind.APPEND_ENTRIES, MessageKind.INSTALL_SNAPSHOT,
     MessageKind.TIMEOUT_NOW}
)
"""Kinds that are RPC requests (counted as RPCs by the test harness); the rest are replies."""


# --------------------------------------------------------------------------------------------
# The core's output.


@dataclass(frozen=True, slots=True)
class ReadState:
    """A confirmed ReadIndex request: once the application has applied `index`, a read tagged
    `context` may be served linearizably (thesis §6.4)."""

    index: int
    context: int


@dataclass(frozen=True, slots=True)
class Ready:
    """A batch of work the core hands to its driver. The driver MUST, in this order:

    1. persist `snapshot` (if any), then `entries` (the first entry's index may be at or below
       the stored last index: the stored suffix from there is replaced), then `hard_state`
       (if any) — all in ONE durable (fsync'd) write. **Nothing in `messages` may be sent before
       this write is durable**: votes and append acknowledgements promise the sender that the
       state they reflect survives a crash (paper Figure 2, "Persistent state ... updated on
       stable storage before responding to RPCs").
    2. send `messages` (best effort; Raft tolerates loss, duplication and reordering).
       One exception to "after": when the Ready changes neither term nor vote, a leader's
       AppendEntries and InstallSnapshot may be sent *before* its write (thesis §10.2.1):
       they depend only on the leader's log, which every follower persists before it
       acknowledges, and the leader counts its own entries only after `advance`;
    3. hand `apply_snapshot` (if any) and then `committed_entries`, in order, to the state
       machine; `read_states` may be served once their index has been applied, and the reads
       in `failed_reads` answered with an error;
    4. call `core.advance(ready)` — only after step 1 is durable, because `advance` is what
       tells a leader that its own entries now count toward a majority (thesis §10.2.1).

    The driver may call `advance` before the application has finished applying (it owns a
    separate apply queue), but must apply entries in exactly the order given across Readys.
    """

    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    messages: tuple[Message, ...] = ()
    committed_entries: tuple[Entry, ...] = ()
    apply_snapshot: Snapshot | None = None
    read_states: tuple[ReadState, ...] = ()
    failed_reads: tuple[int, ...] = ()
    """Contexts of ReadIndex requests that will never be confirmed (leadership was lost)."""

    def is_empty(self) -> bool:
        return not (
            self.hard_state is not None
            or self.entries
            or self.snapshot is not None
            or self.messages
            or self.committed_entries
            or self.apply_snapshot is not None
            or self.read_states
            or self.failed_reads
        )

    def must_persist(self) -> bool:
        return self.hard_state is not None or bool(self.entries) or self.snapshot is not None


@dataclass(frozen=True, slots=True)
class Config:
    """Tuning of the core, in ticks and bytes. The driver maps wall time to ticks.

    Defaults (with the runtime's 50 ms tick) give a 150 ms heartbeat and 300–600 ms randomized
    election timeouts, within the test suite's bounds (TESTS.md: ≤ 10 heartbeats/s, elect
    within 5 s).
    """

    heartbeat_ticks: int = 3
    election_ticks: int = 6
    """Shortest election timeout; each timeout is drawn uniformly from
    [election_ticks, election_ticks + election_jitter_ticks)."""
    election_jitter_ticks: int | None = None
    """Width of the randomization range (paper §5.2); None means `election_ticks`."""
    pre_vote: bool = True
    check_quorum: bool = True
    max_append_bytes: int = 1 << 20
    """Cap on the entry bytes carried by one AppendEntries (at least one entry is always sent)."""
    max_inflight_appends: int = 64
    """Bounded pipelining window: AppendEntries sent to one follower and not yet acknowledged."""
    snapshot_chunk_bytes: int = 1 << 20
    """InstallSnapshot chunk size."""
    max_uncommitted_entries: int = 100_000
    """Flow control: proposals are refused while this many entries await commit."""

    def __post_init__(self) -> None:
        if self.heartbeat_ticks < 1:
            raise ValueError("heartbeat_ticks must be >= 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("election_ticks must exceed heartbeat_ticks (paper §5.6)")
        if self.max_append_bytes < 1 or self.snapshot_chunk_bytes < 1:
            raise ValueError("byte caps must be positive")
        if self.election_jitter_ticks is not None and self.election_jitter_ticks < 1:
            raise ValueError("election_jitter_ticks must be >= 1")
        if self.max_inflight_appends < 1:
            raise ValueError("max_inflight_appends must be >= 1")
