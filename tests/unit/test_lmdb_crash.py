"""SIGKILL crash test of LmdbStorage: acknowledged saves survive, the store always reopens.

A child (`lmdb_appender.py`) appends to one data directory and reports each index only after
`save()` returned; the parent kills it with SIGKILL at a random moment, 50 times in a row on
the same directory. After each kill the parent reopens the store (which validates it) and
checks every index the child ever reported is still there with the right payload (or covered
by the snapshot), and that the log is a consecutive run of valid entries.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from ruaft.storage import LmdbStorage
from tests.unit.lmdb_appender import CLUSTER_ID, payload, snapshot_data

ROUNDS = 50
SEED = 20240611
APPENDER = Path(__file__).with_name("lmdb_appender.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


class Reader(threading.Thread):
    """Collects the child's complete stdout lines; signals when START has been seen."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[str] = []
        self.started = threading.Event()

    def run(self) -> None:
        for raw in self.stream:
            if not raw.endswith(b"\n"):
                break  # a line cut short by the kill: never acknowledged
            line = raw.decode().strip()
            self.lines.append(line)
            if line.startswith("START"):
                self.started.set()
        self.started.set()  # EOF: stop anyone waiting

    def reported(self) -> list[int]:
        return [int(x) for x in self.lines if not x.startswith("START")]


def run_round(path: Path, seed: int, delay: float, from_spawn: bool) -> tuple[int, int]:
    """Spawn the appender, SIGKILL it `delay` seconds after spawn or after it opened the store.

    Returns (last index the child reported at start, highest index it acknowledged)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, str(APPENDER), str(path), str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    reader = Reader(proc.stdout)  # type: ignore[arg-type]
    reader.start()
    try:
        if not from_spawn:
            assert reader.started.wait(timeout=30), "appender did not open the store in time"
        time.sleep(delay)
        exited_early = proc.poll() is not None
        if not exited_early:
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        # Always reap (and, if anything above failed, still kill) the child.
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        reader.join(timeout=30)
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    assert not exited_early and proc.returncode == -signal.SIGKILL, (
        f"appender exited by itself (rc={proc.returncode}):\n{stderr}"
    )
    starts = [int(x.split()[1]) for x in reader.lines if x.startswith("START")]
    reported = reader.reported()
    start = starts[0] if starts else -1
    return start, max(reported, default=start)


def check_store(path: Path, acknowledged: int) -> int:
    """Reopen (validating) and check every acknowledged index; return the last index."""
    with LmdbStorage(path, cluster_id=CLUSTER_ID) as store:
        state = store.initial_state()
        snap = state.snapshot
        first = snap.index + 1 if snap else 1
        if snap is not None:
            assert snap.data == snapshot_data(snap.index)
        for offset, e in enumerate(state.entries):
            assert e.index == first + offset
            assert e.data == payload(e.index), f"entry {e.index} has the wrong payload"
        last = store.last_index()
        assert last >= acknowledged, f"acknowledged {acknowledged} but the store ends at {last}"
        assert state.hard_state.commit <= last
        return last


@pytest.mark.timeout(300)
def test_sigkill_never_loses_acknowledged_saves(tmp_path: Path) -> None:
    path = tmp_path / "peer"
    rng = random.Random(SEED)
    acknowledged = 0
    saves_seen = 0
    for round_no in range(ROUNDS):
        # Mostly kill while appending; every fifth round count from spawn instead, which
        # lands kills in interpreter start-up, store creation and open-time validation.
        from_spawn = round_no % 5 == 0
        delay = rng.uniform(0.005, 0.200)
        start, acked = run_round(path, rng.getrandbits(32), delay, from_spawn)
        if start >= 0:
            # The child saw at least everything acknowledged before (it may see more: a
            # save can be durable without its acknowledgement having been printed).
            assert start >= acknowledged, f"round {round_no}: child started at {start}"
        saves_seen += acked > max(start, 0)
        acknowledged = max(acknowledged, acked)
        last = check_store(path, acknowledged) if (path / "data.mdb").exists() else 0
        assert last >= acknowledged
    print(f"crash test: {acknowledged} entries acknowledged, {saves_seen} rounds saved")
    assert acknowledged > 0 and saves_seen >= ROUNDS // 2, (acknowledged, saves_seen)
