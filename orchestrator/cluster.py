"""The test harness of TESTS.md §1: a cluster of real peer processes under our control.

`Cluster` plays the part of the course's simulated network and test `config`: it spawns
each peer as its own OS process (`python -m orchestrator.peer`) with its own LMDB data dir,
SIGKILLs and restarts them, cuts and heals directed links through each peer's fault injector,
and reads peers' state and applied-entry streams over their control endpoints.

No child outlives the harness: children get PR_SET_PDEATHSIG (they die with the test
process, even on SIGKILL), and `cleanup()` kills and reaps every one of them by PID.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from transport_zmq.rpc import RpcClient, RpcError
from transport_zmq.transport import free_tcp_ports

ELECTION_TIMEOUT = 1.0
"""TESTS.md's `ET` unit (seconds)."""

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Run in the child before exec: SIGKILL us when the orchestrator dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class ClusterFailure(AssertionError):
    """A check of the harness failed (the test fails with this message)."""


@dataclass
class PeerProcess:
    """One incarnation of peer `peer_id`."""

    peer_id: int
    process: subprocess.Popen[bytes]
    client: RpcClient
    lock: threading.Lock = field(default_factory=threading.Lock)
    ready: bool = False
    ping_id: int | None = None
    applied_cursor: int = 0
    started_at: float = field(default_factory=time.monotonic)
    closed: bool = False
    """Set (under `lock`) when the process is killed and its control client closed."""

    @property
    def pid(self) -> int:
        return self.process.pid


