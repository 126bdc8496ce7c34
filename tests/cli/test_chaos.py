"""`ruaft-cluster chaos` and `ruaft-cluster check`, driven as a user would.

The 60-second seeded run must pass; `check` must find violations planted in a run
directory (a lost write, a stale read) and must not pass an UNKNOWN verdict."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.checker import EventType, load_history
from tests.cli.conftest import Cli, assert_no_peers, our_peers

CHAOS_SEED = 20240601
RUN_FILES = ("seed.txt", "options.json", "nemesis.jsonl", "history.jsonl", "final_reads.json",
             "verdict.json", "timeline.html", "cluster.json")


@pytest.mark.timeout(300)
def test_sixty_second_chaos_run_passes(cli: Cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    try:
        result = cli.cluster("chaos", "--nodes", "5", "--duration", "60", "--clients", "8",
                             "--nemesis", "kill,partition,lossy,pause", "--seed", str(CHAOS_SEED),
                             "--out", str(run), expect=None, timeout=280)
        verdict = json.loads((run / "verdict.json").read_text())
        assert result.returncode == 0, f"{result}\nverdict: {json.dumps(verdict, indent=1)[:4000]}"
    finally:
        assert_no_peers(run / "cluster.json", set())

    # the verdict
    assert verdict["linearizable"] == "OK"
    assert verdict["valid"] is True and verdict["problems"] == []
    durability = verdict["durability"]
    assert durability["ok"] and durability["missing"] == [] and durability["unread_keys"] == []
    assert durability["acknowledged_writes"] > 100
    assert verdict["seed"] == CHAOS_SEED
    assert verdict["ops"] > 500 and verdict["faults"] >= 5
    assert "linearizable: OK" in result.stdout and "verdict: CLEAN" in result.stdout
    assert "chaos" in result.stderr  # the progress line / messages

    # the run directory
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert (run / "seed.txt").read_text().strip() == str(CHAOS_SEED)
    options = json.loads((run / "options.json").read_text())
    assert options["nodes"] == 5 and options["duration"] == 60 and options["clients"] == 8
    assert options["maxraftstate"] <= 64 << 10
    assert verdict["max_snapshot_index"] > 0  # the logs were compacted during the run
    status = json.loads((run / "final_status.json").read_text())
    assert len(status) == 5 and all(r["alive"] for r in status)
    for peer in range(5):
        assert (run / f"peer-{peer}" / "peer.log").stat().st_size > 0
    nemesis = [json.loads(line) for line in (run / "nemesis.jsonl").read_text().splitlines()]
    starts = [r for r in nemesis if r.get("action") == "start"]
    assert len(starts) == verdict["faults"]
    assert all({"time_s", "ns", "wall", "kind", "fault"} <= set(r) for r in starts)
    assert {r["kind"] for r in starts} <= {"kill", "partition", "lossy", "pause"}
    assert nemesis[-1]["action"] == "stopped"
    final = json.loads((run / "final_reads.json").read_text())
    assert sorted(final["values"]) == sorted(options["append_keys"] + options["put_keys"])
    assert "<html" in (run / "timeline.html").read_text()

    # the history is in the checker's JSON Lines format, final reads included
    events = load_history(run / "history.jsonl")
    assert sum(e.type is EventType.INVOKE and e.process != "final" for e in events) == verdict["ops"]
    assert {e.key for e in events if e.process == "final"} == set(final["values"])

    # re-checking the saved run gives the same verdict
    (run / "verdict.json").unlink()
    again = cli.cluster("check", str(run), timeout=200)
    assert "verdict: CLEAN" in again.stdout
    rechecked = json.loads((run / "verdict.json").read_text())
    assert rechecked["linearizable"] == "OK" and rechecked["ops"] == verdict["ops"]


@pytest.mark.timeout(120)
def test_interrupted_chaos_run_stops_every_peer(cli: Cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    process = subprocess.Popen([cli.paths["ruaft-cluster"], "chaos", "--duration", "60", "--seed", "5",
                                "--out", str(run), "--no-progress"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (run / "nemesis.jsonl").exists() or '"begin"' not in (run / "nemesis.jsonl").read_text():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the chaos run did not begin"
            time.sleep(0.2)
        time.sleep(4)
        assert len(our_peers(run / "cluster.json")) == 5
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, out + err
    assert "interrupted" in err and "Traceback" not in err
    assert_no_peers(run / "cluster.json", set())
    assert (run / "history.jsonl").exists()  # what was recorded is kept


# ---------------------------------------------------------------------- planted violations


def write_run(run: Path, events: list[dict[str, Any]], final: dict[str, str],
              append_keys: list[str], put_keys: list[str]) -> None:
    run.mkdir()
    (run / "options.json").write_text(json.dumps({"seed": 1, "append_keys": append_keys,
                                                  "put_keys": put_keys, "check_timeout": 10}))
    (run / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "final_reads.json").write_text(json.dumps({"leader": 0, "values": final, "errors": {}}))
    (run / "nemesis.jsonl").write_text(json.dumps({"action": "start", "kind": "kill", "fault": 0}) + "\n")


def op(process: Any, f: str, key: str, value: Any, start: int, end: int, kind: str = "ok",
       read: Any = None) -> list[dict[str, Any]]:
    return [{"process": process, "type": "invoke", "f": f, "key": key, "value": value, "time": start},
            {"process": process, "type": kind, "f": f, "key": key, "value": read, "time": end}]


def test_check_finds_a_lost_append(cli: Cli, tmp_path: Path) -> None:
    run = tmp_path / "lost"
    events = (op(0, "append", "a0", "c0-1;", 1, 2) + op(1, "append", "a0", "c1-1;", 3, 4)
              + op(0, "get", "a0", None, 5, 6, read="c0-1;c1-1;")
              + op("final", "get", "a0", None, 10, 11, read="c0-1;"))
    write_run(run, events, {"a0": "c0-1;"}, ["a0"], [])
    result = cli.cluster("check", str(run), expect=1)
    verdict = json.loads((run / "verdict.json").read_text())
    assert verdict["linearizable"] == "ILLEGAL"
    assert [m["value"] for m in verdict["durability"]["missing"]] == ["c1-1;"]
    assert verdict["valid"] is False and "VIOLATION" in result.stdout
    page = (run / "timeline.html").read_text()
    assert "ILLEGAL" in page and "<svg" in page  # the checker's timeline of the illegal key


def test_check_finds_an_overwritten_put_and_a_reordered_append(cli: Cli, tmp_path: Path) -> None:
    run = tmp_path / "stale"
    events = (op(0, "put", "p0", "c0-1;", 1, 2) + op(1, "put", "p0", "c1-1;", 3, 4)
              + op(0, "append", "a0", "c0-2;", 5, 6) + op(1, "append", "a0", "c1-2;", 7, 8)
              + op(2, "append", "a0", "c2-1;", 9, 99, kind="info")
              + op("final", "get", "p0", None, 10, 11, read="c0-1;")
              + op("final", "get", "a0", None, 12, 13, read="c1-2;c0-2;"))
    write_run(run, events, {"p0": "c0-1;", "a0": "c1-2;c0-2;"}, ["a0"], ["p0"])
    cli.cluster("check", str(run), expect=1)
    verdict = json.loads((run / "verdict.json").read_text())
    durability = verdict["durability"]
    assert [m["value"] for m in durability["missing"]] == ["c1-1;"]
    assert len(durability["reordered"]) == 1
    assert durability["reordered"][0]["first"]["value"] == "c0-2;"


def test_check_clean_history_passes_and_unknown_does_not(cli: Cli, tmp_path: Path) -> None:
    run = tmp_path / "clean"
    events = (op(0, "append", "a0", "c0-1;", 1, 2) + op(1, "append", "a0", "c1-1;", 1, 5, kind="info")
              + op(1, "put", "p0", "c1-2;", 6, 7)
              + op("final", "get", "a0", None, 10, 11, read="c0-1;c1-1;")
              + op("final", "get", "p0", None, 12, 13, read="c1-2;"))
    write_run(run, events, {"a0": "c0-1;c1-1;", "p0": "c1-2;"}, ["a0"], ["p0"])
    ok = cli.cluster("check", str(run))
    assert "linearizable: OK" in ok.stdout and "verdict: CLEAN" in ok.stdout
    assert json.loads((run / "verdict.json").read_text())["ops"] == 3
    # a checker that runs out of time says UNKNOWN, loudly, and that is not a pass...
    unknown = cli.cluster("check", str(run), "--check-timeout", "0", expect=1)
    assert "UNKNOWN" in unknown.stdout and "NOT a pass" in unknown.stdout
    assert json.loads((run / "verdict.json").read_text())["linearizable"] == "UNKNOWN"
    # ...unless the user says so
    allowed = cli.cluster("check", str(run), "--check-timeout", "0", "--allow-unknown")
    assert "UNKNOWN" in allowed.stdout
    assert "not shown" in json.loads((run / "verdict.json").read_text())["note"].lower()


@pytest.mark.timeout(120)
def test_sigkilled_chaos_runner_leaves_no_orphan(cli: Cli, tmp_path: Path) -> None:
    """Even SIGKILL, which no cleanup code sees: the run's watchdog kills the peers."""
    run = tmp_path / "run"
    process = subprocess.Popen([cli.paths["ruaft-cluster"], "chaos", "--duration", "60", "--seed", "6",
                                "--out", str(run), "--no-progress"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (run / "nemesis.jsonl").exists() or '"begin"' not in (run / "nemesis.jsonl").read_text():
            assert process.poll() is None, "the chaos run ended early"
            assert time.monotonic() < deadline, "the chaos run did not begin"
            time.sleep(0.2)
        assert len(our_peers(run / "cluster.json")) == 5
    finally:
        process.kill()
        process.wait(10)
    deadline = time.monotonic() + 15
    while our_peers(run / "cluster.json") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_no_peers(run / "cluster.json", set())


def test_check_prunes_indefinite_appends_the_final_read_did_not_see(cli: Cli, tmp_path: Path) -> None:
    """Unapplied indefinite appends are dropped before the search (exactly: they can only
    have happened after the final read); the applied one is kept and placed."""
    run = tmp_path / "pruned"
    events = (op(0, "append", "a0", "c0-1;", 1, 2) + op(1, "append", "a0", "c1-1;", 3, 4, kind="info")
              + op(2, "append", "a0", "c2-1;", 3, 4, kind="info")
              + op(3, "append", "a0", "c3-1;", 3, 4, kind="info")
              + op(0, "get", "a0", None, 5, 6, read="c0-1;c2-1;")
              + op("final", "get", "a0", None, 10, 11, read="c0-1;c2-1;"))
    write_run(run, events, {"a0": "c0-1;c2-1;"}, ["a0"], [])
    assert "verdict: CLEAN" in cli.cluster("check", str(run)).stdout
    verdict = json.loads((run / "verdict.json").read_text())
    assert verdict["pruned_unapplied_appends"] == 2 and verdict["outcomes"]["info"] == 3
