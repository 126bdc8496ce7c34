"""TESTS.md §2B: log agreement (ported from the Go original; thresholds as TESTS.md gives them).

Exact-index assertions (BasicAgree, RPCBytes, FollowerFailure, FailNoAgree, Count) rely on a
new leader appending its election no-op only when it holds uncommitted entries (TESTS.md §1).
"""

from __future__ import annotations

import random
import string
import threading
import time
from typing import Callable


from orchestrator.cluster import ELECTION_TIMEOUT, Cluster

MakeCluster = Callable[..., Cluster]


def randstring(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits + "+/", k=n))


def rand_int(rng: random.Random) -> int:
    """Go's rand.Int(): a non-negative 63-bit integer."""
    return rng.getrandbits(63)


def test_basic_agree(make_cluster: MakeCluster) -> None:
    servers = 3
    cfg = make_cluster(servers)
    for index in range(1, 4):
        nd, _ = cfg.n_committed(index)
        assert nd == 0, "some have committed before start()"
        xindex = cfg.one(index * 100, servers, False)
        assert xindex == index, f"got index {xindex} but expected {index}"


def test_rpc_bytes(make_cluster: MakeCluster, rng: random.Random) -> None:
    """Based on counting bytes of RPCs: each command is sent to each peer just once."""
    servers = 3
    cfg = make_cluster(servers)
    cfg.one(99, servers, False)
    bytes0 = cfg.bytes_total()
    sent = 0
    for index in range(2, 12):
        cmd = randstring(rng, 5000)
        xindex = cfg.one(cmd, servers, False)
        assert xindex == index, f"got index {xindex} but expected {index}"
        sent += len(cmd)
    got = cfg.bytes_total() - bytes0
    expected = servers * sent
    print(f"RPC bytes: {got} for {sent} bytes of commands (bound {expected + 50_000})")
    assert got <= expected + 50_000, f"too many RPC bytes; got {got}, expected {expected}"


def test_follower_failure(make_cluster: MakeCluster) -> None:
    """Progressive failure of followers."""
    servers = 3
    cfg = make_cluster(servers)
    cfg.one(101, servers, False)

    # Disconnect one follower from the network; the leader and the remaining follower
    # should be able to agree despite it.
    leader1 = cfg.check_one_leader()
    cfg.disconnect((leader1 + 1) % servers)
    cfg.one(102, servers - 1, False)
    time.sleep(ELECTION_TIMEOUT)
    cfg.one(103, servers - 1, False)

    # Disconnect the remaining follower.
    leader2 = cfg.check_one_leader()
    cfg.disconnect((leader2 + 1) % servers)
    cfg.disconnect((leader2 + 2) % servers)

    # Submit a command.
    index, _, ok = cfg.start(leader2, 104)
    assert ok, "leader rejected start()"
    assert index == 4, f"expected index 4, got {index}"

    time.sleep(2 * ELECTION_TIMEOUT)

    # Check that command 104 did not commit.
    n, _ = cfg.n_committed(index)
    assert n == 0, f"{n} committed but no majority"


def test_leader_failure(make_cluster: MakeCluster) -> None:
    """Failure of leaders."""
    servers = 3
    cfg = make_cluster(servers)
    cfg.one(101, servers, False)

    # Disconnect the first leader; the remaining followers should elect a new one.
    leader1 = cfg.check_one_leader()
    cfg.disconnect(leader1)
    cfg.one(102, servers - 1, False)
    time.sleep(ELECTION_TIMEOUT)
    cfg.one(103, servers - 1, False)

    # Disconnect the new leader.
    leader2 = cfg.check_one_leader()
    cfg.disconnect(leader2)

    # Submit a command to each server.
    for i in range(servers):
        cfg.start(i, 104)

    time.sleep(2 * ELECTION_TIMEOUT)

    # Check that command 104 did not commit.
    n, _ = cfg.n_committed(4)
    assert n == 0, f"{n} committed but no majority"


def test_fail_agree(make_cluster: MakeCluster) -> None:
    """A follower participates after disconnect and re-connect."""
    servers = 3
    cfg = make_cluster(servers)
    cfg.one(101, servers, False)

    # Disconnect one follower from the network.
    leader = cfg.check_one_leader()
    cfg.disconnect((leader + 1) % servers)

    # The leader and remaining follower should be able to agree despite it.
    cfg.one(102, servers - 1, False)
    cfg.one(103, servers - 1, False)
    time.sleep(ELECTION_TIMEOUT)
    cfg.one(104, servers - 1, False)
    cfg.one(105, servers - 1, False)

    # Re-connect.
    cfg.connect((leader + 1) % servers)

    # The full set of servers should preserve previous agreements, and be able to agree on
    # new commands.
    cfg.one(106, servers, True)
    time.sleep(ELECTION_TIMEOUT)
    cfg.one(107, servers, True)


