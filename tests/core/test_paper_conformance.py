"""Paper-conformance tests: one test per rule of the Raft paper's Figure 2, plus §5.4.2
(Figure 8), Figure 13 (chunked InstallSnapshot) and the thesis' extensions the core
implements: pre-vote (§9.6), check-quorum (§6.2), the leader lease on votes (§4.2.3),
ReadIndex (§6.4) and leadership transfer (§3.10).

References: D. Ongaro and J. Ousterhout, "In Search of an Understandable Consensus Algorithm
(Extended Version)", 2014 ("the paper"); D. Ongaro, "Consensus: Bridging Theory and Practice",
2014 ("the thesis").

Most tests drive one `RaftCore` directly with hand-built messages and inspect exactly what it
answers; scenario tests use `harness.Network`, which also checks election safety, state-machine
safety and durability-before-send on every step.
"""

from __future__ import annotations

from typing import Sequence

import pytest

from ruaft.core.raft import RaftCore
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
    ReadState,
    Ready,
    RequestVote,
    RequestVoteResponse,
    Role,
    Snapshot,
    TimeoutNow,
)
from tests.core.harness import DiskRecord, Network, drain, elect, log_from_terms, new_core, sent

PLAIN = Config(pre_vote=False, check_quorum=False)
"""Figure 2 exactly: no pre-vote, no check-quorum (and so no leader lease)."""

E = Config().election_ticks
H = Config().heartbeat_ticks


# ============================================================================ helpers


def append(
    frm: int,
    to: int,
    term: int,
    prev: tuple[int, int],
    entries: Sequence[Entry] = (),
    commit: int = 0,
    seq: int = 0,
) -> AppendEntries:
    """AppendEntries with `prev` given as (prev_log_term, prev_log_index)."""
    return AppendEntries(frm, to, term, prev[1], prev[0], tuple(entries), commit, seq=seq)


def entries(*term_index: tuple[int, int], tag: str = "n") -> tuple[Entry, ...]:
    return tuple(Entry(t, i, f"{tag}{i}".encode()) for t, i in term_index)


def step(core: RaftCore, m: Message) -> list[Ready]:
    core.step(m)
    return drain(core)


def tick(core: RaftCore, n: int = 1) -> list[Ready]:
    readies: list[Ready] = []
    for _ in range(n):
        core.tick()
        readies += drain(core)
    return readies


def log_terms(core: RaftCore) -> list[int]:
    log = core.log
    return [e.term for e in log.slice(log.first_index, log.last_index + 1)]


def ack(core: RaftCore, m: AppendEntries, *, seq: int | None = None) -> list[Ready]:
    """The follower's success answer to `m` (its log now matches through m's last entry)."""
    return step(core, AppendEntriesResponse(
        m.to_peer, m.from_peer, m.term, True, prev_log_index=m.prev_log_index,
        match_index=m.prev_log_index + len(m.entries), seq=m.seq if seq is None else seq))


def leader(
    peers: Sequence[int] = (1, 2, 3),
    *,
    term: int = 1,
    log: Sequence[int] = (),
    commit: int | None = None,
    config: Config = PLAIN,
    seed: int = 0,
    acked: bool = False,
) -> tuple[RaftCore, list[Ready]]:
    """Peer 1 elected leader (through ticks and granted votes) from the given persistent state.
    `commit` defaults to the whole log (fully committed). With `acked`, every follower
    acknowledges the leader's first AppendEntries (their logs match the leader's)."""
    core = new_core(1, peers, term=term, log_terms=log,
                    commit=len(log) if commit is None else commit, config=config, seed=seed)
    readies = elect(core)
    if acked:
        for m in sent(readies, AppendEntries):
            if m.term == core.term:
                readies += ack(core, m)
    return core, readies


def timeout_ticks(seed: int, config: Config = PLAIN, **state: object) -> int:
    """How many ticks a fresh follower built with `seed` waits before campaigning."""
    core = new_core(1, (1, 2, 3), seed=seed, config=config, **state)  # type: ignore[arg-type]
    for n in range(1, 10 * config.election_ticks):
        core.tick()
        if core.role is not Role.FOLLOWER:
            return n
    raise AssertionError("never timed out")


# ============================================================================ Figure 2: All Servers


def test_all_servers_apply_committed_entries_in_order() -> None:
    """Figure 2, Rules for Servers, All Servers, rule 1: if commitIndex > lastApplied,
    increment lastApplied and apply log[lastApplied] (§5.3) — each entry once, in order."""
    core = new_core(2, term=1, log_terms=[1, 1, 1])
    readies = step(core, append(1, 2, 1, (1, 3), commit=2))
    assert [e.index for rd in readies for e in rd.committed_entries] == [1, 2]
    assert core.applied_index == 2
    readies = step(core, append(1, 2, 1, (1, 3), commit=3))
    assert [e.index for rd in readies for e in rd.committed_entries] == [3]
    readies = step(core, append(1, 2, 1, (1, 3), commit=3))
    assert [e for rd in readies for e in rd.committed_entries] == []  # never twice

    # After a restart the committed prefix is applied again, from the start, in order.
    restarted = new_core(2, term=1, log_terms=[1, 1, 1], commit=3, drain_startup=False)
    readies = drain(restarted)
    assert [e.index for rd in readies for e in rd.committed_entries] == [1, 2, 3]


def _leader_candidate_follower(role: str) -> RaftCore:
    if role == "leader":
        core, _ = leader(term=1)
    elif role == "candidate":
        core = new_core(1, term=1, config=PLAIN)
        while core.role is Role.FOLLOWER:
            tick(core)
    elif role == "pre-candidate":
        core = new_core(1, term=1, config=Config(check_quorum=False))
        while core.role is Role.FOLLOWER:
            tick(core)
        assert core.role is Role.PRE_CANDIDATE
    else:
        core = new_core(1, term=1, config=PLAIN)
    return core


HIGHER_TERM_MESSAGES = {
    "AppendEntries": AppendEntries(2, 1, 5, 0, 0, (), 0),
    "RequestVote": RequestVote(2, 1, 5, 0, 0),
    "AppendEntriesResponse": AppendEntriesResponse(2, 1, 5, False),
    "RequestVoteResponse": RequestVoteResponse(2, 1, 5, False),
    "InstallSnapshotResponse": InstallSnapshotResponse(2, 1, 5, 0, 0),
    "TimeoutNow": TimeoutNow(2, 1, 5),
}


@pytest.mark.parametrize("role", ["follower", "pre-candidate", "candidate", "leader"])
@pytest.mark.parametrize("kind", sorted(HIGHER_TERM_MESSAGES))
def test_all_servers_higher_term_converts_to_follower(role: str, kind: str) -> None:
    """Figure 2, Rules for Servers, All Servers, rule 2: if an RPC request or response contains
    term T > currentTerm, set currentTerm = T and convert to follower (§5.1). The new term is
    persisted (Ready.hard_state) before anything is sent."""
    core = _leader_candidate_follower(role)
    m = HIGHER_TERM_MESSAGES[kind]
    readies = step(core, m)
    assert core.term == 5
    assert core.role is Role.FOLLOWER
    assert core.vote in (NO_PEER, m.from_peer)  # a vote in term 5, if any, for the sender only
    persisted = [rd.hard_state for rd in readies if rd.hard_state is not None]
    assert persisted and persisted[0].term == 5


# ============================================================================ Figure 2: Followers


def test_follower_responds_to_candidates_and_leaders() -> None:
    """Figure 2, Rules for Servers, Followers, rule 1: respond to RPCs from candidates and
    leaders (§5.2)."""
    core = new_core(2, term=1, config=PLAIN)
    vote = sent(step(core, RequestVote(3, 2, 2, 0, 0)), RequestVoteResponse)
    assert [(m.to_peer, m.term, m.vote_granted) for m in vote] == [(3, 2, True)]
    reply = sent(step(core, append(1, 2, 2, (0, 0))), AppendEntriesResponse)
    assert [(m.to_peer, m.term, m.success) for m in reply] == [(1, 2, True)]


def test_follower_election_timeout_is_randomized_and_converts_to_candidate() -> None:
    """Figure 2, Rules for Servers, Followers, rule 2: if the election timeout elapses without
    AppendEntries from the current leader or granting a vote, convert to candidate. The
    timeout is randomized (§5.2) in [election_ticks, 2 × election_ticks)."""
    timeouts = {timeout_ticks(seed) for seed in range(40)}
    assert all(E <= t < 2 * E for t in timeouts), timeouts
    assert len(timeouts) > 1, "election timeouts are not randomized"
    core = new_core(1, config=PLAIN)
    tick(core, timeout_ticks(0) - 1)
    assert core.role is Role.FOLLOWER
    tick(core)
    assert core.role is Role.CANDIDATE


