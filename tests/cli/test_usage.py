"""Bad usage and unreachable clusters: a one-line error, the documented exit code, no
traceback. None of these starts a peer: the cluster files here name ports nothing listens on."""

from __future__ import annotations

import json
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
