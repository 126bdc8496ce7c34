"""The operator's flow, as a user types it: up, put, get, kill the leader, append, get,
restart, status, partition the leader away, write on the majority, heal, down --purge."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, assert_no_peers

STATUS_FIELDS = {"id", "pid", "alive", "role", "term", "commit_index", "applied_index", "last_index",
                 "snapshot_index", "state_bytes", "address"}
TABLE_HEADERS = ["id", "pid", "alive", "role", "term", "commit", "applied", "last", "snapshot",
                 "state_bytes", "address"]


@pytest.mark.timeout(240)
def test_operator_flow(cli: Cli, data_dir: Path) -> None:
    d = ["-d", str(data_dir)]
    kv = ["--cluster", str(data_dir)]

    up = cli.cluster("up", "-n", "5", *d, timeout=90)
    assert "leader: peer" in up.stdout
    assert "ruaft-kv" in up.stdout  # the command to try
    assert (data_dir / "cluster.json").exists()
    leader, rows = cli.wait_leader(data_dir)
    assert len(rows) == 5 and all(r["alive"] for r in rows)

    cli.kv(*kv, "put", "k", "v")
    assert cli.kv(*kv, "get", "k").stdout == "v\n"  # the value alone
    assert cli.kv(*kv, "get", "never-written").stdout == "\n"

    # kill the leader: the others elect a new one and the data survives
    killed = cli.cluster("kill", str(leader), *d)
    assert f"killed peer {leader}" in killed.stdout
    rows = cli.status(data_dir)
    assert not rows[leader]["alive"] and rows[leader]["pid"] is None
    cli.kv(*kv, "--timeout", "30", "append", "k", "w", timeout=60)
    assert cli.kv(*kv, "get", "k").stdout == "vw\n"
    second, _ = cli.wait_leader(data_dir)
    assert second != leader

    # restart it: it comes back on its data and catches up
    restarted = cli.cluster("restart", str(leader), *d)
    assert f"restarted peer {leader}" in restarted.stdout
    deadline = time.monotonic() + 30
    while True:
        rows = cli.status(data_dir)
        commits = {r["id"]: r["applied_index"] for r in rows}
        top = max(c for c in commits.values() if c is not None)
        if rows[leader]["alive"] and commits[leader] == top:
            break
        assert time.monotonic() < deadline, f"restarted peer {leader} did not catch up: {rows}"
        time.sleep(0.3)

    # status: the table and --json with the documented fields
    table = cli.cluster("status", *d).stdout.splitlines()
    assert table[0].split() == TABLE_HEADERS
    assert len(table) == 6
    assert all(line.split()[2] == "yes" for line in table[1:])
    rows = cli.status(data_dir)
    assert [r["id"] for r in rows] == [0, 1, 2, 3, 4]
    for row in rows:
        assert set(row) == STATUS_FIELDS
        assert row["alive"] is True and isinstance(row["pid"], int)
        assert row["role"] in ("leader", "follower", "candidate", "pre-candidate")
        assert all(isinstance(row[k], int) for k in ("term", "commit_index", "applied_index",
                                                     "last_index", "snapshot_index", "state_bytes"))
        assert row["address"].startswith("tcp://127.0.0.1:")

    # partition the leader away: the majority elects its own leader and takes a write
    old, _ = cli.wait_leader(data_dir)
    majority = [p for p in range(5) if p != old]
    parted = cli.cluster("partition", str(old), ",".join(map(str, majority)), *d)
    assert parted.stdout.startswith("partitioned:")
    cli.kv(*kv, "--timeout", "30", "put", "during", "partition", timeout=60)
    new, rows = cli.wait_leader(data_dir, among=set(majority))
    assert new != old
    assert cli.kv(*kv, "get", "during").stdout == "partition\n"
    # the isolated old leader must not have that write
    majority_commit = rows[new]["commit_index"]
    assert rows[old]["commit_index"] < majority_commit, rows

    # heal: the old leader rejoins and catches up
    assert cli.cluster("heal", *d).stdout.startswith("healed")
    deadline = time.monotonic() + 30
    while True:
        rows = cli.status(data_dir)
        if rows[old]["applied_index"] is not None and rows[old]["applied_index"] >= majority_commit:
            break
        assert time.monotonic() < deadline, f"peer {old} did not catch up after heal: {rows}"
        time.sleep(0.3)
    assert cli.kv(*kv, "get", "k").stdout == "vw\n"

    # down --purge: every peer stops and the folder goes
    pids = {r["pid"] for r in rows if r["pid"] is not None}
    down = cli.cluster("down", "--purge", *d, timeout=60)
    assert "stopped peers [0, 1, 2, 3, 4]" in down.stdout
    assert not data_dir.exists()
    assert_no_peers(data_dir / "cluster.json", pids | cli.seen_pids)


@pytest.mark.timeout(120)
def test_up_on_existing_dir_restarts_stopped_peers(cli: Cli, data_dir: Path) -> None:
    """`up` on an existing folder restarts its stopped peers with their data."""
    d = ["-d", str(data_dir)]
    cli.cluster("up", "-n", "3", *d, timeout=90)
    cli.kv("--cluster", str(data_dir), "put", "x", "1")
    assert "stopped peers [0, 1, 2]" in cli.cluster("down", *d, timeout=60).stdout
    assert all(not r["alive"] for r in cli.status(data_dir))
    again = cli.cluster("up", *d, timeout=90)
    assert "restarting stopped peers" in again.stdout
    assert cli.kv("--cluster", str(data_dir), "--timeout", "20", "get", "x", timeout=40).stdout == "1\n"
    # the default data dir is ./ruaft-data: from the folder that holds it, no -d needed
    assert cli.kv("get", "x").stdout == "1\n"
    assert len(cli.status(data_dir)) == 3