def test_follower_append_entries_from_leader_resets_election_timer() -> None:
    """Figure 2, Followers, rule 2: AppendEntries from the current leader within each timeout
    keeps a follower from converting to candidate, indefinitely."""
    core = new_core(2, term=1, config=PLAIN)
    for _ in range(20):
        tick(core, E - 1)
        step(core, append(1, 2, 1, (0, 0)))
    assert core.role is Role.FOLLOWER and core.term == 1


def test_follower_granting_vote_resets_election_timer() -> None:
    """Figure 2, Followers, rule 2: granting a vote restarts the election timeout; a refused
    vote request does not."""
    state = dict(term=2)  # no vote, no known leader: a same-term vote can be granted
    timeout = timeout_ticks(7, **state)

    granted = new_core(1, seed=7, config=PLAIN, term=2)
    tick(granted, timeout - 1)
    assert [m.vote_granted for m in sent(step(granted, RequestVote(3, 1, 2, 0, 0)))] == [True]
    tick(granted, timeout - 1)
    assert granted.role is Role.FOLLOWER, "granting a vote did not reset the election timer"
    tick(granted)
    assert granted.role is Role.CANDIDATE

    refused = new_core(1, seed=7, config=PLAIN, term=2, log_terms=[2])
    tick(refused, timeout - 1)
    assert [m.vote_granted for m in sent(step(refused, RequestVote(3, 1, 2, 0, 0)))] == [False]
    tick(refused)
    assert refused.role is Role.CANDIDATE, "a refused vote reset the election timer"


# ============================================================================ Figure 2: Candidates


def test_candidate_on_conversion_starts_election() -> None:
    """Figure 2, Rules for Servers, Candidates, rule 1: on conversion to candidate increment
    currentTerm, vote for self, reset the election timer, and send RequestVote to all other
    servers — with the candidate's last log index and term (§5.4.1). The new term and
    self-vote are persisted in the same Ready that carries the RequestVotes."""
    core = new_core(1, (1, 2, 3, 4, 5), term=3, log_terms=[1, 2], commit=2, config=PLAIN)
    readies: list[Ready] = []
    while core.role is Role.FOLLOWER:
        readies = tick(core)
    assert core.role is Role.CANDIDATE and core.term == 4 and core.vote == 1
    [rd] = [rd for rd in readies if rd.messages]
    assert rd.hard_state == HardState(4, 1, 2)
    requests = sent([rd], RequestVote)
    assert sorted(m.to_peer for m in requests) == [2, 3, 4, 5]
    assert {(m.term, m.last_log_index, m.last_log_term, m.pre_vote) for m in requests} == {
        (4, 2, 2, False)}
    tick(core, E - 1)  # the timer was reset: no new election yet
    assert core.term == 4


def test_candidate_becomes_leader_on_majority_of_votes() -> None:
    """Figure 2, Candidates, rule 2: if votes are received from a majority of servers, become
    leader. A repeated vote from the same server counts once."""
    core = new_core(1, (1, 2, 3, 4, 5), config=PLAIN)
    while core.role is Role.FOLLOWER:
        tick(core)
    step(core, RequestVoteResponse(2, 1, core.term, True))
    step(core, RequestVoteResponse(2, 1, core.term, True))
    assert core.role is Role.CANDIDATE  # self + 2 = 2 of 5
    step(core, RequestVoteResponse(3, 1, core.term, False))
    assert core.role is Role.CANDIDATE
    step(core, RequestVoteResponse(4, 1, core.term, True))
    assert core.role is Role.LEADER and core.leader_id == 1  # self + 2 + 4 = 3 of 5


def test_candidate_converts_to_follower_on_append_entries_from_new_leader() -> None:
    """Figure 2, Candidates, rule 3: if AppendEntries is received from the new leader (same
    term), convert to follower — and process it."""
    core = new_core(1, term=1, config=PLAIN)
    while core.role is Role.FOLLOWER:
        tick(core)
    assert core.role is Role.CANDIDATE and core.term == 2
    readies = step(core, append(3, 1, 2, (0, 0), entries((2, 1))))
    assert core.role is Role.FOLLOWER and core.leader_id == 3 and core.term == 2
    assert core.vote == 1  # the vote of this term stays cast
    [reply] = sent(readies, AppendEntriesResponse)
    assert reply.success and reply.match_index == 1


def test_candidate_election_timeout_starts_new_election() -> None:
    """Figure 2, Candidates, rule 4: if the election timeout elapses (a split vote), start a
    new election: the next term, a new self-vote, new RequestVotes."""
    core = new_core(1, config=PLAIN)
    while core.role is Role.FOLLOWER:
        tick(core)
    assert core.term == 1
    readies: list[Ready] = []
    for _ in range(2 * E):
        readies += tick(core)
        if core.term == 2:
            break
    assert core.role is Role.CANDIDATE and core.term == 2 and core.vote == 1
    assert {m.term for m in sent(readies, RequestVote)} == {2}


# ============================================================================ Figure 2: Leaders


def test_leader_upon_election_sends_empty_append_entries() -> None:
    """Figure 2, Rules for Servers, Leaders, rule 1: upon election send initial empty
    AppendEntries (heartbeat) to each server. With a fully committed log no entry is added
    (TESTS.md §1: no-op only when uncommitted entries exist)."""
    core, readies = leader(term=1, log=[1, 1])
    assert core.role is Role.LEADER and core.term == 2
    appends = [m for m in sent(readies, AppendEntries) if m.term == 2]
    assert sorted(m.to_peer for m in appends) == [2, 3]
    assert all(m.entries == () and (m.prev_log_index, m.prev_log_term) == (2, 1) for m in appends)
    assert core.last_index == 2


def test_new_leader_appends_noop_only_with_uncommitted_entries() -> None:
    """TESTS.md §1 and paper §5.4.2/§8: a leader with uncommitted entries appends a no-op of
    its term (committing it commits them); one whose log is fully committed does not."""
    core, readies = leader(term=1, log=[1, 1], commit=1)
    assert core.last_index == 3 and core.log.entry(3) == Entry(2, 3, b"")
    assert {m.entries for m in sent(readies, AppendEntries)} == {(Entry(2, 3, b""),)}
    assert Entry(2, 3, b"") in [e for rd in readies for e in rd.entries]  # persisted


def test_leader_heartbeats_during_idle_periods_prevent_elections() -> None:
    """Figure 2, Leaders, rule 1: repeat the empty AppendEntries during idle periods to
    prevent election timeouts (§5.2): every heartbeat_ticks, and no follower ever times out."""
    core, _ = leader(term=1)
    readies = tick(core, 10 * H)
    per_follower = {p: sum(1 for m in sent(readies, AppendEntries) if m.to_peer == p) for p in (2, 3)}
    assert per_follower == {2: 10, 3: 10}

    net = Network(3, seed=11)
    net.campaign(1)
    net.stabilize()
    for _ in range(30 * E):
        net.tick_all()
        net.stabilize()
    assert net.leader() == 1 and {net.core(p).term for p in net.ids} == {1}


def test_leader_appends_command_and_applies_it_once_committed() -> None:
    """Figure 2, Leaders, rule 2: on a command from a client append the entry to the local log;
    respond after it is applied (§5.3) — it is handed to the application only once committed."""
    core, _ = leader(term=1, log=[1], acked=True)
    index, term = core.propose(b"x") or (0, 0)
    assert (index, term) == (2, 2) and core.log.entry(2) == Entry(2, 2, b"x")
    readies = drain(core)
    assert [e.index for rd in readies for e in rd.entries] == [2]
    assert not [e for rd in readies for e in rd.committed_entries]
    readies = ack(core, sent(readies, AppendEntries)[0])
    assert [e.data for rd in readies for e in rd.committed_entries] == [b"x"]
    assert new_core(2).propose(b"y") is None  # only a leader accepts commands


def test_leader_sends_entries_from_next_index() -> None:
    """Figure 2, Leaders, rule 3: if last log index >= nextIndex for a follower, send
    AppendEntries with the log entries starting at nextIndex."""
    core, readies = leader(term=1, log=[1, 1, 1])
    to2 = next(m for m in sent(readies, AppendEntries) if m.to_peer == 2)
    ack(core, to2)  # follower 2 matches through 3: nextIndex[2] = 4
    core.propose(b"a")
    core.propose(b"b")
    appends = [m for m in sent(drain(core), AppendEntries) if m.to_peer == 2]
    assert [e.index for m in appends for e in m.entries] == [4, 5]
    assert appends[0].prev_log_index == 3 and appends[0].prev_log_term == 1


