"""TESTS.md §2A: leader election (ported; thresholds as in the Go original)."""

from __future__ import annotations

import random
import time
from typing import Callable

from orchestrator.cluster import ELECTION_TIMEOUT, Cluster

MakeCluster = Callable[..., Cluster]


def test_initial_election(make_cluster: MakeCluster) -> None:
    cfg = make_cluster(3)
    cfg.check_one_leader()
    # Sleep a bit to avoid racing with followers learning of the election, then check that
    # all peers agree on the term.
    time.sleep(0.05)
    term1 = cfg.check_terms()
    assert term1 >= 1
    # Does the leader+term stay the same if there is no network failure? (Go only warned;
    # an idle healthy cluster must not re-elect.)
    time.sleep(2 * ELECTION_TIMEOUT)
    term2 = cfg.check_terms()
    assert term1 == term2, f"term changed from {term1} to {term2} with no failures"
    cfg.check_one_leader()


def test_re_election(make_cluster: MakeCluster) -> None:
    servers = 3
    cfg = make_cluster(servers)
    leader1 = cfg.check_one_leader()
    # If the leader disconnects, a new one should be elected.
    cfg.disconnect(leader1)
    cfg.check_one_leader()
    # If the old leader rejoins, that shouldn't disturb the new leader.
    cfg.connect(leader1)
    leader2 = cfg.check_one_leader()
    # If there's no quorum, no new leader should be elected.
    cfg.disconnect(leader2)
    cfg.disconnect((leader2 + 1) % servers)
    time.sleep(2 * ELECTION_TIMEOUT)
    cfg.check_no_leader()
    # If a quorum arises, it should elect a leader.
    cfg.connect((leader2 + 1) % servers)
    cfg.check_one_leader()
    # Re-join of last node shouldn't prevent leader from existing.
    cfg.connect(leader2)
    cfg.check_one_leader()


def test_many_elections(make_cluster: MakeCluster, rng: random.Random) -> None:
    servers = 7
    cfg = make_cluster(servers)
    cfg.check_one_leader()
    for _ in range(9):
        # Disconnect three nodes.
        i1, i2, i3 = (rng.randrange(servers) for _ in range(3))
        cfg.disconnect(i1)
        cfg.disconnect(i2)
        cfg.disconnect(i3)
        # Either the current leader should still be alive, or the remaining four should
        # elect a new one.
        cfg.check_one_leader()
        cfg.connect(i1)
        cfg.connect(i2)
        cfg.connect(i3)
    cfg.check_one_leader()