def test_fail_no_agree(make_cluster: MakeCluster) -> None:
    """No agreement if too many followers disconnect."""
    servers = 5
    cfg = make_cluster(servers)
    cfg.one(10, servers, False)

    # 3 of 5 followers disconnect.
    leader = cfg.check_one_leader()
    cfg.disconnect((leader + 1) % servers)
    cfg.disconnect((leader + 2) % servers)
    cfg.disconnect((leader + 3) % servers)

    index, _, ok = cfg.start(leader, 20)
    assert ok, "leader rejected start()"
    assert index == 2, f"expected index 2, got {index}"

    time.sleep(2 * ELECTION_TIMEOUT)

    n, _ = cfg.n_committed(index)
    assert n == 0, f"{n} committed but no majority"

    # Repair.
    cfg.connect((leader + 1) % servers)
    cfg.connect((leader + 2) % servers)
    cfg.connect((leader + 3) % servers)

    # The disconnected majority may have chosen a leader from among their own ranks,
    # forgetting index 2.
    leader2 = cfg.check_one_leader()
    index2, _, ok2 = cfg.start(leader2, 30)
    assert ok2, "leader2 rejected start()"
    # Go: index2 in 2..3 -- 2 if the new leader is one of the three that never saw index 2,
    # 3 if it is the old leader or its follower, which hold the uncommitted 20 at index 2.
    # Under TESTS.md §1's no-op rule the latter leader HAS an uncommitted entry, so it
    # appends its election no-op at 3 and 30 lands at 4: Go's second case widened by exactly
    # the no-op (TESTS.md: "widen ... by exactly one and say so in the test"; the Rust
    # translation accepts 2..=4 for the same reason). We accept 4 only if index 3 really is
    # that no-op and index 2 the 20 it was protecting, checked below once everyone agrees.
    assert index2 in (2, 4), f"unexpected index {index2}"

    cfg.one(1000, servers, True)
    if index2 == 4:
        assert cfg.n_committed(2) == (servers, 20), f"index 2: {cfg.n_committed(2)}"
        assert cfg.n_committed(3) == (servers, None), (
            f"index 3 is not the election no-op: {cfg.n_committed(3)}")