def test_leader_success_updates_next_and_match_index() -> None:
    """Figure 2, Leaders, rule 3.1: if successful, update nextIndex and matchIndex for the
    follower (§5.3)."""
    core, readies = leader(term=1, log=[1, 1], acked=True)
    core.propose(b"a")
    to2 = next(m for m in sent(drain(core), AppendEntries) if m.to_peer == 2 and m.entries)
    assert core.match_index(2) == 2
    ack(core, to2)
    assert core.match_index(2) == 3
    core.propose(b"b")
    [m] = [m for m in sent(drain(core), AppendEntries) if m.to_peer == 2]
    assert m.prev_log_index == 3 and [e.index for e in m.entries] == [4]  # nextIndex = 4


def test_leader_decrements_next_index_and_retries_on_inconsistency() -> None:
    """Figure 2, Leaders, rule 3.2: if AppendEntries fails because of log inconsistency,
    decrement nextIndex and retry (§5.3), here with the fast back-off of §5.3's note: the
    follower's hint (conflicting term, its first index) skips a whole term at once."""
    core, readies = leader(term=4, log=[1, 1, 4, 4, 4])
    to2 = next(m for m in sent(readies, AppendEntries) if m.to_peer == 2)
    assert (to2.prev_log_index, to2.prev_log_term) == (5, 4)
    # Follower 2 holds 1,1,2,2,2 (Figure 7 style): its entry 5 has term 2, first of term 2 is 3.
    readies = step(core, AppendEntriesResponse(2, 1, 5, False, prev_log_index=5,
                                               conflict_index=3, conflict_term=2))
    [retry] = [m for m in sent(readies, AppendEntries) if m.to_peer == 2]
    assert (retry.prev_log_index, retry.prev_log_term) == (2, 1)
    assert [(e.term, e.index) for e in retry.entries] == [(4, 3), (4, 4), (4, 5)]
    # A follower whose log is too short says so (conflict_term 0, its last index + 1).
    readies = step(core, AppendEntriesResponse(3, 1, 5, False, prev_log_index=5,
                                               conflict_index=2, conflict_term=0))
    [retry3] = [m for m in sent(readies, AppendEntries) if m.to_peer == 3]
    assert retry3.prev_log_index == 1 and [e.index for e in retry3.entries] == [2, 3, 4, 5]


def test_leader_commits_by_majority_of_match_index_in_current_term() -> None:
    """Figure 2, Leaders, rule 4: if there exists N > commitIndex with a majority of
    matchIndex[i] >= N and log[N].term == currentTerm, set commitIndex = N (§5.3, §5.4)."""
    core, readies = leader((1, 2, 3, 4, 5), term=1, acked=True)
    core.propose(b"x")
    appends = {m.to_peer: m for m in sent(drain(core), AppendEntries)}
    ack(core, appends[2])
    assert core.commit_index == 0  # leader + 2 = 2 of 5
    ack(core, appends[3])
    assert core.commit_index == 1  # leader + 2 + 3 = 3 of 5


def test_leader_counts_itself_only_once_its_entries_are_durable() -> None:
    """Thesis §10.2.1 and the Ready contract: the leader sends AppendEntries in parallel with
    its own disk write, but its matchIndex (its share of a majority) moves only on advance()."""
    core, _ = leader(term=1, acked=True)
    core.propose(b"x")
    rd = core.ready()
    assert rd.entries and sent([rd], AppendEntries)  # sent while the write is in flight
    assert core.match_index(1) == 0
    core.advance(rd)
    assert core.match_index(1) == 1


# ============================================================================ Figure 2: AppendEntries receiver


def test_append_entries_rule_1_reply_false_if_term_is_stale() -> None:
    """Figure 2, AppendEntries RPC, receiver rule 1: reply false if term < currentTerm (§5.1);
    the reply carries currentTerm so the stale leader steps down; nothing else changes."""
    core = new_core(2, term=3, log_terms=[1, 3])
    readies = step(core, append(1, 2, 2, (3, 2), entries((2, 3)), commit=3))
    [reply] = sent(readies, AppendEntriesResponse)
    assert (reply.to_peer, reply.term, reply.success) == (1, 3, False)
    assert core.term == 3 and core.leader_id == NO_PEER and core.last_index == 2
    assert core.commit_index == 0
    assert not any(rd.entries or rd.hard_state for rd in readies)


def test_append_entries_rule_2_reply_false_if_log_lacks_matching_prev_entry() -> None:
    """Figure 2, AppendEntries RPC, receiver rule 2: reply false if the log doesn't contain an
    entry at prevLogIndex whose term matches prevLogTerm (§5.3). The rejection carries the
    back-off hint and changes nothing in the log."""
    # Too short: no entry at prevLogIndex.
    core = new_core(2, term=2, log_terms=[1, 1])
    [reply] = sent(step(core, append(1, 2, 2, (2, 4), entries((2, 5)))), AppendEntriesResponse)
    assert not reply.success
    assert (reply.conflict_term, reply.conflict_index, reply.prev_log_index) == (0, 3, 4)
    assert log_terms(core) == [1, 1]
    # An entry at prevLogIndex with another term: hint = that term and its first index.
    core = new_core(2, term=3, log_terms=[1, 2, 2, 2])
    readies = step(core, append(1, 2, 3, (3, 4), entries((3, 5))))
    [reply] = sent(readies, AppendEntriesResponse)
    assert not reply.success
    assert (reply.conflict_term, reply.conflict_index) == (2, 2)
    assert log_terms(core) == [1, 2, 2, 2]
    assert not any(rd.entries for rd in readies)


def test_append_entries_rule_3_delete_conflicting_entry_and_all_that_follow() -> None:
    """Figure 2, AppendEntries RPC, receiver rule 3: if an existing entry conflicts with a new
    one (same index, different terms), delete the existing entry and all that follow it
    (§5.3). The Ready hands the driver the replacement suffix from the conflict on."""
    core = new_core(2, term=3, log_terms=[1, 1, 2, 2, 2])
    readies = step(core, append(1, 2, 3, (1, 2), entries((3, 3))))
    assert log_terms(core) == [1, 1, 3]
    [rd] = [rd for rd in readies if rd.entries]
    assert [(e.term, e.index) for e in rd.entries] == [(3, 3)]
    disk = DiskRecord(HardState(3), None, list(log_from_terms([1, 1, 2, 2, 2])))
    for rd in readies:
        disk.persist(rd)
    assert [e.term for e in disk.entries] == [1, 1, 3]  # the stale suffix is gone on disk too


def test_append_entries_rule_4_append_new_entries_not_already_in_log() -> None:
    """Figure 2, AppendEntries RPC, receiver rule 4: append any new entries not already in the
    log. Entries already present are kept as they are: a delayed, shorter AppendEntries from
    the same leader must not truncate what a later one appended."""
    core = new_core(2, term=1, log_terms=[1, 1])
    readies = step(core, append(1, 2, 1, (1, 1), entries((1, 2), (1, 3), (1, 4), tag="s")))
    assert log_terms(core) == [1, 1, 1, 1]
    assert [e.index for rd in readies for e in rd.entries] == [3, 4]  # only the new ones
    readies = step(core, append(1, 2, 1, (1, 1), entries((1, 2), tag="s")))  # delayed duplicate
    assert log_terms(core) == [1, 1, 1, 1]
    assert not any(rd.entries for rd in readies)
    [reply] = sent(readies, AppendEntriesResponse)
    assert reply.success and reply.match_index == 2


def test_append_entries_rule_5_commit_is_min_of_leader_commit_and_last_new_entry() -> None:
    """Figure 2, AppendEntries RPC, receiver rule 5: if leaderCommit > commitIndex, set
    commitIndex = min(leaderCommit, index of last new entry). Entries beyond what this message
    proved to match are not committed, and commitIndex never decreases."""
    core = new_core(2, term=1, log_terms=[1, 1, 1, 1, 1])
    step(core, append(1, 2, 1, (1, 2), entries((1, 3), tag="s"), commit=5))
    assert core.commit_index == 3
    step(core, append(1, 2, 1, (1, 3), commit=2))
    assert core.commit_index == 3  # never backwards
    step(core, append(1, 2, 1, (1, 5), commit=4))
    assert core.commit_index == 4
    # A heartbeat's prevLogIndex is the last entry it vouches for.
    stale = new_core(2, term=2, log_terms=[1, 1, 1, 1])  # 3 and 4 may be stale (term 1)
    step(stale, append(1, 2, 2, (1, 2), commit=4))
    assert stale.commit_index == 2


