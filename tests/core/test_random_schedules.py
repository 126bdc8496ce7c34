"""Seeded random schedules over `harness.Network`: ticks, deliveries in random order, lost and
duplicated messages, partitions, crashes and restarts, compaction, leadership transfers and
ReadIndex requests, in random configurations.

The network checks on every step: election safety (one leader per term), state-machine safety
(one entry per index across peers), in-order application, durability before send. This test
adds ReadIndex freshness (a ReadState's index is at least the highest commit index anywhere
when the read was requested; thesis §6.4) and, after healing everything, liveness and
convergence (a leader is elected, commits a new entry, and every peer applies the same
sequence). Failures print the seed; replay with `run_schedule(seed, ...)`.
"""

from __future__ import annotations

import random

import pytest

from ruaft.core.types import Config
from tests.core.harness import Network


def run_schedule(seed: int, *, peers: int, steps: int) -> None:
    rng = random.Random(seed)
    config = Config(
        snapshot_chunk_bytes=rng.choice([3, 7, 1 << 20]),
        max_append_bytes=rng.choice([1, 8, 1 << 20]),
        max_inflight_appends=rng.choice([1, 2, 64]),
        pre_vote=rng.random() < 0.8,
        check_quorum=rng.random() < 0.8,
    )
    net = Network(peers, seed=seed, config=config)
    read_floor: dict[int, int] = {}
    context = 0

    def highest_commit() -> int:
        live = [net.core(p).commit_index for p in net.up_ids()]
        stored = [net.nodes[p].disk.hard_state.commit for p in net.ids]
        return max(live + stored)

    for step in range(steps):
        r = rng.random()
        live = net.up_ids()
        leader = net.leader()
        if r < 0.35:
            net.tick_all()
        elif r < 0.55 and net.queue:
            m = net.queue.pop(rng.randrange(len(net.queue)))  # any order
            if rng.random() < 0.05:
                net.queue.append(m)  # duplicated: delivered again later
            if rng.random() >= 0.1:  # else lost
                net._deliver_one(m)
        elif r < 0.65:
            net.deliver()
        elif r < 0.75:
            if leader is not None:
                net.propose(leader, f"v{step}".encode())
        elif r < 0.78:
            peer = rng.choice(net.ids)
            if net.nodes[peer].up and len(live) > 1:
                net.crash(peer)
            elif not net.nodes[peer].up:
                net.restart(peer)
        elif r < 0.81:
            order = list(net.ids)
            rng.shuffle(order)
            cut = rng.randrange(1, peers)
            net.partition(order[:cut], order[cut:])
        elif r < 0.85:
            net.heal()
        elif r < 0.90:
            core = net.core(rng.choice(live))
            if core.applied_index > core.snapshot_index:
                net.compact(core.me, rng.randint(core.snapshot_index + 1, core.applied_index))
        elif r < 0.93:
            if leader is not None:
                context += 1
                read_floor[context] = highest_commit()
                net.read_index(leader, context)
        elif r < 0.95:
            if leader is not None:
                net.transfer(leader, rng.choice(net.ids))
        else:
            net.stabilize()
        for peer in net.ids:
            for rs in net.nodes[peer].read_states:
                assert rs.index >= read_floor[rs.context], (
                    f"seed {seed}: stale read on {peer}: {rs} < {read_floor[rs.context]}")
            net.nodes[peer].read_states.clear()

    for peer in net.ids:
        if not net.nodes[peer].up:
            net.restart(peer)
    net.heal()
    for _ in range(60):
        net.tick_all()
        net.stabilize()
    leader = net.leader()
    assert leader is not None, f"seed {seed}: no leader after healing"
    assert net.propose(leader, b"final") is not None
    net.stabilize()
    for _ in range(10):
        net.tick_all()
        net.stabilize()
    states = {peer: net.state_values(peer) for peer in net.ids}
    assert states[leader][-1:] == ["final"], f"seed {seed}: final entry not applied"
    assert all(s == states[leader] for s in states.values()), f"seed {seed}: {states}"


@pytest.mark.parametrize("seed", range(12))
def test_random_schedule_five_peers(seed: int) -> None:
    run_schedule(seed, peers=5, steps=500)


@pytest.mark.parametrize("seed", range(100, 112))
def test_random_schedule_three_peers(seed: int) -> None:
    run_schedule(seed, peers=3, steps=500)