def test_concurrent_starts(make_cluster: MakeCluster) -> None:
    servers = 3
    cfg = make_cluster(servers)
    success = False
    for attempt in range(5):
        if attempt > 0:
            # Give the solution some time to settle.
            time.sleep(3)

        leader = cfg.check_one_leader()
        _, term, ok = cfg.start(leader, 1)
        if not ok:
            continue  # leader moved on really quickly

        iters = 5
        indexes: list[int] = []
        lock = threading.Lock()

        def starter(i: int) -> None:
            index, term1, ok1 = cfg.start(leader, 100 + i)
            if term1 != term or not ok1:
                return
            with lock:
                indexes.append(index)

        threads = [threading.Thread(target=starter, args=(i,)) for i in range(iters)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        if any(cfg.get_state(j)[0] != term for j in range(servers)):
            continue  # term changed: can't expect all start()s to have succeeded

        failed = False
        cmds = []
        for index in indexes:
            cmd = cfg.wait(index, servers, term)
            if cmd is None:
                # Peers have moved on to later terms, so we can't expect all start()s to
                # have succeeded.
                failed = True
                break
            assert isinstance(cmd, int), f"value {cmd!r} is not an int"
            cmds.append(cmd)
        if failed:
            continue

        for ii in range(iters):
            assert 100 + ii in cmds, f"cmd {100 + ii} missing in {cmds}"
        success = True
        break

    assert success, "term changed too often"


def test_rejoin(make_cluster: MakeCluster) -> None:
    """Rejoin of a partitioned leader."""
    servers = 3
    cfg = make_cluster(servers)
    cfg.one(101, servers, True)

    # Leader network failure.
    leader1 = cfg.check_one_leader()
    cfg.disconnect(leader1)

    # Make the old leader try to agree on some entries.
    cfg.start(leader1, 102)
    cfg.start(leader1, 103)
    cfg.start(leader1, 104)

    # New leader commits, also for index=2.
    cfg.one(103, 2, True)

    # New leader network failure.
    leader2 = cfg.check_one_leader()
    cfg.disconnect(leader2)

    # Old leader connected again.
    cfg.connect(leader1)
    cfg.one(104, 2, True)

    # All together now.
    cfg.connect(leader2)
    cfg.one(105, servers, True)


def test_backup(make_cluster: MakeCluster, rng: random.Random) -> None:
    """The leader backs up quickly over incorrect follower logs (Go's 50 commands and
    ET/2 sleeps, not the Rust translation's 5 commands and 2 ET)."""
    servers = 5
    cfg = make_cluster(servers)
    cfg.one(rand_int(rng), servers, True)

    # Put the leader and one follower in a partition.
    leader1 = cfg.check_one_leader()
    cfg.disconnect((leader1 + 2) % servers)
    cfg.disconnect((leader1 + 3) % servers)
    cfg.disconnect((leader1 + 4) % servers)

    # Submit lots of commands that won't commit.
    for _ in range(50):
        cfg.start(leader1, rand_int(rng))

    time.sleep(ELECTION_TIMEOUT / 2)

    cfg.disconnect((leader1 + 0) % servers)
    cfg.disconnect((leader1 + 1) % servers)

    # Allow the other partition to recover.
    cfg.connect((leader1 + 2) % servers)
    cfg.connect((leader1 + 3) % servers)
    cfg.connect((leader1 + 4) % servers)

    # Lots of successful commands to the new group.
    for _ in range(50):
        cfg.one(rand_int(rng), 3, True)

    # Now another partitioned leader and one follower.
    leader2 = cfg.check_one_leader()
    other = (leader1 + 2) % servers
    if leader2 == other:
        other = (leader2 + 1) % servers
    cfg.disconnect(other)

    # Lots more commands that won't commit.
    for _ in range(50):
        cfg.start(leader2, rand_int(rng))

    time.sleep(ELECTION_TIMEOUT / 2)

    # Bring the original leader back to life.
    for i in range(servers):
        cfg.disconnect(i)
    cfg.connect((leader1 + 0) % servers)
    cfg.connect((leader1 + 1) % servers)
    cfg.connect(other)

    # Lots of successful commands to the new group.
    for _ in range(50):
        cfg.one(rand_int(rng), 3, True)

    # Now everyone.
    for i in range(servers):
        cfg.connect(i)
    cfg.one(rand_int(rng), servers, True)


def test_count(make_cluster: MakeCluster, rng: random.Random) -> None:
    """RPC counts aren't too high (TESTS.md's bounds: ≤ 10 to elect, ≤ 28 for 10 entries,
    < 20 for one ET of idleness)."""
    servers = 3
    cfg = make_cluster(servers)

    leader = cfg.check_one_leader()
    total1 = cfg.rpc_total()
    print(f"RPCs to elect the first leader: {total1}")
    assert 1 <= total1 <= 10, f"too many or few RPCs ({total1}) to elect initial leader"

    total2 = 0
    success = False
    for attempt in range(5):
        if attempt > 0:
            # Give the solution some time to settle.
            time.sleep(3)

        leader = cfg.check_one_leader()
        total1 = cfg.rpc_total()

        iters = 10
        starti, term, ok = cfg.start(leader, 1)
        if not ok:
            continue  # leader moved on really quickly
        cmds = []
        term_changed = False
        for i in range(1, iters + 2):
            x = rng.getrandbits(31)
            cmds.append(x)
            index1, term1, ok1 = cfg.start(leader, x)
            if term1 != term or not ok1:
                term_changed = True  # term changed while starting / no longer the leader
                break
            assert starti + i == index1, f"start() failed: index {index1}, expected {starti + i}"
        if term_changed:
            continue

        for i in range(1, iters + 1):
            cmd = cfg.wait(starti + i, servers, term)
            if cmd is None:
                term_changed = True  # term changed -- try again
                break
            assert cmd == cmds[i - 1], (
                f"wrong value {cmd!r} committed for index {starti + i}; expected {cmds}")
        if term_changed:
            continue

        failed = False
        total2 = 0
        for j in range(servers):
            if cfg.get_state(j)[0] != term:
                # Term changed -- can't expect low RPC counts; keep going to update total2.
                failed = True
            total2 += cfg.rpc_count(j)
        if failed:
            continue

        print(f"RPCs for {iters} entries: {total2 - total1}")
        assert total2 - total1 <= (iters + 1 + 3) * (servers - 1), (
            f"too many RPCs ({total2 - total1}) for {iters} entries")
        success = True
        break

    assert success, "term changed too often"

    time.sleep(ELECTION_TIMEOUT)

    total3 = cfg.rpc_total()
    print(f"RPCs for 1 ET of idleness: {total3 - total2}")
    assert total3 - total2 < 20, f"too many RPCs ({total3 - total2}) for 1 second of idleness"