# ============================================================================ Figure 2: RequestVote receiver


def test_request_vote_rule_1_no_vote_for_stale_term() -> None:
    """Figure 2, RequestVote RPC, receiver rule 1: reply false if term < currentTerm (§5.1).
    The voter's state is unchanged. (The core, like etcd, may stay silent instead of replying:
    if it answers, the answer must be a refusal carrying its newer term.)"""
    core = new_core(2, term=5, vote=3, config=PLAIN)
    readies = step(core, RequestVote(1, 2, 4, 10, 4))
    for reply in sent(readies, RequestVoteResponse):
        assert not reply.vote_granted and reply.term == 5
    assert (core.term, core.vote) == (5, 3)
    assert not any(rd.hard_state for rd in readies)


def test_request_vote_rule_2_grant_if_not_voted_and_log_up_to_date() -> None:
    """Figure 2, RequestVote RPC, receiver rule 2: if votedFor is null or candidateId, and the
    candidate's log is at least as up-to-date as the receiver's, grant the vote (§5.2, §5.4).
    At most one candidate per term: a retry from the same candidate is granted again, any
    other candidate is refused."""
    core = new_core(2, term=2, log_terms=[1, 2], config=PLAIN)
    readies = step(core, RequestVote(3, 2, 2, 2, 2))
    assert [m.vote_granted for m in sent(readies, RequestVoteResponse)] == [True]
    assert core.vote == 3
    assert [m.vote_granted for m in sent(step(core, RequestVote(3, 2, 2, 2, 2)))] == [True]
    assert [m.vote_granted for m in sent(step(core, RequestVote(1, 2, 2, 5, 2)))] == [False]
    assert core.vote == 3


@pytest.mark.parametrize(
    "last_term, last_index, granted",
    [
        (2, 3, True),   # same last term, same length
        (2, 4, True),   # same last term, longer
        (3, 1, True),   # higher last term wins over length
        (2, 2, False),  # same last term, shorter
        (1, 9, False),  # lower last term loses despite length
    ],
)
def test_request_vote_rule_2_election_restriction(last_term: int, last_index: int, granted: bool) -> None:
    """Figure 2, RequestVote rule 2 / §5.4.1: "at least as up-to-date": compare the terms of
    the last entries; with equal terms, the longer log is more up-to-date."""
    core = new_core(2, term=3, log_terms=[1, 2, 2], config=PLAIN)
    [reply] = sent(step(core, RequestVote(1, 2, 3, last_index, last_term)), RequestVoteResponse)
    assert reply.vote_granted is granted
    assert core.vote == (1 if granted else NO_PEER)


# ============================================================================ persistence before reply


def test_vote_is_persisted_in_the_ready_that_grants_it() -> None:
    """Figure 2, "Persistent state on all servers: updated on stable storage before responding
    to RPCs", as the Ready contract expresses it: a granted vote leaves in the same Ready as
    the HardState recording it (the driver persists before sending)."""
    core = new_core(2, term=1, config=PLAIN)
    readies = step(core, RequestVote(3, 2, 4, 0, 0))
    [rd] = [rd for rd in readies if rd.messages]
    [reply] = rd.messages
    assert isinstance(reply, RequestVoteResponse) and reply.vote_granted
    assert rd.hard_state == HardState(4, 3, 0)


def test_append_acknowledgement_is_in_the_ready_that_persists_its_entries() -> None:
    """Figure 2 persistence rule via the Ready contract: an AppendEntries acknowledgement
    leaves in the same Ready as the entries (and new term) it acknowledges."""
    core = new_core(2, term=1, log_terms=[1])
    readies = step(core, append(1, 2, 2, (1, 1), entries((2, 2), (2, 3)), commit=1))
    [rd] = [rd for rd in readies if rd.messages]
    [reply] = rd.messages
    assert isinstance(reply, AppendEntriesResponse) and reply.success and reply.match_index == 3
    assert [(e.term, e.index) for e in rd.entries] == [(2, 2), (2, 3)]
    assert rd.hard_state is not None and rd.hard_state.term == 2


def test_snapshot_acknowledgement_is_in_the_ready_that_persists_the_snapshot() -> None:
    """Figure 13 receiver rule 5 ("save snapshot file") before the reply, via the Ready
    contract: the final chunk's acknowledgement leaves with the snapshot to persist."""
    core = new_core(2, term=1, log_terms=[1])
    readies = step(core, InstallSnapshot(1, 2, 1, 5, 1, 0, b"state", True))
    [rd] = [rd for rd in readies if rd.messages]
    [reply] = rd.messages
    assert isinstance(reply, InstallSnapshotResponse) and reply.done and reply.match_index == 5
    assert rd.snapshot == Snapshot(5, 1, b"state")


def test_restarted_peer_remembers_its_vote() -> None:
    """Figure 2, persistent state (currentTerm, votedFor): a peer that voted, crashed and
    restarted from its disk refuses a second candidate of the same term."""
    net = Network(3, config=PLAIN)
    net.step(RequestVote(2, 1, 1, 0, 0))
    assert net.nodes[1].disk.hard_state == HardState(1, 2, 0)
    net.crash(1)
    net.restart(1)
    net.queue.clear()
    net.step(RequestVote(3, 1, 1, 0, 0))
    [reply] = [m for m in net.queue if isinstance(m, RequestVoteResponse) and m.to_peer == 3]
    assert not reply.vote_granted and net.core(1).vote == 2


# ============================================================================ §5.4.2 / Figure 8


def test_figure_8_leader_does_not_commit_previous_term_entry_by_counting_replicas() -> None:
    """Paper §5.4.2 and Figure 8 (c): a leader of term 4 that has replicated the term-2 entry
    at index 2 on a majority (S1, S2, S3 of five) must not commit it by counting replicas; it
    commits it only indirectly, once an entry of its own term (its no-op at index 3) is on a
    majority."""
    # Byte cap: one entry per AppendEntries, so followers can acknowledge index 2 alone.
    config = Config(pre_vote=False, check_quorum=False, max_append_bytes=1)
    s1 = new_core(1, (1, 2, 3, 4, 5), term=3, log_terms=[1, 2], commit=1, config=config)
    readies = elect(s1)
    assert s1.role is Role.LEADER and s1.term == 4
    assert s1.log.entry(3).term == 4  # the no-op of term 4
    first = {m.to_peer: m for m in sent(readies, AppendEntries) if m.term == 4}
    for follower in (2, 3):  # S2, S3 hold only index 1: they ask for index 2
        readies = step(s1, AppendEntriesResponse(follower, 1, 4, False,
                                                 prev_log_index=first[follower].prev_log_index,
                                                 conflict_index=2, conflict_term=0))
        [probe] = [m for m in sent(readies, AppendEntries) if m.to_peer == follower]
        assert [(e.term, e.index) for e in probe.entries] == [(2, 2)]
        readies = ack(s1, probe)
        assert s1.match_index(follower) == 2
        assert s1.commit_index == 1, "committed a previous-term entry by counting replicas"
        next_appends = [m for m in sent(readies, AppendEntries) if m.to_peer == follower]
        first[follower] = next_appends[0]
    # Index 2 is on S1, S2, S3 (a majority of 5), still uncommitted. Now the no-op replicates.
    assert [(e.term, e.index) for e in first[2].entries] == [(4, 3)]
    ack(s1, first[2])
    assert s1.commit_index == 1  # S1 and S2 hold index 3: 2 of 5
    ack(s1, first[3])
    assert s1.commit_index == 3  # index 3 (term 4) on 3 of 5: commits 2 and 3 together


def test_figure_8_previous_term_entry_on_majority_can_still_be_overwritten() -> None:
    """Paper Figure 8 (d): why the rule above matters. Index 2 (term 2) is on S1, S2, S3, but
    S1 crashed before its term-4 entry replicated; S5 (last entry of term 3) is elected with
    the votes of S2, S3, S4 and overwrites index 2 everywhere. Had index 2 been committed
    and applied, state-machine safety would be broken (the network would raise)."""
    s1_s2_s3 = InitialState(HardState(4, 1, 1), None, log_from_terms([1, 2]))
    initial = {
        1: s1_s2_s3,
        2: s1_s2_s3,
        3: s1_s2_s3,
        4: InitialState(HardState(4, 1, 1), None, log_from_terms([1])),
        5: InitialState(HardState(4, NO_PEER, 1), None,
                        (Entry(1, 1, b"s1"), Entry(3, 2, b"from-s5"))),
    }
    net = Network(5, config=PLAIN, initial=initial)
    net.crash(1)
    net.campaign(5)
    net.stabilize()
    assert net.leader() == 5 and net.core(5).term == 5
    net.tick(5, H)
    net.stabilize()
    for peer in (2, 3, 4, 5):
        assert net.core(peer).log.entry(2) == Entry(3, 2, b"from-s5")
        assert net.core(peer).commit_index == 3


