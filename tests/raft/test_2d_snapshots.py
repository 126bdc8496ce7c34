"""TESTS.md §2D: log compaction and InstallSnapshot (ported from the Go original).

The peers run the snapshot-mode applier (TESTS.md §1): each snapshots its record of applied
commands whenever `(index + 1) % 10 == 0`, and rebuilds the record from a delivered or
persisted snapshot.
"""

from __future__ import annotations

import random
from typing import Callable

from orchestrator.cluster import Cluster
from orchestrator.peer import SNAPSHOT_INTERVAL

MakeCluster = Callable[..., Cluster]

MAX_LOG_SIZE = 2000
"""Bytes of persisted Raft state (hard state + retained entries) every peer must stay under."""

SNAPCOMMON_STARTS = 11
"""TESTS.md: 11 `start()`s per iteration (Go draws 5..14, i.e. SnapShotInterval/2 +
rand % SnapShotInterval); 11 > SNAPSHOT_INTERVAL makes every iteration cross a snapshot
point."""


def rand_int(rng: random.Random) -> int:
    """Go's rand.Int(): a non-negative 63-bit integer."""
    return rng.getrandbits(63)


def check_log_sizes(cfg: Cluster) -> None:
    """Go's `cfg.LogSize() >= MAXLOGSIZE` check, on every live peer."""
    sizes = {i: cfg.log_size(i) for i in range(cfg.n) if cfg.peers[i] is not None}
    too_big = {i: size for i, size in sizes.items() if size >= MAX_LOG_SIZE}
    assert not too_big, f"log size too large: {too_big} (limit {MAX_LOG_SIZE} bytes)"


def snapcommon(cfg: Cluster, rng: random.Random, disconnect: bool, crash: bool) -> None:
    iters = 30
    servers = cfg.n
    cfg.one(rand_int(rng), servers, True)
    leader1 = cfg.check_one_leader()

    for i in range(iters):
        victim = (leader1 + 1) % servers
        sender = leader1
        if i % 3 == 1:
            sender = (leader1 + 1) % servers
            victim = leader1

        if disconnect:
            cfg.disconnect(victim)
            cfg.one(rand_int(rng), servers - 1, True)
        if crash:
            cfg.crash1(victim)
            cfg.one(rand_int(rng), servers - 1, True)

        # Send enough to get a snapshot. Go sends to `sender`, which is the leader or, when
        # the victim was the leader, the peer most likely to have taken over; TESTS.md says
        # "on the leader", so if `sender` refuses, the starts go to whoever accepts.
        candidates = [sender] + [p for p in range(servers) if p not in (sender, victim)]
        for _ in range(SNAPCOMMON_STARTS):
            cmd = rand_int(rng)
            for p in candidates:
                if cfg.start(p, cmd)[2]:
                    break

        # Let the applier threads catch up with the start()s.
        if not disconnect and not crash:
            # Make sure all followers have caught up, so that an InstallSnapshot RPC isn't
            # required for SnapshotBasic.
            cfg.one(rand_int(rng), servers, True)
        else:
            cfg.one(rand_int(rng), servers - 1, True)

        check_log_sizes(cfg)

        if disconnect:
            # Reconnect a follower, who may be behind and need a snapshot to catch up.
            cfg.connect(victim)
            cfg.one(rand_int(rng), servers, True)
            leader1 = cfg.check_one_leader()
        if crash:
            cfg.start1(victim)
            cfg.connect(victim)
            cfg.one(rand_int(rng), servers, True)
            leader1 = cfg.check_one_leader()


def test_snapshot_basic(make_cluster: MakeCluster, rng: random.Random) -> None:
    snapcommon(make_cluster(3, snapshot=True), rng, disconnect=False, crash=False)


def test_snapshot_install(make_cluster: MakeCluster, rng: random.Random) -> None:
    snapcommon(make_cluster(3, snapshot=True), rng, disconnect=True, crash=False)


def test_snapshot_install_unreliable(make_cluster: MakeCluster, rng: random.Random) -> None:
    snapcommon(make_cluster(3, unreliable=True, snapshot=True), rng, disconnect=True, crash=False)


def test_snapshot_install_crash(make_cluster: MakeCluster, rng: random.Random) -> None:
    snapcommon(make_cluster(3, snapshot=True), rng, disconnect=False, crash=True)


def test_snapshot_install_uncrash(make_cluster: MakeCluster, rng: random.Random) -> None:
    snapcommon(make_cluster(3, unreliable=True, snapshot=True), rng, disconnect=False, crash=True)


def test_snapshot_all_crash(make_cluster: MakeCluster, rng: random.Random) -> None:
    """Do the servers persist the snapshots, and restart using the snapshot along with the
    tail of the log?"""
    servers = 3
    iters = 5
    cfg = make_cluster(servers, snapshot=True)
    cfg.one(rand_int(rng), servers, True)

    for _ in range(iters):
        # Perhaps enough to get a snapshot.
        nn = SNAPSHOT_INTERVAL // 2 + rng.randrange(SNAPSHOT_INTERVAL)
        for _ in range(nn):
            cfg.one(rand_int(rng), servers, True)

        index1 = cfg.one(rand_int(rng), servers, True)

        # Crash all.
        for i in range(servers):
            cfg.crash1(i)

        # Revive all.
        for i in range(servers):
            cfg.start1(i)
            cfg.connect(i)

        index2 = cfg.one(rand_int(rng), servers, True)
        assert index2 >= index1 + 1, f"index decreased from {index1} to {index2}"


def test_snapshot_init(make_cluster: MakeCluster, rng: random.Random) -> None:
    """Do servers correctly initialize their in-memory copy of the snapshot, making sure
    that future writes to persistent state don't lose state?"""
    servers = 3
    cfg = make_cluster(servers, snapshot=True)
    cfg.one(rand_int(rng), servers, True)

    # Enough ops to make a snapshot.
    for _ in range(SNAPSHOT_INTERVAL + 1):
        cfg.one(rand_int(rng), servers, True)

    # Crash all.
    for i in range(servers):
        cfg.crash1(i)

    # Revive all.
    for i in range(servers):
        cfg.start1(i)
        cfg.connect(i)

    # A single op, to get something to be written back to persistent storage.
    cfg.one(rand_int(rng), servers, True)

    # Crash all.
    for i in range(servers):
        cfg.crash1(i)

    # Revive all.
    for i in range(servers):
        cfg.start1(i)
        cfg.connect(i)

    # Do another op to trigger a potential bug.
    cfg.one(rand_int(rng), servers, True)
    assert cfg.snapshot_size(cfg.check_one_leader()) > 0, "no snapshot after restarts"
