"""TESTS.md §3, 3B: the KV store with snapshots (maxraftstate = 1000 bytes), ported from the
Go original's kvraft tests; thresholds kept."""

from __future__ import annotations

import time

from orchestrator.cluster import ELECTION_TIMEOUT

from .generic import MakeKVCluster, check_get, generic, report_state_sizes
from .test_3a import speed

MAXRAFTSTATE = 1000
MAX_SNAPSHOT_STATE = 500


def test_snapshot_rpc(make_kv_cluster: MakeKVCluster) -> None:
    """A server that falls behind while the majority trims its log must be caught up by
    InstallSnapshot when it rejoins; the majority trims even though the minority is silent."""
    cfg = make_kv_cluster(3, False, MAXRAFTSTATE)
    ck = cfg.make_client(timeout=30.0)
    ck.put("a", "A")
    check_get(ck, "a", "A")

    # a bunch of puts into the majority partition
    cfg.partition([0, 1], [2])
    ck1 = cfg.make_client([0, 1], timeout=30.0)
    for i in range(50):
        ck1.put(str(i), str(i))
    time.sleep(ELECTION_TIMEOUT)
    ck1.put("b", "B")

    # the majority has thrown away most of its log entries
    report_state_sizes(cfg, MAXRAFTSTATE, " (majority trimmed, 2 lagging)")
    assert cfg.snapshot_size(0) > 0 and cfg.snapshot_size(1) > 0, "the majority took no snapshot"
    lagging_before = cfg.snapshot_size(2)

    # a group that needs the lagging server, so that it has to catch up
    cfg.partition([0, 2], [1])
    ck1 = cfg.make_client([0, 2], timeout=30.0)
    ck1.put("c", "C")
    ck1.put("d", "D")
    check_get(ck1, "a", "A")
    check_get(ck1, "b", "B")
    check_get(ck1, "1", "1")
    check_get(ck1, "49", "49")
    assert cfg.snapshot_size(2) > lagging_before, "the lagging server holds no newer snapshot"
    # It answered an InstallSnapshot: it could not have received one while cut off.
    installs = cfg.message_stats(2)["replies_by_kind"].get("INSTALL_SNAPSHOT_RESPONSE", 0)
    assert installs > 0, "the lagging server was not caught up by InstallSnapshot"

    # now everybody
    cfg.partition([0, 1, 2], [])
    ck.put("e", "E")
    check_get(ck, "c", "C")
    check_get(ck, "e", "E")
    check_get(ck, "1", "1")
    report_state_sizes(cfg, MAXRAFTSTATE, " (healed)")


def test_snapshot_size(make_kv_cluster: MakeKVCluster) -> None:
    """200 × (put x=0, get, put x=1, get): the log is trimmed and the snapshot is small."""
    cfg = make_kv_cluster(3, False, MAXRAFTSTATE)
    ck = cfg.make_client(timeout=30.0)
    for _ in range(200):
        ck.put("x", "0")
        check_get(ck, "x", "0")
        ck.put("x", "1")
        check_get(ck, "x", "1")
    # the servers have thrown away most of their log entries
    report_state_sizes(cfg, MAXRAFTSTATE)
    # the snapshots are not unreasonably large
    sizes = {i: cfg.snapshot_size(i) for i in range(cfg.n)}
    print(f"snapshot sizes: {sizes}")
    # 800 writes cannot fit in 1000 bytes of log: a small reported Raft state without any
    # snapshot means the reported size is wrong, not that the log was trimmed.
    assert all(sizes.values()), f"a server never took a snapshot: {sizes}"
    assert max(sizes.values()) <= MAX_SNAPSHOT_STATE, (
        f"snapshot too large ({sizes} > {MAX_SNAPSHOT_STATE})")


def test_speed_3b(make_kv_cluster: MakeKVCluster) -> None:
    speed(make_kv_cluster, MAXRAFTSTATE)


def test_snapshot_recover(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 1, False, True, False, MAXRAFTSTATE, False)


def test_snapshot_recover_many_clients(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 20, False, True, False, MAXRAFTSTATE, False)


def test_snapshot_unreliable(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 5, True, False, False, MAXRAFTSTATE, False)


def test_snapshot_unreliable_recover(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 5, True, True, False, MAXRAFTSTATE, False)


def test_snapshot_unreliable_recover_concurrent_partition(make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 5, True, True, True, MAXRAFTSTATE, False)


def test_snapshot_unreliable_recover_concurrent_partition_linearizable(
        make_kv_cluster: MakeKVCluster) -> None:
    generic(make_kv_cluster, 15, True, True, True, MAXRAFTSTATE, True)
