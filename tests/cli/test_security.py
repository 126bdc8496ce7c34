"""`ruaft-cluster up` / `up --production` / `keys` and `ruaft-kv` on keyed clusters, as a user
runs them: loopback listeners by default, owner-only data and key files, a production start
without a control endpoint (partition/heal refuse in one line), keys added to a stopped
cluster, and one-line errors for a wrong key. One-peer clusters; about 60 s (some twenty
command runs of about a second each, plus the starts and graceful stops).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import psutil

from tests.cli.conftest import Cli
from transport_zmq.auth import generate_key_pair, write_key_pair


def listening(pid: int) -> set[tuple[str, int]]:
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


def port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_playground_binds_loopback_and_keys_secure_it_afterwards(cli: Cli, data_dir: Path) -> None:
    d = str(data_dir)
    cli.cluster("up", "-n", "1", "-d", d)
    document = json.loads((data_dir / "cluster.json").read_text())
    peer = document["peers"][0]
    leader, rows = cli.wait_leader(data_dir)
    # Every listener of the default start is on loopback: Raft, client and control.
    wanted = {("127.0.0.1", port(peer[k])) for k in ("raft_bind", "client_bind", "control_address")}
    assert listening(rows[0]["pid"]) == wanted
    assert mode(data_dir) == 0o700 and mode(data_dir / "peer-0") == 0o700

    refused = cli.cluster("keys", "-d", d, expect=2)
    assert "running" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    cli.cluster("down", "-d", d)
    cli.cluster("keys", "-d", d)
    assert json.loads((data_dir / "cluster.json").read_text())["format"] == 2
    again = cli.cluster("keys", "-d", d, expect=2)
    assert "already has keys" in again.stderr
    production = cli.cluster("up", "--production", "-d", d, expect=2)
    assert "control endpoint" in production.stderr

    cli.cluster("up", "-d", d)  # now keyed, still a playground
    cli.wait_leader(data_dir)
    cli.kv("--cluster", d, "put", "k", "v")
    assert cli.kv("--cluster", d, "get", "k").stdout.strip() == "v"
    assert "partitioned" in cli.cluster("partition", "0", "-d", d).stdout  # operator key
    cli.cluster("heal", "-d", d)

    stranger = data_dir / "stranger.key_secret"
    write_key_pair(stranger, generate_key_pair(), "stranger")
    wrong = cli.kv("--cluster", d, "--key", str(stranger), "get", "k", expect=2)
    assert "not one of this cluster's client keys" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1


def test_production_start_has_keys_and_no_control_endpoint(cli: Cli, data_dir: Path) -> None:
    d = str(data_dir)
    out = cli.cluster("up", "--production", "-n", "1", "-d", d).stdout
    assert "production" in out
    document = json.loads((data_dir / "cluster.json").read_text())
    assert document["format"] == 2
    peer = document["peers"][0]
    assert peer["control_address"] is None
    _, rows = cli.wait_leader(data_dir)  # status works through the client port
    assert listening(rows[0]["pid"]) == {("127.0.0.1", port(peer["raft_bind"])),
                                         ("127.0.0.1", port(peer["client_bind"]))}
    assert "control endpoint disabled" in (data_dir / "peer-0" / "peer.log").read_text()
    assert mode(data_dir / "keys") == 0o700
    assert {mode(f) for f in (data_dir / "keys").iterdir()} == {0o600}
    assert mode(data_dir / "peer-0") == 0o700

    cli.kv("--cluster", d, "put", "k", "v")
    assert cli.kv("--cluster", d, "get", "k").stdout.strip() == "v"
    for command in (["partition", "0"], ["heal"]):
        result = cli.cluster(*command, "-d", d, expect=2)
        assert "control endpoint is off" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

    (data_dir / "keys" / "client-0.key_secret").chmod(0o644)
    unsafe = cli.kv("--cluster", d, "get", "k", expect=2)
    assert "accessible by others" in unsafe.stderr and len(unsafe.stderr.strip().splitlines()) == 1
