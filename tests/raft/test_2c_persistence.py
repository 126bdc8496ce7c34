"""TESTS.md §2C: persistence (ported from the Go original).

A crash is a SIGKILL of the peer process; a restart is a new process on the same LMDB data
dir. Restarts never block the test loop on the new process's start-up (`start1` returns at
once and `connect` does not wait for a peer still starting).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable

import pytest

from orchestrator.cluster import ELECTION_TIMEOUT, Cluster

MakeCluster = Callable[..., Cluster]


def rand_int(rng: random.Random) -> int:
    """Go's rand.Int(): a non-negative 63-bit integer."""
    return rng.getrandbits(63)


def test_persist1(make_cluster: MakeCluster) -> None:
    """Basic persistence."""
    servers = 3
    cfg = make_cluster(servers)
    cfg.one(11, servers, True)

    # Crash and re-start all.
    for i in range(servers):
        cfg.start1(i)
    for i in range(servers):
        cfg.disconnect(i)
        cfg.connect(i)

    cfg.one(12, servers, True)

    leader1 = cfg.check_one_leader()
    cfg.disconnect(leader1)
    cfg.start1(leader1)
    cfg.connect(leader1)

    cfg.one(13, servers, True)

    leader2 = cfg.check_one_leader()
    cfg.disconnect(leader2)
    cfg.one(14, servers - 1, True)
    cfg.start1(leader2)
    cfg.connect(leader2)

    cfg.wait(4, servers, -1)  # wait for leader2 to join before killing i3

    i3 = (cfg.check_one_leader() + 1) % servers
    cfg.disconnect(i3)
    cfg.one(15, servers - 1, True)
    cfg.start1(i3)
    cfg.connect(i3)

    cfg.one(16, servers, True)


def test_persist2(make_cluster: MakeCluster) -> None:
    """More persistence."""
    servers = 5
    cfg = make_cluster(servers)
    index = 1
    for _ in range(5):
        cfg.one(10 + index, servers, True)
        index += 1

        leader1 = cfg.check_one_leader()

        cfg.disconnect((leader1 + 1) % servers)
        cfg.disconnect((leader1 + 2) % servers)

        cfg.one(10 + index, servers - 2, True)
        index += 1

        cfg.disconnect((leader1 + 0) % servers)
        cfg.disconnect((leader1 + 3) % servers)
        cfg.disconnect((leader1 + 4) % servers)

        cfg.start1((leader1 + 1) % servers)
        cfg.start1((leader1 + 2) % servers)
        cfg.connect((leader1 + 1) % servers)
        cfg.connect((leader1 + 2) % servers)

        time.sleep(ELECTION_TIMEOUT)

        cfg.start1((leader1 + 3) % servers)
        cfg.connect((leader1 + 3) % servers)

        cfg.one(10 + index, servers - 2, True)
        index += 1

        cfg.connect((leader1 + 4) % servers)
        cfg.connect((leader1 + 0) % servers)

    cfg.one(1000, servers, True)


def test_persist3(make_cluster: MakeCluster) -> None:
    """Partitioned leader and one follower crash, leader restarts."""
    servers = 3
    cfg = make_cluster(servers)
    cfg.one(101, 3, True)

    leader = cfg.check_one_leader()
    cfg.disconnect((leader + 2) % servers)

    cfg.one(102, 2, True)

    cfg.crash1((leader + 0) % servers)
    cfg.crash1((leader + 1) % servers)
    cfg.connect((leader + 2) % servers)
    cfg.start1((leader + 0) % servers)
    cfg.connect((leader + 0) % servers)

    cfg.one(103, 2, True)

    cfg.start1((leader + 1) % servers)
    cfg.connect((leader + 1) % servers)

    cfg.one(104, servers, True)