def test_figure_8_entry_of_current_term_on_majority_prevents_overwrite() -> None:
    """Paper Figure 8 (e): once S1's term-4 entry is on a majority, S5 cannot be elected
    (S2 and S3 refuse: their last entry, of term 4, is more up-to-date than S5's)."""
    with_term_4 = InitialState(HardState(4, 1, 1), None,
                               log_from_terms([1, 2]) + (Entry(4, 3, b""),))
    initial = {
        1: with_term_4, 2: with_term_4, 3: with_term_4,
        4: InitialState(HardState(4, 1, 1), None, log_from_terms([1])),
        5: InitialState(HardState(4, NO_PEER, 1), None, (Entry(1, 1, b"s1"), Entry(3, 2, b"x"))),
    }
    net = Network(5, config=PLAIN, initial=initial)
    net.crash(1)
    net.campaign(5)
    net.stabilize()
    assert net.core(5).role is not Role.LEADER
    refusals = [rd for p in (2, 3) for rd in net.nodes[p].readies
                for m in rd.messages if isinstance(m, RequestVoteResponse) and not m.vote_granted]
    assert len(refusals) == 2


# ============================================================================ pre-vote (thesis §9.6)

PRE_VOTE = Config(pre_vote=True, check_quorum=False)


def test_pre_vote_does_not_increment_term() -> None:
    """Thesis §9.6: on timeout a pre-candidate asks whether it could win in term+1 without
    incrementing its own term or voting; nothing is persisted."""
    core = new_core(1, term=3, vote=2, log_terms=[3], commit=1, config=PRE_VOTE)
    readies: list[Ready] = []
    while core.role is Role.FOLLOWER:
        readies += tick(core)
    assert core.role is Role.PRE_CANDIDATE
    assert (core.term, core.vote) == (3, 2)
    assert not any(rd.hard_state for rd in readies)
    requests = sent(readies, RequestVote)
    assert {(m.term, m.pre_vote, m.last_log_index, m.last_log_term) for m in requests} == {
        (4, True, 1, 3)}


def test_first_campaign_of_a_fresh_peer_skips_pre_vote() -> None:
    """Thesis §9.6's pre-vote guards against a peer rejoining with an inflated term. Before
    any term has begun (term 0) a campaign for term 1 cannot disrupt anyone, so the first
    election of a fresh cluster goes straight to RequestVote; from term 1 on, pre-vote."""
    fresh = new_core(1, config=PRE_VOTE)
    readies: list[Ready] = []
    while fresh.role is Role.FOLLOWER:
        readies += tick(fresh)
    assert fresh.role is Role.CANDIDATE and fresh.term == 1
    assert {m.pre_vote for m in sent(readies, RequestVote)} == {False}
    seasoned = new_core(1, term=1, config=PRE_VOTE)
    readies = []
    while seasoned.role is Role.FOLLOWER:
        readies += tick(seasoned)
    assert seasoned.role is Role.PRE_CANDIDATE and seasoned.term == 1
    assert {m.pre_vote for m in sent(readies, RequestVote)} == {True}


def test_pre_vote_receiver_keeps_term_and_vote() -> None:
    """Thesis §9.6: a pre-vote changes nothing at the voter: term and votedFor stay, nothing is
    persisted; the grant is answered in the candidate's prospective term."""
    core = new_core(2, term=3, vote=3, log_terms=[3], commit=1, config=PRE_VOTE)
    readies = step(core, RequestVote(1, 2, 4, 1, 3, pre_vote=True))
    [reply] = sent(readies, RequestVoteResponse)
    assert reply.vote_granted and reply.pre_vote and reply.term == 4
    assert (core.term, core.vote) == (3, 3)
    assert not any(rd.hard_state for rd in readies)


def test_pre_vote_refused_for_stale_log() -> None:
    """Thesis §9.6: a pre-vote is granted only if the candidate's log is up-to-date (§5.4.1)."""
    core = new_core(2, term=3, log_terms=[3, 3], commit=2, config=PRE_VOTE)
    [reply] = sent(step(core, RequestVote(1, 2, 4, 1, 3, pre_vote=True)), RequestVoteResponse)
    assert not reply.vote_granted and reply.pre_vote and reply.term == 3


def test_pre_candidate_campaigns_only_after_majority_of_pre_votes() -> None:
    """Thesis §9.6: only a granted majority of pre-votes leads to a real election (term+1,
    self-vote, persisted, RequestVotes); a refusing majority returns it to follower."""
    core = new_core(1, (1, 2, 3, 4, 5), term=2, config=PRE_VOTE)
    while core.role is Role.FOLLOWER:
        tick(core)
    step(core, RequestVoteResponse(2, 1, 3, True, pre_vote=True))
    assert core.role is Role.PRE_CANDIDATE and core.term == 2
    readies = step(core, RequestVoteResponse(3, 1, 3, True, pre_vote=True))
    assert core.role is Role.CANDIDATE and (core.term, core.vote) == (3, 1)
    assert any(rd.hard_state == HardState(3, 1, 0) for rd in readies)
    assert {m.pre_vote for m in sent(readies, RequestVote)} == {False}

    loser = new_core(1, (1, 2, 3), term=2, config=PRE_VOTE)
    while loser.role is Role.FOLLOWER:
        tick(loser)
    step(loser, RequestVoteResponse(2, 1, 2, False, pre_vote=True))
    step(loser, RequestVoteResponse(3, 1, 2, False, pre_vote=True))
    assert loser.role is Role.FOLLOWER and loser.term == 2


@pytest.mark.parametrize("pre_vote", [True, False], ids=["pre-vote", "control"])
def test_rejoining_partitioned_node_does_not_disrupt(pre_vote: bool) -> None:
    """Thesis §9.6: a server partitioned away keeps timing out; with pre-vote (and the
    heard-from-a-leader condition, here check-quorum's lease) its term never moves, so when it
    rejoins, the leader and the term are undisturbed and it simply catches up. The control case
    (Figure 2 alone) shows the disruption pre-vote prevents: the rejoining server's inflated
    term deposes the leader."""
    config = Config() if pre_vote else PLAIN
    net = Network(3, seed=21, config=config)
    net.campaign(1)
    net.stabilize()
    net.propose(1, b"a")
    net.stabilize()
    net.isolate(3)
    for step_number in range(10 * E):
        net.tick_all()
        if step_number == 5:
            net.propose(1, b"b")
        net.stabilize()
    isolated_term = net.core(3).term
    if pre_vote:
        assert isolated_term == 1
    else:
        assert isolated_term > 1
    net.heal()
    for _ in range(10 * E):
        net.tick_all()
        net.stabilize()
    if pre_vote:
        assert net.leader() == 1
        assert {net.core(p).term for p in net.ids} == {1}
        assert net.state_values(3) == ["a", "b"]
    else:
        assert net.core(1).term > 1  # disrupted


# ============================================================================ check-quorum (thesis §6.2)


def test_check_quorum_leader_steps_down_without_majority_contact() -> None:
    """Thesis §6.2: a leader steps down if an election timeout passes without a successful
    round of contact with a majority — within two election timeouts of losing contact (the
    timeout that was running, then one full timeout of silence)."""
    net = Network(3, seed=31)
    net.campaign(1)
    net.stabilize()
    net.isolate(1)
    for elapsed in range(1, 2 * E + 1):
        net.tick(1)
        if net.core(1).role is not Role.LEADER:
            break
    assert net.core(1).role is Role.FOLLOWER and net.core(1).leader_id == NO_PEER
    assert elapsed > E - 1  # not before a full timeout without contact could have passed
    assert net.core(1).propose(b"x") is None


def test_check_quorum_leader_with_majority_contact_keeps_leading() -> None:
    """Thesis §6.2: a leader hearing from a majority (itself included) keeps leading even with
    a minority cut off."""
    net = Network(5, seed=32)
    net.campaign(1)
    net.stabilize()
    net.partition([1, 2, 3], [4], [5])
    for _ in range(10 * E):
        net.tick(1)
        net.tick(2)
        net.tick(3)
        net.stabilize()
    assert net.leader() == 1 and net.core(1).term == 1


