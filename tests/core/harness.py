"""A deterministic, in-process harness for driving `RaftCore`s in tests.

Two levels of help:

* single-core helpers (`new_core`, `drain`, `sent`, `elect`) for the paper-conformance tests,
  which hand-build messages and inspect exactly what the core answers;
* a `Network` of cores for scenario tests and the golden interaction scripts: every input to a
  core is followed by the Ready loop the `Ready` docstring prescribes (persist into the peer's
  in-memory `DiskRecord`, then queue the messages, then apply, then `advance`), messages wait
  in one FIFO queue until a test delivers them, links can be cut (`isolate`, `partition`),
  and a peer can `crash` (its core is dropped, its disk record kept) and `restart` (a new core
  built from `DiskRecord.initial_state()`).

The network checks safety continuously and raises `AssertionError` when it breaks:
election safety (one leader per term), state-machine safety (no two peers apply different
entries at one index), in-order application, and durability-before-send (a granted vote or
an append acknowledgement leaves a peer only after the state it promises is on its disk).

Rendering (`render_message`, `render_entry`, ...) is byte-stable; the golden interaction
tests compare it verbatim. Notation: `T/I` is term/index (as in etcd's `Log:T/I`), data is a
JSON string, a leader's no-op is `""`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence, TypeVar

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
    PeerId,
    ReadState,
    Ready,
    RequestVote,
    RequestVoteResponse,
    Role,
    Snapshot,
    TimeoutNow,
)

T = TypeVar("T")

# ============================================================================ rendering


def render_data(data: bytes) -> str:
    """Entry or snapshot bytes as a JSON string (deterministic, escapes anything odd)."""
    return json.dumps(data.decode("utf-8", "backslashreplace"))


def render_entry(entry: Entry) -> str:
    return f"{entry.term}/{entry.index} {render_data(entry.data)}"


def render_entries(entries: Iterable[Entry]) -> str:
    return ", ".join(render_entry(e) for e in entries)


def render_peer(peer: PeerId) -> str:
    return "-" if peer == NO_PEER else str(peer)


def render_message(m: Message) -> str:
    """One line per message, e.g. `1->2 AppendEntries term=1 prev=1/3 commit=3 entries=[...]`."""
    head = f"{m.from_peer}->{m.to_peer} {type(m).__name__} term={m.term}"
    if isinstance(m, RequestVote):
        text = f"{head} last={m.last_log_term}/{m.last_log_index}"
        if m.pre_vote:
            text += " pre-vote"
        if m.leadership_transfer:
            text += " transfer"
        return text
    if isinstance(m, RequestVoteResponse):
        text = f"{head} {'granted' if m.vote_granted else 'rejected'}"
        return text + (" pre-vote" if m.pre_vote else "")
    if isinstance(m, AppendEntries):
        text = f"{head} prev={m.prev_log_term}/{m.prev_log_index} commit={m.leader_commit}"
        if m.seq:
            text += f" seq={m.seq}"
        if m.entries:
            text += f" entries=[{render_entries(m.entries)}]"
        return text
    if isinstance(m, AppendEntriesResponse):
        if m.success:
            text = f"{head} ok prev={m.prev_log_index} match={m.match_index}"
        else:
            text = (f"{head} reject prev={m.prev_log_index} "
                    f"hint={m.conflict_term}/{m.conflict_index}")
        return text + (f" seq={m.seq}" if m.seq else "")
    if isinstance(m, InstallSnapshot):
        text = (f"{head} snap={m.last_included_term}/{m.last_included_index} "
                f"offset={m.offset} data={render_data(m.data)}")
        if m.done:
            text += " done"
        return text + (f" seq={m.seq}" if m.seq else "")
    if isinstance(m, InstallSnapshotResponse):
        text = f"{head} snap={m.last_included_index} next={m.next_offset}"
        if m.done:
            text += f" done match={m.match_index}"
        return text + (f" seq={m.seq}" if m.seq else "")
    if isinstance(m, TimeoutNow):
        return head
    raise TypeError(f"unknown message {m!r}")


def render_hard_state(hs: HardState) -> str:
    return f"HardState term={hs.term} vote={render_peer(hs.vote)} commit={hs.commit}"


def render_snapshot(s: Snapshot) -> str:
    return f"{s.term}/{s.index} data={render_data(s.data)}"


def render_ready(rd: Ready) -> list[str]:
    """The notable parts of a Ready, in the order the driver must carry them out."""
    lines: list[str] = []
    if rd.snapshot is not None:
        lines.append(f"Snapshot {render_snapshot(rd.snapshot)}")
    if rd.entries:
        lines.append(f"Entries {render_entries(rd.entries)}")
    if rd.hard_state is not None:
        lines.append(render_hard_state(rd.hard_state))
    for m in rd.messages:
        lines.append(f"Send {render_message(m)}")
    if rd.apply_snapshot is not None:
        lines.append(f"ApplySnapshot {render_snapshot(rd.apply_snapshot)}")
    if rd.committed_entries:
        lines.append(f"Apply {render_entries(rd.committed_entries)}")
    for rs in rd.read_states:
        lines.append(f"ReadState index={rs.index} ctx={rs.context}")
    for ctx in rd.failed_reads:
        lines.append(f"FailedRead ctx={ctx}")
    return lines


# ============================================================================ single-core helpers


def log_from_terms(terms: Sequence[int], *, start: int = 1, tag: str = "s") -> tuple[Entry, ...]:
    """Entries `start, start+1, ...` with the given terms and data `"<tag><index>"`."""
    return tuple(Entry(term, start + i, f"{tag}{start + i}".encode()) for i, term in enumerate(terms))


def new_core(
    me: PeerId = 1,
    peers: Sequence[PeerId] = (1, 2, 3),
    *,
    term: int = 0,
    vote: PeerId = NO_PEER,
    commit: int = 0,
    log_terms: Sequence[int] = (),
    entries: Sequence[Entry] | None = None,
    snapshot: Snapshot | None = None,
    config: Config | None = None,
    seed: int = 0,
    drain_startup: bool = True,
) -> RaftCore:
    """A core restarted from the given persistent state (Figure 2's currentTerm, votedFor,
    log[]; plus commit and snapshot). Its start-up Ready is drained unless told otherwise."""
    if entries is None:
        start = snapshot.index + 1 if snapshot else 1
        entries = log_from_terms(log_terms, start=start)
    initial = InitialState(HardState(term, vote, commit), snapshot, tuple(entries))
    core = RaftCore(me, list(peers), rng=random.Random(seed), initial=initial,
                    config=config or Config())
    if drain_startup:
        drain(core)
    return core


def drain(core: RaftCore) -> list[Ready]:
    """Run the Ready loop (the caller plays the durable disk): take and advance every Ready."""
    readies: list[Ready] = []
    while core.has_ready():
        rd = core.ready()
        readies.append(rd)
        core.advance(rd)
    return readies


def sent(readies: Iterable[Ready], kind: type[T] | None = None) -> list[T]:
    """Messages of the given type (all when None) in the Readys, in order."""
    out: list = []
    for rd in readies:
        for m in rd.messages:
            if kind is None or isinstance(m, kind):
                out.append(m)
    return out


def elect(core: RaftCore, *, max_ticks: int = 1000) -> list[Ready]:
    """Make `core` leader through the public API: tick until it campaigns, then answer every
    (pre-)vote request it sends with a grant. Returns the Readys produced."""
    readies: list[Ready] = []
    for _ in range(max_ticks):
        if core.role is not Role.FOLLOWER:
            break
        core.tick()
        readies += drain(core)
    pending = sent(readies, RequestVote)
    while core.role is not Role.LEADER:
        if not pending:
            raise AssertionError(f"{core.me} did not become leader (role {core.role})")
        request = pending.pop(0)
        if (request.pre_vote and core.role is not Role.PRE_CANDIDATE) or (
            not request.pre_vote and core.role is not Role.CANDIDATE
        ):
            continue
        core.step(RequestVoteResponse(request.to_peer, core.me, request.term, True,
                                      pre_vote=request.pre_vote))
        new = drain(core)
        readies += new
        pending += sent(new, RequestVote)
    return readies


# ============================================================================ a peer's disk and state machine


@dataclass
class DiskRecord:
    """What a peer has durably stored, kept exactly as the `Ready` contract prescribes."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def term_at(self, index: int) -> int | None:
        if self.snapshot is not None and index == self.snapshot.index:
            return self.snapshot.term
        first = self.first_index()
        if first <= index < first + len(self.entries):
            return self.entries[index - first].term
        return None

    def first_index(self) -> int:
        return self.snapshot.index + 1 if self.snapshot else 1

    def last_index(self) -> int:
        return self.first_index() + len(self.entries) - 1

    def persist(self, rd: Ready) -> None:
        """Step 1 of the Ready contract: snapshot, then entries, then hard state."""
        if rd.snapshot is not None:
            s = rd.snapshot
            if self.term_at(s.index) == s.term:
                self.entries = [e for e in self.entries if e.index > s.index]
            else:
                self.entries = []
            self.snapshot = s
        if rd.entries:
            first = rd.entries[0].index
            if not self.first_index() <= first <= self.last_index() + 1:
                raise AssertionError(
                    f"Ready entries start at {first}, disk holds {self.first_index()}.."
                    f"{self.last_index()}"
                )
            self.entries = [e for e in self.entries if e.index < first] + list(rd.entries)
        for offset, entry in enumerate(self.entries):
            if entry.index != self.first_index() + offset:
                raise AssertionError(f"disk log not consecutive at {entry.index}")
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state

    def initial_state(self) -> InitialState:
        return InitialState(self.hard_state, self.snapshot, tuple(self.entries))


