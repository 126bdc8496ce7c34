"""A local KV cluster under recorded client load, judged as a chaos run is.

`DurabilityRun` lays out a chaos-style run directory (`orchestrator.chaos`: options, cluster
file, history, final reads), so the verdict is `chaos.check_run`'s — the project's
linearizability checker (KV model, UNKNOWN is not a pass) plus "no acknowledged write
missing" — and `ruaft-cluster check DIR` can re-judge a failed run. The peers are ordinary
`ruaft-peer` processes (`LocalCluster`), stopped by pid whatever happens.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from kv.client import DefiniteError, IndefiniteError, KVClient
from kv.clusterfile import CLUSTER_FILE_NAME
from kv.state_machine import KVCommand, KVStateMachine
from orchestrator import chaos
from orchestrator.checker import HistoryRecorder, events_to_operations
from orchestrator.local import LocalCluster, new_spec
from ruaft.node import decode_command
from ruaft.storage.lmdb_storage import LmdbStorage

OP_TIMEOUT = 2.0
"""Seconds one client call may take before it ends as fail (definite) or info."""


@dataclass(frozen=True, slots=True)
class Burst:
    invoked: int
    acknowledged_writes: int
    failed: int
    indefinite: int


class DurabilityRun:
    """`nodes` KV peers with run directory `out`; clients write unique tokens `r{burst}c{i}-{n};`
    (appends on a0.., puts on p0..; see `chaos.key_sets`) in bursts."""

    def __init__(self, out: Path, nodes: int, *, maxraftstate: int = 16 << 10, keys: int = 6,
                 clients: int = 4, seed: int = 0, check_timeout: float = 60.0):
        self.options = chaos.ChaosOptions(nodes=nodes, clients=clients, seed=seed, out=out, keys=keys,
                                          maxraftstate=maxraftstate, check_timeout=check_timeout,
                                          op_timeout=OP_TIMEOUT, attempt_timeout=0.5)
        chaos.prepare_run_dir(self.options)
        self.out = out.resolve()
        spec = new_spec(nodes, self.out, "127.0.0.1", None, maxraftstate)
        spec.write(self.out / CLUSTER_FILE_NAME)
        self.cluster = LocalCluster(spec)
        self.addresses = spec.client_addresses()
        self.append_keys, self.put_keys = chaos.key_sets(keys)
        self.keys = self.append_keys + self.put_keys
        self.recorder = HistoryRecorder()
        self.rng = random.Random(f"ruaft-durability-{seed}")
        self.pids: set[int] = set()
        self.bursts = 0
        self._final: dict[str, Any] | None = None

    # ------------------------------------------------------------------------ peers

    def start(self, peer: int, env: Mapping[str, str] | None = None) -> int:
        pid = self.cluster.start(peer, env)
        self.pids.add(pid)
        return pid

    def start_all(self, leader_timeout: float = 30.0) -> int:
        for peer in self.cluster.ids:
            self.start(peer)
        leader = self.cluster.wait_leader(leader_timeout)
        assert leader is not None, f"no leader within {leader_timeout} s; see {self.out}/peer-*/output.txt"
        return leader

    def sigkill(self, peers: list[int]) -> None:
        """SIGKILL `peers` (as close to at once as signals go) and reap each; asserts each died
        of that SIGKILL (exit status -9)."""
        processes = {p: self.cluster.processes[p] for p in peers}
        for process in processes.values():
            os.kill(process.pid, signal.SIGKILL)
        for peer, process in processes.items():
            code = process.wait(10)
            assert code == -signal.SIGKILL, f"peer {peer} exited with {code}, not by SIGKILL"

    def wait_caught_up(self, timeout: float = 20.0) -> dict[int, dict[str, Any]]:
        """Poll until every peer answers and all have applied the leader's commit index (and
        hold its last index); returns their states. Fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        states: dict[int, Any] = {}
        while time.monotonic() < deadline:
            states = {p: self.cluster.control(p, "get_state", timeout=0.5) for p in self.cluster.ids}
            leaders = [s for s in states.values() if s and s["role"] == "leader"]
            if len(leaders) == 1 and all(states.values()):
                target = leaders[0]
                if all(s["applied_index"] >= target["commit_index"] == target["last_index"]
                       and s["last_index"] == target["last_index"] for s in states.values()):
                    return states
            time.sleep(0.05)
        raise AssertionError(f"peers did not catch up within {timeout} s: {states}")

    def arm(self, peer: int, spec: str) -> None:
        """Arm failpoints (`ruaft.failpoints` syntax) in running peer `peer`."""
        reply = self.cluster.control(peer, "set_failpoint", spec=spec)
        assert reply is not None and reply.get("ok"), f"peer {peer}: set_failpoint {spec!r}: {reply}"

    def wait_exit(self, peer: int, timeout: float) -> int | None:
        """Peer `peer`'s exit status once it has exited (a negative signal number), or None
        if it still runs after `timeout` seconds."""
        process = self.cluster.processes[peer]
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self, peer: int) -> str:
        """What peer `peer` wrote to standard output and error (all its runs)."""
        path = self.cluster.spec.data_dir(peer) / "output.txt"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def state(self, peer: int) -> dict[str, Any]:
        reply = self.cluster.control(peer, "get_state")
        assert reply is not None, f"peer {peer} does not answer on its control endpoint"
        return reply

    def stop_all(self) -> list[int]:
        return chaos.stop_all(self.cluster, self.pids)

    # ------------------------------------------------------------------------ load

    def burst(self, seconds: float, during: Callable[[], None] | None = None,
              write_only: bool = False, value_bytes: int = 0,
              servers: list[int] | None = None) -> Burst:
        """`options.clients` client threads write (and, unless `write_only`, read) for
        `seconds`; `during`, if given, runs in the calling thread meanwhile. Every call is
        recorded; a thread ends with the call in hand (bounded by OP_TIMEOUT). `value_bytes`
        pads put values (tokens stay unique: the padding follows the token); `servers`
        limits the peers the clients can reach (default: all)."""
        self.bursts += 1
        tag = f"r{self.bursts}"
        counts = {"invoked": 0, "acked": 0, "fail": 0, "info": 0}
        lock = threading.Lock()
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=self._client, name=f"durability-{tag}-{i}",
                                    args=(tag, i, deadline, write_only, value_bytes, servers, counts, lock),
                                    daemon=True)
                   for i in range(self.options.clients)]
        for thread in threads:
            thread.start()
        try:
            if during is not None:
                during()
        finally:
            for thread in threads:
                thread.join(seconds + OP_TIMEOUT + 10.0)
        assert not any(t.is_alive() for t in threads), "a client thread did not finish"
        return Burst(counts["invoked"], counts["acked"], counts["fail"], counts["info"])

    def _client(self, tag: str, index: int, deadline: float, write_only: bool, value_bytes: int,
                servers: list[int] | None, counts: dict[str, int], lock: threading.Lock) -> None:
        rng = random.Random(f"{self.options.seed}-{tag}-{index}")
        process = f"{tag}c{index}"
        client = KVClient(self.addresses, client_id=f"durability-{os.getpid()}-{process}",
                          timeout=OP_TIMEOUT, attempt_timeout=0.5)
        if servers is not None:
            client.set_reachable(servers)
        padding = "x" * value_bytes
        try:
            for n in range(1, 100_000):  # bounded in count and (below) in time
                if time.monotonic() >= deadline:
                    break
                key = rng.choice(self.keys)
                write = write_only or rng.random() < 0.7
                f = ("append" if key in self.append_keys else "put") if write else "get"
                token = f"{process}-{n};"
                value = token + padding if f == "put" else token
                self.recorder.invoke(process, f, key, value if write else None)
                outcome = "ok"
                try:
                    if f == "get":
                        self.recorder.ok(process, client.get(key))
                    else:
                        getattr(client, f)(key, value)
                        self.recorder.ok(process)
                except DefiniteError:
                    self.recorder.fail(process)
                    outcome = "fail"
                except (IndefiniteError, Exception):  # an unexpected error is an unknown outcome too
                    self.recorder.info(process)
                    outcome = "info"
                    process = f"{process}+"  # Jepsen style: a new process after an unknown outcome
                with lock:
                    counts["invoked"] += 1
                    if outcome == "ok" and write:
                        counts["acked"] += 1
                    elif outcome != "ok":
                        counts[outcome] += 1
        finally:
            client.close()

    def put(self, key: str, value: str, servers: list[int] | None = None) -> bool:
        """One recorded put (outside any burst); returns whether it was acknowledged."""
        self.bursts += 1
        process = f"r{self.bursts}put"
        client = KVClient(self.addresses, client_id=f"durability-{os.getpid()}-{process}",
                          timeout=10.0, attempt_timeout=1.0)
        if servers is not None:
            client.set_reachable(servers)
        self.recorder.invoke(process, "put", key, value)
        try:
            client.put(key, value)
        except DefiniteError:
            self.recorder.fail(process)
            return False
        except Exception:
            self.recorder.info(process)
            return False
        finally:
            client.close()
        self.recorder.ok(process)
        return True

    # ------------------------------------------------------------------------ checks

    def read_back(self, timeout: float = 5.0) -> dict[str, Any]:
        """Linearizable gets of every key (recorded in the history as `chaos.FINAL_PROCESS`),
        then the durability verdict on everything acknowledged so far (`check_durability`).
        Call with no client running. Returns the durability report."""
        values, errors = chaos.final_reads(self.addresses, self.keys, self.recorder, timeout=timeout,
                                           budget=30.0)
        self._final = {"values": values, "errors": errors}
        operations = events_to_operations(self.recorder.events())
        return chaos.check_durability(operations, self._final, self.append_keys, self.put_keys)

    @property
    def read_values(self) -> dict[str, str]:
        """The values the last `read_back` read, by key."""
        assert self._final is not None, "read_back() first"
        return dict(self._final["values"])

    def verdict(self) -> dict[str, Any]:
        """Write history and the last read-back to the run directory and judge it with
        `chaos.check_run` (linearizability of the whole history, durability, peer errors)."""
        assert self._final is not None, "read_back() first"
        self.recorder.write_jsonl(self.out / chaos.HISTORY_FILE)
        (self.out / chaos.FINAL_READS_FILE).write_text(json.dumps(self._final, indent=1) + "\n")
        verdict, _code = chaos.check_run(self.out)
        return verdict

    def stored_values(self, peer: int) -> dict[str, str]:
        """Open peer `peer`'s store (it must be stopped; the open validates every record) and
        rebuild its KV state from the snapshot and the log, every entry of which must be
        committed (see `wait_caught_up`)."""
        machine = replay_store(self.cluster.spec.data_dir(peer) / "raft", self.cluster.spec.cluster_id)
        return {key: machine.get(key) for key in self.keys}


def replay_store(store_dir: Path, cluster_id: str, through: int | None = None) -> KVStateMachine:
    """Open a stopped peer's store (the open validates it: checksums, format, cluster id) and
    apply its snapshot and log, through index `through` if given (the store must reach it),
    to a fresh state machine."""
    storage = LmdbStorage(str(store_dir), cluster_id=cluster_id)
    try:
        initial = storage.initial_state()
    finally:
        storage.close()
    machine = KVStateMachine()
    if initial.snapshot is not None:
        machine.restore(initial.snapshot.data)
    if through is not None:
        last = initial.entries[-1].index if initial.entries else 0
        assert last >= through, f"the store ends at {last} < {through}"
    for entry in initial.entries:
        if through is not None and entry.index > through:
            break
        command = decode_command(entry.data)
        if command is not None:
            machine.apply(entry.index, KVCommand.decode(command))
    return machine
