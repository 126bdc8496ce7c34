"""Scripted scenarios on the simulator: the behaviours a healthy Raft cluster must show.

Each test builds a fault-free world (`World.calm`) without background clients or nemesis and
injects exactly the faults it is about; the invariant checker still runs after every event,
with a full cross-check of the logs after every event too (`full_check_every=1`).
"""

from __future__ import annotations

from typing import Any

import pytest

from ruaft.core.types import (
    AppendEntries,
    AppendEntriesResponse,
    Config,
    InstallSnapshot,
    Role,
)
from ruaft.testing.sim import Simulation, World

ELECTION = Config().election_ticks


def calm(peers: int = 3, seed: int = 0, **world: Any) -> Simulation:
    return Simulation(
        World.calm(seed=seed, peers=peers, **world),
        autopilot=False,
        full_check_every=1,
    )


def elect(sim: Simulation, within: float = 10 * ELECTION) -> int:
    """Run until some peer is leader and every live peer follows it; return the leader."""

    def settled() -> bool:
        leader = sim.leader()
        if leader is None:
            return False
        term = sim.peers[leader].core.term  # type: ignore[union-attr]
        return all(
            p.core.term == term and p.core.leader_id == leader
            for p in sim.peers.values()
            if p.core is not None
        )

    sim.run_for(within, stop=settled)
    assert settled(), f"no settled leader within {within} ticks: {sim.status()}"
    leader = sim.leader()
    assert leader is not None
    return leader


def commit(sim: Simulation, leader: int, data: bytes, within: float = 5 * ELECTION) -> int:
    """Propose `data` to `leader` and run until it is applied everywhere reachable from it."""
    result = sim.propose(leader, data)
    assert result is not None, f"peer {leader} refused a proposal: {sim.status()}"
    index, _ = result
    sim.run_for(within, stop=lambda: index in sim.acknowledged)
    assert sim.acknowledged.get(index) == data, f"{data!r} not committed: {sim.status()}"
    return index


def applied_everywhere(sim: Simulation, index: int) -> bool:
    return all(p.core is not None and p.app.index >= index for p in sim.peers.values())


# ------------------------------------------------------------------------------ elections


@pytest.mark.parametrize("peers", [3, 5])
@pytest.mark.parametrize("seed", range(10))
def test_leader_elected_in_healthy_cluster(peers: int, seed: int) -> None:
    """A healthy cluster elects one leader within a few election timeouts (pre-vote round,
    vote round, split votes retried with fresh random timeouts), and it stays leader."""
    sim = calm(peers, seed)
    leader = elect(sim, within=5 * ELECTION)
    assert sim.ticks <= 5 * ELECTION
    term = sim.peers[leader].core.term  # type: ignore[union-attr]
    sim.run_for(20 * ELECTION)
    assert sim.leader() == leader, "a healthy leader was deposed"
    assert sim.peers[leader].core.term == term  # type: ignore[union-attr]
    assert sim.checker.leaders == {term: leader}, "more than one term had a leader"


def test_minority_cannot_elect_but_majority_can() -> None:
    sim = calm(5, seed=1)
    leader = elect(sim)
    minority = [leader, (leader + 1) % 5]
    majority = [p for p in range(5) if p not in minority]
    sim.partition(minority, majority)
    sim.run_for(10 * ELECTION)
    new_leader = sim.leader()
    assert new_leader in majority
    # The old leader stepped down (check-quorum), and nobody in the minority leads.
    assert all(sim.peers[p].core.role is not Role.LEADER for p in minority)  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ partitions


def test_commit_after_partition_heals() -> None:
    """A leader cut off with a minority cannot commit; the majority elects a new leader and
    commits; after the heal the old leader's uncommitted entry is discarded and every peer
    converges on the majority's log."""
    sim = calm(5, seed=2)
    old = elect(sim)
    commit(sim, old, b"before")
    minority = [old, (old + 1) % 5]
    majority = [p for p in range(5) if p not in minority]
    sim.partition(minority, majority)
    stranded = sim.propose(old, b"stranded")
    assert stranded is not None
    sim.run_for(10 * ELECTION)
    assert stranded[0] not in sim.acknowledged
    new = sim.leader()
    assert new in majority
    index = commit(sim, new, b"during")
    sim.heal()
    sim.run_for(10 * ELECTION, stop=lambda: applied_everywhere(sim, index))
    assert applied_everywhere(sim, index), sim.status()
    final = commit(sim, sim.leader() or new, b"after")
    sim.run_for(5 * ELECTION, stop=lambda: applied_everywhere(sim, final))
    assert applied_everywhere(sim, final), sim.status()
    applied = {data for _, data in sim.checker.applied.values()}
    assert {b"before", b"during", b"after"} <= applied
    assert b"stranded" not in applied
    sim.check_acknowledged_durable()


