"""Chaos runs: a fresh local KV cluster, a seeded nemesis, concurrent clients, and a verdict.

    ruaft-cluster chaos [--nodes 5] [--duration 60] [--clients 8]
                        [--nemesis kill,partition,lossy,pause] [--seed S] [--out DIR]
    ruaft-cluster check DIR

A run, in order:

1. **Cluster.** A new cluster file in the run directory (free ports on 127.0.0.1, a small
   `maxraftstate` so that snapshots happen); the peers are ordinary `ruaft-peer` processes
   (`LocalCluster`), so `ruaft-cluster status --data-dir RUN_DIR` works during the run.
2. **Nemesis.** `plan_schedule` turns the seed into a schedule: every 1–3 s one fault
   starts or one ends. Faults are SIGKILL (ended by a restart on the same data), SIGSTOP
   (ended by SIGCONT), a partition of one of several shapes (ended by healing), and lossy
   links (`unreliable`, sometimes with `long_reordering`). Kills and pauses together never
   take down more than a minority. Partitions and lossy links are per-peer fault rules sent
   through each peer's control endpoint (`set_faults`); both ends of a link drop, so a peer
   that misses an update (paused, or just restarted) is still cut off by the others, and it
   is sent the current rules as soon as it runs again. Which peer a kill or pause hits
   ("the leader" or "a random peer") is decided when the step runs. Every action is a line
   of `nemesis.jsonl`.
3. **Clients.** `clients` threads, each with its own `KVClient` (finite per-call timeout),
   run get/put/append on a small key set and record a history (`HistoryRecorder`): `ok`
   (with the value read, for gets), `fail` on a definite error, `info` on an indefinite
   one (after which the thread continues as a new process, Jepsen style). Append keys only
   see appends and gets, put keys only puts and gets; every written value is a unique token
   `c{client}-{n};`, so the final state says exactly which writes survived.
4. **Final phase.** Everything is healed (SIGCONT, restart the dead, clear every rule), a
   leader is awaited, and every key is read; the reads go into the history (process
   "final") and into `final_reads.json`.
5. **Verdict** (`check_run`, also what `ruaft-cluster check DIR` runs): linearizability of
   the whole history (the Porcupine-style checker, with a time budget: UNKNOWN is not a
   pass unless allowed), durability of every acknowledged write in the final reads, and no
   peer error. `verdict.json` and `timeline.html` are written; exit 0 clean, 1 violation.

All peers are stopped by pid at the end, whatever happens.
"""

from __future__ import annotations

import html
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import psutil

from kv.client import DefiniteError, IndefiniteError, KVClient
from kv.clusterfile import CLUSTER_FILE_NAME
from orchestrator.checker import (
    MODELS,
    CheckResult,
    EventType,
    HistoryError,
    HistoryRecorder,
    Operation,
    Verdict,
    check_operations,
    events_to_operations,
    load_history,
    render_html,
)
from orchestrator.local import LocalCluster, new_spec

NEMESES = ("kill", "partition", "lossy", "pause")
EXIT_CLEAN = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2
EXIT_NO_RUN = 3
"""The run could not be carried out (no leader at the start, interrupted): no verdict."""

FINAL_PROCESS = "final"
WARMUP_S = 2.0
"""Seconds of fault-free traffic before the first fault."""
MAX_ACTIVE_FAULTS = 3
PARTITION_SHAPES = ("isolate-leader", "isolate", "halves", "ring", "bridge")

HISTORY_FILE = "history.jsonl"
NEMESIS_FILE = "nemesis.jsonl"
FINAL_READS_FILE = "final_reads.json"
FINAL_STATUS_FILE = "final_status.json"
VERDICT_FILE = "verdict.json"
TIMELINE_FILE = "timeline.html"
OPTIONS_FILE = "options.json"
SEED_FILE = "seed.txt"


class ChaosError(Exception):
    """Bad options or an unusable run directory (the message says which)."""


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    nodes: int = 5
    duration: float = 60.0
    clients: int = 8
    nemesis: tuple[str, ...] = NEMESES
    seed: int = 0
    out: Path = Path("runs/chaos")
    keys: int = 6
    """Key set size: two thirds append keys (a0, a1, …), the rest put keys (p0, …)."""
    op_timeout: float = 3.0
    """Seconds a client call may take before it ends as fail (definite) or info."""
    attempt_timeout: float = 1.0
    check_timeout: float = 120.0
    """Budget of the linearizability checker, seconds."""
    allow_unknown: bool = False
    maxraftstate: int = 64 << 10
    max_ops: int = 1_000_000
    """Bound on the operations all clients together invoke."""
    leader_timeout: float = 30.0
    """Seconds to wait for a leader at the start and after the final heal."""

    def validate(self) -> None:
        unknown = sorted(set(self.nemesis) - set(NEMESES))
        if unknown:
            raise ChaosError(f"unknown nemesis {', '.join(unknown)} (choose from {','.join(NEMESES)}, or none)")
        if not 1 <= self.nodes <= 15:
            raise ChaosError("--nodes must be 1..15")
        if not 1 <= self.clients <= 64:
            raise ChaosError("--clients must be 1..64")
        if not 1 <= self.duration <= 24 * 3600:
            raise ChaosError("--duration must be 1 s .. 24 h")
        if self.keys < 2:
            raise ChaosError("--keys must be at least 2")
        if self.op_timeout <= 0 or self.check_timeout <= 0:
            raise ChaosError("timeouts must be positive")

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["nemesis"] = list(self.nemesis)
        document["out"] = str(self.out)
        document["append_keys"], document["put_keys"] = key_sets(self.keys)
        return document