class StateMachine:
    """A test application: the list of applied commands (no-ops are skipped).

    A snapshot's data is the commands joined with commas, so golden output stays readable.
    """

    def __init__(self) -> None:
        self.base_index = 0
        self.base_values: list[str] = []
        self.applied: list[tuple[int, str]] = []
        self.applied_index = 0

    def apply(self, entry: Entry) -> None:
        if entry.index != self.applied_index + 1:
            raise AssertionError(
                f"entry {entry.index} applied after {self.applied_index} (gap or reorder)"
            )
        if entry.data:
            self.applied.append((entry.index, entry.data.decode()))
        self.applied_index = entry.index

    def restore(self, snapshot: Snapshot) -> None:
        self.base_index = snapshot.index
        self.base_values = snapshot.data.decode().split(",") if snapshot.data else []
        self.applied = []
        self.applied_index = snapshot.index

    def values(self, upto: int | None = None) -> list[str]:
        upto = self.applied_index if upto is None else upto
        if not self.base_index <= upto <= self.applied_index:
            raise AssertionError(f"no state at {upto} (have {self.base_index}..{self.applied_index})")
        return self.base_values + [v for i, v in self.applied if i <= upto]

    def snapshot_data(self, upto: int) -> bytes:
        return ",".join(self.values(upto)).encode()


