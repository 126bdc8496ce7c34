"""TESTS.md's pre-vote tests (from the Rust translation; 5 peers).

NoDisruptiveRejoin fixes the Rust translation's `connect_pair(disrupted_2, disrupted_2)`:
the second disruptor is reconnected to its follower, L+2 <-> L+4, as the diagram says.
"""

from __future__ import annotations

import time
from typing import Callable

from orchestrator.cluster import ELECTION_TIMEOUT, Cluster

MakeCluster = Callable[..., Cluster]


def test_no_disruptive_rejoin(make_cluster: MakeCluster) -> None:
    servers = 5
    cfg = make_cluster(servers)
    initial_leader = cfg.check_one_leader()
    cfg.one(100, servers, False)
    initial_term = cfg.check_terms()

    #  L <--> L+1 <--> L+3
    #  ^       ^
    #  |       |
    #  |       v
    #  -----> L+2 <--> L+4

    disruptor_1 = (initial_leader + 3) % servers
    disruptor_2 = (initial_leader + 4) % servers
    cfg.disconnect(disruptor_1)
    cfg.disconnect(disruptor_2)
    # Long enough for the disconnected peers to time out and campaign (as pre-candidates).
    time.sleep(ELECTION_TIMEOUT)

    # The disconnected servers should not disrupt the existing leader when each of them can
    # reach one follower only.
    disrupted_1 = (initial_leader + 1) % servers
    disrupted_2 = (initial_leader + 2) % servers
    cfg.connect_pair(disrupted_1, disruptor_1)
    cfg.connect_pair(disrupted_2, disruptor_2)

    leader = cfg.check_one_leader()
    cfg.one(200, 3, False)

    first_term, ok = cfg.start(leader, 300)[1:]
    assert ok, f"leader {leader} rejected start()"
    assert leader == initial_leader, f"leader changed from {initial_leader} to {leader}"
    assert first_term == initial_term, f"term changed from {initial_term} to {first_term}"

    time.sleep(2 * ELECTION_TIMEOUT)

    second_term, ok = cfg.start(leader, 400)[1:]
    assert ok, f"leader {leader} lost leadership"
    assert second_term == first_term, f"term changed from {first_term} to {second_term}"

    # No election happened, so no election no-op either: 100, 200, 300, 400, then 500 at 5.
    index = cfg.one(500, 3, False)
    assert index == 5, f"expected index 5, got {index}"


def test_disruptive_liveness(make_cluster: MakeCluster) -> None:
    servers = 5
    cfg = make_cluster(servers)
    initial_leader = cfg.check_one_leader()
    cfg.one(100, servers, False)
    cfg.check_terms()

    #  L+3 <--> L+2      L+4
    #   ^        ^
    #   |        |
    #   |        v
    #   ------> L+1 <--> L

    # Disconnect L+4.
    disruptor = (initial_leader + 4) % servers
    cfg.disconnect(disruptor)

    # Cut (L, L+2) and (L, L+3): the leader keeps one follower, L+1, which still hears it.
    cfg.disconnect_pair(initial_leader, (initial_leader + 2) % servers)
    cfg.disconnect_pair(initial_leader, (initial_leader + 3) % servers)

    time.sleep(ELECTION_TIMEOUT)

    leader = cfg.check_one_leader()
    cfg.one(200, 3, False)

    assert leader != initial_leader, f"the leader {leader} cut off from a majority kept leading"
    assert leader != disruptor, f"the disconnected peer {leader} is the leader"
