"""The Raft state machine: messages and ticks in, `Ready` batches out.

Pure and deterministic: no I/O, no clock, no threads; randomness comes from the injected
`random.Random`. Given the same initial state, seed and input sequence, it produces the same
outputs, which is what makes simulation runs replayable.

Structure follows etcd-io/raft: a `step` that first applies the term rules common to every
role (paper Figure 2, "Rules for Servers: All Servers") and then dispatches to the role's
step function, set by `_become_*`; a `tick` likewise set per role.
"""

from __future__ import annotations

import random
from collections import Counter
from enum import Enum
from typing import Callable, Sequence

from ruaft.core.log import RaftLog
from ruaft.core.types import (
    NO_PEER,
    AppendEntries,
    AppendEntriesResponse,
    Config,
    Entry,
    HardState,
    InitialState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    PeerId,
    RaftInvariantError,
    ReadState,
    Ready,
    RequestVote,
    RequestVoteResponse,
    Role,
    Snapshot,
    TimeoutNow,
)


class ReplicationState(Enum):
    """How the leader currently feeds one follower (etcd's progress states)."""

    PROBE = "probe"  # one AppendEntries at a time until the follower's match is found
    REPLICATE = "replicate"  # optimistic pipelining within the in-flight window
    SNAPSHOT = "snapshot"  # an InstallSnapshot transfer is under way


class Progress:
    """The leader's view of one follower (paper Figure 2: nextIndex, matchIndex)."""

    __slots__ = (
        "match_index",
        "next_index",
        "state",
        "inflight",
        "probe_sent",
        "recent_active",
        "idle_ticks",
        "acked_seq",
        "sent_commit",
        "snapshot",
        "snapshot_offset",
    )

    def __init__(self, next_index: int):
        self.match_index = 0
        self.next_index = next_index
        self.state = ReplicationState.PROBE
        self.inflight: list[int] = []  # last index of each unacknowledged AppendEntries
        self.probe_sent = False
        self.recent_active = False
        self.idle_ticks = 0
        self.acked_seq = 0
        self.sent_commit = 0
        self.snapshot: Snapshot | None = None  # the snapshot being sent (pinned, see below)
        self.snapshot_offset = 0

    def become_probe(self) -> None:
        self.state = ReplicationState.PROBE
        self.snapshot = None
        self.next_index = max(self.next_index, self.match_index + 1)
        self.inflight.clear()
        self.probe_sent = False

    def become_replicate(self) -> None:
        self.state = ReplicationState.REPLICATE
        self.snapshot = None
        self.next_index = self.match_index + 1
        self.inflight.clear()
        self.probe_sent = False


class _PendingRead:
    __slots__ = ("context", "index", "seq")

    def __init__(self, context: int, index: int, seq: int):
        self.context = context
        self.index = index
        self.seq = seq