@dataclass
class Node:
    """One peer: its core (None while crashed), disk and application."""

    id: PeerId
    peers: tuple[PeerId, ...]
    config: Config
    disk: DiskRecord = field(default_factory=DiskRecord)
    sm: StateMachine = field(default_factory=StateMachine)
    core: RaftCore | None = None
    incarnation: int = 0
    readies: list[Ready] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    failed_reads: list[int] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return self.core is not None

    def require_core(self) -> RaftCore:
        if self.core is None:
            raise AssertionError(f"peer {self.id} is down")
        return self.core


# ============================================================================ the network


class Network:
    """Cores wired together through one deterministic FIFO message queue.

    Messages are delivered only when a test asks (`deliver`, `stabilize`). Delivery order is
    the queue order, grouped by recipient in id order for each round. A message is lost if its
    link was cut when it was sent or is cut when it is delivered; a message to a crashed peer
    is lost at delivery.

    Set `trace` to a list to receive a line-by-line account of everything that happens (the
    golden interaction tests render it).
    """

    def __init__(
        self,
        peers: int | Sequence[PeerId] = 3,
        *,
        seed: int = 0,
        config: Config | None = None,
        configs: dict[PeerId, Config] | None = None,
        initial: dict[PeerId, InitialState] | None = None,
    ):
        ids = tuple(range(1, peers + 1)) if isinstance(peers, int) else tuple(sorted(peers))
        self.seed = seed
        self.ids = ids
        self.queue: list[Message] = []
        self._lost: set[int] = set()  # ids of queued messages sent over a cut link
        self.cut: set[tuple[PeerId, PeerId]] = set()
        self.trace: list[str] | None = None
        self._indent = 0
        self.leaders_by_term: dict[int, PeerId] = {}
        self.applied_at: dict[int, tuple[int, bytes]] = {}
        self.nodes: dict[PeerId, Node] = {}
        for peer in ids:
            cfg = (configs or {}).get(peer, config or Config())
            node = Node(peer, ids, cfg)
            if initial and peer in initial:
                init = initial[peer]
                node.disk = DiskRecord(init.hard_state, init.snapshot, list(init.entries))
            self.nodes[peer] = node
            self._start(node)

    # ------------------------------------------------------------------ tracing

    def emit(self, line: str) -> None:
        if self.trace is not None:
            self.trace.append("  " * self._indent + line)

    # ------------------------------------------------------------------ access

    def core(self, peer: PeerId) -> RaftCore:
        return self.nodes[peer].require_core()

    def up_ids(self) -> list[PeerId]:
        return [p for p in self.ids if self.nodes[p].up]

    def leader(self) -> PeerId | None:
        """The leader of the highest term among live peers, if any."""
        best: tuple[int, PeerId] | None = None
        for peer in self.up_ids():
            core = self.core(peer)
            if core.role is Role.LEADER and (best is None or core.term > best[0]):
                best = (core.term, peer)
        return None if best is None else best[1]

    def state_values(self, peer: PeerId) -> list[str]:
        return self.nodes[peer].sm.values()

    # ------------------------------------------------------------------ inputs

    def _input(self, peer: PeerId, action: Callable[[RaftCore], T]) -> T:
        node = self.nodes[peer]
        core = node.require_core()
        before_soft = (core.role, core.leader_id)
        before_dropped = Counter(core.dropped)
        result = action(core)
        after_soft = (core.role, core.leader_id)
        if after_soft != before_soft:
            self.emit(f"{peer} is {core.role.value} at term {core.term}, "
                      f"leader {render_peer(core.leader_id)}")
        for reason, count in sorted((core.dropped - before_dropped).items()):
            self.emit(f"{peer} dropped {count} ({reason})")
        self._check_election_safety(peer)
        self.process_ready(peer)
        return result

    def tick(self, peer: PeerId, n: int = 1) -> None:
        for _ in range(n):
            self._input(peer, lambda c: c.tick())

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for peer in self.up_ids():
                self.tick(peer)

    def step(self, m: Message) -> None:
        """Hand `m` to its addressee directly (no network)."""
        self._input(m.to_peer, lambda c: c.step(m))

    def propose(self, peer: PeerId, data: bytes) -> tuple[int, int] | None:
        if b"," in data:
            raise ValueError("test commands may not contain commas (snapshot encoding)")
        return self._input(peer, lambda c: c.propose(data))

    def read_index(self, peer: PeerId, context: int) -> bool:
        return self._input(peer, lambda c: c.read_index(context))

    def compact(self, peer: PeerId, index: int) -> None:
        data = self.nodes[peer].sm.snapshot_data(index)
        self._input(peer, lambda c: c.compact(index, data))

    def transfer(self, peer: PeerId, target: PeerId) -> bool:
        return self._input(peer, lambda c: c.transfer_leadership(target))

    def campaign(self, peer: PeerId, max_ticks: int = 10_000) -> int:
        """Tick `peer` until its election timeout fires (it sends (pre-)vote requests or, alone,
        becomes leader). Returns the number of ticks."""
        core = self.core(peer)
        if core.role is Role.LEADER:
            raise AssertionError(f"{peer} is already leader")
        for ticks in range(1, max_ticks + 1):
            queued = len(self.queue)
            self.tick(peer)
            new = self.queue[queued:]
            if any(isinstance(m, RequestVote) and m.from_peer == peer for m in new):
                return ticks
            if self.core(peer).role is Role.LEADER:
                return ticks
        raise AssertionError(f"{peer} never campaigned")

    # ------------------------------------------------------------------ the Ready loop

    def process_ready(self, peer: PeerId) -> None:
        node = self.nodes[peer]
        core = node.require_core()
        while core.has_ready():
            rd = core.ready()
            lines = render_ready(rd)
            if lines:
                self.emit(f"{peer} Ready:")
                self._indent += 1
                for line in lines:
                    self.emit(line)
                self._indent -= 1
            node.disk.persist(rd)  # durable before anything is sent
            self._check_durable_before_send(node, rd)
            node.readies.append(rd)
            for m in rd.messages:
                self.queue.append(m)
                if not self.can_reach(m.from_peer, m.to_peer):
                    self._lost.add(id(m))
            if rd.apply_snapshot is not None:
                node.sm.restore(rd.apply_snapshot)
            for entry in rd.committed_entries:
                node.sm.apply(entry)
                self._check_state_machine_safety(peer, entry)
            node.read_states.extend(rd.read_states)
            node.failed_reads.extend(rd.failed_reads)
            core.advance(rd)

    def _check_durable_before_send(self, node: Node, rd: Ready) -> None:
        disk = node.disk
        for m in rd.messages:
            if isinstance(m, RequestVoteResponse) and m.vote_granted and not m.pre_vote:
                if (disk.hard_state.term, disk.hard_state.vote) != (m.term, m.to_peer):
                    raise AssertionError(
                        f"{node.id} grants a vote for {m.to_peer} in term {m.term} but its disk "
                        f"holds {disk.hard_state}"
                    )
            if isinstance(m, RequestVote) and not m.pre_vote:
                if (disk.hard_state.term, disk.hard_state.vote) != (m.term, node.id):
                    raise AssertionError(
                        f"{node.id} campaigns in term {m.term} before persisting its own vote "
                        f"({disk.hard_state})"
                    )
            if isinstance(m, AppendEntriesResponse) and m.success:
                if disk.hard_state.term != m.term or disk.last_index() < m.match_index:
                    raise AssertionError(
                        f"{node.id} acknowledges match {m.match_index} in term {m.term} but its "
                        f"disk holds up to {disk.last_index()} at {disk.hard_state}"
                    )
            if isinstance(m, InstallSnapshotResponse) and m.done:
                if disk.last_index() < m.match_index:
                    raise AssertionError(
                        f"{node.id} acknowledges snapshot match {m.match_index} before storing it"
                    )

    def _check_election_safety(self, peer: PeerId) -> None:
        core = self.core(peer)
        if core.role is Role.LEADER:
            holder = self.leaders_by_term.setdefault(core.term, peer)
            if holder != peer:
                raise AssertionError(f"election safety: {holder} and {peer} lead term {core.term}")

    def _check_state_machine_safety(self, peer: PeerId, entry: Entry) -> None:
        seen = self.applied_at.setdefault(entry.index, (entry.term, entry.data))
        if seen != (entry.term, entry.data):
            raise AssertionError(
                f"state machine safety: {peer} applies {render_entry(entry)} at {entry.index}, "
                f"another peer applied term {seen[0]} data {seen[1]!r}"
            )

    # ------------------------------------------------------------------ delivery

    def can_reach(self, sender: PeerId, receiver: PeerId) -> bool:
        return (sender, receiver) not in self.cut

    def deliver(
        self,
        to: PeerId | None = None,
        *,
        where: Callable[[Message], bool] | None = None,
        limit: int | None = None,
    ) -> int:
        """Deliver one round: the queued messages (to `to`, matching `where`, at most `limit`),
        grouped by recipient in id order, FIFO within a recipient. Replies they cause are queued
        for a later round. Returns how many were taken from the queue."""
        chosen: list[Message] = []
        kept: list[Message] = []
        for m in self.queue:
            wanted = (to is None or m.to_peer == to) and (where is None or where(m))
            if wanted and (limit is None or len(chosen) < limit):
                chosen.append(m)
            else:
                kept.append(m)
        self.queue = kept
        chosen.sort(key=lambda m: m.to_peer)  # stable: FIFO per recipient
        for m in chosen:
            self._deliver_one(m)
        return len(chosen)

    def _deliver_one(self, m: Message) -> None:
        lost = id(m) in self._lost
        self._lost.discard(id(m))
        if lost or not self.can_reach(m.from_peer, m.to_peer):
            self.emit(f"> {render_message(m)} (dropped: link cut)")
            return
        if not self.nodes[m.to_peer].up:
            self.emit(f"> {render_message(m)} (dropped: {m.to_peer} is down)")
            return
        self.emit(f"> {render_message(m)}")
        self._indent += 1
        try:
            self.step(m)
        finally:
            self._indent -= 1

    def drop(self, to: PeerId | None = None, where: Callable[[Message], bool] | None = None) -> int:
        """Discard queued messages (to `to`, matching `where`): the network lost them."""
        before = len(self.queue)
        kept = []
        for m in self.queue:
            if (to is None or m.to_peer == to) and (where is None or where(m)):
                self._lost.discard(id(m))
                self.emit(f"dropped {render_message(m)}")
            else:
                kept.append(m)
        self.queue = kept
        return before - len(kept)

    def stabilize(self, max_rounds: int = 1000) -> None:
        """Deliver rounds until no message is queued (no ticks happen meanwhile)."""
        for _ in range(max_rounds):
            if not self.queue:
                return
            self.deliver()
        raise AssertionError(f"network did not quiesce in {max_rounds} rounds")

    # ------------------------------------------------------------------ faults

    def isolate(self, peer: PeerId) -> None:
        others = [p for p in self.ids if p != peer]
        self.partition([peer], others)

    def partition(self, *groups: Iterable[PeerId]) -> None:
        """Cut every link between different groups; a peer in no group is alone."""
        group_of: dict[PeerId, int] = {}
        for number, group in enumerate(groups):
            for peer in group:
                group_of[peer] = number
        next_group = len(groups)
        for peer in self.ids:
            if peer not in group_of:
                group_of[peer] = next_group
                next_group += 1
        self.cut = {(a, b) for a in self.ids for b in self.ids
                    if a != b and group_of[a] != group_of[b]}

    def cut_link(self, a: PeerId, b: PeerId) -> None:
        """Cut the link between `a` and `b` in both directions."""
        self.cut |= {(a, b), (b, a)}

    def heal(self) -> None:
        self.cut = set()

    def crash(self, peer: PeerId) -> None:
        """Stop `peer`: its core and application state vanish, its disk record stays. Messages
        it already sent stay in flight."""
        node = self.nodes[peer]
        node.require_core()
        node.core = None
        node.sm = StateMachine()

    def restart(self, peer: PeerId) -> None:
        node = self.nodes[peer]
        if node.up:
            raise AssertionError(f"{peer} is running")
        self._start(node)

    def set_disk(self, peer: PeerId, disk: DiskRecord) -> None:
        """Replace `peer`'s stored state and restart it from there (test set-up only)."""
        node = self.nodes[peer]
        if node.up:
            self.crash(peer)
        node.disk = disk
        self._start(node)

    def _start(self, node: Node) -> None:
        node.incarnation += 1
        node.sm = StateMachine()
        rng = random.Random(self.seed * 1_000_003 + node.id * 1009 + node.incarnation)
        node.core = RaftCore(node.id, list(node.peers), rng=rng,
                             initial=node.disk.initial_state(), config=node.config)
        self.process_ready(node.id)
