"""Bad usage and unreachable clusters: a one-line error, the documented exit code, no
traceback. None of these starts a peer: the cluster files here name ports nothing listens on."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, write_cluster_file


def one_line_error(text: str, prefix: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{text}"
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def test_kv_without_cluster_file_exits_2(cli: Cli) -> None:
    # no ./ruaft-data in the (empty) working directory
    result = cli.kv("get", "k", expect=2)
    line = one_line_error(result.stderr, "ruaft-kv: ")
    assert "no cluster file" in line and "ruaft-cluster up" in line
    assert result.stdout == ""
    one_line_error(cli.kv("--cluster", "nowhere", "put", "a", "b", expect=2).stderr, "ruaft-kv: ")


def test_kv_with_malformed_cluster_file_exits_2(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cluster.json").write_text("{not json")
    line = one_line_error(cli.kv("--cluster", str(bad), "get", "k", expect=2).stderr, "ruaft-kv: ")
    assert "not valid JSON" in line
    (bad / "cluster.json").write_text(json.dumps({"format": 1, "cluster_id": "x", "peers": []}))
    one_line_error(cli.kv("--cluster", str(bad), "get", "k", expect=2).stderr, "ruaft-kv: ")


def test_kv_missing_argument_exits_2(cli: Cli) -> None:
    result = cli.kv("get", expect=2)
    assert "Missing argument" in result.stderr


def test_kv_no_leader_get_exits_3_and_write_exits_4(cli: Cli, tmp_path: Path) -> None:
    """Nobody answers: a get certainly did nothing (3); a write that was sent may have
    happened, so its outcome is unknown (4)."""
    cluster = write_cluster_file(tmp_path / "dead")
    get = cli.kv("--cluster", str(cluster), "--timeout", "1", "get", "k", expect=3)
    assert "nothing was done" in one_line_error(get.stderr, "ruaft-kv: ")
    assert get.stdout == ""
    put = cli.kv("--cluster", str(cluster), "--timeout", "1", "put", "k", "v", expect=4)
    assert "may or may not" in one_line_error(put.stderr, "ruaft-kv: ")


@pytest.mark.parametrize("args, needle", [
    (["kill", "99"], "no peer 99"),
    (["stop", "99"], "no peer 99"),
    (["restart", "99"], "no peer 99"),
    (["partition", "0,x", "1,2"], "bad group"),
    (["partition", "0,7", "1,2"], "no such peer: 7"),
])
def test_cluster_bad_peer_or_group_exits_2(cli: Cli, tmp_path: Path, args: list[str], needle: str) -> None:
    cluster = write_cluster_file(tmp_path / "c")
    result = cli.cluster(*args, "-d", str(cluster.parent), expect=2)
    assert needle in one_line_error(result.stderr, "ruaft-cluster: ")


def test_cluster_commands_without_cluster_file_exit_2(cli: Cli) -> None:
    for args in (["status"], ["kill", "0"], ["heal"], ["down"], ["status", "--json"]):
        result = cli.cluster(*args, expect=2)
        assert "no cluster file" in one_line_error(result.stderr, "ruaft-cluster: ")


def test_kill_a_peer_that_is_not_running_exits_1(cli: Cli, tmp_path: Path) -> None:
    cluster = write_cluster_file(tmp_path / "c")
    result = cli.cluster("kill", "1", "-d", str(cluster.parent), expect=1)
    assert "not running" in one_line_error(result.stderr, "ruaft-cluster: ")
    rows = json.loads(cli.cluster("status", "--json", "-d", str(cluster.parent)).stdout)
    assert [r["alive"] for r in rows] == [False, False, False]


def test_chaos_bad_usage_exits_2(cli: Cli, tmp_path: Path) -> None:
    result = cli.cluster("chaos", "--nemesis", "kill,bogus", expect=2)
    assert "unknown nemesis bogus" in one_line_error(result.stderr, "ruaft-cluster: ")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    result = cli.cluster("chaos", "--out", str(busy), "--duration", "1", expect=2)
    assert "not empty" in one_line_error(result.stderr, "ruaft-cluster: ")
    assert sorted(p.name for p in busy.iterdir()) == ["something"]  # nothing was touched


def test_check_on_a_folder_without_history_exits_2(cli: Cli, tmp_path: Path) -> None:
    result = cli.cluster("check", str(tmp_path), expect=2)
    assert "history.jsonl" in one_line_error(result.stderr, "ruaft-cluster: ")


def test_every_command_has_help(cli: Cli) -> None:
    commands = [("ruaft-cluster", c) for c in ("up", "status", "kill", "stop", "restart", "partition",
                                               "heal", "down", "chaos", "check")]
    commands += [("ruaft-kv", c) for c in ("put", "append", "get")]
    with ThreadPoolExecutor(4) as pool:  # each start costs a second or so: run them side by side
        results = list(pool.map(lambda sc: cli.run(sc[0], sc[1], "--help"), commands))
    for (script, command), result in zip(commands, results):
        assert f"Usage: {script} {command}" in result.stdout


# ------------------------------------------------------------------------------------------
# Unreadable cluster files, bad arguments and clusters with nothing running, for both
# scripts: a one-line error naming the problem (or, where the command can still answer, an
# answer), never a traceback (`Cli.run` fails on one).

UNREADABLE: dict[str, str | bytes | None] = {
    "invalid UTF-8": b"\xff\xfe{}",
    "a JSON list": "[1, 2]",
    "unsupported format": json.dumps({"format": 99, "cluster_id": "x", "peers": []}),
    "peers not a list": json.dumps({"format": 1, "cluster_id": "x", "peers": "0,1,2"}),
    "peer id a string": json.dumps({"format": 1, "cluster_id": "x", "peers": [
        {"id": "0", "raft_address": "tcp://127.0.0.1:1", "client_address": "tcp://127.0.0.1:2",
         "data_dir": "p"}]}),
    "cluster id a number": json.dumps({"format": 1, "cluster_id": 5, "peers": [
        {"id": 0, "raft_address": "tcp://127.0.0.1:1", "client_address": "tcp://127.0.0.1:2",
         "data_dir": "p"}]}),
    "address a number": json.dumps({"format": 1, "cluster_id": "x", "peers": [
        {"id": 0, "raft_address": 7000, "client_address": "tcp://127.0.0.1:2", "data_dir": "p"}]}),
    "negative maxraftstate": json.dumps({"format": 1, "cluster_id": "x", "maxraftstate": -1, "peers": [
        {"id": 0, "raft_address": "tcp://127.0.0.1:1", "client_address": "tcp://127.0.0.1:2",
         "data_dir": "p"}]}),
    "a directory": None,
}


def content_is_folder(damage: str) -> bool:
    return UNREADABLE[damage] is None


def test_unreadable_cluster_file_is_a_one_line_error(cli: Cli, tmp_path: Path) -> None:
    runs = []
    for n, damage in enumerate(sorted(UNREADABLE)):
        folder = tmp_path / f"c{n}"
        folder.mkdir()
        content = UNREADABLE[damage]
        if content is None:
            (folder / "cluster.json").mkdir()
        elif isinstance(content, bytes):
            (folder / "cluster.json").write_bytes(content)
        else:
            (folder / "cluster.json").write_text(content)
        runs.append((damage, "ruaft-kv", ["--cluster", str(folder), "get", "k"]))
        runs.append((damage, "ruaft-cluster", ["status", "-d", str(folder)]))
    with ThreadPoolExecutor(4) as pool:  # each start costs a second or so
        results = list(pool.map(lambda r: cli.run(r[1], *r[2], expect=2), runs))
    for (damage, script, _), result in zip(runs, results):
        line = one_line_error(result.stderr, f"{script}: ")
        assert "cluster.json" in line and "cluster.json/cluster.json" not in line, (damage, line)
        if content_is_folder(damage):
            assert "Is a directory" in line, line


def test_cluster_file_without_read_permission_is_a_one_line_error(cli: Cli, tmp_path: Path) -> None:
    cluster_file = write_cluster_file(tmp_path / "c")
    cluster_file.chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that allow it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv is missing: cannot deny a read")
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    for script, args, want in (
        ("ruaft-kv", ["--cluster", str(cluster_file.parent), "get", "k"], "ruaft-kv: "),
        ("ruaft-cluster", ["status", "-d", str(cluster_file.parent)], "ruaft-cluster: "),
    ):
        completed = subprocess.run([*prefix, cli.paths[script], *args], capture_output=True,
                                   text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert completed.returncode == 2, completed
        assert "Traceback" not in completed.stderr
        assert "Permission denied" in one_line_error(completed.stderr, want)


BAD_ARGUMENTS = [
    ("ruaft-kv", ["frobnicate"], "No such command"),
    ("ruaft-kv", ["put", "k"], "Missing argument"),
    ("ruaft-kv", ["--timeout", "-1", "get", "k"], "--timeout"),
    ("ruaft-kv", ["--timeout", "soon", "get", "k"], "--timeout"),
    ("ruaft-cluster", ["frobnicate"], "No such command"),
    ("ruaft-cluster", ["up", "-n", "abc"], "--nodes"),
    ("ruaft-cluster", ["up", "-n", "0"], "--nodes"),
    ("ruaft-cluster", ["kill", "zero"], "ID"),
    ("ruaft-cluster", ["status", "--no-such-option"], "No such option"),
    ("ruaft-peer", ["--id", "x"], "--id"),
]


def test_bad_arguments_exit_2_naming_the_problem(cli: Cli) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda r: cli.run(r[0], *r[1], expect=2), BAD_ARGUMENTS))
    for (script, args, needle), result in zip(BAD_ARGUMENTS, results):
        line = one_line_error(result.stderr, f"{script}: error: ")
        assert needle in line and "--help" in line, str(result)
        assert result.stdout == ""


def test_bad_base_port_is_a_one_line_error(cli: Cli, tmp_path: Path) -> None:
    result = cli.cluster("up", "--base-port", "70000", "-d", str(tmp_path / "d"), expect=2)
    assert "--base-port" in one_line_error(result.stderr, "ruaft-cluster: ")
    assert not (tmp_path / "d").exists()  # nothing was started or written


def test_cluster_commands_with_nothing_running(cli: Cli, tmp_path: Path) -> None:
    """Every peer down, pid files stale (garbage, or a live process that is no peer): status
    says so, partition/heal/down report who was not running, stop fails in one line."""
    cluster_file = write_cluster_file(tmp_path / "c")
    folder = str(cluster_file.parent)
    (cluster_file.parent / "peer-0").mkdir()
    (cluster_file.parent / "peer-0" / "pid").write_text("not a pid\n")
    (cluster_file.parent / "peer-1").mkdir()
    (cluster_file.parent / "peer-1" / "pid").write_text(f"{os.getpid()}\n")  # alive, not a peer
    rows = json.loads(cli.cluster("status", "--json", "-d", folder).stdout)
    assert [(r["alive"], r["role"]) for r in rows] == [(False, None)] * 3
    assert "not running" in cli.cluster("partition", "0", "1,2", "-d", folder).stdout
    assert "not running" in cli.cluster("heal", "-d", folder).stdout
    assert "no peer was running" in cli.cluster("down", "-d", folder).stdout
    # peer-1's pid file names this test process: it must not be signalled (we would die).
    result = cli.cluster("stop", "1", "-d", folder, expect=1)
    assert "not running" in one_line_error(result.stderr, "ruaft-cluster: ")


def test_kv_against_listeners_that_are_not_peers_exits_3(cli: Cli, tmp_path: Path) -> None:
    """Something listens on every client port but never answers as a peer: a get gives up
    with the definite 'nothing was done' (3), in one line."""
    listeners = [socket.socket() for _ in range(3)]
    try:
        for s in listeners:
            s.bind(("127.0.0.1", 0))
            s.listen()
        peers = [{"id": i, "raft_address": "tcp://127.0.0.1:1",
                  "client_address": f"tcp://127.0.0.1:{s.getsockname()[1]}", "data_dir": f"p{i}"}
                 for i, s in enumerate(listeners)]
        folder = tmp_path / "mute"
        folder.mkdir()
        (folder / "cluster.json").write_text(json.dumps({"format": 1, "cluster_id": "t", "peers": peers}))
        result = cli.kv("--cluster", str(folder), "--timeout", "1", "get", "k", expect=3)
        assert "nothing was done" in one_line_error(result.stderr, "ruaft-kv: ")
    finally:
        for s in listeners:
            s.close()