def test_lost_and_reordered_messages_do_not_stop_progress() -> None:
    sim = calm(3, seed=3, loss=0.2, duplicate=0.1, reorder=0.3)
    leader = elect(sim, within=30 * ELECTION)
    for n in range(20):
        leader = sim.leader() or elect(sim, within=30 * ELECTION)
        sim.propose(leader, f"cmd{n}".encode())
        sim.run_for(2)
    sim.network.calm()
    last = commit(sim, sim.leader() or elect(sim), b"last", within=30 * ELECTION)
    sim.run_for(10 * ELECTION, stop=lambda: applied_everywhere(sim, last))
    assert applied_everywhere(sim, last), sim.status()


# ------------------------------------------------------------------------------ snapshots


def test_lagging_follower_catches_up_by_chunked_install_snapshot() -> None:
    """A follower cut off while the others commit and compact far past it comes back and is
    brought up to date by an InstallSnapshot sent in several chunks."""
    chunk = 16
    sim = calm(
        3, seed=4,
        config=Config(snapshot_chunk_bytes=chunk),
        compaction_bytes=400,
    )
    leader = elect(sim)
    lagging = (leader + 1) % 3
    sim.isolate(lagging)
    sim.run_for(1)
    for n in range(60):
        commit(sim, leader, f"entry-{n:03d}".encode())
    leader_core = sim.peers[leader].core
    lagging_core = sim.peers[lagging].core
    assert leader_core is not None and lagging_core is not None
    assert leader_core.log.snapshot_index > lagging_core.log.last_index, (
        "the leader did not compact past the lagging follower's log"
    )
    snapshot_size = len(leader_core.log.snapshot.data)  # type: ignore[union-attr]
    assert snapshot_size > 2 * chunk

    trace_start = len(sim.trace or [])
    installed_before = sim.snapshots_installed
    sim.heal()
    target = leader_core.commit_index
    sim.run_for(20 * ELECTION, stop=lambda: sim.peers[lagging].app.index >= target)
    assert sim.peers[lagging].app.index >= target, sim.status()
    assert sim.snapshots_installed > installed_before
    chunks = [
        line for line in (sim.trace or [])[trace_start:]
        if f" IS {leader}>{lagging} " in line and " lost" not in line
    ]
    assert len(chunks) >= snapshot_size // chunk, chunks
    assert any(" off=0 " in line for line in chunks)
    assert any(" done" in line for line in chunks)
    # The follower's state machine equals the leader's at the same index.
    index = sim.peers[lagging].app.index
    assert sim.checker.digests[index] == sim.peers[lagging].app.digest
    # And it keeps replicating normally afterwards.
    final = commit(sim, leader, b"after-snapshot")
    sim.run_for(5 * ELECTION, stop=lambda: applied_everywhere(sim, final))
    assert applied_everywhere(sim, final)


def test_lagging_follower_catches_up_while_the_leader_keeps_compacting() -> None:
    """Liveness of InstallSnapshot under load: clients keep writing, so the leader compacts
    again (every few entries) before a multi-chunk transfer to the lagging follower can end.
    The follower must still catch up — each transfer has to be allowed to finish (or resume)
    rather than start over from offset 0 with every newer snapshot. See FINDINGS.md."""
    sim = calm(
        3, seed=12,
        config=Config(snapshot_chunk_bytes=16),
        compaction_bytes=250,
        delay_units=(400, 1500),
    )
    leader = elect(sim)
    lagging = (leader + 1) % 3
    sim.isolate(lagging)
    for n in range(30):
        commit(sim, leader, f"entry-{n:03d}".encode())
    sim.heal()
    target = sim.peers[leader].app.index
    bound = 30 * ELECTION
    for n in range(bound):
        current = sim.leader()
        if current is not None:
            sim.propose(current, f"load-{n:03d}".encode())
        sim.run_for(1)
        if sim.peers[lagging].app.index >= target:
            break
    assert sim.peers[lagging].app.index >= target, (
        f"the lagging follower did not catch up within {bound} ticks under write load: "
        f"{sim.status()}"
    )


def test_restart_restores_state_machine_from_snapshot() -> None:
    sim = calm(3, seed=5, compaction_bytes=300)
    leader = elect(sim)
    for n in range(30):
        commit(sim, leader, f"v{n}".encode())
    follower = (leader + 1) % 3
    sim.run_for(2 * ELECTION, stop=lambda: applied_everywhere(sim, sim.checker.max_commit))
    digest = sim.peers[follower].app.digest
    index = sim.peers[follower].app.index
    assert sim.peers[follower].storage.snapshot() is not None
    snapshot_index = sim.peers[follower].storage.snapshot().index  # type: ignore[union-attr]
    sim.crash(follower)
    sim.restart(follower)
    # At once restored from the snapshot (and the entries its persisted commit index covers;
    # the commit index is persisted lazily, so the rest is re-learned from the leader).
    assert sim.peers[follower].app.index >= snapshot_index
    sim.run_for(2 * ELECTION, stop=lambda: sim.peers[follower].app.index >= index)
    assert sim.peers[follower].app.index == index
    assert sim.peers[follower].app.digest == digest


