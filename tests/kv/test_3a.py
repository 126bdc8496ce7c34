"""TESTS.md §3, 3A: the fault-tolerant KV store without snapshots (ported from the Go
original's kvraft tests; thresholds kept)."""

from __future__ import annotations

import threading
import time

import pytest

from kv.client import KVClient
from orchestrator.cluster import ELECTION_TIMEOUT
from orchestrator.kvcluster import KVCluster

from .generic import (
    MakeKVCluster,
    check_clnt_appends,
    check_concurrent_appends,
    check_get,
    generic,
)

SPEED_OPS = 1000
SPEED_MS_PER_OP = 100 / 3
"""A third of a 100 ms heartbeat: a leader must replicate on start(), not on the next tick."""


def speed(make_kv_cluster: MakeKVCluster, maxraftstate: int | None) -> float:
    """Go's GenericTestSpeed: 1000 sequential appends by one client on 3 servers; returns
    the average ms per op and fails above SPEED_MS_PER_OP."""
    cfg = make_kv_cluster(3, False, maxraftstate)
    ck = cfg.make_client(timeout=30.0)
    ck.get("x")  # a leader is elected and the servers serve
    t0 = time.monotonic()
    for i in range(SPEED_OPS):
        ck.append("x", f"x 0 {i} y")
    elapsed = time.monotonic() - t0
    check_clnt_appends(0, ck.get("x"), SPEED_OPS)
    ms_per_op = elapsed / SPEED_OPS * 1000
    print(f"Speed: {ms_per_op:.2f} ms/op over {SPEED_OPS} appends")
    assert ms_per_op <= SPEED_MS_PER_OP, (
        f"operations completed too slowly: {ms_per_op:.1f} ms/op > {SPEED_MS_PER_OP:.1f} ms/op")
    return ms_per_op


def test_basic(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 1, False, False, False, None, False)


def test_speed(make_kv_cluster: MakeKVCluster) -> None:
    speed(make_kv_cluster, None)


def test_concurrent(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 5, False, False, False, None, False)


def test_unreliable(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 5, True, False, False, None, False)


def test_unreliable_one_key(make_kv_cluster: MakeKVCluster) -> None:
    """5 clients × 10 appends to one key on an unreliable network: each client's appends are
    in the final value exactly once and in order."""
    cfg = make_kv_cluster(3, True)
    ck = cfg.make_client(timeout=30.0)
    ck.put("k", "")
    nclient, upto = 5, 10
    stop = threading.Event()
    errors: list[str] = []

    def client(me: int, myck: KVClient) -> None:
        try:
            for n in range(upto):
                myck.append("k", f"x {me} {n} y")
        except Exception as exc:  # noqa: BLE001
            errors.append(f"client {me}: {exc!r}")

    threads = [threading.Thread(target=client, args=(me, cfg.make_client(timeout=None, stop=stop)),
                                daemon=True) for me in range(nclient)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60.0
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        stuck = sum(t.is_alive() for t in threads)
    finally:  # no client thread outlives the test
        stop.set()
        for t in threads:
            t.join(5.0)
    assert not stuck, f"{stuck} clients did not finish their {upto} appends within 60 s"
    assert not errors, "\n".join(errors)
    check_concurrent_appends(ck.get("k"), [upto] * nclient)


def _leader(cfg: KVCluster) -> int:
    return cfg.check_one_leader()


def _make_partition(cfg: KVCluster) -> tuple[list[int], list[int]]:
    """Go's make_partition: the leader in the minority p2."""
    leader = _leader(cfg)
    others = [i for i in range(cfg.n) if i != leader]
    p1 = others[: cfg.n // 2 + 1]
    p2 = others[cfg.n // 2 + 1:] + [leader]
    return p1, p2


def test_one_partition(make_kv_cluster: MakeKVCluster) -> None:
    """A request in the minority (holding the old leader) does not complete until the
    partition heals; then it does, and the majority served meanwhile."""
    cfg = make_kv_cluster(5)
    ck = cfg.make_client(timeout=30.0)
    ck.put("1", "13")

    # progress in majority
    p1, p2 = _make_partition(cfg)
    cfg.partition(p1, p2)
    stop = threading.Event()
    ckp1 = cfg.make_client(p1, timeout=30.0)
    ckp2a = cfg.make_client(p2, timeout=None, stop=stop)
    ckp2b = cfg.make_client(p2, timeout=None, stop=stop)
    ckp1.put("1", "14")
    check_get(ckp1, "1", "14")

    # no progress in minority
    done0, done1 = threading.Event(), threading.Event()
    errors: list[str] = []

    def put_minority() -> None:
        try:
            ckp2a.put("1", "15")
            done0.set()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"minority put: {exc!r}")

    def get_minority() -> None:
        try:
            ckp2b.get("1")
            done1.set()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"minority get: {exc!r}")

    threads = [threading.Thread(target=put_minority, daemon=True),
               threading.Thread(target=get_minority, daemon=True)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        assert not done0.is_set(), "put in minority completed"
        assert not done1.is_set(), "get in minority completed"

        check_get(ckp1, "1", "14")
        ckp1.put("1", "16")
        check_get(ckp1, "1", "16")

        # completion after heal
        cfg.connect_all()
        ckp2a.set_reachable(range(cfg.n))
        ckp2b.set_reachable(range(cfg.n))
        time.sleep(ELECTION_TIMEOUT)
        assert done0.wait(3.0), f"put did not complete ({errors})"
        assert done1.wait(3.0), f"get did not complete ({errors})"
        check_get(ck, "1", "15")
    finally:
        stop.set()
        for t in threads:
            t.join(5.0)
    assert not errors, "\n".join(errors)


def test_many_partitions_one_client(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 1, False, False, True, None, False)


def test_many_partitions_many_clients(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 5, False, False, True, None, False)


def test_persist_one_client(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 1, False, True, False, None, False)


def test_persist_concurrent(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 5, False, True, False, None, False)


def test_persist_concurrent_unreliable(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 5, True, True, False, None, False)


def test_persist_partition(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 5, False, True, True, None, False)


def test_persist_partition_unreliable(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 5, True, True, True, None, False)


def test_persist_partition_unreliable_linearizable(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 15, True, True, True, None, True)