class RaftCore:
    """One peer's Raft state machine.

    Drive it with `tick()`, `step(message)`, `propose(data)`, `read_index(context)`,
    `compact(index, data)` and `transfer_leadership(peer)`; after any of these, while
    `has_ready()`, take `ready()`, carry it out as its docstring says, and call
    `advance(ready)` before the next mutating call.

    Remote nonsense (stale terms, messages for another peer, impossible fields) is dropped and
    counted in `dropped`; a broken local invariant raises `RaftInvariantError`.
    """

    def __init__(
        self,
        me: PeerId,
        peers: Sequence[PeerId],
        *,
        rng: random.Random,
        initial: InitialState | None = None,
        config: Config | None = None,
    ):
        if me not in peers:
            raise ValueError(f"peer {me} is not among the peers {list(peers)}")
        if len(set(peers)) != len(peers):
            raise ValueError(f"duplicate peer ids in {list(peers)}")
        initial = initial or InitialState()
        self.me = me
        self.peers: tuple[PeerId, ...] = tuple(sorted(peers))
        self.config = config or Config()
        self._rng = rng
        self.quorum = len(self.peers) // 2 + 1

        hard = initial.hard_state
        self.term = hard.term
        self.vote = hard.vote
        self.log = RaftLog(initial.snapshot, initial.entries, hard.commit)
        self.leader_id: PeerId = NO_PEER
        self.role = Role.FOLLOWER

        self.dropped: Counter[str] = Counter()
        """Messages dropped by reason (stale term, wrong addressee, ...)."""

        self._election_elapsed = 0
        self._randomized_election_timeout = self.config.election_ticks
        self._votes: dict[PeerId, bool] = {}
        self._progress: dict[PeerId, Progress] = {}
        self._seq = 0
        self._reads: list[_PendingRead] = []
        self._reads_waiting_for_commit: list[int] = []
        self._read_ready = False
        self._transfer_target: PeerId = NO_PEER
        self._transfer_elapsed = 0
        # A partial InstallSnapshot transfer: (leader's term, index, snapshot term, bytes).
        self._incoming_snapshot: tuple[int, int, int, bytearray] | None = None

        # Outputs accumulated for the next Ready.
        self._messages: list[Message] = []
        self._read_states: list[ReadState] = []
        self._failed_reads: list[int] = []
        self._snapshot_to_persist: Snapshot | None = None
        self._snapshot_to_apply: Snapshot | None = initial.snapshot  # restore app on start
        self._persisted_hard_state = hard

        self._step_role: Callable[[Message], None] = self._step_follower
        self._tick_role: Callable[[], None] = self._tick_election
        self._become_follower(self.term, NO_PEER)

    # ================================================================ public inputs

    def tick(self) -> None:
        """Advance logical time by one tick."""
        self._tick_role()

    def step(self, m: Message) -> None:
        """Process one message from another peer."""
        if m.to_peer != self.me or m.from_peer not in self.peers or m.from_peer == self.me:
            self.dropped["misaddressed"] += 1
            return
        if m.term > self.term:
            if isinstance(m, RequestVote) and self._in_leader_lease() and not m.leadership_transfer:
                # Thesis §4.2.3 / §9.6: a peer that heard from a live leader within the minimum
                # election timeout ignores (pre-)votes, so a rejoining peer cannot disrupt.
                self.dropped["vote-in-lease"] += 1
                return
            if isinstance(m, RequestVote) and m.pre_vote:
                pass  # a pre-vote never changes our term (thesis §9.6)
            elif isinstance(m, RequestVoteResponse) and m.pre_vote and m.vote_granted:
                pass  # granted pre-votes carry the term we would campaign in
            else:
                leader = m.from_peer if isinstance(m, (AppendEntries, InstallSnapshot)) else NO_PEER
                self._become_follower(m.term, leader)
        elif m.term < self.term:
            self._answer_stale(m)
            return

        if isinstance(m, RequestVote):
            self._handle_request_vote(m)
        else:
            self._step_role(m)

    def propose(self, data: bytes) -> tuple[int, int] | None:
        """Append a command to the leader's log; returns (index, term), or None when this peer
        is not the leader, is transferring leadership, or too many entries await commit."""
        first = self.propose_many((data,))
        return None if first is None else (first, self.term)

    def propose_many(self, datas: Sequence[bytes]) -> int | None:
        """Append several commands at once (client request batching); returns the index of the
        first, or None as for `propose`. The commands occupy consecutive indexes."""
        if self.role is not Role.LEADER or self._transfer_target != NO_PEER or not datas:
            return None
        if self.log.last_index - self.log.commit_index + len(datas) > self.config.max_uncommitted_entries:
            self.dropped["proposal-flow-control"] += 1
            return None
        first = self.log.last_index + 1
        self.log.append([Entry(self.term, first + i, data) for i, data in enumerate(datas)])
        self._broadcast_append()
        return first

    def read_index(self, context: int) -> bool:
        """Ask for a linearizable read point (thesis §6.4). Returns False if not leader.

        The confirmed read arrives as `ReadState(index, context)` in a later Ready, once a
        majority has acknowledged this leader after the request (one confirmation round is
        shared by all reads that arrive while it is in flight). If leadership is lost first,
        `context` appears in `Ready.failed_reads` instead.
        """
        if self.role is not Role.LEADER:
            return False
        if not self._read_ready:
            # §6.4 step 1: until an entry of its term is committed the leader may not know
            # the latest commit index.
            self._reads_waiting_for_commit.append(context)
            return True
        self._register_read(context)
        return True

    def compact(self, index: int, data: bytes) -> None:
        """The application's snapshot of its state through applied entry `index` (paper §7).

        The log up to `index` is discarded; the snapshot is persisted by the next Ready.
        Ignored (counted) if `index` is at or below the current snapshot; raises
        RaftInvariantError if `index` has not been applied yet.
        """
        if index <= self.log.snapshot_index:
            self.dropped["stale-compaction"] += 1
            return
        term = self.log.term(index)
        if term is None or index > self.log.applied_index:
            raise RaftInvariantError(
                f"snapshot at {index} not applied (applied {self.log.applied_index})"
            )
        snapshot = Snapshot(index, term, data)
        self.log.compact(snapshot)
        self._snapshot_to_persist = snapshot

    def transfer_leadership(self, target: PeerId) -> bool:
        """Hand leadership to `target` (thesis §3.10): stop accepting proposals, bring the
        target up to date, then tell it to campaign at once. Returns False if not leader or
        the target is unknown. Aborted after an election timeout."""
        if self.role is not Role.LEADER or target not in self._progress or target == self.me:
            return False
        self._transfer_target = target
        self._transfer_elapsed = 0
        if self._progress[target].match_index == self.log.last_index:
            self._send(TimeoutNow(self.me, target, self.term))
        else:
            self._send_append(target, allow_empty=True)
        return True

    # ================================================================ outputs

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.commit_index)

    def has_ready(self) -> bool:
        return bool(
            self._messages
            or self._read_states
            or self._failed_reads
            or self._snapshot_to_persist is not None
            or self._snapshot_to_apply is not None
            or self.log.unstable_from <= self.log.last_index
            or self.log.commit_index > self.log.applied_index
            or self._hard_state_due(self.hard_state())
        )

    def _hard_state_due(self, hard: HardState) -> bool:
        """Whether the hard state must go into the next Ready's write.

        Term and vote must be durable before we answer anyone (Figure 2). The commit index is
        only a hint that saves re-applying after a restart (a restarted peer re-learns it from
        the leader), so a change of commit alone does not cost a write of its own: it rides
        along with the next entries or snapshot persisted.
        """
        persisted = self._persisted_hard_state
        if hard == persisted:
            return False
        if hard.term != persisted.term or hard.vote != persisted.vote:
            return True
        return self.log.unstable_from <= self.log.last_index or self._snapshot_to_persist is not None

    def ready(self) -> Ready:
        """Take everything the driver must do now (see `Ready`). Outputs handed out here are
        not handed out again; `advance` must follow once the persistence step is durable."""
        hard = self.hard_state()
        hard_due = self._hard_state_due(hard)
        snapshot_to_apply = self._snapshot_to_apply
        if snapshot_to_apply is not None:
            self.log.applied_index = max(self.log.applied_index, snapshot_to_apply.index)
        committed = self.log.entries_to_apply()
        rd = Ready(
            hard_state=hard if hard_due else None,
            entries=tuple(self.log.unstable_entries()),
            snapshot=self._snapshot_to_persist,
            messages=tuple(self._messages),
            committed_entries=tuple(committed),
            apply_snapshot=snapshot_to_apply,
            read_states=tuple(self._read_states),
            failed_reads=tuple(self._failed_reads),
        )
        if hard_due:
            self._persisted_hard_state = hard
        self.log.unstable_from = self.log.last_index + 1
        if committed:
            self.log.applied_index = committed[-1].index
        self._messages = []
        self._read_states = []
        self._failed_reads = []
        self._snapshot_to_persist = None
        self._snapshot_to_apply = None
        return rd

    def advance(self, rd: Ready) -> None:
        """Acknowledge that `rd`'s persistence step is durable. A leader's own entries count
        toward commitment only from here on (thesis §10.2.1)."""
        if rd.entries and self.role is Role.LEADER:
            me = self._progress[self.me]
            durable = rd.entries[-1].index
            if self.log.term(durable) == rd.entries[-1].term and durable > me.match_index:
                me.match_index = durable
                self._maybe_commit()

    # ================================================================ status

    @property
    def commit_index(self) -> int:
        return self.log.commit_index

    @property
    def applied_index(self) -> int:
        return self.log.applied_index

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def snapshot_index(self) -> int:
        return self.log.snapshot_index

    def match_index(self, peer: PeerId) -> int:
        """Leader only: the highest index known replicated (and durable) on `peer`."""
        progress = self._progress.get(peer)
        return progress.match_index if progress else 0

    # ================================================================ role transitions

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NO_PEER
        self.leader_id = NO_PEER
        self._election_elapsed = 0
        jitter = self.config.election_jitter_ticks or self.config.election_ticks
        self._randomized_election_timeout = self.config.election_ticks + self._rng.randrange(jitter)
        self._votes = {}
        self._progress = {}
        self._transfer_target = NO_PEER
        self._fail_pending_reads()
        self._read_ready = False

    def _become_follower(self, term: int, leader: PeerId) -> None:
        self._reset(term)
        self.leader_id = leader
        self.role = Role.FOLLOWER
        self._step_role = self._step_follower
        self._tick_role = self._tick_election

    def _become_pre_candidate(self) -> None:
        # Thesis §9.6: term and vote stay; only a granted majority leads to a real campaign.
        self._reset(self.term)
        self.role = Role.PRE_CANDIDATE
        self._step_role = self._step_candidate
        self._tick_role = self._tick_election

    def _become_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise RaftInvariantError("leader cannot become candidate directly")
        self._reset(self.term + 1)
        self.vote = self.me
        self.role = Role.CANDIDATE
        self._step_role = self._step_candidate
        self._tick_role = self._tick_election

    def _become_leader(self) -> None:
        if self.role is not Role.CANDIDATE:
            raise RaftInvariantError(f"{self.role} cannot become leader")
        self._reset(self.term)
        self.leader_id = self.me
        self.role = Role.LEADER
        self._step_role = self._step_leader
        self._tick_role = self._tick_heartbeat
        last = self.log.last_index
        self._progress = {peer: Progress(last + 1) for peer in self.peers}
        self._progress[self.me].match_index = last  # our whole log is already durable
        if last > self.log.commit_index:
            # TESTS.md §1: a no-op only when uncommitted entries exist; it commits them
            # (paper §5.4.2: only entries of the current term are committed by counting).
            self.log.append([Entry(self.term, last + 1, b"")])
        else:
            # Every entry we hold is committed, and by leader completeness every committed
            # entry is in our log: our commit index is the cluster's (thesis §6.4).
            self._read_ready = True
        self._broadcast_append(allow_empty=True)

    def _campaign(self, *, pre_vote: bool, transfer: bool = False) -> None:
        if pre_vote:
            self._become_pre_candidate()
            term = self.term + 1
        else:
            self._become_candidate()
            term = self.term
        self._votes[self.me] = True
        if self._tally() is True:
            # A cluster of one wins at once.
            if pre_vote:
                self._campaign(pre_vote=False)
            else:
                self._become_leader()
            return
        for peer in self.peers:
            if peer != self.me:
                self._send(
                    RequestVote(
                        self.me, peer, term, self.log.last_index, self.log.last_term,
                        pre_vote=pre_vote, leadership_transfer=transfer,
                    )
                )

    def _tally(self) -> bool | None:
        """True on a granted majority, False on a refusing majority, None while undecided."""
        granted = sum(1 for v in self._votes.values() if v)
        if granted >= self.quorum:
            return True
        if len(self._votes) - granted >= self.quorum:
            return False
        return None

    # ================================================================ ticks

    def _in_leader_lease(self) -> bool:
        return (
            self.config.check_quorum
            and self.leader_id != NO_PEER
            and self._election_elapsed < self.config.election_ticks
        )

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._election_elapsed >= self._randomized_election_timeout:
            self._election_elapsed = 0
            # Before any term has begun there is nobody to disrupt: a campaign for term 1 can
            # only meet peers at term 0 or 1 (who grant or refuse, but never step down), so
            # the pre-vote round would only cost a round trip (thesis §9.6's concern is a
            # peer rejoining with an inflated term).
            self._campaign(pre_vote=self.config.pre_vote and self.term > 0)

    def _tick_heartbeat(self) -> None:
        self._election_elapsed += 1
        if self._transfer_target != NO_PEER:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self.config.election_ticks:
                self._transfer_target = NO_PEER  # abort: the target did not take over
        if self._election_elapsed >= self.config.election_ticks:
            self._election_elapsed = 0
            if self.config.check_quorum and not self._quorum_recently_active():
                # Check-quorum (thesis §6.2): a leader cut off from a majority steps down.
                self._become_follower(self.term, NO_PEER)
                return
        for peer, progress in self._progress.items():
            if peer == self.me:
                continue
            progress.idle_ticks += 1
            if progress.idle_ticks >= self.config.heartbeat_ticks:
                self._send_append(peer, allow_empty=True, heartbeat=True)
            elif min(self.log.commit_index, progress.match_index) > progress.sent_commit:
                # Tell followers about a commit promptly, coalesced to one message per tick.
                self._send_append(peer, allow_empty=True)

    def _quorum_recently_active(self) -> bool:
        active = 0
        for peer, progress in self._progress.items():
            if peer == self.me or progress.recent_active:
                active += 1
            progress.recent_active = False
        return active >= self.quorum

    # ================================================================ messages: common

    def _send(self, m: Message) -> None:
        self._messages.append(m)

    def _answer_stale(self, m: Message) -> None:
        if isinstance(m, (AppendEntries, InstallSnapshot)):
            # A deposed leader learns of the newer term from this answer; with check-quorum
            # and pre-vote it would otherwise never hear it (etcd does the same).
            self._send(AppendEntriesResponse(self.me, m.from_peer, self.term, False,
                                             prev_log_index=0))
        elif isinstance(m, RequestVote) and m.pre_vote:
            self._send(RequestVoteResponse(self.me, m.from_peer, self.term, False, pre_vote=True))
        self.dropped["stale-term"] += 1

    def _handle_request_vote(self, m: RequestVote) -> None:
        """Paper Figure 2, RequestVote receiver rules; thesis §9.6 for pre-votes."""
        can_vote = (
            self.vote == m.from_peer
            or (self.vote == NO_PEER and self.leader_id == NO_PEER)
            or (m.pre_vote and m.term > self.term)
        )
        granted = can_vote and self.log.is_up_to_date(m.last_log_index, m.last_log_term)
        if granted and not m.pre_vote:
            self.vote = m.from_peer
            self._election_elapsed = 0  # granting a vote resets the election timer (§5.2)
        # A granted pre-vote answers in the candidate's future term so it is not mistaken for
        # a stale reply; a refusal carries our term so the asker can catch up.
        term = m.term if granted else self.term
        self._send(RequestVoteResponse(self.me, m.from_peer, term, granted, pre_vote=m.pre_vote))

    # ================================================================ follower

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, AppendEntries):
            self._election_elapsed = 0
            self.leader_id = m.from_peer
            self._handle_append_entries(m)
        elif isinstance(m, InstallSnapshot):
            self._election_elapsed = 0
            self.leader_id = m.from_peer
            self._handle_install_snapshot(m)
        elif isinstance(m, TimeoutNow):
            if m.from_peer == self.leader_id:
                self._campaign(pre_vote=False, transfer=True)
            else:
                self.dropped["timeout-now-not-from-leader"] += 1
        else:
            self.dropped["unexpected-for-follower"] += 1

    def _handle_append_entries(self, m: AppendEntries) -> None:
        prev_index, prev_term, entries = m.prev_log_index, m.prev_log_term, m.entries
        if not _entries_continue(prev_index, prev_term, m.term, entries):
            self.dropped["malformed-append-entries"] += 1
            return
        if prev_index < self.log.snapshot_index:
            # The prefix below our snapshot is committed and so matches the leader's.
            skip = self.log.snapshot_index - prev_index
            entries = entries[skip:]
            prev_index, prev_term = self.log.snapshot_index, self.log.snapshot_term
            if len(m.entries) < skip:
                self._send(AppendEntriesResponse(
                    self.me, m.from_peer, self.term, True, prev_log_index=m.prev_log_index,
                    match_index=self.log.snapshot_index, seq=m.seq))
                return
        if self.log.term(prev_index) != prev_term:
            # Figure 2 receiver rule 2, with the fast back-off hint of §5.3.
            if prev_index > self.log.last_index:
                conflict_term, conflict_index = 0, self.log.last_index + 1
            else:
                conflict_term = self.log.term(prev_index) or 0
                conflict_index = self.log.first_index_of_term(prev_index)
            self._send(AppendEntriesResponse(
                self.me, m.from_peer, self.term, False, prev_log_index=m.prev_log_index,
                conflict_index=conflict_index, conflict_term=conflict_term, seq=m.seq))
            return
        match = self.log.maybe_append(prev_index, entries)
        # Rule 5: commit up to the leader's commit, but only as far as this message proved our
        # log matches the leader's.
        self.log.commit_to(min(m.leader_commit, match))
        self._send(AppendEntriesResponse(
            self.me, m.from_peer, self.term, True, prev_log_index=m.prev_log_index,
            match_index=match, seq=m.seq))

    def _handle_install_snapshot(self, m: InstallSnapshot) -> None:
        """Figure 13's receiver rules, with chunks accumulated in memory until `done`."""

        def answer(next_offset: int, done: bool = False, match: int = 0) -> None:
            self._send(InstallSnapshotResponse(
                self.me, m.from_peer, self.term, m.last_included_index, next_offset,
                done=done, match_index=match, seq=m.seq))

        if m.last_included_index <= self.log.commit_index:
            # We already hold everything the snapshot covers: report where we are.
            self._incoming_snapshot = None
            answer(m.offset + len(m.data), done=True, match=self.log.commit_index)
            return
        key = (m.term, m.last_included_index, m.last_included_term)
        pending = self._incoming_snapshot
        if m.offset == 0:
            # Figure 13 rule 2: a first chunk starts a new snapshot file, even over a partial
            # one (another leader's bytes for the same index need not be the same bytes).
            pending = (*key, bytearray())
            self._incoming_snapshot = pending
        elif pending is None or pending[:3] != key:
            answer(0)  # we hold no transfer from this leader: restart it from the beginning
            return
        buffer = pending[3]
        if m.offset != len(buffer):
            answer(len(buffer))  # duplicate or out-of-order chunk: say where to resume
            return
        buffer += m.data
        if not m.done:
            answer(len(buffer))
            return
        self._incoming_snapshot = None
        snapshot = Snapshot(m.last_included_index, m.last_included_term, bytes(buffer))
        self.log.restore(snapshot)
        self._snapshot_to_persist = snapshot
        self._snapshot_to_apply = snapshot
        answer(len(buffer), done=True, match=snapshot.index)

    # ================================================================ candidate

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, (AppendEntries, InstallSnapshot)):
            # A leader of our term exists (§5.2): return to follower and accept it.
            self._become_follower(self.term, m.from_peer)
            self._step_follower(m)
        elif isinstance(m, RequestVoteResponse):
            if m.pre_vote != (self.role is Role.PRE_CANDIDATE):
                self.dropped["vote-response-other-phase"] += 1
                return
            self._votes.setdefault(m.from_peer, m.vote_granted)
            outcome = self._tally()
            if outcome is True:
                if self.role is Role.PRE_CANDIDATE:
                    self._campaign(pre_vote=False)
                else:
                    self._become_leader()
            elif outcome is False:
                self._become_follower(self.term, NO_PEER)
        else:
            self.dropped["unexpected-for-candidate"] += 1

    # ================================================================ leader

    def _step_leader(self, m: Message) -> None:
        if isinstance(m, AppendEntriesResponse):
            self._handle_append_response(m)
        elif isinstance(m, InstallSnapshotResponse):
            self._handle_snapshot_response(m)
        elif isinstance(m, (AppendEntries, InstallSnapshot)):
            raise RaftInvariantError(
                f"two leaders in term {self.term}: {self.me} and {m.from_peer} (election safety)"
            )
        else:
            self.dropped["unexpected-for-leader"] += 1

    def _acknowledge(self, progress: Progress, seq: int) -> None:
        progress.recent_active = True
        if seq > progress.acked_seq:
            progress.acked_seq = seq
            self._maybe_confirm_reads()

    def _handle_append_response(self, m: AppendEntriesResponse) -> None:
        progress = self._progress[m.from_peer]
        self._acknowledge(progress, m.seq)
        if m.success:
            if m.match_index > self.log.last_index:
                self.dropped["malformed-append-response"] += 1
                return
            if m.match_index > progress.match_index:
                progress.match_index = m.match_index
                progress.next_index = max(progress.next_index, m.match_index + 1)
                progress.inflight = [i for i in progress.inflight if i > m.match_index]
                if progress.state is not ReplicationState.REPLICATE:
                    progress.become_replicate()
                self._maybe_commit()
            elif progress.state is ReplicationState.PROBE:
                progress.probe_sent = False
            if (
                self._transfer_target == m.from_peer
                and progress.match_index == self.log.last_index
            ):
                self._send(TimeoutNow(self.me, m.from_peer, self.term))
            self._send_append(m.from_peer)
            return
        # Rejected: ignore answers to requests we have already moved past.
        if progress.state is ReplicationState.SNAPSHOT:
            return
        if progress.state is ReplicationState.PROBE and m.prev_log_index != progress.next_index - 1:
            self.dropped["stale-append-rejection"] += 1
            return
        if m.prev_log_index <= progress.match_index:
            self.dropped["stale-append-rejection"] += 1
            return
        next_index = m.conflict_index
        if m.conflict_term:
            ours = self.log.last_index_of_term(m.conflict_term, m.prev_log_index)
            if ours is not None:
                next_index = ours + 1
        progress.next_index = max(progress.match_index + 1, min(next_index, m.prev_log_index))
        progress.become_probe()
        self._send_append(m.from_peer, allow_empty=True)

    def _handle_snapshot_response(self, m: InstallSnapshotResponse) -> None:
        progress = self._progress[m.from_peer]
        self._acknowledge(progress, m.seq)
        snapshot = progress.snapshot
        if (
            progress.state is not ReplicationState.SNAPSHOT
            or snapshot is None
            or m.last_included_index != snapshot.index
        ):
            return
        if m.done:
            if m.match_index > self.log.last_index:
                self.dropped["malformed-snapshot-response"] += 1
                return
            progress.match_index = max(progress.match_index, m.match_index)
            progress.next_index = progress.match_index + 1
            progress.become_probe()
            self._maybe_commit()
            self._send_append(m.from_peer, allow_empty=True)
            return
        if m.next_offset == progress.snapshot_offset:
            return  # the chunk it asks for is already on its way (a duplicate answer)
        progress.snapshot_offset = m.next_offset
        self._send_snapshot_chunk(m.from_peer, progress)

    def _maybe_commit(self) -> None:
        matches = sorted((p.match_index for p in self._progress.values()), reverse=True)
        candidate = matches[self.quorum - 1]
        # Paper §5.4.2 / Figure 8: only entries of the current term commit by counting.
        if candidate > self.log.commit_index and self.log.term(candidate) == self.term:
            self.log.commit_to(candidate)
            if not self._read_ready:
                self._read_ready = True
                waiting, self._reads_waiting_for_commit = self._reads_waiting_for_commit, []
                for context in waiting:
                    self._register_read(context)

    def _broadcast_append(self, allow_empty: bool = False) -> None:
        for peer in self.peers:
            if peer != self.me:
                self._send_append(peer, allow_empty=allow_empty)

    def _send_append(self, peer: PeerId, allow_empty: bool = False, heartbeat: bool = False) -> None:
        """Send what `peer` is missing, within the flow-control window.

        A heartbeat is sent even when the window is full or a probe is outstanding: it doubles
        as loss recovery (its consistency check exposes a gap left by a lost message).
        """
        progress = self._progress[peer]
        if progress.state is ReplicationState.SNAPSHOT:
            if heartbeat:
                self._send_snapshot_chunk(peer, progress)  # resend: the last chunk may be lost
            return
        if not heartbeat:
            if progress.state is ReplicationState.PROBE and progress.probe_sent:
                return
            if len(progress.inflight) >= self.config.max_inflight_appends:
                return
        prev_index = progress.next_index - 1
        prev_term = self.log.term(prev_index)
        if prev_term is None:
            self._start_snapshot(peer, progress)
            return
        if heartbeat and (progress.probe_sent or progress.inflight):
            entries: list[Entry] = []  # appends are under way; just check for a gap
        else:
            entries = self.log.slice(progress.next_index, self.log.last_index + 1,
                                     self.config.max_append_bytes)
        if not entries and not allow_empty:
            return
        self._send(AppendEntries(self.me, peer, self.term, prev_index, prev_term, tuple(entries),
                                 self.log.commit_index, seq=self._seq))
        progress.idle_ticks = 0
        progress.sent_commit = min(self.log.commit_index, prev_index + len(entries))
        if progress.state is ReplicationState.REPLICATE and entries:
            progress.next_index = entries[-1].index + 1
            progress.inflight.append(entries[-1].index)
        elif progress.state is ReplicationState.PROBE:
            progress.probe_sent = True

    def _start_snapshot(self, peer: PeerId, progress: Progress) -> None:
        snapshot = self.log.snapshot
        if snapshot is None:
            raise RaftInvariantError(f"entry {progress.next_index - 1} compacted but no snapshot")
        progress.state = ReplicationState.SNAPSHOT
        # Pinned until the follower has it all: were we to switch to each newer snapshot, a
        # leader that compacts faster than a transfer completes would never finish one
        # (etcd likewise keeps a follower in StateSnapshot for the snapshot it is sending).
        progress.snapshot = snapshot
        progress.snapshot_offset = 0
        progress.inflight.clear()
        self._send_snapshot_chunk(peer, progress)

    def _send_snapshot_chunk(self, peer: PeerId, progress: Progress) -> None:
        snapshot = progress.snapshot
        assert snapshot is not None
        offset = min(progress.snapshot_offset, len(snapshot.data))
        chunk = snapshot.data[offset: offset + self.config.snapshot_chunk_bytes]
        done = offset + len(chunk) >= len(snapshot.data)
        self._send(InstallSnapshot(self.me, peer, self.term, snapshot.index, snapshot.term,
                                   offset, chunk, done, seq=self._seq))
        progress.idle_ticks = 0

    # ================================================================ reads

    def _register_read(self, context: int) -> None:
        """Record a read at the current commit index, confirmed by the next quorum round.

        A read must be confirmed by acknowledgements of messages sent *after* it arrived
        (thesis §6.4 step 3), so a read that arrives while a round is in flight waits for the
        following one; every read that waits shares that round.
        """
        if len(self.peers) == 1:
            self._read_states.append(ReadState(self.log.commit_index, context))
            return
        round_in_flight = bool(self._reads) and self._reads[0].seq == self._seq
        if round_in_flight:
            self._reads.append(_PendingRead(context, self.log.commit_index, self._seq + 1))
        else:
            self._start_read_round()
            self._reads.append(_PendingRead(context, self.log.commit_index, self._seq))

    def _start_read_round(self) -> None:
        self._seq += 1
        for peer in self.peers:
            if peer != self.me:
                self._send_append(peer, allow_empty=True, heartbeat=True)

    def _acked_by_quorum(self) -> int:
        """The highest round that a majority (counting ourselves) has acknowledged."""
        acks = sorted(
            (self._seq if peer == self.me else p.acked_seq) for peer, p in self._progress.items()
        )
        return acks[len(acks) - self.quorum]

    def _maybe_confirm_reads(self) -> None:
        if not self._reads:
            return
        confirmed_seq = self._acked_by_quorum()
        done = 0
        for read in self._reads:
            if read.seq > confirmed_seq:
                break
            self._read_states.append(ReadState(read.index, read.context))
            done += 1
        if done:
            del self._reads[:done]
            if self._reads and self._reads[0].seq > self._seq:
                self._start_read_round()

    def _fail_pending_reads(self) -> None:
        for read in self._reads:
            self._failed_reads.append(read.context)
        self._failed_reads.extend(self._reads_waiting_for_commit)
        self._reads = []
        self._reads_waiting_for_commit = []


def _entries_continue(prev_index: int, prev_term: int, term: int, entries: Sequence[Entry]) -> bool:
    """A well-formed AppendEntries carries consecutive entries right after `prev_index`, with
    terms that never decrease and never exceed the sender's term (paper §5.3)."""
    last_term = prev_term
    for offset, entry in enumerate(entries):
        if entry.index != prev_index + 1 + offset or not last_term <= entry.term <= term:
            return False
        last_term = entry.term
    return True
