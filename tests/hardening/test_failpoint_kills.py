"""Peers SIGKILLed at precise moments by failpoints (`ruaft.failpoints`), against real processes.

Three moments, each its own test: while the peer persists a snapshot of its own state (log
compaction), while it receives a snapshot from the leader (InstallSnapshot), and while it
deletes a conflicting log suffix (truncation, paper §5.3). Each test arms the failpoint in one
running peer through its control endpoint, drives the cluster there under recorded client
load, and asserts the peer died by SIGKILL (exit status -9) at that very failpoint (the marker
line it writes just before). It then restarts the peer without the failpoint and checks that
it rejoins and catches up, that linearizable reads hold every acknowledged write, that the
whole history is linearizable (UNKNOWN fails), and that every peer's store opens cleanly and
rebuilds exactly the values read. Each test takes ~10–20 s.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from ruaft import failpoints
from tests.hardening.kv_durability import DurabilityRun
from transport_zmq.rpc import RpcClient, RpcError


def assert_killed_at(run: DurabilityRun, peer: int, point: str, code: int | None) -> None:
    assert code is not None, f"peer {peer} never reached failpoint {point}"
    assert code == -signal.SIGKILL, f"peer {peer} exited with {code}, not by SIGKILL"
    assert f"ruaft failpoint {point}: SIGKILL pid {run.cluster.processes[peer].pid}" in run.output(peer)


def heal_under_load_until_killed(run: DurabilityRun, victim: int, point: str) -> None:
    """Heal every partition while clients write, and check `victim` dies at `point`."""
    codes: list[int | None] = []

    def heal_and_wait() -> None:
        # The victim may die before its answer to the heal leaves it: then it is "missed".
        assert set(run.cluster.heal()) <= {victim}
        codes.append(run.wait_exit(victim, 10.0))

    run.burst(1.0, during=heal_and_wait)
    assert_killed_at(run, victim, point, codes[0])


def recover_and_check(run: DurabilityRun, victim: int) -> dict[int, dict[str, Any]]:
    """Restart `victim` without the failpoint, load the healed cluster once more, and check
    everything the module docstring lists; returns the caught-up peer states."""
    run.start(victim)
    run.burst(0.5)
    states = run.wait_caught_up(timeout=30.0)
    report = run.read_back()
    assert report["ok"], report
    assert report["acknowledged_writes"] > 0
    verdict = run.verdict()
    assert verdict["linearizable"] == "OK", verdict
    assert verdict["valid"], verdict["problems"]
    values = run.read_values
    run.stop_all()
    for peer in run.cluster.ids:
        assert run.stored_values(peer) == values, f"peer {peer}'s store disagrees with the reads"
    return states


@pytest.mark.timeout(120)
@pytest.mark.parametrize("role, point", [("leader", "snapshot.persist.before"),
                                         ("leader", "snapshot.persist.after"),
                                         ("follower", "snapshot.persist.before")])
def test_peer_killed_while_persisting_its_snapshot(role: str, point: str, tmp_path: Any) -> None:
    run = DurabilityRun(tmp_path / "run", 3, maxraftstate=4 << 10, seed=11)
    try:
        leader = run.start_all()
        victim = leader if role == "leader" else next(p for p in run.cluster.ids if p != leader)
        assert run.state(victim)["snapshot_index"] == 0
        control = RpcClient(run.cluster.spec.peer(victim).control_address)
        try:
            with pytest.raises(RpcError, match="unknown failpoint 'nowhere'") as refused:
                control.call("set_failpoint", timeout=2.0, spec="nowhere=kill")
            assert refused.value.kind == "bad_request"
        finally:
            control.close()
        run.arm(victim, f"{point}=kill")
        codes: list[int | None] = []
        # The writes push the Raft state past maxraftstate: the victim snapshots and dies.
        run.burst(2.0, during=lambda: codes.append(run.wait_exit(victim, 10.0)))
        assert_killed_at(run, victim, point, codes[0])
        states = recover_and_check(run, victim)
        assert states[victim]["snapshot_index"] > 0
    finally:
        run.stop_all()


def kill_follower_receiving_snapshot(run: DurabilityRun, point: str, action: str,
                                     big_values: int = 0) -> None:
    """Partition a follower away while the majority commits and compacts past its log
    (after `big_values` puts of 400 kB, so that the snapshot spans several 1 MiB chunks), arm
    `point` in it, heal, and check it dies there and recovers."""
    leader = run.start_all()
    follower = next(p for p in run.cluster.ids if p != leader)
    majority = [p for p in run.cluster.ids if p != follower]
    assert run.cluster.partition([majority, [follower]]) == []
    behind = run.state(follower)["last_index"]
    for i in range(big_values):
        assert run.put(run.put_keys[i], f"big{i};" + "x" * 400_000, servers=majority)
    # Only a snapshot can bring the follower up to date once the majority compacted past it.
    deadline = time.monotonic() + 20.0
    while True:
        leader_state = run.state(run.cluster.leader() or majority[0])
        if leader_state["snapshot_index"] > behind and (
                not big_values or leader_state["snapshot_bytes"] > 1 << 20):
            break
        assert time.monotonic() < deadline, f"the leader never compacted past the follower: {leader_state}"
        if big_values:
            time.sleep(0.05)  # the snapshot of the big values is on its way
        else:
            run.burst(0.5, servers=majority)
    run.arm(follower, f"{point}={action}")
    heal_under_load_until_killed(run, follower, point)
    states = recover_and_check(run, follower)
    assert states[follower]["snapshot_index"] > behind


@pytest.mark.timeout(120)
@pytest.mark.parametrize("point", ["install_snapshot.chunk.received", "install_snapshot.persist.before",
                                   "install_snapshot.persist.after"])
def test_follower_killed_while_receiving_a_snapshot(point: str, tmp_path: Any) -> None:
    run = DurabilityRun(tmp_path / "run", 3, maxraftstate=4 << 10, seed=12)
    try:
        kill_follower_receiving_snapshot(run, point, "kill")
    finally:
        run.stop_all()


@pytest.mark.timeout(120)
def test_follower_killed_between_the_chunks_of_a_snapshot(tmp_path: Any) -> None:
    # Three 400 kB values: a snapshot of ~1.2 MB, sent in two chunks; the follower dies as the
    # second arrives, holding the first in memory only. Restarted, it holds no transfer, and
    # the leader must start the snapshot over (InstallSnapshotResponse next_offset 0).
    run = DurabilityRun(tmp_path / "run", 3, maxraftstate=4 << 10, keys=9, seed=14)
    try:
        kill_follower_receiving_snapshot(run, "install_snapshot.chunk.received", "kill@2", big_values=3)
    finally:
        run.stop_all()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("point", ["log.truncate.before", "log.truncate.after"])
def test_old_leader_killed_while_truncating_its_log(point: str, tmp_path: Any) -> None:
    # No snapshots: the new leader must repair the old one's log by AppendEntries.
    run = DurabilityRun(tmp_path / "run", 3, maxraftstate=1 << 20, seed=13)
    try:
        old = run.start_all()
        majority = [p for p in run.cluster.ids if p != old]
        run.burst(0.3)
        run.wait_caught_up()
        committed = run.state(old)["commit_index"]
        assert run.cluster.partition([[old], majority]) == []
        # Writes only the isolated leader can see: it appends them but can never commit them
        # (each ends indefinite after OP_TIMEOUT).
        run.burst(0.2, servers=[old], write_only=True)
        isolated = run.state(old)
        assert isolated["last_index"] > committed, isolated
        assert isolated["commit_index"] == committed, isolated
        run.arm(old, f"{point}=kill")
        # The majority elects a new leader and commits other entries at those indexes.
        deadline = time.monotonic() + 20.0
        while max(run.state(p)["commit_index"] for p in majority) <= isolated["last_index"]:
            assert time.monotonic() < deadline, "the majority never committed past the old leader"
            run.burst(0.5, servers=majority)
        heal_under_load_until_killed(run, old, point)
        recover_and_check(run, old)
    finally:
        run.stop_all()


def test_failpoint_specs_are_checked() -> None:
    assert failpoints.parse("log.truncate.before=kill@3; snapshot.persist.after=off") == {
        "log.truncate.before": failpoints.Action(at=3), "snapshot.persist.after": None}
    for bad in ("nowhere=kill", "log.truncate.before=explode", "log.truncate.before=kill@0",
                "log.truncate.before"):
        with pytest.raises(ValueError):
            failpoints.parse(bad)
    assert not failpoints.armed  # nothing is armed in a normal process
    env = dict(os.environ, RUAFT_FAILPOINTS="log.truncate.before=sometimes")
    done = subprocess.run([sys.executable, "-c", "import ruaft.failpoints"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "ValueError: RUAFT_FAILPOINTS: failpoint log.truncate.before: unknown action" in done.stderr


def test_environment_armed_failpoint_kills_at_its_nth_hit() -> None:
    script = ("from ruaft import failpoints\n"
              "failpoints.maybe_trigger('log.truncate.after')\n"
              "failpoints.maybe_trigger('log.truncate.before')\n"
              "print('first hit passed', flush=True)\n"
              "failpoints.maybe_trigger('log.truncate.before')\n"
              "print('not reached', flush=True)\n")
    env = dict(os.environ, RUAFT_FAILPOINTS="log.truncate.before=kill@2")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == -signal.SIGKILL, done
    assert done.stdout == "first hit passed\n"
    assert f"ruaft failpoint log.truncate.before: SIGKILL pid" in done.stderr and "(hit 2)" in done.stderr


STORM_ROUNDS = int(os.environ.get("RUAFT_FAILPOINT_STORM_ROUNDS", "0"))


@pytest.mark.skipif(STORM_ROUNDS <= 0, reason="soak: set RUAFT_FAILPOINT_STORM_ROUNDS (e.g. 40)")
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("nodes", [3, 5])
def test_failpoint_storm(nodes: int, tmp_path: Any) -> None:
    """Each round arms random failpoints (kill at hit 1–3) in random peers, sometimes isolates
    a peer (writes only it can see, then a heal: truncations and snapshot installs), loads the
    cluster, restarts whoever died (each by SIGKILL at a failpoint) and checks the read-back."""
    run = DurabilityRun(tmp_path / "run", nodes, maxraftstate=4 << 10, seed=9000 + nodes)
    rng = random.Random(f"ruaft-failpoint-storm-{nodes}")
    points = sorted(failpoints.POINTS)
    deaths = 0
    try:
        run.start_all()
        for round_number in range(1, STORM_ROUNDS + 1):
            armed = {}
            for peer in run.cluster.ids:
                if rng.random() < 0.6:
                    armed[peer] = f"{rng.choice(points)}=kill@{rng.randint(1, 3)}"
                    run.arm(peer, armed[peer])
            isolated = rng.choice(run.cluster.ids) if rng.random() < 0.5 else None
            if isolated is not None:
                run.cluster.partition([[isolated], [p for p in run.cluster.ids if p != isolated]])
                run.burst(0.6)
                run.burst(0.2, servers=[isolated], write_only=True)
                run.cluster.heal()
            run.burst(0.6)
            for peer in armed:  # a peer that dies meanwhile does not answer: judged below
                run.cluster.control(peer, "set_failpoint", spec=";".join(f"{p}=off" for p in points))
            dead = [p for p in run.cluster.ids if run.cluster.processes[p].poll() is not None]
            for peer in dead:
                point = armed[peer].split("=")[0]
                assert_killed_at(run, peer, point, run.cluster.processes[peer].returncode)
            for peer in dead:
                run.start(peer)
            deaths += len(dead)
            run.wait_caught_up(timeout=30.0)
            report = run.read_back()
            print(f"{nodes} peers, storm round {round_number}: armed {armed}, isolated {isolated}, "
                  f"died {dead}; {report['acknowledged_writes']} acknowledged writes so far")
            assert report["ok"], report
        verdict = run.verdict()
        assert verdict["linearizable"] == "OK" and verdict["valid"], verdict
        assert deaths > 0
    finally:
        run.stop_all()
