"""Hypothesis drives the simulator: a rule-based state machine whose rules are the things that
happen to a cluster — time passing, messages delivered out of order or lost, partitions and
heals, crashes and restarts, proposals, reads, compactions, leadership transfers.

The simulator checks the incremental invariants inside every rule; after every rule the
`invariant` below also runs the full cross-check of all live logs. Hypothesis shrinks a failure
to a short rule sequence and prints it. At teardown the network is healed, every peer
restarted, and the cluster must commit a new entry everywhere (liveness after the storm).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ruaft.core.types import Config
from ruaft.testing.sim import HEAL_BOUND_ELECTIONS, Simulation, World

PEERS = st.integers(min_value=0, max_value=6)


class ClusterMachine(RuleBasedStateMachine):
    sim: Simulation

    @initialize(
        peers=st.integers(min_value=3, max_value=5),
        seed=st.integers(min_value=0, max_value=2**32 - 1),
        chunk=st.sampled_from([16, 64, 1 << 20]),
        compaction=st.sampled_from([0, 250, 600]),
    )
    def start(self, peers: int, seed: int, chunk: int, compaction: int) -> None:
        world = World.calm(
            seed=seed,
            peers=peers,
            config=Config(heartbeat_ticks=2, election_ticks=6, snapshot_chunk_bytes=chunk),
            compaction_bytes=compaction,
        )
        self.sim = Simulation(world, autopilot=False, full_check_every=0)
        self.commands = 0
        # Start from a working cluster (a leader and a few committed entries), so the rules
        # spend their budget on disturbing it rather than on the first election.
        sim = self.sim
        sim.run_for(10 * world.config.election_ticks, stop=lambda: sim.leader() is not None)
        for _ in range(3):
            self.propose(True, 0, 0, 4, False)
            sim.run_for(2)

    def _peer(self, n: int) -> int:
        return n % self.sim.world.peers

    # -------------------------------------------------------------------- time and messages

    @rule(ticks=st.integers(min_value=1, max_value=20))
    def advance(self, ticks: int) -> None:
        """Time passes: clocks tick and due messages arrive."""
        self.sim.run_for(ticks)

    @precondition(lambda self: bool(self.sim.in_flight()))
    @rule(pick=st.integers(min_value=0), count=st.integers(min_value=1, max_value=4))
    def deliver_out_of_order(self, pick: int, count: int) -> None:
        """Some in-flight messages arrive now, ahead of others sent earlier."""
        for _ in range(count):
            flying = self.sim.in_flight()
            if not flying:
                return
            self.sim.deliver(flying[pick % len(flying)][0])

    @precondition(lambda self: bool(self.sim.in_flight()))
    @rule(pick=st.integers(min_value=0))
    def drop(self, pick: int) -> None:
        flying = self.sim.in_flight()
        self.sim.drop(flying[pick % len(flying)][0])

    # -------------------------------------------------------------------- faults
    # One rule draws the kind of fault, so faults come about as often as time advances
    # (one rule per fault kind would let faults crowd out progress).

    @rule(
        kind=st.sampled_from(["partition", "cut-link", "heal", "crash", "restart"]),
        members=st.sets(PEERS, min_size=1, max_size=3),
        peer=PEERS,
        other=PEERS,
    )
    def fault(self, kind: str, members: set[int], peer: int, other: int) -> None:
        sim = self.sim
        p, q = self._peer(peer), self._peer(other)
        if kind == "partition":
            side = sorted({self._peer(m) for m in members})
            sim.partition(side, [x for x in sim.peer_ids if x not in side])
        elif kind == "cut-link":
            if p != q:
                sim.set_link(p, q, False)
        elif kind == "heal":
            sim.heal()
        elif kind == "crash":
            sim.crash(p)
        else:
            sim.restart(p)

    # -------------------------------------------------------------------- clients

    @rule(
        to_leader=st.booleans(),
        peer=PEERS,
        size=st.integers(min_value=0, max_value=30),
        count=st.integers(min_value=1, max_value=6),
        batch=st.booleans(),
    )
    def propose(self, to_leader: bool, peer: int, size: int, count: int, batch: bool) -> None:
        """A client sends `count` commands, to the leader or to any peer, one by one or in
        one batch (`propose_many`)."""
        if batch:
            target = self.sim.leader() if to_leader else self._peer(peer)
            if target is not None:
                self.sim.propose_batch(target, count)
            return
        for _ in range(count):
            self.commands += 1
            data = f"c{self.commands}:".encode() + b"x" * size
            target = self.sim.leader() if to_leader else self._peer(peer)
            if target is not None:
                self.sim.propose(target, data)

    @rule(to_leader=st.booleans(), peer=PEERS)
    def read(self, to_leader: bool, peer: int) -> None:
        target = self.sim.leader() if to_leader else self._peer(peer)
        if target is not None:
            self.sim.read(target)

    @rule(kind=st.sampled_from(["compact", "transfer", "tick"]), peer=PEERS)
    def maintenance(self, kind: str, peer: int) -> None:
        """A peer compacts its log, the leader hands over to a peer, or a clock runs fast."""
        p = self._peer(peer)
        if kind == "compact":
            self.sim.compact(p)
        elif kind == "transfer":
            self.sim.transfer(p)
        elif self.sim.peers[p].alive:
            self.sim.tick(p)

    # -------------------------------------------------------------------- checks

    @invariant()
    def logs_agree(self) -> None:
        self.sim.check_full()

    def teardown(self) -> None:
        sim = getattr(self, "sim", None)
        if sim is None:
            return
        # Liveness after the storm: heal, restart everyone, and a new entry must commit.
        sim.network.calm()
        for p in sim.peer_ids:
            sim.restart(p)
        bound = HEAL_BOUND_ELECTIONS * sim.world.config.election_ticks
        deadline = sim.ticks + bound
        index = None
        while sim.ticks < deadline and index is None:
            leader = sim.leader()
            if leader is not None:
                result = sim.propose(leader, b"final")
                if result is not None:
                    target = result[0]
                    sim.run_for(2 * sim.world.config.election_ticks,
                                stop=lambda: target in sim.acknowledged)
                    if target in sim.acknowledged:
                        index = target
                        break
            sim.run_for(1)
        assert index is not None, f"no commit within {bound} ticks of the heal: {sim.status()}"
        sim.run_for(bound, stop=lambda: all(p.app.index >= index for p in sim.peers.values()))
        assert all(p.app.index >= index for p in sim.peers.values()), sim.status()
        sim.check_full()
        sim.check_acknowledged_durable()


ClusterMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=False,
)
test_cluster = ClusterMachine.TestCase