# ============================================================================ leader lease (thesis §4.2.3)


def test_follower_ignores_votes_within_leader_lease() -> None:
    """Thesis §4.2.3 (with check-quorum, as in etcd): a server that heard from a current leader
    within the minimum election timeout ignores RequestVote — pre-vote or not — keeping its
    term and vote; once that long has passed without the leader, it considers the request."""
    core = new_core(2, term=1, config=Config())
    step(core, append(1, 2, 1, (0, 0)))
    tick(core, E - 1)
    for request in (RequestVote(3, 2, 2, 0, 0, pre_vote=True), RequestVote(3, 2, 2, 0, 0)):
        readies = step(core, request)
        assert not sent(readies) and (core.term, core.vote, core.leader_id) == (1, NO_PEER, 1)
    core = new_core(2, term=1, config=Config(election_ticks=50))  # no timeout of its own soon
    step(core, append(1, 2, 1, (0, 0)))
    tick(core, 50)
    [reply] = sent(step(core, RequestVote(3, 2, 2, 0, 0)), RequestVoteResponse)
    assert reply.vote_granted and core.term == 2


def test_leader_ignores_votes_within_its_lease() -> None:
    """Thesis §4.2.3: a leader in contact with its followers ignores a disruptive RequestVote
    of a higher term (it would otherwise step down)."""
    core, _ = leader(term=1, config=Config(pre_vote=False, check_quorum=True))
    term = core.term
    readies = step(core, RequestVote(3, 1, term + 5, 0, 0))
    assert core.role is Role.LEADER and core.term == term and not sent(readies, RequestVoteResponse)


def test_leadership_transfer_vote_bypasses_lease() -> None:
    """Thesis §3.10 with §4.2.3: a RequestVote from a transfer target (sent because the
    leader told it to campaign) is honoured inside the lease."""
    core = new_core(2, term=1, config=Config())
    step(core, append(1, 2, 1, (0, 0)))
    [reply] = sent(step(core, RequestVote(3, 2, 2, 0, 0, leadership_transfer=True)),
                   RequestVoteResponse)
    assert reply.vote_granted and (core.term, core.vote) == (2, 3)


# ============================================================================ ReadIndex (thesis §6.4)


def _reads(readies: Sequence[Ready]) -> list[ReadState]:
    return [rs for rd in readies for rs in rd.read_states]


def test_read_index_refused_by_non_leader() -> None:
    """Thesis §6.4: only the leader serves ReadIndex (followers forward to it)."""
    assert new_core(2).read_index(1) is False


def test_read_index_needs_quorum_round_started_after_the_request() -> None:
    """Thesis §6.4 step 3: the leader records its commit index as the read index, then sends a
    new round of heartbeats and serves the read only once a majority acknowledged that round;
    acknowledgements of messages sent before the request do not count."""
    core, readies = leader(term=1, log=[1], config=Config(pre_vote=False))
    old = {m.to_peer: m for m in sent(readies, AppendEntries)}
    assert core.read_index(7)
    readies = drain(core)
    round_ = {m.to_peer: m for m in sent(readies, AppendEntries)}
    assert set(round_) == {2, 3} and not _reads(readies)
    assert all(m.seq > old[p].seq for p, m in round_.items())
    assert not _reads(ack(core, old[2]))  # answers a message sent before the request
    assert not _reads(ack(core, old[3]))
    assert _reads(ack(core, round_[2])) == [ReadState(1, 7)]


def test_read_index_is_commit_index_when_request_arrived() -> None:
    """Thesis §6.4 step 1: readIndex = the leader's commitIndex when the request arrived."""
    core, readies = leader((1, 2, 3), term=1, log=[1], config=Config(pre_vote=False), acked=True)
    assert core.read_index(7)
    drain(core)  # the confirmation round
    core.propose(b"later")
    appends = {m.to_peer: m for m in sent(drain(core), AppendEntries) if m.entries}
    # This append left after the read arrived, so its acknowledgement confirms the read too;
    # the same acknowledgement commits entry 2, but the read's index stays 1.
    readies = ack(core, appends[2])
    assert core.commit_index == 2
    assert _reads(readies) == [ReadState(1, 7)]


def test_read_index_waits_for_an_entry_of_the_current_term_to_commit() -> None:
    """Thesis §6.4 step 1: a new leader does not know the latest commit index until an entry of
    its term commits; a read waits for its no-op to commit, then for a quorum round."""
    core, readies = leader(term=1, log=[1, 1], commit=1, config=Config(pre_vote=False))
    noop_appends = {m.to_peer: m for m in sent(readies, AppendEntries) if m.term == core.term}
    assert core.read_index(9)
    readies = drain(core)
    assert not sent(readies) and not _reads(readies)
    readies = ack(core, noop_appends[2])
    assert core.commit_index == 3
    round_ = {m.to_peer: m for m in sent(readies, AppendEntries)}
    assert not _reads(readies) and set(round_) == {2, 3}
    assert _reads(ack(core, round_[3])) == [ReadState(3, 9)]


def test_reads_arriving_during_a_round_wait_for_the_next_round() -> None:
    """Thesis §6.4: a read arriving while a round is in flight was not covered by that round's
    messages (they left before it arrived); it needs the next round."""
    core, _ = leader(term=1, log=[1], config=Config(pre_vote=False))
    core.read_index(1)
    first = {m.to_peer: m for m in sent(drain(core), AppendEntries)}
    core.read_index(2)
    assert not sent(drain(core))
    readies = ack(core, first[2])
    assert _reads(readies) == [ReadState(1, 1)]
    second = {m.to_peer: m for m in sent(readies, AppendEntries)}
    assert set(second) == {2, 3} and second[2].seq > first[2].seq
    assert _reads(ack(core, second[3])) == [ReadState(1, 2)]


def test_pending_reads_fail_when_leadership_is_lost() -> None:
    """Thesis §6.4 / Ready contract: reads the leader can no longer confirm are reported in
    Ready.failed_reads when it steps down (including reads waiting for the first commit)."""
    core, _ = leader(term=1, log=[1, 1], commit=1, config=Config(pre_vote=False))
    core.read_index(3)  # waits for the no-op to commit
    drain(core)
    readies = step(core, AppendEntriesResponse(2, 1, core.term + 1, False))
    assert core.role is Role.FOLLOWER
    assert [c for rd in readies for c in rd.failed_reads] == [3]

    core, _ = leader(term=1, log=[1], config=PLAIN)  # no lease: the vote deposes the leader
    core.read_index(4)
    drain(core)
    readies = step(core, RequestVote(2, 1, core.term + 1, 5, 5))
    assert [c for rd in readies for c in rd.failed_reads] == [4]


def test_read_index_single_node_is_immediate() -> None:
    """Thesis §6.4: a one-server cluster is its own majority."""
    core = new_core(1, (1,), config=PLAIN)
    while core.role is not Role.LEADER:
        tick(core)
    drain(core)
    assert core.read_index(5)
    assert _reads(drain(core)) == [ReadState(0, 5)]


# ============================================================================ InstallSnapshot (Figure 13)

SNAP = b"abcdefghij"


def chunk(offset: int, size: int, *, index: int = 6, term: int = 2, leader_term: int = 2,
          data: bytes = SNAP) -> InstallSnapshot:
    piece = data[offset:offset + size]
    return InstallSnapshot(1, 2, leader_term, index, term, offset, piece, offset + size >= len(data))


def snapshot_follower(log: Sequence[int] = (1, 1, 2), commit: int = 1) -> RaftCore:
    return new_core(2, term=2, log_terms=log, commit=commit)


def _replies(readies: Sequence[Ready]) -> list[InstallSnapshotResponse]:
    return sent(readies, InstallSnapshotResponse)


def test_install_snapshot_rule_1_reply_immediately_if_term_is_stale() -> None:
    """Figure 13, InstallSnapshot RPC, receiver rule 1: reply immediately if term <
    currentTerm, with currentTerm; nothing is stored."""
    core = new_core(2, term=3, log_terms=[1], commit=0)
    readies = step(core, chunk(0, 4, leader_term=2))
    replies = [m for m in sent(readies) if m.to_peer == 1]
    assert replies and all(m.term == 3 for m in replies)
    assert not any(getattr(m, "done", False) or getattr(m, "success", False) for m in replies)
    assert not any(rd.snapshot for rd in readies) and core.snapshot_index == 0


