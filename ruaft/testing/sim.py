"""A deterministic simulator of a Raft cluster: N `RaftCore`s, a faulty network, crashes.

Everything that varies comes from ONE `random.Random(seed)`: the world's parameters, message
loss, delays, duplication and reordering, partitions, crashes, client operations, and the
cores' own randomness (each core gets a child `random.Random` seeded from it). Time is
virtual: an integer clock in `TICK`-ths of a Raft tick, and an event queue ordered by
(time, sequence number), so the same seed always replays the same run, event for event. The
run's trace (one line per event) and its hash prove it.

Each simulated peer drives its core exactly as the `Ready` contract says — persist to its
`MemoryStorage`, send, apply, `advance` — and when its Raft state grows past the world's limit
it compacts the log with a snapshot of its state machine, so InstallSnapshot gets exercised.
A crash throws away the core and the state machine and keeps the storage (the "disk"); the
restarted core is built from `storage.initial_state()` and its state machine is restored from
the snapshot in its first `Ready`.

After every event the `ClusterChecker` is told what changed (incremental checks of election
safety, log matching, leader completeness, state-machine safety, monotonic commit, apply
order), every `full_check_every` events the live peers' whole logs are cross-checked, and
confirmed ReadIndex reads are checked to be linearizable.

A run (`run_seed`) has two phases: a faulty phase of random length in which everything goes
wrong, then a healed phase (all links up, no loss, every crashed peer restarted) in which the
cluster must elect a leader and commit a newly proposed entry within `HEAL_BOUND_ELECTIONS`
election timeouts, then bring every peer up to that entry within an allowance that grows with
how far behind the peer is (`CATCH_UP_TICKS_PER_ENTRY`) — the liveness checks.

Replay one seed: ``python -m ruaft.testing.sim --seed N [--verbose]``. Every failure message
names the seed and that exact command.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import heapq
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import msgpack

from ruaft.core.raft import RaftCore
from ruaft.core.types import (
    AppendEntries,
    AppendEntriesResponse,
    Config,
    Entry,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    PeerId,
    ReadState,
    RequestVote,
    RequestVoteResponse,
    Role,
    Snapshot,
    TimeoutNow,
)
from ruaft.storage.memory import MemoryStorage
from ruaft.testing.invariants import ClusterChecker, InvariantViolation

__all__ = [
    "TICK",
    "HEAL_BOUND_ELECTIONS",
    "CATCH_UP_TICKS_PER_ENTRY",
    "World",
    "SimNetwork",
    "StateMachine",
    "SimPeer",
    "Simulation",
    "SimResult",
    "SimulationFailure",
    "run_seed",
    "try_seed",
    "DEFAULT_FAULTY_RANGE",
    "replay_command",
    "main",
]

TICK = 1000
"""Virtual time units per Raft tick: delays may be fractions of a tick."""

HEAL_BOUND_ELECTIONS = 30
"""In the healed phase, a leader must be elected and a newly proposed entry committed within
this many base election timeouts."""

CATCH_UP_TICKS_PER_ENTRY = 3
"""After that commit, every peer must apply through the new entry within the same bound plus
this many ticks per entry it lags behind (catching up is throughput-bound)."""

# Event kinds (ints: compared and dispatched on the hot path).
_TICK = 0  # a peer's clock ticks: (peer, incarnation)
_DELIVER = 1  # a message arrives: (message, None)
_RESTART = 2  # a crashed peer comes back: (peer, None)
_PROPOSE = 3  # a simulated client proposes a command
_READ = 4  # a simulated client asks for a ReadIndex read
_NEMESIS = 5  # the fault injector acts: partitions, crashes, leadership transfers
_HEAL = 6  # end of the faulty phase


class SimulationFailure(AssertionError):
    """A simulated run broke an invariant, raised, or failed the liveness check.

    The message names the seed, the virtual time, the cause, the replay command and the last
    events of the trace. `cause` is the original exception (also chained as `__cause__`).
    """

    def __init__(self, message: str, *, seed: int, cause: BaseException | None = None):
        super().__init__(message)
        self.seed = seed
        self.cause = cause


# ==================================================================================== the world


@dataclass(frozen=True)
class World:
    """The parameters of one simulated run: cluster size, network faults, crash and partition
    rates, compaction limit and core tuning. Times are in ticks unless named `*_units`.

    `World.draw(rng, seed)` draws a random one; `World.calm(seed, peers)` is a fault-free
    world for scenario and stateful tests, where the test injects the faults itself.
    """

    seed: int
    peers: int = 3
    config: Config = field(default_factory=Config)
    loss: float = 0.0
    """Probability that a message is lost."""
    delay_units: tuple[int, int] = (100, 600)
    """Range of one-way message delay, in 1/TICK ticks (uniform)."""
    duplicate: float = 0.0
    """Probability that a message is delivered twice (each copy with its own delay)."""
    reorder: float = 0.0
    """Probability that a message is held back by up to `reorder_units` extra."""
    reorder_units: int = 3 * TICK
    partition_every: float = 0.0
    """Mean ticks between partition changes in the faulty phase (0: never)."""
    crash_every: float = 0.0
    """Mean ticks between crashes in the faulty phase (0: never)."""
    downtime: tuple[int, int] = (5, 80)
    """Range of ticks a crashed peer stays down."""
    transfer_every: float = 0.0
    """Mean ticks between leadership transfers in the faulty phase (0: never)."""
    compaction_bytes: int = 0
    """Compact when `raft_state_size()` passes this (0: never)."""
    propose_every: float = 2.0
    """Mean ticks between client proposals (0: no client)."""
    read_every: float = 8.0
    """Mean ticks between client ReadIndex reads (0: none)."""
    clock_skew: float = 0.0
    """Each peer's tick period is TICK × (1 ± up to this)."""
    faulty_ticks: int = 0
    """Length of the faulty phase, in ticks."""

    @classmethod
    def draw(
        cls,
        rng: random.Random,
        seed: int,
        faulty_range: tuple[int, int] = (200, 600),
        **overrides: Any,
    ) -> World:
        """A random world. Every parameter is drawn whatever the overrides, so overriding one
        (e.g. `faulty_ticks`) leaves the rest of the seed's world — and the rng stream — as
        it was."""
        election = rng.choice((6, 8, 10))
        config = Config(
            heartbeat_ticks=rng.randint(1, election // 3),
            election_ticks=election,
            pre_vote=rng.random() < 0.8,
            check_quorum=rng.random() < 0.8,
            max_append_bytes=rng.choice((40, 200, 1 << 20)),
            max_inflight_appends=rng.choice((1, 4, 64)),
            snapshot_chunk_bytes=rng.choice((16, 64, 256, 1 << 20)),
            max_uncommitted_entries=rng.choice((12, 100_000)),
        )
        delay_lo = rng.randint(20, 500)
        world = cls(
            seed=seed,
            peers=rng.randint(3, 7),
            config=config,
            loss=rng.choice((0.0, rng.uniform(0.0, 0.1), rng.uniform(0.0, 0.3))),
            delay_units=(delay_lo, delay_lo + rng.randint(0, 2 * TICK)),
            duplicate=rng.choice((0.0, rng.uniform(0.0, 0.1))),
            reorder=rng.choice((0.0, rng.uniform(0.0, 0.2))),
            partition_every=rng.choice((0.0, rng.uniform(15, 120))),
            crash_every=rng.choice((0.0, rng.uniform(20, 200))),
            downtime=(rng.randint(1, 20), rng.randint(20, 150)),
            transfer_every=rng.choice((0.0, rng.uniform(30, 200))),
            compaction_bytes=rng.choice((0, rng.randint(200, 1500), rng.randint(1500, 8000))),
            propose_every=rng.uniform(1.0, 6.0),
            read_every=rng.uniform(1.0, 15.0),
            clock_skew=rng.choice((0.0, rng.uniform(0.0, 0.1))),
            faulty_ticks=rng.randint(*faulty_range),
        )
        return dataclasses.replace(world, **overrides) if overrides else world

    @classmethod
    def calm(cls, seed: int = 0, peers: int = 3, **overrides: Any) -> World:
        """No faults, no background clients: the test drives everything."""
        fields: dict[str, Any] = {"propose_every": 0.0, "read_every": 0.0, **overrides}
        return cls(seed=seed, peers=peers, **fields)

    def describe(self) -> str:
        c = self.config
        return (
            f"world seed={self.seed} peers={self.peers} loss={self.loss:.3f} "
            f"delay={self.delay_units} dup={self.duplicate:.3f} reorder={self.reorder:.3f} "
            f"partition_every={self.partition_every:.0f} crash_every={self.crash_every:.0f} "
            f"downtime={self.downtime} transfer_every={self.transfer_every:.0f} "
            f"compaction_bytes={self.compaction_bytes} propose_every={self.propose_every:.2f} "
            f"read_every={self.read_every:.2f} skew={self.clock_skew:.3f} "
            f"faulty_ticks={self.faulty_ticks} | config hb={c.heartbeat_ticks} "
            f"el={c.election_ticks} pre_vote={c.pre_vote} check_quorum={c.check_quorum} "
            f"append_bytes={c.max_append_bytes} inflight={c.max_inflight_appends} "
            f"chunk={c.snapshot_chunk_bytes} max_uncommitted={c.max_uncommitted_entries}"
        )


# ==================================================================================== network


class SimNetwork:
    """The simulated network's fault model (the simulator owns the clock and the queue).

    Links are directed: `(a, b)` in `blocked` means messages from a to b are dropped (in
    flight too: a cut link loses what is on the wire). `transit(m)` decides, from the shared
    rng, what becomes of one message: a list of delays, one per copy delivered (empty when
    lost). Reordering comes from independent random delays plus an occasional hold-back.
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        loss: float = 0.0,
        delay_units: tuple[int, int] = (100, 600),
        duplicate: float = 0.0,
        reorder: float = 0.0,
        reorder_units: int = 3 * TICK,
    ):
        self._rng = rng
        self.loss = loss
        self.delay_units = delay_units
        self.duplicate = duplicate
        self.reorder = reorder
        self.reorder_units = reorder_units
        self.blocked: set[tuple[PeerId, PeerId]] = set()
        self.sent = 0
        self.lost = 0
        self.cut = 0  # dropped by a partition
        self.duplicated = 0

    def link_up(self, src: PeerId, dst: PeerId) -> bool:
        return (src, dst) not in self.blocked

    def set_link(self, src: PeerId, dst: PeerId, up: bool) -> None:
        if up:
            self.blocked.discard((src, dst))
        else:
            self.blocked.add((src, dst))

    def partition(self, groups: Iterable[Iterable[PeerId]]) -> None:
        """Only peers in the same group can talk (a peer in no group is isolated)."""
        group_of: dict[PeerId, int] = {}
        for n, group in enumerate(groups):
            for peer in group:
                group_of[peer] = n
        peers = sorted(set(group_of) | {p for link in self.blocked for p in link})
        self.blocked = {
            (a, b)
            for a in peers
            for b in peers
            if a != b and (a not in group_of or b not in group_of or group_of[a] != group_of[b])
        }

    def heal(self) -> None:
        self.blocked.clear()

    def calm(self) -> None:
        """All links up, and no loss, duplication or hold-back (delays stay)."""
        self.heal()
        self.loss = self.duplicate = self.reorder = 0.0

    def transit(self, m: Message) -> list[int]:
        self.sent += 1
        if (m.from_peer, m.to_peer) in self.blocked:
            self.cut += 1
            return []
        rng = self._rng
        if self.loss and rng.random() < self.loss:
            self.lost += 1
            return []
        copies = 1
        if self.duplicate and rng.random() < self.duplicate:
            copies = 2
            self.duplicated += 1
        lo, hi = self.delay_units
        delays = []
        for _ in range(copies):
            delay = rng.randint(lo, hi)
            if self.reorder and rng.random() < self.reorder:
                delay += rng.randint(0, self.reorder_units)
            delays.append(delay)
        return delays


# ==================================================================================== a peer


class StateMachine:
    """The simulated application: a digest chain over every applied command.

    `digest` after applying index i is H(digest at i-1, i, data), so two peers have equal
    digests at i exactly when they applied the same prefix. The snapshot carries the index,
    the digest, a count and the last few commands (so snapshots span several chunks).
    """

    __slots__ = ("index", "digest", "recent", "count")

    RECENT = 8

    def __init__(self) -> None:
        self.index = 0
        self.digest = b"\0" * 16
        self.recent: list[bytes] = []
        self.count = 0

    def apply(self, entry: Entry) -> None:
        self.index = entry.index
        self.digest = hashlib.blake2b(
            self.digest + entry.index.to_bytes(8, "big") + entry.data, digest_size=16
        ).digest()
        if entry.data:
            self.count += 1
            self.recent.append(entry.data)
            if len(self.recent) > self.RECENT:
                del self.recent[0]

    def snapshot(self) -> bytes:
        return msgpack.packb([self.index, self.digest, self.count, self.recent])

    def restore(self, snapshot: Snapshot) -> None:
        index, digest, count, recent = msgpack.unpackb(snapshot.data)
        if index != snapshot.index:
            raise InvariantViolation(
                "snapshot integrity",
                f"snapshot at index {snapshot.index} holds application state of index {index}",
            )
        self.index, self.digest, self.count, self.recent = index, digest, count, list(recent)


class SimPeer:
    """One simulated peer: durable storage (kept across crashes) and, while up, a core and a
    state machine (lost on a crash). `incarnation` counts restarts, so events scheduled for an
    earlier life (its clock ticks) are recognised and ignored."""

    __slots__ = ("id", "storage", "core", "app", "incarnation", "tick_period", "last_role")

    def __init__(self, peer: PeerId, tick_period: int):
        self.id = peer
        self.storage = MemoryStorage()
        self.core: RaftCore | None = None
        self.app = StateMachine()
        self.incarnation = 0
        self.tick_period = tick_period
        self.last_role: tuple[Role, int] | None = None

    @property
    def alive(self) -> bool:
        return self.core is not None


@dataclass(slots=True)
class _Proposal:
    peer: PeerId
    incarnation: int
    index: int
    term: int
    data: bytes
    probe: bool


@dataclass(slots=True)
class _Read:
    peer: PeerId
    incarnation: int
    issued: int
    cluster_commit: int  # highest commit index any peer had reached when the read was issued
    acked: int  # highest index acknowledged to a client when the read was issued


@dataclass
class SimResult:
    """The outcome of one run (all counts over the whole run)."""

    seed: int
    world: World
    trace_hash: str
    events: int
    virtual_ticks: float
    elections: int
    """Distinct terms that had a leader."""
    commit_index: int
    """Highest commit index reached."""
    proposals: int
    acknowledged: int
    reads_confirmed: int
    reads_failed: int
    compactions: int
    snapshots_installed: int
    crashes: int
    messages_sent: int
    messages_delivered: int
    commit_ticks: float
    """Ticks from the heal until a newly proposed entry was committed (acknowledged)."""
    recovery_ticks: float
    """Ticks from the heal until every peer had applied that entry."""
    trace: list[str] | None = None

    def summary(self) -> str:
        return (
            f"seed {self.seed}: {self.events} events, {self.virtual_ticks:.0f} ticks, "
            f"{self.elections} elections, commit {self.commit_index}, "
            f"{self.acknowledged}/{self.proposals} proposals acknowledged, "
            f"reads {self.reads_confirmed} confirmed/{self.reads_failed} failed, "
            f"{self.compactions} compactions, {self.snapshots_installed} snapshots installed, "
            f"{self.crashes} crashes, messages {self.messages_delivered}/{self.messages_sent} "
            f"delivered, committed {self.commit_ticks:.1f} and converged {self.recovery_ticks:.1f} "
            f"ticks after the heal, trace {self.trace_hash[:16]}"
        )


# ==================================================================================== simulation


def _describe(m: Message) -> str:
    """A short, deterministic rendering of a message for the trace."""
    route = f"{m.from_peer}>{m.to_peer} t{m.term}"
    if isinstance(m, AppendEntries):
        return (
            f"AE {route} prev={m.prev_log_index}/{m.prev_log_term} n={len(m.entries)} "
            f"lc={m.leader_commit} s={m.seq}"
        )
    if isinstance(m, AppendEntriesResponse):
        if m.success:
            return f"AER {route} ok m={m.match_index} p={m.prev_log_index} s={m.seq}"
        return (
            f"AER {route} no p={m.prev_log_index} ci={m.conflict_index} "
            f"ct={m.conflict_term} s={m.seq}"
        )
    if isinstance(m, RequestVote):
        kind = "PV" if m.pre_vote else "RV"
        transfer = " xfer" if m.leadership_transfer else ""
        return f"{kind} {route} last={m.last_log_index}/{m.last_log_term}{transfer}"
    if isinstance(m, RequestVoteResponse):
        kind = "PVR" if m.pre_vote else "RVR"
        return f"{kind} {route} {'yes' if m.vote_granted else 'no'}"
    if isinstance(m, InstallSnapshot):
        return (
            f"IS {route} at={m.last_included_index}/{m.last_included_term} off={m.offset} "
            f"len={len(m.data)}{' done' if m.done else ''} s={m.seq}"
        )
    if isinstance(m, InstallSnapshotResponse):
        return (
            f"ISR {route} at={m.last_included_index} next={m.next_offset}"
            f"{' done m=' + str(m.match_index) if m.done else ''} s={m.seq}"
        )
    if isinstance(m, TimeoutNow):
        return f"TN {route}"
    return repr(m)  # pragma: no cover - every message kind is handled above


def _durable_hard_state_matches(durable: HardState, core: HardState) -> bool:
    """Term and vote are durable before any answer; the commit index is persisted lazily (a
    hint that rides along with the next write), so on disk it may only lag, never lead."""
    return (
        durable.term == core.term and durable.vote == core.vote and durable.commit <= core.commit
    )


class Simulation:
    """N simulated peers over a `SimNetwork`, driven by an event queue in virtual time.

    Use it in two ways:

    * `run()` (what `run_seed` does) — background clients and a nemesis act by the world's
      rates through the faulty phase, then the healed phase checks liveness;
    * by hand (scenario and stateful tests) — build with `autopilot=False` and call
      `run_for`, `tick`, `deliver`, `drop`, `partition`, `heal`, `crash`, `restart`,
      `propose`, `read`, `compact`, `transfer`; the peers' clocks and the network still run
      on their own whenever virtual time advances.

    Any invariant violation raises `InvariantViolation` (or the core's `RaftInvariantError`)
    from the call that caused it; `run()` wraps it in a `SimulationFailure` naming the seed.
    """

    def __init__(
        self,
        world: World,
        *,
        rng: random.Random | None = None,
        autopilot: bool = True,
        record_trace: bool = True,
        full_check_every: int = 1000,
        replay: str | None = None,
        on_event: Callable[[Simulation], None] | None = None,
    ):
        self.world = world
        self.rng = rng if rng is not None else random.Random(world.seed)
        self.autopilot = autopilot
        self.full_check_every = full_check_every
        self.on_event = on_event
        self.replay = replay or replay_command(world.seed)
        self.now = 0
        self.events = 0
        self.trace: list[str] | None = [] if record_trace else None
        self._hash = hashlib.blake2b(digest_size=16)
        self._queue: list[tuple[int, int, int, Any, Any]] = []
        self._seq = 0
        self._cancelled: set[int] = set()
        self.network = SimNetwork(
            self.rng,
            loss=world.loss,
            delay_units=world.delay_units,
            duplicate=world.duplicate,
            reorder=world.reorder,
            reorder_units=world.reorder_units,
        )
        self.peer_ids: tuple[PeerId, ...] = tuple(range(world.peers))
        self.checker = ClusterChecker(self.peer_ids)
        self.peers: dict[PeerId, SimPeer] = {}
        for p in self.peer_ids:
            skew = world.clock_skew
            period = round(TICK * (1 + self.rng.uniform(-skew, skew))) if skew else TICK
            self.peers[p] = SimPeer(p, period)

        # Clients and their bookkeeping.
        self._next_command = 0
        self._next_read = 0
        self._proposals: dict[tuple[PeerId, int], _Proposal] = {}
        self._reads: dict[int, _Read] = {}
        self.acknowledged: dict[int, bytes] = {}
        """index → data of every proposal acknowledged to a client (applied where proposed)."""
        self.max_acknowledged = 0
        self.confirmed_reads: list[tuple[int, PeerId, int]] = []
        """(context, peer, index) of every confirmed read, in order."""
        self.failed_reads: list[int] = []
        self.proposals = 0
        self.compactions = 0
        self.snapshots_installed = 0
        self.crashes = 0
        self.delivered = 0
        self.healed_at: int | None = None
        self.probe: _Proposal | None = None
        self.probe_committed_at: int | None = None
        self.converged_at: int | None = None

        self._log(world.describe())
        for p in self.peer_ids:
            self._start_peer(self.peers[p], phase=self.rng.randrange(TICK))

    # ------------------------------------------------------------------ queue and trace

    def _schedule(self, at: int, kind: int, a: Any = None, b: Any = None) -> int:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, a, b))
        return self._seq

    def _log(self, line: str) -> None:
        line = f"{self.now} {line}"
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        if self.trace is not None:
            self.trace.append(line)

    @property
    def trace_hash(self) -> str:
        return self._hash.hexdigest()

    @property
    def ticks(self) -> float:
        """Virtual time in ticks."""
        return self.now / TICK

    def step(self) -> bool:
        """Process the next event; False when the queue is empty."""
        queue = self._queue
        while queue:
            at, seq, kind, a, b = heapq.heappop(queue)
            if seq in self._cancelled:
                self._cancelled.discard(seq)
                continue
            self.now = at
            self._dispatch(kind, a, b)
            if self.on_event is not None:
                self.on_event(self)
            return True
        return False

    def run_until(self, at: int, stop: Callable[[], bool] | None = None) -> None:
        """Process every event due at or before virtual time `at` (then set the clock to it),
        or until `stop()` holds after an event."""
        queue = self._queue
        while queue and queue[0][0] <= at:
            self.step()
            if stop is not None and stop():
                return
        self.now = max(self.now, at)

    def run_for(self, ticks: float, stop: Callable[[], bool] | None = None) -> None:
        """Advance virtual time by `ticks` (see `run_until`)."""
        self.run_until(self.now + round(ticks * TICK), stop)

    def _dispatch(self, kind: int, a: Any, b: Any) -> None:
        if kind == _DELIVER:
            self._deliver(a)
        elif kind == _TICK:
            peer = self.peers[a]
            if peer.core is not None and peer.incarnation == b:
                self._schedule(self.now + peer.tick_period, _TICK, a, b)
                self.tick(a)
        elif kind == _PROPOSE:
            self._schedule_client(_PROPOSE, self.world.propose_every)
            if self.rng.random() < 0.2:
                self.propose_batch(count=self.rng.randint(2, 6))
            else:
                self.propose()
        elif kind == _READ:
            self._schedule_client(_READ, self.world.read_every)
            self.read()
        elif kind == _RESTART:
            if not self.peers[a].alive:
                self.restart(a)
        elif kind == _NEMESIS:
            self._nemesis()
        elif kind == _HEAL:
            self._heal_phase()
        else:  # pragma: no cover
            raise ValueError(f"unknown event kind {kind}")

    # ------------------------------------------------------------------ driving a peer

    def _start_peer(self, peer: SimPeer, phase: int) -> None:
        initial = peer.storage.initial_state()
        peer.core = RaftCore(
            peer.id,
            self.peer_ids,
            rng=random.Random(self.rng.getrandbits(64)),
            initial=initial,
            config=self.world.config,
        )
        peer.app = StateMachine()
        peer.last_role = None
        self.checker.on_start(peer.id, peer.core.log, peer.core.commit_index)
        self._schedule(self.now + phase, _TICK, peer.id, peer.incarnation)
        self._drive(peer)
        self._after(peer)

    def _drive(self, peer: SimPeer) -> None:
        """Carry out the core's Readys as the `Ready` docstring orders: persist (one write),
        send, apply, advance; then compact if the Raft state has grown past the limit."""
        core = peer.core
        assert core is not None
        checker = self.checker
        while core.has_ready():
            rd = core.ready()
            if rd.must_persist():
                prev_term = 0
                if rd.entries:
                    prev_term = core.log.term(rd.entries[0].index - 1) or 0
                peer.storage.save(rd.hard_state, rd.entries, rd.snapshot)
                checker.on_persist(peer.id, peer.storage.hard_state(), rd.entries, prev_term)
            for m in rd.messages:
                self._send(m)
            if rd.apply_snapshot is not None:
                snapshot = rd.apply_snapshot
                peer.app.restore(snapshot)
                checker.on_apply_snapshot(peer.id, snapshot.index, snapshot.term, peer.app.digest)
                if rd.snapshot is not None:  # installed from a leader, not restored at start
                    self.snapshots_installed += 1
                    self._log(f"p{peer.id} installed snapshot {snapshot.index}/{snapshot.term}")
                if self._proposals:
                    self._forget_proposals(peer.id, snapshot.index)
            for entry in rd.committed_entries:
                peer.app.apply(entry)
                checker.on_apply_entry(peer.id, entry, peer.app.digest)
                if self._proposals:
                    self._acknowledge(peer, entry)
            for rs in rd.read_states:
                self._read_confirmed(peer, rs)
            for context in rd.failed_reads:
                self._read_failed(peer, context)
            core.advance(rd)
        limit = self.world.compaction_bytes
        if (
            limit
            and peer.storage.raft_state_size() > limit
            and peer.app.index > core.log.snapshot_index
        ):
            self.compact(peer.id)

    def _after(self, peer: SimPeer) -> None:
        """Report the peer's state to the checker after an event that touched it."""
        self.events += 1
        core = peer.core
        if core is not None:
            role = core.role
            self.checker.on_state(
                peer.id, core.term, role is Role.LEADER, core.log.commit_index, core.log
            )
            state = (role, core.term)
            if state != peer.last_role:
                peer.last_role = state
                self._log(f"p{peer.id} {role.value} t{core.term} c{core.log.commit_index}")
        if self.full_check_every and self.events % self.full_check_every == 0:
            self.check_full()

    def _send(self, m: Message) -> None:
        for delay in self.network.transit(m):
            self._schedule(self.now + delay, _DELIVER, m)

    def _deliver(self, m: Message) -> None:
        peer = self.peers[m.to_peer]
        if peer.core is None:
            self._log(f"lost (down) {_describe(m)}")
            return
        if not self.network.link_up(m.from_peer, m.to_peer):
            self.network.cut += 1
            self._log(f"lost (cut) {_describe(m)}")
            return
        self._log(_describe(m))
        self.delivered += 1
        peer.core.step(m)
        self._drive(peer)
        self._after(peer)

    # ------------------------------------------------------------------ operations

    def tick(self, peer: PeerId) -> None:
        """Tick one live peer's clock once, now (its scheduled ticks go on as well)."""
        p = self.peers[peer]
        assert p.core is not None, f"peer {peer} is down"
        self._log(f"tick p{peer}")
        p.core.tick()
        self._drive(p)
        self._after(p)

    def in_flight(self) -> list[tuple[int, Message]]:
        """Messages on the wire, as (event id, message), in delivery order."""
        return [
            (seq, a)
            for (_, seq, kind, a, _) in sorted(self._queue)
            if kind == _DELIVER and seq not in self._cancelled
        ]

    def deliver(self, event_id: int) -> None:
        """Deliver one in-flight message now, ahead of its time (reordering by hand)."""
        message = self._take(event_id)
        self._deliver(message)

    def drop(self, event_id: int) -> None:
        """Lose one in-flight message."""
        message = self._take(event_id)
        self._log(f"dropped {_describe(message)}")

    def _take(self, event_id: int) -> Message:
        for at, seq, kind, a, _ in self._queue:
            if seq == event_id and kind == _DELIVER and seq not in self._cancelled:
                self._cancelled.add(seq)
                message: Message = a
                return message
        raise KeyError(f"no message in flight with event id {event_id}")

    def partition(self, *groups: Iterable[PeerId]) -> None:
        """Only peers within one group can talk to each other."""
        groups_list = [sorted(g) for g in groups]
        self.network.partition(groups_list)
        self._log(f"partition {groups_list}")

    def isolate(self, peer: PeerId) -> None:
        self.partition([peer], [p for p in self.peer_ids if p != peer])

    def set_link(self, src: PeerId, dst: PeerId, up: bool) -> None:
        self.network.set_link(src, dst, up)
        self._log(f"link {src}>{dst} {'up' if up else 'down'}")

    def heal(self) -> None:
        self.network.heal()
        self._log("heal")

    def crash(self, peer: PeerId) -> None:
        """Lose the peer's volatile state (core, state machine, pending client calls); its
        storage survives. Messages it already sent stay in flight."""
        p = self.peers[peer]
        if p.core is None:
            return
        p.core = None
        p.incarnation += 1
        p.last_role = None
        self.crashes += 1
        self.checker.on_crash(peer)
        self._proposals = {k: v for k, v in self._proposals.items() if v.peer != peer}
        self._reads = {k: v for k, v in self._reads.items() if v.peer != peer}
        self._log(f"crash p{peer}")

    def restart(self, peer: PeerId) -> None:
        """Start a crashed peer again from its storage."""
        p = self.peers[peer]
        if p.core is not None:
            return
        self._log(f"restart p{peer}")
        self._start_peer(p, phase=self.rng.randrange(p.tick_period))

    def leader(self) -> PeerId | None:
        """The live peer that is leader in the highest term, if any."""
        best: tuple[int, PeerId] | None = None
        for p in self.peers.values():
            core = p.core
            if core is not None and core.role is Role.LEADER:
                if best is None or core.term > best[0]:
                    best = (core.term, p.id)
        return None if best is None else best[1]

    def live_peers(self) -> list[PeerId]:
        return [p.id for p in self.peers.values() if p.core is not None]

    def _client_target(self) -> PeerId | None:
        """Where a client sends a request: usually the leader, sometimes any live peer."""
        leader = self.leader()
        if leader is not None and self.rng.random() < 0.9:
            return leader
        live = self.live_peers()
        return self.rng.choice(live) if live else None

    def propose(
        self, peer: PeerId | None = None, data: bytes | None = None, *, probe: bool = False
    ) -> tuple[int, int] | None:
        """A client proposes `data` (default: a fresh unique command) to `peer` (default: the
        leader, mostly). Returns (index, term) or None if refused."""
        target = self._client_target() if peer is None else peer
        if target is None:
            return None
        p = self.peers[target]
        if p.core is None:
            return None
        if data is None:
            self._next_command += 1
            data = f"{self.world.seed}:{self._next_command}".encode()
            data += b"." * self.rng.randrange(12)
        result = p.core.propose(data)
        self.proposals += 1
        if result is None:
            self._log(f"propose p{target} refused")
        else:
            index, term = result
            self._log(f"propose p{target} -> {index}/{term}")
            proposal = _Proposal(target, p.incarnation, index, term, data, probe)
            self._proposals[(target, index)] = proposal
            if probe:
                self.probe = proposal
        self._drive(p)
        self._after(p)
        return result

    def propose_batch(self, peer: PeerId | None = None, count: int = 3) -> int | None:
        """A client sends `count` fresh commands in one batch (`propose_many`). Returns the
        index of the first, or None if refused."""
        target = self._client_target() if peer is None else peer
        if target is None:
            return None
        p = self.peers[target]
        if p.core is None:
            return None
        datas = []
        for _ in range(count):
            self._next_command += 1
            datas.append(f"{self.world.seed}:{self._next_command}b".encode())
        first = p.core.propose_many(datas)
        self.proposals += count
        if first is None:
            self._log(f"propose p{target} x{count} refused")
        else:
            term = p.core.term
            self._log(f"propose p{target} x{count} -> {first}/{term}")
            for offset, data in enumerate(datas):
                index = first + offset
                self._proposals[(target, index)] = _Proposal(
                    target, p.incarnation, index, term, data, False
                )
        self._drive(p)
        self._after(p)
        return first

    def _acknowledge(self, peer: SimPeer, entry: Entry) -> None:
        """A proposal is acknowledged when the peer it was made to applies it (same term):
        that is when a real server answers its client."""
        proposal = self._proposals.pop((peer.id, entry.index), None)
        if proposal is None or proposal.incarnation != peer.incarnation:
            return
        if proposal.term != entry.term or proposal.data != entry.data:
            self._log(f"proposal {entry.index}/{proposal.term} superseded")
            return
        self.acknowledged[entry.index] = entry.data
        self.max_acknowledged = max(self.max_acknowledged, entry.index)
        if proposal.probe and self.probe_committed_at is None:
            self.probe_committed_at = self.now
            self._log(f"probe {entry.index} committed")

    def _forget_proposals(self, peer: PeerId, through: int) -> None:
        """The peer's state machine jumped to a snapshot through `through`: whether its
        pending proposals up to there were committed is unknown to their clients (an
        indefinite outcome, as after a timeout), so they are no longer tracked."""
        self._proposals = {
            key: proposal
            for key, proposal in self._proposals.items()
            if not (proposal.peer == peer and proposal.index <= through)
        }

    def read(self, peer: PeerId | None = None) -> int | None:
        """A client asks `peer` (default: the leader, mostly) for a ReadIndex read. Returns
        the read's context, or None if the peer refused (not leader)."""
        target = self._client_target() if peer is None else peer
        if target is None:
            return None
        p = self.peers[target]
        if p.core is None:
            return None
        self._next_read += 1
        context = self._next_read
        accepted = p.core.read_index(context)
        self._log(f"read p{target} ctx={context} {'ok' if accepted else 'refused'}")
        if accepted:
            self._reads[context] = _Read(
                target, p.incarnation, self.now, self.checker.max_commit, self.max_acknowledged
            )
        self._drive(p)
        self._after(p)
        return context if accepted else None

    def _read_confirmed(self, peer: SimPeer, rs: ReadState) -> None:
        """Linearizable read check: the read point must cover every commit that happened before
        the read was issued — in particular every write acknowledged to a client by then."""
        read = self._reads.pop(rs.context, None)
        if read is None or read.peer != peer.id or read.incarnation != peer.incarnation:
            raise InvariantViolation(
                "read index", f"peer {peer.id} confirmed read {rs.context} it was not asked for"
            )
        if rs.index < read.acked:
            raise InvariantViolation(
                "linearizable read",
                f"read {rs.context} issued at {read.issued} confirmed by peer {peer.id} at "
                f"index {rs.index}, but index {read.acked} was acknowledged to a client before",
            )
        if rs.index < read.cluster_commit:
            raise InvariantViolation(
                "linearizable read",
                f"read {rs.context} issued at {read.issued} confirmed by peer {peer.id} at "
                f"index {rs.index}, but index {read.cluster_commit} was committed before",
            )
        if peer.app.index < rs.index:
            raise InvariantViolation(
                "read index",
                f"peer {peer.id} confirmed read {rs.context} at {rs.index} beyond its applied "
                f"index {peer.app.index}",
            )
        self.confirmed_reads.append((rs.context, peer.id, rs.index))
        self._log(f"p{peer.id} read {rs.context} at {rs.index}")

    def _read_failed(self, peer: SimPeer, context: int) -> None:
        read = self._reads.pop(context, None)
        if read is None or read.peer != peer.id:
            raise InvariantViolation(
                "read index", f"peer {peer.id} failed read {context} it was not asked for"
            )
        self.failed_reads.append(context)
        self._log(f"p{peer.id} read {context} failed")

    def compact(self, peer: PeerId) -> bool:
        """Snapshot the peer's state machine at its applied index and compact its log.
        False if there is nothing new to compact."""
        p = self.peers[peer]
        core = p.core
        if core is None or p.app.index <= core.log.snapshot_index:
            return False
        index = p.app.index
        core.compact(index, p.app.snapshot())
        self.compactions += 1
        self._log(f"p{peer} compact {index}")
        self._drive(p)
        return True

    def transfer(self, target: PeerId) -> bool:
        """Ask the current leader to hand leadership to `target`."""
        leader = self.leader()
        if leader is None or leader == target:
            return False
        p = self.peers[leader]
        assert p.core is not None
        started = p.core.transfer_leadership(target)
        self._log(f"transfer p{leader} -> p{target} {'started' if started else 'refused'}")
        self._drive(p)
        self._after(p)
        return started

    # ------------------------------------------------------------------ checks

    def check_full(self) -> None:
        """Cross-check every live peer's whole log (pairwise log matching, committed entries,
        leader completeness) and that its storage holds what its core believes durable."""
        logs = {}
        commits = {}
        for p in self.peers.values():
            core = p.core
            if core is None:
                continue
            log = core.log
            logs[p.id] = log
            commits[p.id] = log.commit_index
            storage = p.storage
            if (
                storage.last_index() != log.last_index
                or storage.first_index() != log.snapshot_index + 1
                or storage.term(log.last_index) != log.term(log.last_index)
                or not _durable_hard_state_matches(storage.hard_state(), core.hard_state())
            ):
                raise InvariantViolation(
                    "durable state",
                    f"peer {p.id}'s storage (first {storage.first_index()}, last "
                    f"{storage.last_index()}, {storage.hard_state()}) differs from its core "
                    f"(snapshot {log.snapshot_index}, last {log.last_index}, "
                    f"{core.hard_state()}) after the Ready was persisted",
                )
        self.checker.check_logs(logs, commits)

    def check_acknowledged_durable(self) -> None:
        """Every acknowledged write is where it was acknowledged, in the applied history."""
        for index, data in self.acknowledged.items():
            applied = self.checker.applied.get(index)
            if applied is None or applied[1] != data:
                raise InvariantViolation(
                    "durability",
                    f"write {data!r} acknowledged at index {index} but the cluster applied "
                    f"{applied!r} there",
                )

    # ------------------------------------------------------------------ autopilot

    def _exp_ticks(self, mean_ticks: float) -> int:
        return max(1, round(self.rng.expovariate(1.0 / mean_ticks) * TICK))

    def _schedule_client(self, kind: int, mean_ticks: float) -> None:
        if mean_ticks:
            self._schedule(self.now + self._exp_ticks(mean_ticks), kind)

    def _nemesis_rate(self) -> float:
        """Mean ticks between nemesis actions (the sum of the world's fault rates)."""
        rates = [
            1.0 / every
            for every in (
                self.world.partition_every,
                self.world.crash_every,
                self.world.transfer_every,
            )
            if every
        ]
        return 1.0 / sum(rates) if rates else 0.0

    def _nemesis(self) -> None:
        """One fault: a partition change, a crash (restart scheduled), or a transfer."""
        if self.healed_at is not None:
            return
        world = self.world
        rng = self.rng
        choices = [
            (kind, 1.0 / every)
            for kind, every in (
                ("partition", world.partition_every),
                ("crash", world.crash_every),
                ("transfer", world.transfer_every),
            )
            if every
        ]
        pick = rng.random() * sum(weight for _, weight in choices)
        kind = choices[-1][0]
        for name, weight in choices:
            if pick < weight:
                kind = name
                break
            pick -= weight
        if kind == "partition":
            self._random_partition()
        elif kind == "crash":
            live = self.live_peers()
            if live:
                victim = rng.choice(live)
                self.crash(victim)
                lo, hi = world.downtime
                self._schedule(self.now + rng.randint(lo, hi) * TICK, _RESTART, victim)
        else:
            self.transfer(rng.choice(self.peer_ids))
        self._schedule(self.now + self._exp_ticks(self._nemesis_rate()), _NEMESIS)

    def _random_partition(self) -> None:
        """A partition of a random shape: healed, one peer isolated, a majority/minority
        split, a bridge (one peer sees both halves), one-way links, or random cut links."""
        rng = self.rng
        peers = list(self.peer_ids)
        rng.shuffle(peers)
        shape = rng.randrange(6)
        if shape == 0:
            self.heal()
        elif shape == 1:
            self.isolate(peers[0])
        elif shape == 2:
            cut = rng.randint(1, len(peers) // 2)
            self.partition(peers[:cut], peers[cut:])
        elif shape == 3:
            bridge, rest = peers[0], peers[1:]
            half = len(rest) // 2
            self.partition([bridge, *rest[:half]], rest[half:])
            for other in rest[half:]:
                self.set_link(bridge, other, True)
                self.set_link(other, bridge, True)
        elif shape == 4:
            # One-way: the victim hears everyone but nobody hears it (or the reverse).
            victim = peers[0]
            self.heal()
            outgoing = rng.random() < 0.5
            for other in peers[1:]:
                if outgoing:
                    self.set_link(victim, other, False)
                else:
                    self.set_link(other, victim, False)
        else:
            self.heal()
            for a in peers:
                for b in peers:
                    if a != b and rng.random() < 0.3:
                        self.set_link(a, b, False)

    def _heal_phase(self) -> None:
        """End of the faulty phase: all links up, no loss, every crashed peer restarted, the
        liveness probe armed."""
        self.healed_at = self.now
        self._log("healed phase")
        self.network.calm()
        for p in self.peer_ids:
            if not self.peers[p].alive:
                self.restart(p)

    def _probe_needs_proposing(self) -> bool:
        """No liveness probe yet, or the last one will never be acknowledged: refused, lost
        with a crash, superseded by another leader's entry, or jumped over by a snapshot."""
        probe = self.probe
        if probe is None:
            return True
        if self.probe_committed_at is not None:
            return False
        return self._proposals.get((probe.peer, probe.index)) is not probe

    def _liveness_done(self) -> bool:
        """Probe committed and every peer has applied through it."""
        probe_at = self.probe_committed_at
        if probe_at is None or self.probe is None:
            return False
        index = self.probe.index
        if all(
            p.core is not None and p.app.index >= index for p in self.peers.values()
        ):
            self.converged_at = self.now
            return True
        return False

    def run(self) -> SimResult:
        """The whole run: faulty phase, heal, then the liveness check. Raises
        `SimulationFailure` (naming the seed and the replay command) on any failure."""
        try:
            return self._run()
        except SimulationFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is reported with its seed
            raise self._failure(f"{type(exc).__name__}: {exc}", exc) from exc

    def _run(self) -> SimResult:
        world = self.world
        if self.autopilot:
            self._schedule_client(_PROPOSE, world.propose_every)
            self._schedule_client(_READ, world.read_every)
            if self._nemesis_rate():
                self._schedule(self.now + self._exp_ticks(self._nemesis_rate()), _NEMESIS)
            self._schedule(world.faulty_ticks * TICK, _HEAL)
        self.run_until(world.faulty_ticks * TICK)
        if self.healed_at is None:
            self._heal_phase()
        healed_at = self.now
        bound = HEAL_BOUND_ELECTIONS * world.config.election_ticks * TICK
        # 1. Within the bound, a leader must be elected and commit a newly proposed entry.
        deadline = healed_at + bound
        while self.now < deadline and self.probe_committed_at is None:
            if self._probe_needs_proposing():
                leader = self.leader()
                if leader is not None:
                    self.propose(leader, f"probe:{world.seed}:{self.now}".encode(), probe=True)
            self.run_until(
                min(deadline, self.now + TICK), stop=lambda: self.probe_committed_at is not None
            )
        if self.probe_committed_at is None:
            self.check_full()
            raise self._failure(
                f"liveness: {HEAL_BOUND_ELECTIONS} election timeouts ({bound / TICK:.0f} ticks) "
                f"after the heal no leader has committed a new entry (last probe "
                f"{self.probe}); peers: {self.status()}",
                None,
            )
        # 2. Every peer must then apply through the probe. Catching up is throughput-bound
        # (a peer down for the whole faulty phase may lack hundreds of entries, and a world
        # may allow one small AppendEntries in flight), so the allowance grows with the lag:
        # CATCH_UP_TICKS_PER_ENTRY per missing entry on top of the bound. A stuck peer still
        # fails; a slow but moving one does not.
        assert self.probe is not None
        lag = self.probe.index - min(p.app.index for p in self.peers.values())
        deadline = max(deadline, self.now) + lag * CATCH_UP_TICKS_PER_ENTRY * TICK
        self.run_until(deadline, stop=self._liveness_done)
        if self.converged_at is None and not self._liveness_done():
            self.check_full()
            raise self._failure(
                f"liveness: peers did not apply the probe at index {self.probe.index} "
                f"(committed {(self.probe_committed_at - healed_at) / TICK:.1f} ticks after "
                f"the heal) within {(deadline - healed_at) / TICK:.0f} ticks of the heal "
                f"(lag {lag} entries); peers: {self.status()}",
                None,
            )
        assert self.converged_at is not None
        self.check_full()
        self.check_acknowledged_durable()
        self._log("done")
        return SimResult(
            seed=world.seed,
            world=world,
            trace_hash=self.trace_hash,
            events=self.events,
            virtual_ticks=self.ticks,
            elections=len(self.checker.leaders),
            commit_index=self.checker.max_commit,
            proposals=self.proposals,
            acknowledged=len(self.acknowledged),
            reads_confirmed=len(self.confirmed_reads),
            reads_failed=len(self.failed_reads),
            compactions=self.compactions,
            snapshots_installed=self.snapshots_installed,
            crashes=self.crashes,
            messages_sent=self.network.sent,
            messages_delivered=self.delivered,
            commit_ticks=(self.probe_committed_at - healed_at) / TICK,
            recovery_ticks=(self.converged_at - healed_at) / TICK,
            trace=self.trace,
        )

    def status(self) -> str:
        """One line per peer: role, term, log and commit positions."""
        parts = []
        for p in self.peers.values():
            core = p.core
            if core is None:
                parts.append(f"p{p.id}:down")
            else:
                parts.append(
                    f"p{p.id}:{core.role.value} t{core.term} last={core.log.last_index} "
                    f"c={core.commit_index} a={p.app.index} s={core.log.snapshot_index}"
                )
        return "; ".join(parts)

    def _failure(self, what: str, cause: BaseException | None) -> SimulationFailure:
        tail = "\n    ".join((self.trace or [])[-25:])
        return SimulationFailure(
            f"simulation seed {self.world.seed} failed at t={self.ticks:.3f} ticks: {what}\n"
            f"  replay: {self.replay}\n"
            f"  {self.world.describe()}\n"
            f"  last events:\n    {tail}",
            seed=self.world.seed,
            cause=cause,
        )


# ==================================================================================== entry points


DEFAULT_FAULTY_RANGE = (200, 600)
"""Range of the faulty phase's length in ticks that `run_seed` draws from by default: short
enough for hundreds of seeds a minute, long enough for dozens of election timeouts, crashes
and partition changes. Soak runs pass a longer range (e.g. (1000, 3000))."""


def replay_command(
    seed: int, faulty_range: tuple[int, int] = DEFAULT_FAULTY_RANGE, **overrides: Any
) -> str:
    """The shell command that replays `seed` (with the same faulty range and overrides)."""
    extra = ""
    if tuple(faulty_range) != DEFAULT_FAULTY_RANGE:
        extra += f" --faulty-range {faulty_range[0]} {faulty_range[1]}"
    extra += "".join(
        f" --{name.replace('_', '-')} {value}" for name, value in sorted(overrides.items())
    )
    return f"python -m ruaft.testing.sim --seed {seed}{extra}"


def run_seed(
    seed: int,
    *,
    faulty_range: tuple[int, int] = DEFAULT_FAULTY_RANGE,
    record_trace: bool = False,
    full_check_every: int = 1000,
    on_event: Callable[[Simulation], None] | None = None,
    **overrides: Any,
) -> SimResult:
    """Run one seeded world to the end (see the module docstring).

    The world is drawn from `random.Random(seed)`, which then drives the whole run. Its faulty
    phase lasts a number of ticks drawn from `faulty_range`; `overrides` replace drawn `World`
    fields (e.g. `peers=5`, `loss=0.0`). `record_trace` keeps the whole trace in the result
    (otherwise only its hash and, for failure messages, its tail). `on_event` is called after
    every event (the CLI's `--verbose` status lines). Raises `SimulationFailure`, whose message
    names the seed and the replay command, when anything goes wrong.
    """
    rng = random.Random(seed)
    world = World.draw(rng, seed, faulty_range, **overrides)
    sim = Simulation(
        world,
        rng=rng,
        record_trace=True,
        full_check_every=full_check_every,
        replay=replay_command(seed, faulty_range, **overrides),
        on_event=on_event,
    )
    if not record_trace:
        # Keep a short tail for failure messages without holding the whole trace.
        sim.trace = _Tail(40)
    result = sim.run()
    if not record_trace:
        result.trace = None
    return result


def try_seed(seed: int, faulty_range: tuple[int, int] = DEFAULT_FAULTY_RANGE) -> str | None:
    """Run one seed; None if it passed, else the failure message (naming seed and replay).
    Picklable by reference, for process pools that sweep seeds in parallel."""
    try:
        run_seed(seed, faulty_range=faulty_range)
    except SimulationFailure as failure:
        return str(failure)
    return None


class _Tail(list[str]):
    """A list that keeps (at least) its last `size` items: the trace tail for failure messages."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def append(self, item: str) -> None:
        super().append(item)
        if len(self) > 2 * self.size:
            del self[: len(self) - self.size]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: replay one seed and print its trace, or sweep a range of seeds and time them."""
    parser = argparse.ArgumentParser(
        prog="python -m ruaft.testing.sim",
        description="Deterministic Raft cluster simulation: replay a seed (printing its event "
        "trace) or sweep consecutive seeds (printing a summary of each and the rate).",
    )
    parser.add_argument("--seed", type=int, default=0, help="the seed to replay (or the first)")
    parser.add_argument("--count", type=int, default=1,
                        help="run this many consecutive seeds (summaries only)")
    parser.add_argument("--verbose", action="store_true",
                        help="also print every peer's state after every event")
    parser.add_argument("--faulty-range", type=int, nargs=2, metavar=("LO", "HI"),
                        default=list(DEFAULT_FAULTY_RANGE),
                        help="range of the faulty phase's length in ticks")
    parser.add_argument("--peers", type=int, help="override the cluster size")
    parser.add_argument("--faulty-ticks", type=int, help="override the faulty phase's length")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.peers is not None:
        overrides["peers"] = args.peers
    if args.faulty_ticks is not None:
        overrides["faulty_ticks"] = args.faulty_ticks
    faulty_range = (args.faulty_range[0], args.faulty_range[1])
    single = args.count == 1

    def status(sim: Simulation) -> None:
        print(f"      [{sim.status()}]")

    started = time.perf_counter()
    failures = 0
    for seed in range(args.seed, args.seed + args.count):
        printed = 0
        trace_sink: Callable[[Simulation], None] | None = None
        if single:
            # Stream the trace as it grows, so a failing run shows everything up to the end.
            def trace_sink(sim: Simulation) -> None:
                nonlocal printed
                trace = sim.trace or []
                for line in trace[printed:]:
                    print(line)
                printed = len(trace)
                if args.verbose:
                    status(sim)
        try:
            result = run_seed(
                seed,
                faulty_range=faulty_range,
                record_trace=single,
                on_event=trace_sink,
                **overrides,
            )
        except SimulationFailure as failure:
            failures += 1
            print(failure, file=sys.stderr)
            continue
        if single and result.trace is not None:
            print("\n".join(result.trace[printed:]))
        print(result.summary())
    elapsed = time.perf_counter() - started
    if not single:
        print(
            f"{args.count} seeds in {elapsed:.1f} s ({args.count / elapsed:.2f} seeds/s), "
            f"{failures} failed"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