# ------------------------------------------------------------------------------ transfer


@pytest.mark.parametrize("peers", [3, 5])
def test_leadership_transfer(peers: int) -> None:
    sim = calm(peers, seed=6)
    old = elect(sim)
    commit(sim, old, b"x")
    target = (old + 1) % peers
    term = sim.peers[old].core.term  # type: ignore[union-attr]
    assert sim.transfer(target)
    sim.run_for(2 * ELECTION, stop=lambda: sim.leader() == target)
    assert sim.leader() == target, sim.status()
    assert sim.peers[target].core.term == term + 1  # type: ignore[union-attr]
    assert sim.peers[old].core.role is Role.FOLLOWER  # type: ignore[union-attr]
    commit(sim, target, b"y")


def test_transfer_to_lagging_peer_waits_for_catch_up() -> None:
    sim = calm(3, seed=7)
    old = elect(sim)
    target = (old + 1) % 3
    sim.set_link(old, target, False)
    for n in range(5):
        commit(sim, old, f"e{n}".encode())
    assert sim.transfer(target)
    assert sim.propose(old, b"refused") is None, "proposals are refused during a transfer"
    sim.set_link(old, target, True)
    sim.run_for(3 * ELECTION, stop=lambda: sim.leader() == target)
    assert sim.leader() == target, sim.status()


# ------------------------------------------------------------------------------ ReadIndex


def _in_flight(sim: Simulation, kind: type, src: int, dst: int) -> list[int]:
    return [
        event for event, m in sim.in_flight()
        if isinstance(m, kind) and m.from_peer == src and m.to_peer == dst
    ]


@pytest.mark.parametrize("peers", [3, 5])
def test_read_index_confirmed_only_after_a_quorum_round(peers: int) -> None:
    """With the clock stopped, a read is confirmed exactly when a majority (counting the
    leader) has acknowledged a heartbeat sent after the read — not before."""
    sim = calm(peers, seed=8)
    leader = elect(sim)
    index = commit(sim, leader, b"w")
    sim.run_for(ELECTION)  # let every in-flight message land
    for event, _ in sim.in_flight():
        sim.drop(event)

    context = sim.read(leader)
    assert context is not None
    followers = [p for p in range(peers) if p != leader]
    heartbeats = {f: _in_flight(sim, AppendEntries, leader, f) for f in followers}
    assert all(heartbeats.values()), "the read did not start a heartbeat round"
    # Followers receive the round; their answers are still on the wire.
    for follower in followers:
        for event in heartbeats[follower]:
            sim.deliver(event)
    assert not sim.confirmed_reads
    needed = len(range(peers)) // 2  # acknowledgements besides the leader's own
    for n, follower in enumerate(followers[:needed]):
        assert not sim.confirmed_reads, f"confirmed after {n} of {needed} acknowledgements"
        for event in _in_flight(sim, AppendEntriesResponse, follower, leader):
            sim.deliver(event)
    assert [c for c, _, _ in sim.confirmed_reads] == [context]
    _, by, read_index = sim.confirmed_reads[0]
    assert by == leader and read_index >= index


def test_read_on_a_cut_off_leader_fails_and_never_confirms() -> None:
    sim = calm(3, seed=9)
    leader = elect(sim)
    commit(sim, leader, b"w")
    sim.isolate(leader)
    context = sim.read(leader)
    assert context is not None
    sim.run_for(4 * ELECTION)
    assert not sim.confirmed_reads
    assert context in sim.failed_reads, "the deposed leader did not fail its pending read"


def test_read_waits_for_new_leaders_first_commit() -> None:
    """A new leader holding uncommitted entries confirms reads only after committing an entry
    of its own term (thesis §6.4), and then at an index covering the old leader's writes."""
    sim = calm(3, seed=10)
    old = elect(sim)
    acked = commit(sim, old, b"acked")
    sim.crash(old)
    new = elect(sim)
    context = sim.read(new)
    assert context is not None
    sim.run_for(3 * ELECTION, stop=lambda: bool(sim.confirmed_reads))
    assert sim.confirmed_reads and sim.confirmed_reads[0][2] >= acked


def test_non_leader_refuses_reads_and_proposals() -> None:
    sim = calm(3, seed=11)
    leader = elect(sim)
    follower = (leader + 1) % 3
    assert sim.read(follower) is None
    assert sim.propose(follower, b"no") is None