class Cluster:
    """n peer processes, all connected at start (TESTS.md §1). Thread-safe for the calls
    tests make from several threads (`start`, `one`, `get_state`, `n_committed`)."""

    def __init__(
        self,
        n: int,
        unreliable: bool = False,
        snapshot: bool = False,
        *,
        base_dir: Path,
        peer_module: str = "orchestrator.peer",
        extra_args: Sequence[str] = (),
        tick_ms: float = 10.0,
        seed: int | None = None,
        start_gate: bool | None = None,
    ):
        self.n = n
        self.snapshot = snapshot
        self.base_dir = Path(base_dir)
        self.peer_module = peer_module
        self.extra_args = list(extra_args)
        self.tick_ms = tick_ms
        self.rng = random.Random(seed)
        ports = free_tcp_ports(2 * n)
        self.addresses = {i: f"tcp://127.0.0.1:{ports[i]}" for i in range(n)}
        self.control_addresses = {i: f"tcp://127.0.0.1:{ports[n + i]}" for i in range(n)}
        self.cluster_id = f"test-{os.getpid()}-{ports[0]}"
        self.peers: dict[int, PeerProcess | None] = {i: None for i in range(n)}
        self.connected = [False] * n
        self._disabled: set[tuple[int, int]] = {(a, b) for a in range(n) for b in range(n) if a != b}
        self.unreliable = unreliable
        self.long_reordering = False
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._last_refresh_started = float("-inf")
        self.applied: dict[int, dict[int, Any]] = {i: {} for i in range(n)}
        self.errors: list[str] = []
        self._dead_stats: dict[int, dict[str, int]] = {i: {"rpcs": 0, "bytes": 0} for i in range(n)}
        # The start gate (`--hold` / `go`, orchestrator.peer only): every peer comes up with
        # Raft stopped, the links are enabled, and then all start Raft within one tick, as
        # the original's make_config creates all its peers at once. Without it the first
        # process to come up would campaign (and count RPCs) for as long as the last one
        # takes to start. See `_go_all` for why "within one tick" rather than "at once".
        self.start_gate = (peer_module == "orchestrator.peer") if start_gate is None else start_gate
        self.t0 = time.monotonic()
        try:
            for i in range(n):
                self._spawn(i, hold=self.start_gate)
            self._wait_ready(range(n), timeout=30.0)
            with self._lock:
                for i in range(n):
                    self._set_connected(i, True, push=False)
                self._push_rules()
            if self.start_gate:
                self._go_all()
            self.t0 = time.monotonic()
        except BaseException:
            self.cleanup(check=False)
            raise

    # ================================================================ processes

    def data_dir(self, i: int) -> Path:
        return self.base_dir / f"peer-{i}"

    def log_files(self) -> list[Path]:
        return [self.data_dir(i) / "peer.log" for i in range(self.n)]

    def peer_args(self, i: int) -> list[str]:
        """Arguments particular to the peer program (subclasses add theirs)."""
        return ["--snapshot"] if self.snapshot else []

    def _rules_for(self, i: int) -> dict[str, Any]:
        return {
            "disabled_links": sorted([a, b] for a, b in self._disabled if i in (a, b)),
            "unreliable": self.unreliable,
            "long_reordering": self.long_reordering,
            "long_delays": True,
        }

    def _go_all(self) -> None:
        """Start Raft on every (held) peer, in random order, each after a pause drawn
        uniformly from one tick. Peer processes started independently have independent
        tick phases; releasing them in the same millisecond would line their tick clocks up,
        so that two peers drawing the same election timeout (in whole ticks) would campaign
        in the same millisecond every time -- a split vote no real deployment sees that
        often. The Go original's timers, by contrast, are not quantized."""
        order = list(range(self.n))
        self.rng.shuffle(order)
        for k, i in enumerate(order):
            if k:
                time.sleep(self.rng.uniform(0.0, self.tick_ms / 1000.0))
            if self._call(i, "go", timeout=10.0) is None:
                raise ClusterFailure(f"peer {i} did not start Raft")

    def start1(self, i: int) -> None:
        """Start a new process for peer i on its data dir (SIGKILLing a running one first).
        Its links stay disconnected until `connect(i)`. Does not wait for it to come up.
        Call it from the test's main thread: a child is SIGKILLed when the thread that
        started it exits (PR_SET_PDEATHSIG)."""
        self._spawn(i, hold=False)

    def _spawn(self, i: int, hold: bool) -> None:
        with self._lock:
            if self.peers[i] is not None:
                self.crash1(i)
            self._set_connected(i, False, push=True)
            args = [
                sys.executable, "-m", self.peer_module,
                "--id", str(i),
                "--data-dir", str(self.data_dir(i)),
                "--control", self.control_addresses[i],
                "--cluster-id", self.cluster_id,
                "--faults", json.dumps(self._rules_for(i)),
                "--seed", str(self.rng.randrange(1 << 30)),
                "--tick-ms", str(self.tick_ms),
                *self.extra_args,
            ]
            for peer_id, address in self.addresses.items():
                args += ["--peer", f"{peer_id}={address}"]
            args += self.peer_args(i)
            if hold:
                args.append("--hold")
            self.data_dir(i).mkdir(parents=True, exist_ok=True)
            stderr = open(self.data_dir(i) / "stderr.txt", "ab")
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=stderr,
                                       stderr=stderr, preexec_fn=_die_with_parent)
            stderr.close()
            self.peers[i] = PeerProcess(i, process, RpcClient(self.control_addresses[i]))
            self.applied[i] = {}

    def crash1(self, i: int) -> None:
        """SIGKILL peer i and wait until its pid is gone; its data dir stays."""
        with self._lock:
            self._set_connected(i, False, push=True)
            peer = self.peers[i]
            if peer is None:
                return
            stats = self._stats(i)
            if stats:
                self._dead_stats[i]["rpcs"] += stats["rpcs"]
                self._dead_stats[i]["bytes"] += stats["bytes"]
            self._check_exit(peer)
            self._kill(peer)
            self.peers[i] = None

    def _kill(self, peer: PeerProcess) -> None:
        """SIGKILL and reap `peer`, then close its control client under its lock, so that a
        thread that picked up this incarnation before the crash sees it closed."""
        peer.process.kill()
        peer.process.wait()
        with peer.lock:
            peer.closed = True
            peer.client.close()

    def _check_exit(self, peer: PeerProcess) -> None:
        code = peer.process.poll()
        if code is not None and code != 0:
            error_file = self.data_dir(peer.peer_id) / "peer-error.txt"
            detail = error_file.read_text().strip() if error_file.exists() else "no error file"
            self.errors.append(f"peer {peer.peer_id} (pid {peer.pid}) exited {code}: {detail}")

    def cleanup(self, check: bool = True) -> None:
        """Stop every peer. With `check`, fail if any peer recorded an error or died on its
        own (the original's kill() panics)."""
        with self._lock:
            if check:
                for i in range(self.n):
                    if self.peers[i] is not None:
                        self._refresh_applied(i)
            for i in range(self.n):
                peer = self.peers[i]
                if peer is None:
                    continue
                self._check_exit(peer)
                self._kill(peer)
                self.peers[i] = None
        if check and self.errors:
            raise ClusterFailure("peers reported errors:\n  " + "\n  ".join(self.errors))

    # ================================================================ links

    def _set_connected(self, i: int, connected: bool, push: bool) -> None:
        self.connected[i] = connected
        for j in range(self.n):
            if j == i:
                continue
            if connected and self.connected[j]:
                self._disabled.discard((i, j))
                self._disabled.discard((j, i))
            elif not connected:
                self._disabled.add((i, j))
                self._disabled.add((j, i))
        if push:
            self._push_rules()

    def connect(self, i: int) -> None:
        """Enable i's links to and from every connected peer."""
        with self._lock:
            self._set_connected(i, True, push=True)

    def disconnect(self, i: int) -> None:
        """Disable i's links to and from every peer."""
        with self._lock:
            self._set_connected(i, False, push=True)

    def connect_pair(self, a: int, b: int) -> None:
        with self._lock:
            self._disabled.discard((a, b))
            self._disabled.discard((b, a))
            self._push_rules()

    def disconnect_pair(self, a: int, b: int) -> None:
        with self._lock:
            self._disabled.add((a, b))
            self._disabled.add((b, a))
            self._push_rules()

    def set_unreliable(self, unreliable: bool) -> None:
        with self._lock:
            self.unreliable = unreliable
            self._push_rules()

    def set_long_reordering(self, long_reordering: bool) -> None:
        with self._lock:
            self.long_reordering = long_reordering
            self._push_rules()

    def _push_rules(self) -> None:
        """Send every live peer its rules. Peers that are up are waited for (so the new rules
        are in force when this returns); a peer still starting gets them queued on its
        control socket, which it reads once up (it also started with the rules of the moment
        in --faults, so it never runs with links it should not have). Restarts stay
        non-blocking."""
        live = [i for i in range(self.n) if self.peers[i] is not None]
        self._call_many(live, "set_faults", lambda i: {"rules": self._rules_for(i)},
                        timeout=10.0, require_ready=False, wait_unready=False)

    # ================================================================ control calls

    def _live_connected(self) -> list[int]:
        return [i for i in range(self.n) if self.connected[i] and self.peers[i] is not None]

    def _is_ready(self, peer: PeerProcess) -> bool:
        if peer.ready:
            return True
        if peer.ping_id is None:
            peer.ping_id = peer.client.send("ping")
        try:
            peer.client.receive(peer.ping_id, timeout=0.001)
        except TimeoutError:
            return False
        peer.ready = True
        return True

    def _wait_ready(self, peers: Sequence[int] | range, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for i in peers:
            peer = self.peers[i]
            while peer is not None:
                with peer.lock:
                    if self._is_ready(peer):
                        break
                self._check_exit(peer)
                if peer.process.poll() is not None:
                    raise ClusterFailure(f"peer {i} died at start-up: {self.errors[-1:]}")
                if time.monotonic() > deadline:
                    raise ClusterFailure(f"peer {i} did not come up within {timeout}s")
                time.sleep(0.02)

    def _call_many(
        self,
        peers: Sequence[int],
        op: str,
        fields: Callable[[int], dict[str, Any]] | None = None,
        timeout: float = 3.0,
        require_ready: bool = True,
        wait_unready: bool = True,
    ) -> dict[int, dict[str, Any]]:
        """Ask several peers at once; returns the replies that came in time. A peer that is
        still starting (with `require_ready`), dead or silent is left out. Without
        `require_ready` a peer still starting is sent the request too; with `wait_unready`
        False its reply is not waited for (the request stays queued until it is up)."""
        sent: dict[int, tuple[PeerProcess, int]] = {}
        replies: dict[int, dict[str, Any]] = {}
        locked: list[PeerProcess] = []
        try:
            for i in peers:
                peer = self.peers[i]
                if peer is None:
                    continue
                peer.lock.acquire()
                locked.append(peer)
                if peer.closed:
                    continue
                ready = self._is_ready(peer)
                if require_ready and not ready:
                    continue
                request_id = peer.client.send(op, **(fields(i) if fields else {}))
                if ready or wait_unready:
                    sent[i] = (peer, request_id)
            deadline = time.monotonic() + timeout
            for i, (peer, request_id) in sent.items():
                try:
                    replies[i] = peer.client.receive(request_id, max(0.001, deadline - time.monotonic()))
                except (TimeoutError, RpcError):
                    continue
        finally:
            for peer in locked:
                peer.lock.release()
        return replies

    def _call(self, i: int, op: str, timeout: float = 3.0, **fields: Any) -> dict[str, Any] | None:
        return self._call_many([i], op, (lambda _: fields), timeout).get(i)

    def get_state(self, i: int) -> tuple[int, bool]:
        """(term, is_leader) of peer i; (0, False) if it does not answer."""
        reply = self._call(i, "get_state")
        return (reply["term"], reply["is_leader"]) if reply else (0, False)

    def start(self, i: int, command: Any) -> tuple[int, int, bool]:
        """`start(command)` on peer i: (index, term, is_leader)."""
        reply = self._call(i, "start", command=command)
        if not reply or reply["index"] is None:
            return (-1, -1, False)
        return (reply["index"], reply["term"], True)

    def _stats(self, i: int) -> dict[str, int] | None:
        reply = self._call(i, "stats", timeout=3.0)
        if reply is None:
            return None
        transport = reply["transport"]
        faults = transport.get("faults", transport)
        return {"rpcs": int(faults.get("rpcs", 0)), "bytes": int(faults.get("bytes", 0))}

    def stats(self, i: int) -> dict[str, Any] | None:
        """Peer i's raw `stats` reply (transport counters with the fault injector's, the
        core's drop counters, the control endpoint's counters); None if it does not answer."""
        return self._call(i, "stats")

    def rpc_count(self, i: int) -> int:
        stats = self._stats(i)
        return self._dead_stats[i]["rpcs"] + (stats["rpcs"] if stats else 0)

    def rpc_total(self) -> int:
        return sum(self.rpc_count(i) for i in range(self.n))

    def bytes_total(self) -> int:
        total = 0
        for i in range(self.n):
            stats = self._stats(i)
            total += self._dead_stats[i]["bytes"] + (stats["bytes"] if stats else 0)
        return total

    def log_size(self, i: int) -> int:
        reply = self._call(i, "log_size")
        if reply is None:
            raise ClusterFailure(f"peer {i} did not report its log size")
        return int(reply["bytes"])

    def snapshot_size(self, i: int) -> int:
        reply = self._call(i, "snapshot_size")
        if reply is None:
            raise ClusterFailure(f"peer {i} did not report its snapshot size")
        return int(reply["bytes"])

    # ================================================================ checks

    def check_one_leader(self) -> int:
        for _ in range(10):
            time.sleep(self.rng.uniform(0.45, 0.55))
            leaders: dict[int, list[int]] = {}
            states = self._call_many(self._live_connected(), "get_state")
            for i, reply in states.items():
                if reply["is_leader"]:
                    leaders.setdefault(reply["term"], []).append(i)
            for term, in_term in leaders.items():
                if len(in_term) > 1:
                    raise ClusterFailure(f"term {term} has {len(in_term)} (>1) leaders: {in_term}")
            if leaders:
                return leaders[max(leaders)][0]
        raise ClusterFailure("expected one leader, got none")

    def check_terms(self) -> int:
        terms = {reply["term"] for reply in self._call_many(self._live_connected(), "get_state").values()}
        if len(terms) != 1:
            raise ClusterFailure(f"servers disagree on term: {sorted(terms)}")
        term = terms.pop()
        if term < 1:
            raise ClusterFailure(f"term is {term}, expected >= 1")
        return term

    def check_no_leader(self) -> None:
        for i, reply in self._call_many(self._live_connected(), "get_state").items():
            if reply["is_leader"]:
                raise ClusterFailure(f"expected no leader among connected servers, but {i} claims")

    def _refresh_applied(self, i: int) -> None:
        peer = self.peers[i]
        if peer is None:
            return
        reply = self._call(i, "applied", since=peer.applied_cursor)
        if reply is None:
            return
        self._absorb(i, peer, reply)

    def _absorb(self, i: int, peer: PeerProcess, reply: dict[str, Any]) -> None:
        record = self.applied[i]
        for index, command in reply["events"]:
            if index in record and record[index] != command:
                self.errors.append(f"peer {i} applied {command!r} at {index} after {record[index]!r}")
            record[index] = command
        peer.applied_cursor += len(reply["events"])
        for error in reply["errors"]:
            message = f"peer {i}: {error}"
            if message not in self.errors:
                self.errors.append(message)

    def _refresh_all_applied(self) -> None:
        """Fetch what every live peer applied since the last fetch. Concurrent callers share
        fetches: a caller is served by any fetch that began after it asked (so what it
        sees is at least as fresh as its call), which keeps many threads polling
        `n_committed` (UnreliableAgree, Churn) from queueing one fetch each."""
        asked_at = time.monotonic()
        with self._refresh_lock:
            if self._last_refresh_started >= asked_at:
                return
            self._last_refresh_started = time.monotonic()
            with self._lock:
                live = [i for i in range(self.n) if self.peers[i] is not None]
                replies = self._call_many(
                    live, "applied", lambda i: {"since": self.peers[i].applied_cursor})  # type: ignore[union-attr]
                for i, reply in replies.items():
                    peer = self.peers[i]
                    if peer is not None:
                        self._absorb(i, peer, reply)

    def n_committed(self, index: int) -> tuple[int, Any]:
        """How many peers applied `index`, and the command there; fails if two peers applied
        different commands at `index` or any peer reported an apply error."""
        self._refresh_all_applied()
        with self._lock:
            if self.errors:
                raise ClusterFailure("; ".join(self.errors))
            count, command = 0, None
            for i in range(self.n):
                if index in self.applied[i]:
                    value = self.applied[i][index]
                    if count > 0 and value != command:
                        raise ClusterFailure(
                            f"committed values do not match: index {index}, {command!r}, {value!r}")
                    count, command = count + 1, value
            return count, command

    def one(self, command: Any, expected_servers: int, retry: bool) -> int:
        """Agree on `command` (TESTS.md §1): within 10 s some connected peer accepts it, and
        within 2 s of that `expected_servers` peers applied it at that index."""
        t0 = time.monotonic()
        starts = 0
        while time.monotonic() - t0 < 10.0:
            index = -1
            for _ in range(self.n):
                starts = (starts + 1) % self.n
                if self.connected[starts] and self.peers[starts] is not None:
                    index1, _, ok = self.start(starts, command)
                    if ok:
                        index = index1
                        break
            if index != -1:
                t1 = time.monotonic()
                while time.monotonic() - t1 < 2.0:
                    count, value = self.n_committed(index)
                    if count > 0 and count >= expected_servers and value == command:
                        return index
                    time.sleep(0.02)
                if not retry:
                    raise ClusterFailure(f"one({command!r}) failed to reach agreement")
            else:
                time.sleep(0.05)
        raise ClusterFailure(f"one({command!r}) failed to reach agreement")

    def wait(self, index: int, n: int, start_term: int) -> Any:
        """Wait for `n` peers to commit `index`; None early if a term passed `start_term`."""
        to = 0.01
        for _ in range(30):
            count, _ = self.n_committed(index)
            if count >= n:
                break
            time.sleep(to)
            if to < 1.0:
                to *= 2
            if start_term > -1:
                states = self._call_many([i for i in range(self.n) if self.peers[i]], "get_state")
                if any(reply["term"] > start_term for reply in states.values()):
                    return None
        count, command = self.n_committed(index)
        if count < n:
            raise ClusterFailure(f"only {count} decided for index {index}; wanted {n}")
        return command

    def elapsed(self) -> float:
        return time.monotonic() - self.t0