@pytest.mark.timeout(300)
def test_figure8(make_cluster: MakeCluster, rng: random.Random) -> None:
    """The scenarios of Figure 8 of the extended Raft paper. Each iteration asks a leader,
    if there is one, to insert a command in the Raft log. If there is a leader, it fails
    quickly with a high probability (perhaps without committing the command), or crashes
    after a while with low probability (most likely committing the command). If the number
    of live servers isn't enough to form a majority, perhaps start a new one. The leader in
    a new term may try to finish replicating log entries that haven't been committed yet."""
    servers = 5
    cfg = make_cluster(servers)
    cfg.one(rand_int(rng), 1, True)

    nup = servers
    crashes = 0
    for _ in range(1000):
        leader = -1
        for i in range(servers):
            if cfg.peers[i] is not None:
                _, _, ok = cfg.start(i, rand_int(rng))
                if ok:
                    leader = i

        if rng.randrange(1000) < 100:
            time.sleep(rng.randrange(int(ELECTION_TIMEOUT * 1000) // 2) / 1000)
        else:
            time.sleep(rng.randrange(13) / 1000)

        if leader != -1:
            cfg.crash1(leader)
            crashes += 1
            nup -= 1

        if nup < 3:
            s = rng.randrange(servers)
            if cfg.peers[s] is None:
                cfg.start1(s)
                cfg.connect(s)
                nup += 1

    for i in range(servers):
        if cfg.peers[i] is None:
            cfg.start1(i)
            cfg.connect(i)

    index = cfg.one(rand_int(rng), servers, True)
    print(f"figure8: {crashes} leaders crashed; final agreement at index {index}")


def test_unreliable_agree(make_cluster: MakeCluster) -> None:
    servers = 5
    cfg = make_cluster(servers, unreliable=True)
    errors: list[BaseException] = []
    threads: list[threading.Thread] = []

    def one(cmd: int) -> None:
        try:
            cfg.one(cmd, 1, True)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    for iters in range(1, 50):
        for j in range(4):
            t = threading.Thread(target=one, args=(100 * iters + j,), daemon=True)
            t.start()
            threads.append(t)
        cfg.one(iters, 1, True)

    cfg.set_unreliable(False)

    for t in threads:
        t.join()
    if errors:
        raise errors[0]

    cfg.one(100, servers, True)


@pytest.mark.timeout(300)
def test_figure8_unreliable(make_cluster: MakeCluster, rng: random.Random) -> None:
    """Figure 8 on an unreliable network, with long reordering from iteration 200 on (the
    Rust translation forgot to make the network unreliable)."""
    servers = 5
    cfg = make_cluster(servers, unreliable=True)
    cfg.one(rng.randrange(10000), 1, True)

    nup = servers
    disconnects = 0
    for iters in range(1000):
        if iters == 200:
            cfg.set_long_reordering(True)
        leader = -1
        for i in range(servers):
            _, _, ok = cfg.start(i, rng.randrange(10000))
            if ok and cfg.connected[i]:
                leader = i

        if rng.randrange(1000) < 100:
            time.sleep(rng.randrange(int(ELECTION_TIMEOUT * 1000) // 2) / 1000)
        else:
            time.sleep(rng.randrange(13) / 1000)

        if leader != -1 and rng.randrange(1000) < int(ELECTION_TIMEOUT * 1000) // 2:
            cfg.disconnect(leader)
            disconnects += 1
            nup -= 1

        if nup < 3:
            s = rng.randrange(servers)
            if not cfg.connected[s]:
                cfg.connect(s)
                nup += 1

    for i in range(servers):
        if not cfg.connected[i]:
            cfg.connect(i)

    t0 = time.monotonic()
    print(f"final agreement from {time.strftime('%H:%M:%S')}")
    index = cfg.one(rng.randrange(10000), servers, True)
    print(f"figure8 unreliable: {disconnects} leaders disconnected; final agreement at index "
          f"{index} after {time.monotonic() - t0:.1f}s")


def internal_churn(cfg: Cluster, rng: random.Random) -> None:
    servers = cfg.n
    stop = threading.Event()
    results: dict[int, list[int] | None] = {}
    failures: list[BaseException] = []

    def client(me: int, seed: int) -> None:
        """Propose random values on whoever accepts; record those that commit at the index
        `start()` returned."""
        crng = random.Random(seed)
        values: list[int] = []
        results[me] = None  # stays None if the client fails
        try:
            run(me, crng, values)
        except BaseException as exc:
            failures.append(exc)
            return
        results[me] = values

    def run(me: int, crng: random.Random, values: list[int]) -> None:
        while not stop.is_set():
            x = rand_int(crng)
            index = -1
            ok = False
            for i in range(servers):
                # Try them all, maybe one of them is a leader.
                if cfg.peers[i] is not None:
                    index1, _, ok1 = cfg.start(i, x)
                    if ok1:
                        ok = ok1
                        index = index1
            if ok:
                # Maybe the leader will commit our value, maybe not; but don't wait forever.
                for to in (10, 20, 50, 100, 200):
                    nd, cmd = cfg.n_committed(index)
                    if nd > 0:
                        assert cmd is None or isinstance(cmd, int), f"wrong command type {cmd!r}"
                        if cmd == x:
                            values.append(x)
                        break
                    time.sleep(to / 1000)
            else:
                time.sleep((79 + me * 17) / 1000)

    ncli = 3
    clients = [threading.Thread(target=client, args=(i, rng.randrange(1 << 30)), daemon=True)
               for i in range(ncli)]
    for t in clients:
        t.start()

    for _ in range(20):
        if rng.randrange(1000) < 200:
            i = rng.randrange(servers)
            cfg.disconnect(i)

        if rng.randrange(1000) < 500:
            i = rng.randrange(servers)
            if cfg.peers[i] is None:
                cfg.start1(i)
            cfg.connect(i)

        if rng.randrange(1000) < 200:
            i = rng.randrange(servers)
            if cfg.peers[i] is not None:
                cfg.crash1(i)

        # Make crash/restart infrequent enough that the peers can often keep up, but not so
        # infrequent that everything has settled down from one change to the next. Pick a
        # value smaller than the election timeout, but not hugely smaller.
        time.sleep(ELECTION_TIMEOUT * 7 / 10)

    time.sleep(ELECTION_TIMEOUT)
    cfg.set_unreliable(False)
    for i in range(servers):
        if cfg.peers[i] is None:
            cfg.start1(i)
        cfg.connect(i)

    stop.set()
    values: list[int] = []
    for t in clients:
        t.join()
    if failures:
        raise failures[0]
    for i in range(ncli):
        vv = results.get(i)
        assert vv is not None, f"client {i} failed"
        values.extend(vv)

    time.sleep(ELECTION_TIMEOUT)

    last_index = cfg.one(rand_int(rng), servers, True)

    really: set[int] = set()
    for index in range(1, last_index + 1):
        v = cfg.wait(index, servers, -1)
        if v is None:
            continue  # an election no-op (TESTS.md §1), not a test command
        assert isinstance(v, int), f"not an int: {v!r}"
        really.add(v)

    for v1 in values:
        assert v1 in really, f"didn't find a value: {v1} was committed but is not in the log"
    print(f"churn: {len(values)} values seen committed, all among the {len(really)} commands "
          f"of the final log (last index {last_index})")


@pytest.mark.timeout(300)
def test_reliable_churn(make_cluster: MakeCluster, rng: random.Random) -> None:
    internal_churn(make_cluster(5), rng)


@pytest.mark.timeout(300)
def test_unreliable_churn(make_cluster: MakeCluster, rng: random.Random) -> None:
    internal_churn(make_cluster(5, unreliable=True), rng)