def test_install_snapshot_rule_2_first_chunk_starts_a_transfer() -> None:
    """Figure 13, receiver rule 2: create a new snapshot file if first chunk (offset is 0).
    A chunk at a non-zero offset with no transfer in progress is answered next_offset=0, so
    the leader restarts the transfer."""
    core = snapshot_follower()
    [reply] = _replies(step(core, chunk(4, 4)))
    assert reply.next_offset == 0 and not reply.done
    [reply] = _replies(step(core, chunk(0, 4)))
    assert reply.next_offset == 4 and not reply.done


def test_install_snapshot_rule_2_new_leader_transfer_is_not_spliced_onto_old_partial() -> None:
    """Figure 13, receiver rule 2: a first chunk (offset 0) creates a new snapshot file. A new
    leader's transfer must not be completed onto a previous leader's partial bytes: each peer's
    application encodes its own snapshot, and nothing guarantees two peers' snapshots at the
    same index and term are byte-identical, so splicing can install a state no peer ever had.
    (Resuming a transfer of the same leader is fine; mixing two leaders' bytes is not.)"""
    core = snapshot_follower()
    step(core, chunk(0, 4, data=b"AAAAAAAAAA"))  # leader 1, term 2: a partial transfer
    theirs = b"BBBBBBBBBB"  # leader 3, term 3: its own encoding of the snapshot at 6/2
    offset, installed = 0, []
    for _ in range(10):  # play leader 3 faithfully: always send from the offset asked for
        piece = theirs[offset:offset + 4]
        readies = step(core, InstallSnapshot(3, 2, 3, 6, 2, offset, piece,
                                             offset + len(piece) >= len(theirs)))
        [reply] = _replies(readies)
        installed += [rd.snapshot for rd in readies if rd.snapshot]
        if reply.done:
            break
        offset = reply.next_offset
    assert installed == [Snapshot(6, 2, theirs)], f"installed {installed}"


def test_install_snapshot_rule_3_chunks_are_written_at_their_offset() -> None:
    """Figure 13, receiver rule 3: write data into the snapshot file at the given offset. A
    duplicate or out-of-order chunk is answered with the offset to resume from."""
    core = snapshot_follower()
    step(core, chunk(0, 4))
    [reply] = _replies(step(core, chunk(8, 2)))  # a gap: 4..8 missing
    assert reply.next_offset == 4 and not reply.done
    [reply] = _replies(step(core, chunk(0, 4)))  # a duplicate
    assert reply.next_offset == 4
    step(core, chunk(4, 4))
    readies = step(core, chunk(8, 2))
    assert [rd.snapshot for rd in readies if rd.snapshot] == [Snapshot(6, 2, SNAP)]


def test_install_snapshot_rule_4_reply_and_wait_while_not_done() -> None:
    """Figure 13, receiver rule 4: reply and wait for more data chunks if done is false —
    nothing is installed, the log and commit index are untouched."""
    core = snapshot_follower()
    readies = step(core, chunk(0, 4)) + step(core, chunk(4, 4))
    assert [r.next_offset for r in _replies(readies)] == [4, 8]
    assert not any(rd.snapshot or rd.apply_snapshot or rd.entries for rd in readies)
    assert (core.snapshot_index, core.last_index, core.commit_index) == (0, 3, 1)


def test_install_snapshot_rule_5_save_snapshot_and_discard_older_partial_one() -> None:
    """Figure 13, receiver rule 5: on the last chunk save the snapshot file (Ready.snapshot,
    acknowledged with done and the snapshot's index), discarding any existing or partial
    snapshot with a smaller index."""
    core = snapshot_follower()
    step(core, chunk(0, 4))  # a partial transfer of the snapshot at index 6...
    newer = b"0123456789AB"
    step(core, chunk(0, 6, index=8, data=newer))  # ...superseded by one at index 8
    readies = step(core, chunk(6, 6, index=8, data=newer))
    [reply] = _replies(readies)
    assert reply.done and reply.match_index == 8 and reply.last_included_index == 8
    assert [rd.snapshot for rd in readies if rd.snapshot] == [Snapshot(8, 2, newer)]
    [late] = _replies(step(core, chunk(4, 6)))  # the older transfer is gone
    assert late.done and late.match_index == 8  # already covered by what we hold
    assert core.snapshot_index == 8


def test_install_snapshot_rule_6_retain_entries_following_a_matching_entry() -> None:
    """Figure 13, receiver rule 6: if an existing log entry has the same index and term as the
    snapshot's last included entry, retain the log entries following it."""
    core = new_core(2, term=2, log_terms=[1, 1, 2, 2, 2, 2, 2, 2], commit=1)
    step(core, chunk(0, 10))
    assert core.snapshot_index == 6 and core.last_index == 8
    assert [e.index for e in core.log.slice(7, 9)] == [7, 8]


def test_install_snapshot_rule_7_discard_the_entire_log_otherwise() -> None:
    """Figure 13, receiver rule 7: otherwise discard the entire log."""
    core = new_core(2, term=2, log_terms=[1, 1, 1, 1, 1, 1, 1, 1], commit=1)  # entry 6 is term 1
    readies = step(core, chunk(0, 10))
    assert core.snapshot_index == 6 and core.last_index == 6
    disk = DiskRecord(HardState(2, NO_PEER, 1), None, list(log_from_terms([1] * 8)))
    for rd in readies:
        disk.persist(rd)
    assert disk.entries == [] and disk.snapshot == Snapshot(6, 2, SNAP)


def test_install_snapshot_rule_8_reset_state_machine_from_snapshot() -> None:
    """Figure 13, receiver rule 8: reset the state machine using the snapshot's contents: the
    Ready hands the snapshot to apply, and committed entries resume right after it."""
    core = snapshot_follower()
    readies = step(core, chunk(0, 10))
    assert [rd.apply_snapshot for rd in readies if rd.apply_snapshot] == [Snapshot(6, 2, SNAP)]
    assert core.applied_index == 6 and core.commit_index == 6
    readies = step(core, append(1, 2, 2, (2, 6), entries((2, 7)), commit=7))
    assert [e.index for rd in readies for e in rd.committed_entries] == [7]


def test_install_snapshot_already_covered_is_acknowledged_without_installing() -> None:
    """Paper §7: a snapshot covering no more than what the follower has committed is not
    installed (that would discard committed entries it still serves); the follower reports its
    commit index so the leader resumes from there."""
    core = new_core(2, term=2, log_terms=[1, 1, 2, 2, 2, 2, 2], commit=7)
    readies = step(core, chunk(0, 10))
    [reply] = _replies(readies)
    assert reply.done and reply.match_index == 7
    assert not any(rd.snapshot for rd in readies) and core.snapshot_index == 0


def _leader_with_lagging_follower(chunk_bytes: int = 4) -> tuple[Network, bytes]:
    """Leader 1 compacted through index 3 while follower 3 was away; returns the snapshot."""
    net = Network(3, seed=41, config=Config(snapshot_chunk_bytes=chunk_bytes))
    net.campaign(1)
    net.stabilize()
    net.isolate(3)
    for word in (b"apple", b"banana", b"cherry"):
        net.propose(1, word)
    net.stabilize()
    net.compact(1, 3)
    net.heal()
    return net, b"apple,banana,cherry"


def test_leader_sends_snapshot_when_follower_needs_compacted_entries() -> None:
    """Paper §7: when a follower needs entries the leader has discarded, the leader sends its
    snapshot (in chunks, Figure 13), then resumes AppendEntries after it."""
    net, data = _leader_with_lagging_follower()
    net.tick(1, H)
    net.stabilize()
    chunks = [m for rd in net.nodes[1].readies for m in rd.messages
              if isinstance(m, InstallSnapshot) and m.to_peer == 3]
    assert b"".join(m.data for m in chunks) == data and chunks[-1].done
    assert [m.offset for m in chunks] == list(range(0, len(data), 4))
    assert net.core(3).snapshot_index == 3 and net.state_values(3) == ["apple", "banana", "cherry"]
    net.propose(1, b"date")
    net.stabilize()
    assert net.core(3).log.entry(4).data == b"date"


def test_leader_resumes_snapshot_transfer_at_acknowledged_offset() -> None:
    """Figure 13 with offsets: a lost chunk is resent (by the heartbeat) from the last offset
    the follower acknowledged, not from the beginning."""
    net, data = _leader_with_lagging_follower()
    net.tick(1, H)
    net.deliver()  # chunk 0 arrives
    net.deliver()  # its acknowledgement: the leader sends chunk 4
    net.drop(to=3)  # ...which is lost
    net.tick(1, H)
    resent = [m for m in net.queue if isinstance(m, InstallSnapshot)]
    assert [m.offset for m in resent] == [4]
    net.stabilize()
    assert net.core(3).snapshot_index == 3