def key_sets(keys: int) -> tuple[list[str], list[str]]:
    """The append keys and the put keys of a run with `keys` keys."""
    puts = max(1, keys // 3)
    return [f"a{i}" for i in range(keys - puts)], [f"p{i}" for i in range(puts)]


def parse_nemesis(text: str) -> tuple[str, ...]:
    """`kill,partition` → ("kill", "partition"); "none" or "" → ()."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["none"]:
        return ()
    unknown = sorted(set(names) - set(NEMESES))
    if unknown:
        raise ChaosError(f"unknown nemesis {', '.join(unknown)} (choose from {','.join(NEMESES)}, or none)")
    return tuple(dict.fromkeys(names))


def default_run_dir(seed: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"chaos-{stamp}-{seed}"


# ==================================================================================== schedule


@dataclass(frozen=True, slots=True)
class Step:
    """One nemesis action: at `at` seconds into the run, fault number `fault` starts or ends."""

    at: float
    action: str  # "start" | "end"
    fault: int
    kind: str  # kill | pause | partition | lossy
    detail: dict[str, Any] = field(default_factory=dict)


def max_down(n: int) -> int:
    """How many peers may be killed or paused at once: a minority."""
    return (n - 1) // 2


def ring_disabled(order: Sequence[int]) -> list[tuple[int, int]]:
    """Peers on a ring, each talking only to its neighbours within distance d, where d is
    the smallest reach that gives every peer a majority view (itself and 2d others): a
    ring of overlapping majorities, no two of which agree."""
    n = len(order)
    majority = n // 2 + 1
    reach = (majority - 1 + 1) // 2  # ceil((majority - 1) / 2)
    position = {peer: i for i, peer in enumerate(order)}
    cut = []
    for a in order:
        for b in order:
            if a == b:
                continue
            distance = abs(position[a] - position[b])
            if min(distance, n - distance) > reach:
                cut.append((a, b))
    return cut


def groups_disabled(groups: Sequence[Sequence[int]], ids: Sequence[int]) -> list[tuple[int, int]]:
    group_of = {peer: g for g, members in enumerate(groups) for peer in members}
    return [(a, b) for a in ids for b in ids
            if a != b and group_of.get(a, -1 - a) != group_of.get(b, -1 - b)]


def plan_partition(rng: random.Random, n: int) -> dict[str, Any]:
    """A partition shape with its concrete groups (isolate-leader picks its peer at run
    time; `pick` is the seeded fallback when there is no leader)."""
    shapes = ["isolate-leader", "isolate", "halves"]
    if n >= 4:
        shapes.append("ring")
    if n >= 3:
        shapes.append("bridge")
    shape = rng.choice(shapes)
    ids = list(range(n))
    if shape in ("isolate-leader", "isolate"):
        return {"shape": shape, "pick": rng.random()}
    order = ids[:]
    rng.shuffle(order)
    if shape == "halves":
        size = rng.randint(1, max(1, (n - 1) // 2))
        return {"shape": shape, "groups": [sorted(order[:size]), sorted(order[size:])]}
    if shape == "ring":
        return {"shape": shape, "ring": order}
    # bridge: two halves that cannot talk, and one peer that talks to both
    bridge, rest = order[0], order[1:]
    half = len(rest) // 2
    return {"shape": shape, "bridge": bridge, "groups": [sorted(rest[:half]), sorted(rest[half:])]}


def plan_schedule(seed: int, nodes: int, duration: float, nemeses: Sequence[str]) -> list[Step]:
    """The nemesis schedule of a run: a pure function of its arguments.

    From WARMUP_S on, every 1–3 s one step: a fault starts or one ends. At most
    MAX_ACTIVE_FAULTS at once, at most one partition and one lossy period at a time, and
    kills plus pauses never exceed a minority. Faults still active at `duration` are ended
    by the final heal, not by the schedule."""
    rng = random.Random(f"ruaft-chaos-nemesis-{seed}")
    steps: list[Step] = []
    active: dict[int, Step] = {}
    next_fault = 0
    at = WARMUP_S - 1.0
    limit = max_down(nodes)
    for _ in range(100_000):  # bounded; the clock below ends it long before
        at += rng.uniform(1.0, 3.0)
        if at >= duration or not nemeses:
            break
        down = sum(1 for s in active.values() if s.kind in ("kill", "pause"))
        kinds = {s.kind for s in active.values()}
        startable = [k for k in nemeses
                     if (k in ("kill", "pause") and down < limit)
                     or (k == "partition" and "partition" not in kinds and nodes >= 2)
                     or (k == "lossy" and "lossy" not in kinds and nodes >= 2)]
        if len(active) >= MAX_ACTIVE_FAULTS:
            startable = []
        end = bool(active) and (not startable or rng.random() < 0.25 + 0.2 * len(active))
        if end:
            fault = rng.choice(sorted(active))
            start = active.pop(fault)
            steps.append(Step(round(at, 3), "end", fault, start.kind, start.detail))
        elif startable:
            kind = rng.choice(startable)
            if kind in ("kill", "pause"):
                detail: dict[str, Any] = {"target": "leader" if rng.random() < 0.4 else "random",
                                          "pick": rng.random()}
            elif kind == "partition":
                detail = plan_partition(rng, nodes)
            else:
                detail = {"long_reordering": rng.random() < 0.5}
            step = Step(round(at, 3), "start", next_fault, kind, detail)
            active[next_fault] = step
            steps.append(step)
            next_fault += 1
    return steps


# ==================================================================================== nemesis


def _pick(candidates: Sequence[int], u: float) -> int:
    ordered = sorted(candidates)
    return ordered[min(len(ordered) - 1, int(u * len(ordered)))]


class Nemesis:
    """Executes a schedule against a LocalCluster and logs every action to nemesis.jsonl.

    Tracks what it broke (killed, paused, the partition, lossy links) so that it can heal it
    all, and the network rules of each peer so that a peer that runs again gets them."""

    def __init__(self, cluster: LocalCluster, log_path: Path, started_ns: int):
        self.cluster = cluster
        self.ids = cluster.ids
        self.started_ns = started_ns
        self._log = log_path.open("a", encoding="utf-8")
        self._log_lock = threading.Lock()
        self.killed: dict[int, int] = {}  # fault -> peer
        self.paused: dict[int, int] = {}
        self.partition: tuple[int, list[tuple[int, int]]] | None = None  # (fault, disabled links)
        self.lossy: tuple[int, bool] | None = None  # (fault, long_reordering)
        self.faults_started = 0
        self.pids: set[int] = set()
        """Every peer pid this run started (the final sweep makes sure none survives)."""
        self.errors: list[str] = []
        self.active_kinds: Counter[str] = Counter()

    # ------------------------------------------------------------------------- log

    def log(self, **record: Any) -> None:
        now = time.monotonic_ns()
        line = {"time_s": round((now - self.started_ns) / 1e9, 3), "ns": now,
                "wall": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **record}
        with self._log_lock:
            self._log.write(json.dumps(line) + "\n")
            self._log.flush()

    def close(self) -> None:
        with self._log_lock:
            self._log.close()

    # ------------------------------------------------------------------------- peers

    def start_peer(self, peer: int) -> int:
        pid = self.cluster.start(peer)
        self.pids.add(pid)
        return pid

    def down(self) -> set[int]:
        return set(self.killed.values()) | set(self.paused.values())

    def leader(self) -> int | None:
        """The current leader as its own control endpoint says (skipping paused/killed
        peers, which could not answer)."""
        for peer in self.ids:
            if peer in self.down():
                continue
            state = self.control(peer, "get_state", timeout=0.5)
            if state and state.get("role") == "leader":
                return peer
        return None

    def control(self, peer: int, op: str, timeout: float = 1.0, **fields: Any) -> dict[str, Any] | None:
        return self.cluster.control(peer, op, timeout, **fields)

    # ------------------------------------------------------------------------- network

    def rules_for(self, peer: int) -> dict[str, Any]:
        disabled = self.partition[1] if self.partition else []
        return {"disabled_links": [[a, b] for a, b in disabled if peer in (a, b)],
                "unreliable": self.lossy is not None,
                "long_reordering": bool(self.lossy and self.lossy[1]),
                "long_delays": False}

    def network_clean(self) -> bool:
        return self.partition is None and self.lossy is None

    def push_rules(self, peers: Sequence[int] | None = None, patience: float = 1.0) -> list[int]:
        """Send each running, unpaused peer its rules; returns the peers not reached.
        `patience`: seconds to keep retrying a silent peer (a just-restarted one binds its
        control endpoint a little after it starts)."""
        missed = []
        for peer in self.ids if peers is None else peers:
            if peer in self.down():
                continue
            deadline = time.monotonic() + patience
            while True:
                reply = self.control(peer, "set_faults", timeout=0.5, rules=self.rules_for(peer))
                if reply is not None and reply.get("ok"):
                    break
                if time.monotonic() >= deadline:
                    missed.append(peer)
                    break
                time.sleep(0.1)
        return missed

    # ------------------------------------------------------------------------- steps

    def run(self, steps: Sequence[Step], stop: threading.Event) -> None:
        """Execute `steps` at their times (relative to `started_ns`) until `stop` is set."""
        for step in steps:
            delay = step.at - (time.monotonic_ns() - self.started_ns) / 1e9
            if delay > 0 and stop.wait(delay):
                return
            if stop.is_set():
                return
            try:
                self.execute(step)
            except Exception as exc:  # never let one failed action end the run silently
                self.errors.append(f"{step.action} {step.kind} #{step.fault}: {exc!r}")
                self.log(fault=step.fault, action="error", kind=step.kind, error=repr(exc))

    def execute(self, step: Step) -> None:
        if step.action == "start":
            self._start(step)
        else:
            self._end(step)

    def _victim(self, detail: dict[str, Any]) -> int | None:
        candidates = [p for p in self.ids if p not in self.down()]
        if not candidates:
            return None
        if detail.get("target") == "leader":
            leader = self.leader()
            if leader is not None and leader in candidates:
                return leader
        return _pick(candidates, float(detail.get("pick", 0.0)))

    def _start(self, step: Step) -> None:
        kind, detail = step.kind, step.detail
        if kind in ("kill", "pause"):
            if len(self.down()) >= max_down(len(self.ids)):
                self.log(fault=step.fault, action="skip", kind=kind, reason="a minority is already down")
                return
            peer = self._victim(detail)
            if peer is None:
                return
            if kind == "kill":
                pid = self.cluster.pid(peer)
                self.cluster.stop(peer, signal.SIGKILL, timeout=5.0)
                self.killed[step.fault] = peer
            else:
                pid = self.cluster.send_signal(peer, signal.SIGSTOP)
                self.paused[step.fault] = peer
            self._started(step, peers=[peer], pid=pid, target=detail.get("target"))
        elif kind == "partition":
            shape = detail["shape"]
            info: dict[str, Any] = {"shape": shape}
            if shape in ("isolate-leader", "isolate"):
                peer = self.leader() if shape == "isolate-leader" else None
                if peer is None:
                    peer = _pick(self.ids, float(detail.get("pick", 0.0)))
                groups = [[peer], [p for p in self.ids if p != peer]]
                disabled = groups_disabled(groups, self.ids)
                info["groups"] = groups
            elif shape == "ring":
                disabled = ring_disabled(detail["ring"])
                info["ring"] = detail["ring"]
            elif shape == "bridge":
                groups = [detail["groups"][0] + [detail["bridge"]], detail["groups"][1] + [detail["bridge"]]]
                disabled = [(a, b) for a, b in groups_disabled(detail["groups"], self.ids)
                            if detail["bridge"] not in (a, b)]
                info["bridge"], info["groups"] = detail["bridge"], detail["groups"]
            else:
                disabled = groups_disabled(detail["groups"], self.ids)
                info["groups"] = detail["groups"]
            self.partition = (step.fault, disabled)
            missed = self.push_rules()
            self._started(step, missed=missed, **info)
        elif kind == "lossy":
            self.lossy = (step.fault, bool(detail.get("long_reordering")))
            missed = self.push_rules()
            self._started(step, long_reordering=bool(detail.get("long_reordering")), missed=missed)

    def _started(self, step: Step, **info: Any) -> None:
        with self._log_lock:
            self.faults_started += 1
            self.active_kinds[step.kind] += 1
        self.log(fault=step.fault, action="start", kind=step.kind, **info)

    def _ended(self, fault: int, kind: str, **info: Any) -> None:
        with self._log_lock:
            self.active_kinds[kind] -= 1
        self.log(fault=fault, action="end", kind=kind, **info)

    def active_summary(self) -> str:
        """The kinds of fault active now, e.g. "kill×2 lossy" (for the progress line)."""
        with self._log_lock:
            active = sorted((kind, count) for kind, count in self.active_kinds.items() if count > 0)
        return " ".join(f"{kind}×{count}" if count > 1 else kind for kind, count in active)

    def _end(self, step: Step) -> None:
        fault = step.fault
        if fault in self.killed:
            self._restart(fault)
        elif fault in self.paused:
            self._resume(fault)
        elif self.partition is not None and self.partition[0] == fault:
            self.partition = None
            self._ended(fault, "partition", missed=self.push_rules())
        elif self.lossy is not None and self.lossy[0] == fault:
            self.lossy = None
            self._ended(fault, "lossy", missed=self.push_rules())
        # else: the start was skipped; nothing to end

    def _restart(self, fault: int) -> None:
        peer = self.killed.pop(fault)
        pid = self.start_peer(peer)
        missed = [] if self.network_clean() else self.push_rules([peer], patience=3.0)
        self._ended(fault, "kill", peers=[peer], action_taken="restart", pid=pid, missed=missed)

    def _resume(self, fault: int) -> None:
        peer = self.paused.pop(fault)
        pid = self.cluster.send_signal(peer, signal.SIGCONT)
        missed = [] if self.network_clean() else self.push_rules([peer], patience=2.0)
        self._ended(fault, "pause", peers=[peer], action_taken="sigcont", pid=pid, missed=missed)

    def heal_all(self) -> list[int]:
        """End every fault: SIGCONT the paused, restart the killed, clear every rule, and
        restart any peer that died without being killed (logged as unexpected). Returns
        the ids of peers that had died unexpectedly."""
        for fault in sorted(self.paused):
            self._resume(fault)
        for fault in sorted(self.killed):
            self._restart(fault)
        if self.partition is not None:
            fault = self.partition[0]
            self.partition = None
            self._ended(fault, "partition")
        if self.lossy is not None:
            fault = self.lossy[0]
            self.lossy = None
            self._ended(fault, "lossy")
        unexpected = []
        for peer in self.ids:
            if self.cluster.pid(peer) is None:
                unexpected.append(peer)
                pid = self.start_peer(peer)
                self.log(action="unexpected-exit", peers=[peer], restarted_pid=pid)
        missed = self.push_rules(patience=3.0)
        self.log(action="healed", missed=missed)
        return unexpected


# ==================================================================================== clients


@dataclass(slots=True)
class Tally:
    """Operation counts shown by the progress bar."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    invoked: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0
    errors: list[str] = field(default_factory=list)

    def claim(self, limit: int) -> bool:
        with self.lock:
            if self.invoked >= limit:
                return False
            self.invoked += 1
            return True

    def done(self, outcome: str) -> None:
        with self.lock:
            setattr(self, outcome, getattr(self, outcome) + 1)


def client_loop(index: int, options: ChaosOptions, addresses: Sequence[str], recorder: HistoryRecorder,
                tally: Tally, stop: threading.Event, deadline: float) -> None:
    """One client thread: random ops until `deadline`/`stop`, each recorded in the history."""
    rng = random.Random(f"ruaft-chaos-client-{options.seed}-{index}")
    append_keys, put_keys = key_sets(options.keys)
    keys = append_keys + put_keys
    process = index
    client = KVClient(addresses, client_id=f"chaos-{options.seed}-{index}-{os.getpid()}",
                      timeout=options.op_timeout, attempt_timeout=options.attempt_timeout)
    n = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline and tally.claim(options.max_ops):
            key = rng.choice(keys)
            write = rng.random() < (0.55 if key in append_keys else 0.5)
            f = ("append" if key in append_keys else "put") if write else "get"
            n += 1
            token = f"c{index}-{n};"
            recorder.invoke(process, f, key, token if write else None)
            try:
                if f == "get":
                    value = client.get(key)
                    recorder.ok(process, value)
                elif f == "put":
                    client.put(key, token)
                    recorder.ok(process)
                else:
                    client.append(key, token)
                    recorder.ok(process)
                tally.done("ok")
            except DefiniteError:
                recorder.fail(process)
                tally.done("fail")
            except IndefiniteError:
                recorder.info(process)
                tally.done("info")
                process += options.clients  # Jepsen style: a new process after an unknown outcome
            except Exception as exc:  # unexpected: record it as unknown and go on
                recorder.info(process)
                tally.done("info")
                process += options.clients
                with tally.lock:
                    if len(tally.errors) < 20:
                        tally.errors.append(f"client {index}: {exc!r}")
    finally:
        client.close()


def final_reads(addresses: Sequence[str], keys: Sequence[str], recorder: HistoryRecorder,
                timeout: float, budget: float = 60.0) -> tuple[dict[str, str], dict[str, str]]:
    """Read every key (recorded as process "final"), each up to three times with `timeout`
    per call, all within `budget` seconds; returns (values, errors)."""
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    deadline = time.monotonic() + budget
    client = KVClient(addresses, client_id=f"chaos-final-{os.getpid()}", timeout=timeout)
    try:
        for key in keys:
            errors[key] = "not read: the final phase ran out of time"
            for attempt in range(3):
                if time.monotonic() >= deadline:
                    break
                recorder.invoke(FINAL_PROCESS, "get", key)
                try:
                    value = client.get(key)
                except Exception as exc:  # a get has no effect: a failed one is dropped
                    recorder.fail(FINAL_PROCESS)
                    errors[key] = repr(exc)
                    continue
                recorder.ok(FINAL_PROCESS, value)
                values[key] = value
                errors.pop(key, None)
                break
    finally:
        client.close()
    return values, errors


# ==================================================================================== checks


def _tokens(value: str) -> list[str]:
    return [t + ";" for t in value.split(";")[:-1]] if value else []


def check_durability(operations: Sequence[Operation], final: dict[str, Any] | None,
                     append_keys: Sequence[str], put_keys: Sequence[str]) -> dict[str, Any]:
    """Every acknowledged write must be visible in the final reads.

    Append keys: the final value must hold every acknowledged appended token exactly once,
    no token nobody appended, and acknowledged appends in real-time order (if A returned
    before B was invoked, A's token comes first). Put keys: the final value must be the
    value of some put (acknowledged or indefinite), and no acknowledged put may have been
    invoked after that put returned (it would be lost). A key that could not be read
    fails the check."""
    client_ops = [op for op in operations if op.client_id != FINAL_PROCESS]
    values: dict[str, str] = dict((final or {}).get("values", {}))
    report: dict[str, Any] = {"ok": True, "acknowledged_writes": 0, "missing": [], "duplicated": [],
                              "phantom": [], "reordered": [], "unread_keys": []}
    if final is None:
        report["ok"] = False
        report["unread_keys"] = sorted(set(append_keys) | set(put_keys))
        report["note"] = f"no {FINAL_READS_FILE}: the final phase did not complete"
        return report

    def describe(op: Operation) -> dict[str, Any]:
        return {"key": op.input.key, "f": op.input.f, "value": op.input.value,
                "process": op.client_id, "invoke_ns": op.call,
                "return_ns": None if op.unknown else op.return_time}

    for key in list(append_keys) + list(put_keys):
        writes = [op for op in client_ops if op.input.key == key and op.input.f in ("put", "append")]
        acked = [op for op in writes if not op.unknown]
        report["acknowledged_writes"] += len(acked)
        if key not in values:
            if acked:
                report["unread_keys"].append(key)
            continue
        value = values[key]
        if key in append_keys:
            tokens = _tokens(value)
            counts = Counter(tokens)
            position = {t: i for i, t in enumerate(tokens)}
            written = {op.input.value for op in writes}
            for op in acked:
                if op.input.value not in counts:
                    report["missing"].append(describe(op))
            report["duplicated"] += [{"key": key, "token": t, "times": c} for t, c in counts.items() if c > 1]
            report["phantom"] += [{"key": key, "token": t} for t in counts if t not in written]
            placed = sorted((op for op in acked if op.input.value in position),
                            key=lambda op: position[op.input.value])
            earliest_return_after: float = float("inf")
            later: Operation | None = None
            for op in reversed(placed):  # an op later in the value that returned before this one began
                if later is not None and earliest_return_after < op.call:
                    report["reordered"].append({"key": key, "first": describe(later), "then": describe(op)})
                if op.return_time < earliest_return_after:
                    earliest_return_after, later = op.return_time, op
        else:
            if value == "":
                report["missing"] += [describe(op) for op in acked]
                continue
            writer = next((op for op in writes if op.input.value == value), None)
            if writer is None:
                report["phantom"].append({"key": key, "token": value})
                continue
            if not writer.unknown:
                report["missing"] += [describe(op) for op in acked
                                      if op is not writer and op.call > writer.return_time]
    report["ok"] = not any(report[k] for k in ("missing", "duplicated", "phantom", "reordered", "unread_keys"))
    return report


def prune_unapplied_appends(operations: Sequence[Operation],
                            append_keys: Sequence[str]) -> tuple[list[Operation], int]:
    """Drop the indefinite appends whose token is absent from the key's final read.

    Exact, not an approximation: on an append key (appends and gets only, unique tokens)
    such an append, if it happened at all, took effect after the final read, so no read
    saw it, and a linearization of the rest extended by it at the very end is a
    linearization of the whole. The checker's search, on the other hand, retries every
    pending indefinite operation at every step, which makes even two of them on a
    two-thousand-operation key take minutes. Returns (operations to check, number dropped)."""
    has_puts = {op.input.key for op in operations if op.input.f == "put"}
    finals = {op.input.key: op for op in operations
              if op.client_id == FINAL_PROCESS and op.input.f == "get" and not op.unknown}
    last_return: dict[Any, float] = {}
    for op in operations:
        if not op.unknown and op is not finals.get(op.input.key):
            last_return[op.input.key] = max(last_return.get(op.input.key, 0), op.return_time)
    # The final read must be the last word on its key: every other definite op returned first.
    values = {key: _tokens(str(op.output or "")) for key, op in finals.items()
              if key in append_keys and key not in has_puts and last_return.get(key, 0) < op.call}
    kept, dropped = [], 0
    for op in operations:
        key = op.input.key
        if op.unknown and op.input.f == "append" and key in values and op.input.value not in values[key]:
            dropped += 1
            continue
        kept.append(op)
    return kept, dropped


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def peer_errors(run_dir: Path) -> dict[str, str]:
    """The contents of every `peer-N/peer-error.txt` (a peer that failed or could not start)."""
    found = {}
    for path in sorted(run_dir.glob("peer-*/peer-error.txt")):
        found[path.parent.name] = path.read_text(encoding="utf-8", errors="replace").strip()[:2000]
    return found


def check_run(run_dir: Path, check_timeout: float | None = None,
              allow_unknown: bool | None = None) -> tuple[dict[str, Any], int]:
    """(Re-)check a run directory: linearizability, durability, peer errors. Writes
    verdict.json and timeline.html; returns (verdict, exit code). Raises ChaosError if the
    directory holds no readable history."""
    history_path = run_dir / HISTORY_FILE
    if not history_path.exists():
        raise ChaosError(f"{run_dir} holds no {HISTORY_FILE} (is it a chaos run directory?)")
    try:
        options = json.loads((run_dir / OPTIONS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        options = {}
    if check_timeout is None:
        check_timeout = float(options.get("check_timeout", 120.0))
    if allow_unknown is None:
        allow_unknown = bool(options.get("allow_unknown", False))
    try:
        events = load_history(history_path)
        operations = events_to_operations(events)
    except (HistoryError, OSError) as exc:
        raise ChaosError(f"cannot read {history_path}: {exc}") from None
    final: dict[str, Any] | None = None
    try:
        final = json.loads((run_dir / FINAL_READS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        final = None
    append_keys = options.get("append_keys")
    put_keys = options.get("put_keys")
    if append_keys is None or put_keys is None:  # infer from the history
        put_keys = sorted({op.input.key for op in operations if op.input.f == "put"})
        append_keys = sorted({op.input.key for op in operations if op.input.f == "append"} - set(put_keys))

    model = MODELS["kv"]
    started = time.monotonic()
    checked, pruned = prune_unapplied_appends(operations, append_keys)
    result = check_operations(model, checked, check_timeout)
    checker_seconds = time.monotonic() - started
    durability = check_durability(operations, final, append_keys, put_keys)
    nemesis = _read_jsonl(run_dir / NEMESIS_FILE)
    try:
        final_status: list[dict[str, Any]] = json.loads((run_dir / FINAL_STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        final_status = []
    errors = peer_errors(run_dir)
    unexpected = sorted({p for r in nemesis if r.get("action") == "unexpected-exit" for p in r.get("peers", [])})

    client_events = [e for e in events if e.process != FINAL_PROCESS]
    outcomes = Counter(e.type.value for e in client_events if e.type is not EventType.INVOKE)
    invoked = sum(1 for e in client_events if e.type is EventType.INVOKE)
    linearizable = result.verdict.value
    problems = []
    if result.verdict is Verdict.ILLEGAL:
        problems.append("history is not linearizable")
    if result.verdict is Verdict.UNKNOWN and not allow_unknown:
        problems.append(f"linearizability UNKNOWN: the checker ran out of its {check_timeout:g} s budget")
    if not durability["ok"]:
        problems.append("acknowledged writes are missing from the final reads"
                        if durability["missing"] or durability["unread_keys"] else "final values are wrong")
    if errors:
        problems.append(f"peers reported errors: {', '.join(errors)}")
    if unexpected:
        problems.append(f"peers exited without being killed: {unexpected}")
    verdict: dict[str, Any] = {
        "valid": not problems,
        "linearizable": linearizable,
        "durability": durability,
        "ops": invoked,
        "outcomes": {"ok": outcomes.get("ok", 0), "fail": outcomes.get("fail", 0),
                     "info": outcomes.get("info", 0),
                     "open": invoked - sum(outcomes.values())},
        "faults": sum(1 for r in nemesis if r.get("action") == "start"),
        "seed": options.get("seed"),
        "checker_seconds": round(checker_seconds, 3),
        "checker_summary": result.summary(),
        "pruned_unapplied_appends": pruned,
        "illegal_keys": [p.label for p in result.with_verdict(Verdict.ILLEGAL)],
        "unknown_keys": [p.label for p in result.with_verdict(Verdict.UNKNOWN)],
        "peer_errors": errors,
        "unexpected_exits": unexpected,
        "problems": problems,
        "final_reads": bool(final),
        "max_snapshot_index": max((r.get("snapshot_index") or 0 for r in final_status), default=None),
    }
    if result.verdict is Verdict.UNKNOWN and allow_unknown:
        verdict["note"] = "UNKNOWN allowed by --allow-unknown: linearizability was NOT shown"
    (run_dir / VERDICT_FILE).write_text(json.dumps(verdict, indent=2) + "\n", encoding="utf-8")
    if result.verdict is Verdict.ILLEGAL:
        page = render_html(result, model, title=f"Chaos run {run_dir.name}: ILLEGAL", partitions="illegal")
    else:
        page = summary_page(run_dir, verdict, result, nemesis)
    (run_dir / TIMELINE_FILE).write_text(page, encoding="utf-8")
    return verdict, EXIT_CLEAN if verdict["valid"] else EXIT_VIOLATION


def summary_page(run_dir: Path, verdict: dict[str, Any], result: CheckResult,
                 nemesis: Sequence[dict[str, Any]]) -> str:
    """A self-contained HTML page for a run whose history has no illegal key."""
    esc = html.escape
    badge = "OK" if verdict["valid"] else "VIOLATION"
    color = "#1a7f37" if verdict["valid"] else "#cf222e"
    rows = "".join(
        f"<tr><td>{esc(p.label)}</td><td>{p.verdict.value}</td><td class=num>{len(p.operations)}</td>"
        f"<td class=num>{p.steps}</td><td class=num>{p.elapsed:.3f}</td></tr>"
        for p in result.partitions)
    faults = "".join(
        f"<tr><td class=num>{r.get('time_s', '')}</td><td>{esc(str(r.get('action', '')))}</td>"
        f"<td>{esc(str(r.get('kind', '')))}</td><td><code>{esc(json.dumps({k: v for k, v in r.items() if k not in ('time_s', 'ns', 'wall', 'action', 'kind')}))}</code></td></tr>"
        for r in nemesis)
    problems = "".join(f"<li>{esc(p)}</li>" for p in verdict["problems"]) or "<li>none</li>"
    durability = esc(json.dumps(verdict["durability"], indent=2)[:20000])
    command = f"<code>python -m orchestrator.checker {esc(str(run_dir / HISTORY_FILE))} --model kv --html OUT</code>"
    if verdict["linearizable"] == "UNKNOWN":
        note = (f"<b>UNKNOWN is not a pass.</b> The checker could not decide "
                f"{esc(', '.join(verdict['unknown_keys']))} within its budget; re-check with "
                f"<code>ruaft-cluster check {esc(str(run_dir))} --check-timeout 600</code>, or draw them with {command}.")
    else:
        note = f"No key's history is illegal, so there is no timeline to draw here; for one, run {command}."
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>Chaos run {esc(run_dir.name)}</title><style>"
        "body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1f2328}"
        "table{border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #d0d7de;"
        "padding:3px 10px 3px 0;text-align:left;vertical-align:top}td.num{text-align:right}"
        "pre{background:#f6f8fa;padding:8px;overflow:auto}</style></head><body>"
        f"<h1>Chaos run {esc(run_dir.name)} <span style='color:{color}'>{badge}</span></h1>"
        f"<p>Linearizable: <b>{verdict['linearizable']}</b> ({esc(verdict['checker_summary'])}). "
        f"Operations: {verdict['ops']} ({esc(json.dumps(verdict['outcomes']))}). "
        f"Faults: {verdict['faults']}. Seed: {verdict['seed']}.</p>"
        f"<h2>Problems</h2><ul>{problems}</ul>"
        f"<p>{note}</p>"
        f"<h2>Keys</h2><table><tr><th>key</th><th>verdict</th><th>ops</th><th>steps</th><th>seconds</th></tr>{rows}</table>"
        f"<h2>Durability</h2><pre>{durability}</pre>"
        f"<h2>Nemesis</h2><table><tr><th>s</th><th>action</th><th>kind</th><th>detail</th></tr>{faults}</table>"
        "</body></html>\n"
    )


# ==================================================================================== the run


class Progress:
    """The progress line on stderr: rich's bar when available, else a carriage-return line."""

    def __init__(self, duration: float, enabled: bool = True):
        self.duration = duration
        self.enabled = enabled
        self._rich: Any = None
        self._task: Any = None
        self._last_plain = 0.0
        if not enabled:
            return
        try:
            from rich.console import Console
            from rich.progress import BarColumn, Progress as RichProgress, TextColumn
        except ImportError:  # pragma: no cover - rich comes with typer
            return
        console = Console(stderr=True)
        self._rich = RichProgress(
            TextColumn("[bold]chaos[/bold]"), BarColumn(),
            TextColumn("{task.fields[elapsed]:>5.1f}/{task.total:.0f} s"),
            TextColumn("ops {task.fields[ops]}  ({task.fields[ok]} ok, {task.fields[fail]} fail, "
                       "{task.fields[info]} info)"),
            TextColumn("faults {task.fields[faults]}  {task.fields[active]}"),
            console=console, transient=False, refresh_per_second=4,
        )

    def __enter__(self) -> "Progress":
        if self._rich is not None:
            self._rich.start()
            self._task = self._rich.add_task("chaos", total=self.duration, elapsed=0.0, ops=0, ok=0,
                                             fail=0, info=0, faults=0, active="")
        return self

    def update(self, elapsed: float, tally: Tally, faults: int, active: str) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=min(elapsed, self.duration), elapsed=elapsed,
                              ops=tally.invoked, ok=tally.ok, fail=tally.fail, info=tally.info,
                              faults=faults, active=active)
        elif elapsed - self._last_plain >= 1.0:
            self._last_plain = elapsed
            sys.stderr.write(f"\rchaos {elapsed:5.1f}/{self.duration:.0f} s  ops {tally.invoked}  "
                             f"faults {faults}  {active:30}")
            sys.stderr.flush()

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif self.enabled:
            sys.stderr.write("\n")


def say(message: str) -> None:
    sys.stderr.write(f"chaos: {message}\n")
    sys.stderr.flush()


def prepare_run_dir(options: ChaosOptions) -> None:
    out = options.out
    if out.exists() and any(out.iterdir()):
        raise ChaosError(f"{out} exists and is not empty; pick another --out")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    (out / SEED_FILE).write_text(f"{options.seed}\n")
    (out / OPTIONS_FILE).write_text(json.dumps(options.to_json(), indent=2) + "\n")


def stop_all(cluster: LocalCluster, pids: set[int]) -> list[int]:
    """Stop every peer by pid: SIGCONT (a stopped process cannot act on SIGTERM), SIGTERM,
    SIGKILL after a few seconds; then make sure no pid this run started is still ours and
    alive. Returns pids that had to be SIGKILLed by the final sweep."""
    for peer in cluster.ids:
        cluster.send_signal(peer, signal.SIGCONT)
    for peer in cluster.ids:
        cluster.send_signal(peer, signal.SIGTERM)
    for peer in cluster.ids:
        try:
            cluster.stop(peer, signal.SIGTERM, timeout=5.0)
        except Exception:
            cluster.send_signal(peer, signal.SIGKILL)
    swept = []
    config = str(cluster.spec.path)
    for pid in sorted(pids):
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                process.wait(0)
                continue
            if config not in process.cmdline():
                continue
            process.kill()
            process.wait(5)
            swept.append(pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.TimeoutExpired, ChildProcessError):
            continue
    return swept


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """In the main thread, turn SIGTERM into KeyboardInterrupt so the cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _active(nemesis: Nemesis) -> str:
    return nemesis.active_summary()


def run_chaos(options: ChaosOptions, show_progress: bool = True) -> tuple[dict[str, Any] | None, int]:
    """Run a chaos test as described in the module docstring; returns (verdict, exit code).
    The verdict is None when the run could not be carried out (exit EXIT_NO_RUN).
    Raises ChaosError for bad options or an unusable run directory, KeyboardInterrupt
    (after cleaning up) when interrupted."""
    options.validate()
    prepare_run_dir(options)
    out = options.out.resolve()
    spec = new_spec(options.nodes, out, "127.0.0.1", None, options.maxraftstate)
    spec.write(out / CLUSTER_FILE_NAME)
    cluster = LocalCluster(spec)
    addresses = spec.client_addresses()
    append_keys, put_keys = key_sets(options.keys)
    steps = plan_schedule(options.seed, options.nodes, options.duration, options.nemesis)
    (out / "schedule.json").write_text(json.dumps([asdict(s) for s in steps], indent=1) + "\n")
    nemesis = Nemesis(cluster, out / NEMESIS_FILE, time.monotonic_ns())
    recorder = HistoryRecorder()
    tally = Tally()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    run_info: dict[str, Any] = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                "steps_planned": len(steps)}
    ran = False
    watchdog = start_watchdog(cluster)
    try:
        with sigterm_as_interrupt():
            for peer in cluster.ids:
                nemesis.start_peer(peer)
            leader = cluster.wait_leader(options.leader_timeout)
            if leader is None:
                say(f"no leader within {options.leader_timeout:g} s of starting; see {out}/peer-*/peer.log")
                return None, EXIT_NO_RUN
            say(f"{options.nodes} peers up in {out} (leader {leader}); {options.duration:g} s, "
                f"{options.clients} clients, nemesis {','.join(options.nemesis) or 'none'}, seed {options.seed}")
            nemesis.started_ns = time.monotonic_ns()
            nemesis.log(action="begin", leader=leader, pids={p: cluster.pid(p) for p in cluster.ids})
            begin = time.monotonic()
            deadline = begin + options.duration
            for index in range(options.clients):
                threads.append(threading.Thread(
                    target=client_loop, name=f"chaos-client-{index}", daemon=True,
                    args=(index, options, addresses, recorder, tally, stop, deadline)))
            threads.append(threading.Thread(target=nemesis.run, args=(steps, stop), name="chaos-nemesis",
                                            daemon=True))
            for thread in threads:
                thread.start()
            with Progress(options.duration, show_progress) as progress:
                while True:
                    elapsed = time.monotonic() - begin
                    progress.update(elapsed, tally, nemesis.faults_started, _active(nemesis))
                    if elapsed >= options.duration:
                        break
                    time.sleep(min(0.25, max(0.0, options.duration - elapsed)))
                stop.set()  # clients finish the call in hand (bounded by --op-timeout)
                join_deadline = time.monotonic() + options.op_timeout + 10.0
                while any(t.is_alive() for t in threads) and time.monotonic() < join_deadline:
                    time.sleep(0.1)
                progress.update(time.monotonic() - begin, tally, nemesis.faults_started, _active(nemesis))
            say(f"{tally.invoked} ops ({tally.ok} ok, {tally.fail} fail, {tally.info} info), "
                f"{nemesis.faults_started} faults; healing")
            unexpected = nemesis.heal_all()
            leader = cluster.wait_leader(options.leader_timeout)
            # Again, in case a rule update that timed out earlier was delivered late.
            nemesis.push_rules(patience=1.0)
            values, errors = final_reads(addresses, append_keys + put_keys, recorder, timeout=15.0)
            (out / FINAL_READS_FILE).write_text(json.dumps(
                {"leader": leader, "values": values, "errors": errors, "unexpected_exits": unexpected},
                indent=2) + "\n")
            say(f"final reads: {len(values)}/{len(append_keys) + len(put_keys)} keys (leader {leader})")
            (out / FINAL_STATUS_FILE).write_text(json.dumps([asdict(r) for r in cluster.status()], indent=2) + "\n")
            ran = True
    finally:
        stop.set()
        _join(threads, options.op_timeout + 10.0)
        swept = stop_all(cluster, nemesis.pids)
        stop_watchdog(watchdog)
        nemesis.log(action="stopped", swept=swept)
        nemesis.close()
        recorder.write_jsonl(out / HISTORY_FILE)
        run_info.update(ended=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        client_errors=tally.errors, nemesis_errors=nemesis.errors, swept_pids=swept,
                        completed=ran)
        (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
    for problem in nemesis.errors + tally.errors:
        say(f"warning: {problem}")
    say(f"checking {len(recorder)} events (budget {options.check_timeout:g} s)")
    return check_run(out, options.check_timeout, options.allow_unknown)


def _join(threads: Sequence[threading.Thread], budget: float) -> None:
    deadline = time.monotonic() + budget
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def describe_verdict(verdict: dict[str, Any], run_dir: Path) -> str:
    """The lines `chaos` and `check` print."""
    d = verdict["durability"]
    lines = [
        f"linearizable: {verdict['linearizable']}  ({verdict['checker_summary']})",
        f"durability: {'OK' if d['ok'] else 'VIOLATED'}  ({d['acknowledged_writes']} acknowledged writes; "
        f"{len(d['missing'])} missing, {len(d['duplicated'])} duplicated, {len(d['phantom'])} phantom, "
        f"{len(d['reordered'])} reordered, unread keys {d['unread_keys'] or 'none'})",
        f"ops: {verdict['ops']} {verdict['outcomes']}  faults: {verdict['faults']}  seed: {verdict['seed']}  "
        f"checker: {verdict['checker_seconds']:.1f} s",
    ]
    if verdict["linearizable"] == "UNKNOWN":
        lines.append("!!! UNKNOWN: the checker could not decide in its budget — this is NOT a pass "
                     f"(keys: {', '.join(verdict['unknown_keys'][:10])})")
    for problem in verdict["problems"]:
        lines.append(f"VIOLATION: {problem}")
    lines.append(f"verdict: {'CLEAN' if verdict['valid'] else 'VIOLATION'}  "
                 f"({run_dir / VERDICT_FILE}, {run_dir / TIMELINE_FILE})")
    return "\n".join(lines)


# ==================================================================================== watchdog


def start_watchdog(cluster: LocalCluster) -> subprocess.Popen[bytes] | None:
    """A small process that SIGKILLs the run's peers if this process dies without cleaning
    up (SIGKILL, a crash): the peers run in sessions of their own, so nothing else would."""
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator.chaos", "watchdog", str(os.getpid()), str(cluster.spec.path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
    except OSError:
        return None


def stop_watchdog(watchdog: subprocess.Popen[bytes] | None) -> None:
    if watchdog is None:
        return
    watchdog.terminate()
    try:
        watchdog.wait(5)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait(5)


def watchdog_main(parent: int, cluster_file: str, max_hours: float = 48.0) -> int:
    """Wait (bounded) for `parent` to go away, then SIGKILL every peer of `cluster_file`
    still running (matched by pid file AND command line, so a recycled pid is left alone)."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for _ in range(int(max_hours * 3600 / 0.5)):
        if os.getppid() != parent:
            break
        time.sleep(0.5)
    else:
        return 0
    from kv.clusterfile import load

    cluster = LocalCluster(load(cluster_file))
    for peer in cluster.ids:
        cluster.send_signal(peer, signal.SIGCONT)
        cluster.send_signal(peer, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "watchdog":
        sys.exit(watchdog_main(int(sys.argv[2]), sys.argv[3]))
    sys.exit("usage: python -m orchestrator.chaos watchdog PARENT_PID CLUSTER_FILE "
             "(internal; run chaos with `ruaft-cluster chaos`)")
