"""Durability under SIGKILL, against real peer processes (issue 7).

30 rounds on a 3-peer and on a 5-peer KV cluster. Each round: four clients write (appends and
puts of unique tokens, plus some gets) for a short burst; in the middle of it a seeded random
set of peers is SIGKILLed — every 5th round ALL of them at once — and restarted on the same
data at once. After the burst every peer must rejoin and catch up, and linearizable gets of
every key must hold every write acknowledged so far (each acknowledged append exactly once,
in an order consistent with the history). At the end the whole history must be linearizable
(the project's checker, KV model; UNKNOWN fails), and each peer's store must open cleanly and
rebuild exactly the values read.

Each round prints one line: round, killed peers, operations and acknowledged writes, recovery
time (from the kill until every peer has rejoined and applied the leader's log). Wall time
on this 2-core machine: 45–70 s per cluster size. `RUAFT_SIGKILL_ROUNDS` changes the
number of rounds (e.g. 300 for a soak), `RUAFT_SIGKILL_SEED` the kill schedule and the load.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import pytest

from tests.hardening.kv_durability import DurabilityRun

ROUNDS = int(os.environ.get("RUAFT_SIGKILL_ROUNDS", "30"))
SEED = int(os.environ.get("RUAFT_SIGKILL_SEED", "0"))
ALL_PEERS_EVERY = 5
BURST_SECONDS = 0.8


def say(line: str, log: Path) -> None:
    sys.stderr.write(line + "\n")
    with log.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("nodes", [3, 5])
def test_acknowledged_writes_survive_sigkill_rounds(nodes: int, tmp_path: Path) -> None:
    run = DurabilityRun(tmp_path / f"run-{nodes}", nodes, maxraftstate=16 << 10, clients=4,
                        seed=7000 + 10 * SEED + nodes)
    rng = random.Random(f"ruaft-sigkill-rounds-{nodes}-{SEED}")
    log = run.out / "rounds.txt"
    ids = run.cluster.ids
    kills = 0
    acknowledged = 0
    try:
        run.start_all()
        for round_number in range(1, ROUNDS + 1):
            if round_number % ALL_PEERS_EVERY == 0:
                victims = list(ids)
            else:
                victims = sorted(rng.sample(ids, rng.randint(1, nodes - 1)))
            pause = rng.uniform(0.15, 0.5)
            killed_at: list[float] = []

            def kill_and_restart() -> None:
                time.sleep(pause)  # where in the burst the kill lands (part of the schedule)
                killed_at.append(time.monotonic())
                run.sigkill(victims)
                for peer in victims:
                    run.start(peer)

            burst = run.burst(BURST_SECONDS, during=kill_and_restart)
            run.wait_caught_up(timeout=30.0)
            recovery = time.monotonic() - killed_at[0]
            report = run.read_back()
            kills += len(victims)
            acknowledged = report["acknowledged_writes"]
            say(f"{nodes} peers, round {round_number:2d}: SIGKILL {victims}"
                f"{' (all)' if len(victims) == nodes else ''}; ops {burst.invoked}, "
                f"acked writes {burst.acknowledged_writes}, fail {burst.failed}, "
                f"indefinite {burst.indefinite}; recovered in {recovery:.2f} s; "
                f"{acknowledged} acknowledged writes so far, "
                f"{'all present' if report['ok'] else 'VIOLATION'}", log)
            assert report["ok"], f"round {round_number}: {report}"
        states = run.wait_caught_up()
        values = run.read_values
        verdict = run.verdict()
        say(f"{nodes} peers: {ROUNDS} rounds, {kills} kills survived, {acknowledged} acknowledged "
            f"writes all present; linearizable {verdict['linearizable']} "
            f"({verdict['checker_summary']}, {verdict['checker_seconds']:.1f} s); "
            f"snapshot index {max(s['snapshot_index'] for s in states.values())}", log)
        assert verdict["linearizable"] == "OK", verdict
        assert verdict["valid"], verdict["problems"]
        assert max(s["snapshot_index"] for s in states.values()) > 0  # the logs were compacted
        assert acknowledged > 10 * ROUNDS
    finally:
        run.stop_all()
    for peer in ids:
        assert run.stored_values(peer) == values, f"peer {peer}'s store disagrees with the reads"