def test_leader_restarts_snapshot_transfer_when_follower_lost_it() -> None:
    """Figure 13 with offsets: a follower that restarted mid-transfer holds no partial
    snapshot; it answers next_offset=0 and the leader starts over from offset 0."""
    net, data = _leader_with_lagging_follower()
    net.tick(1, H)
    net.deliver()
    net.deliver()
    net.crash(3)
    net.restart(3)
    net.deliver()  # chunk 4 reaches the restarted follower
    [reply] = [m for m in net.queue if isinstance(m, InstallSnapshotResponse)]
    assert reply.next_offset == 0
    net.deliver()
    assert [m.offset for m in net.queue if isinstance(m, InstallSnapshot)] == [0]
    net.stabilize()
    assert net.state_values(3) == ["apple", "banana", "cherry"]


def test_duplicate_snapshot_acknowledgement_does_not_duplicate_the_rest_of_the_transfer() -> None:
    """Figure 13 with offsets, flow control: when a heartbeat resends the outstanding chunk
    and both copies are acknowledged, the leader must send the next chunk once, not once per
    acknowledgement — otherwise every later chunk travels twice, and each further resend
    during the transfer adds another full copy of the remaining snapshot."""
    net, data = _leader_with_lagging_follower(chunk_bytes=2)
    net.tick(1, H)  # chunk at offset 0
    net.tick(1, H)  # heartbeat: chunk 0 again (the first is still in flight)
    net.stabilize()
    chunks = [m for rd in net.nodes[1].readies for m in rd.messages
              if isinstance(m, InstallSnapshot) and m.to_peer == 3]
    offsets = [m.offset for m in chunks]
    assert net.core(3).snapshot_index == 3
    expected = [0, 0] + list(range(2, len(data), 2))
    assert offsets == expected, f"chunks sent at offsets {offsets}"


# ============================================================================ leadership transfer (thesis §3.10)


def test_transfer_to_up_to_date_follower_sends_timeout_now() -> None:
    """Thesis §3.10: once the target's log matches the leader's, the leader sends TimeoutNow;
    transfer requests from non-leaders, to itself or to unknown peers are refused."""
    core, readies = leader(term=1, log=[1])
    for m in sent(readies, AppendEntries):
        ack(core, m)
    assert core.transfer_leadership(3)
    assert [(m.to_peer, m.term) for m in sent(drain(core), TimeoutNow)] == [(3, core.term)]
    assert not core.transfer_leadership(1) and not core.transfer_leadership(9)
    assert not new_core(2).transfer_leadership(3)


def test_transfer_brings_target_up_to_date_first() -> None:
    """Thesis §3.10 step 1: the leader first replicates its log to the target; TimeoutNow
    follows the acknowledgement that makes the target's log match."""
    core, readies = leader(term=1, log=[1])
    for m in sent(readies, AppendEntries):
        ack(core, m)
    core.propose(b"x")
    appends = {m.to_peer: m for m in sent(drain(core), AppendEntries)}
    assert core.transfer_leadership(3)
    assert not sent(drain(core), TimeoutNow)
    readies = ack(core, appends[3])
    assert [m.to_peer for m in sent(readies, TimeoutNow)] == [3]


def test_transfer_stops_proposals_and_aborts_after_election_timeout() -> None:
    """Thesis §3.10: the leader stops accepting client requests during a transfer, and aborts
    the transfer (accepting requests again) if it does not complete within an election
    timeout."""
    core, readies = leader(term=1, log=[1])
    assert core.transfer_leadership(2)
    assert core.propose(b"x") is None
    tick(core, E - 1)
    assert core.propose(b"x") is None
    tick(core, 1)
    assert core.propose(b"x") is not None


def test_timeout_now_makes_target_campaign_at_once() -> None:
    """Thesis §3.10 step 2: on TimeoutNow from its leader the target starts an election
    immediately — a real one (term+1, no pre-vote round) flagged as a transfer; a TimeoutNow
    from anyone else is ignored."""
    core = new_core(3, term=1, config=Config())
    step(core, append(1, 3, 1, (0, 0)))
    readies = step(core, TimeoutNow(2, 3, 1))
    assert core.role is Role.FOLLOWER and not sent(readies, RequestVote)
    readies = step(core, TimeoutNow(1, 3, 1))
    assert core.role is Role.CANDIDATE and (core.term, core.vote) == (2, 3)
    requests = sent(readies, RequestVote)
    assert {(m.term, m.pre_vote, m.leadership_transfer) for m in requests} == {(2, False, True)}


def test_leadership_transfer_end_to_end() -> None:
    """Thesis §3.10: the target becomes leader of the next term; nothing committed is lost and
    the old leader follows it."""
    net = Network(3, seed=51)
    net.campaign(1)
    net.stabilize()
    net.propose(1, b"a")
    net.stabilize()
    assert net.transfer(1, 3)
    for _ in range(2 * H):
        net.tick(1)
        net.stabilize()
        if net.leader() == 3:
            break
    assert net.leader() == 3 and net.core(3).term == 2
    assert net.core(1).role is Role.FOLLOWER and net.core(1).leader_id == 3
    assert net.core(3).log.entry(1).data == b"a"
    net.propose(3, b"b")
    net.stabilize()
    net.tick(3)
    net.stabilize()
    assert all(net.state_values(p) == ["a", "b"] for p in net.ids)


# ============================================================================ remote nonsense (DESIGN.md §1)


def _consecutive(core: RaftCore) -> bool:
    log = core.log
    return all(log.entry(i).index == i for i in range(log.first_index, log.last_index + 1))


def test_acknowledgement_beyond_leaders_log_is_dropped_not_raised() -> None:
    """DESIGN.md §1: remote nonsense (malformed fields) is dropped and counted, never raised
    into the driver loop. An acknowledgement claiming a match beyond the leader's last index
    cannot come from a correct follower; it must not raise or move matchIndex/commitIndex."""
    core, _ = leader(term=1, log=[1], acked=True)
    before = sum(core.dropped.values())
    core.step(AppendEntriesResponse(2, 1, core.term, True, prev_log_index=1, match_index=100))
    drain(core)
    assert core.match_index(2) <= core.last_index and core.commit_index <= core.last_index
    assert sum(core.dropped.values()) > before


def test_append_entries_not_continuing_prev_is_dropped_not_raised() -> None:
    """DESIGN.md §1: an AppendEntries whose first entry does not follow prevLogIndex is
    malformed; it is dropped and counted, the log untouched, nothing raised."""
    core = new_core(2, term=1)
    core.step(AppendEntries(1, 2, 1, 0, 0, (Entry(1, 5, b"x"),), 0))
    drain(core)
    assert core.last_index == 0 and sum(core.dropped.values()) == 1


def test_append_entries_with_non_consecutive_entries_does_not_corrupt_the_log() -> None:
    """DESIGN.md §1 (and the log's own invariant: entries are consecutive): an AppendEntries
    whose entries skip an index is malformed; accepting it would silently corrupt the log
    (an entry stored at the wrong position). It is dropped and counted."""
    core = new_core(2, term=1)
    core.step(AppendEntries(1, 2, 1, 0, 0, (Entry(1, 1, b"x"), Entry(1, 3, b"y")), 0))
    drain(core)
    assert _consecutive(core), [core.log.entry(i) for i in range(1, core.last_index + 1)]
    assert sum(core.dropped.values()) == 1


# ============================================================================ Figure 7 repair, end to end


def test_figure_7_leader_repairs_every_divergent_follower() -> None:
    """Paper §5.3 and Figure 7: the leader of term 8 brings followers (a)–(f) — missing
    entries, extra uncommitted entries, or both — into agreement with its log (Log Matching)."""
    logs = {
        1: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6],
        2: [1, 1, 1, 4, 4, 5, 5, 6, 6],
        3: [1, 1, 1, 4],
        4: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        5: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        6: [1, 1, 1, 4, 4, 4, 4],
        7: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    }
    initial = {p: InitialState(HardState(7, NO_PEER, 3), None, log_from_terms(terms))
               for p, terms in logs.items()}
    net = Network(7, seed=61, initial=initial)
    net.campaign(1)
    net.stabilize()
    assert net.leader() == 1 and net.core(1).term == 8
    net.tick(1)
    net.stabilize()
    expected = logs[1] + [8]
    for peer in net.ids:
        assert log_terms(net.core(peer)) == expected, peer
        assert net.core(peer).commit_index == 11
