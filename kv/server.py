"""The KV server: the composition root of a KV peer process.

    python -m kv --id 0 --peer 0=tcp://127.0.0.1:7000 --peer 1=... \
        --client-listen tcp://127.0.0.1:7200 --data-dir DIR [--maxraftstate BYTES] \
        [--control tcp://127.0.0.1:7100]   # test mode: control endpoint + fault injector

Writes (put, append) go through the Raft log and are answered once applied. Reads (get)
are linearizable through ReadIndex (thesis §6.4): no log write, answered once the state
machine has applied the confirmed read index. A non-leader answers `wrong_leader` with the
leader's id as a hint. Errors are definite (`wrong_leader`, `bad_request`, `too_large`:
nothing happened) or, on the client's side, indefinite (no answer in time: the write may
or may not have happened). The requests of one drain of the client socket are handled as a
batch: its writes are one Raft proposal and its gets share one ReadIndex round.

Locking: the server's lock is always taken before the runtime's (the apply thread holds
ours while it calls `raft.snapshot`; request handlers hold ours while they call
`raft.start_many`), and the runtime never calls back into us while holding its own.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ruaft import CommandApplied, NotLeaderError, Raft, RaftStoppedError, RuntimeConfig, SnapshotApplied
from ruaft.logsetup import configure_peer_logging
from ruaft.storage import LmdbStorage
from transport_zmq.auth import CurveAuthenticator, CurveKeyPair, CurveServer
from transport_zmq.codec import RaftCodec
from transport_zmq.control import ControlEndpoint
from transport_zmq.faults import FaultInjector
from transport_zmq.rpc import RpcServer
from transport_zmq.transport import ZmqTransport
from kv.state_machine import WRITE_OPS, KVCommand, KVStateMachine

log = logging.getLogger("ruaft.kv")

MAX_KEY_BYTES = 1 << 10
MAX_VALUE_BYTES = 1 << 20
PENDING_TIMEOUT = 60.0
"""Requests not answered within this many seconds are forgotten (their client gave up)."""


@dataclass(slots=True)
class _PendingWrite:
    identity: bytes
    request_id: int
    client_id: str
    seq: int
    since: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class KVServerConfig:
    """Everything a KV peer needs to start."""

    me: int
    raft_addresses: Mapping[int, str]
    client_address: str
    data_dir: Path
    cluster_id: str = "ruaft"
    max_raft_state: int | None = None
    control_address: str | None = None
    """Test mode: serve the control endpoint and carry a fault injector."""
    initial_faults: Mapping[str, Any] | None = None
    tick_seconds: float = 0.01
    seed: int | None = None
    key_pair: CurveKeyPair | None = None
    """This peer's CURVE key pair: with it, every socket admits only known keys."""
    peer_keys: Mapping[int, bytes] | None = None
    """Every peer's public key (required with `key_pair`)."""
    client_keys: frozenset[bytes] = frozenset()
    """Public keys admitted on the client port (with `key_pair`)."""
    operator_keys: frozenset[bytes] = frozenset()
    """Public keys admitted on the control port, and on the client port too."""


def _error(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error_kind": kind, "error": message, **extra}


class KVServer:
    """One KV peer: LMDB storage, ZeroMQ transport, Raft runtime, state machine, and the
    client endpoint (plus the control endpoint in test mode). `close()` stops it all."""

    def __init__(self, config: KVServerConfig):
        self.config = config
        self.me = config.me
        self._lock = threading.Lock()
        self._sm = KVStateMachine()
        self._pending_writes: dict[int, list[_PendingWrite]] = {}
        # Batches of gets (identity, request id, key) waiting for the state machine to reach
        # their read index: a heap by read index.
        self._pending_reads: list[tuple[int, int, list[tuple[bytes, int, str]]]] = []
        self._read_seq = 0
        self.counters: dict[str, int] = {"puts": 0, "appends": 0, "gets": 0, "duplicates": 0,
                                         "bad_requests": 0, "wrong_leader": 0, "storage_full": 0}
        self.errors: list[str] = []
        test_mode = config.control_address is not None
        self.faults = FaultInjector(seed=config.seed) if test_mode else None
        if self.faults is not None and config.initial_faults:
            self.faults.apply(config.initial_faults)
        # Keys: one ZeroMQ context for all this peer's sockets, whose ZAP handler checks
        # every connecting key. Without keys nothing of this exists (no thread, no ZAP).
        self.authenticator: CurveAuthenticator | None = None
        raft_curve = client_curve = control_curve = None
        if config.key_pair is not None:
            peer_keys = dict(config.peer_keys or {})
            if not set(config.raft_addresses) <= set(peer_keys):
                raise ValueError("key_pair needs peer_keys with every peer's public key")
            self.authenticator = CurveAuthenticator(logger=logging.getLogger("ruaft.auth"))
            raft_curve = CurveServer(self.authenticator, config.key_pair,
                                     {key: f"peer-{p}" for p, key in peer_keys.items()})
            operators = {key: f"operator-{i}" for i, key in enumerate(sorted(config.operator_keys))}
            client_curve = CurveServer(self.authenticator, config.key_pair, {
                **{key: f"client-{i}" for i, key in enumerate(sorted(config.client_keys))},
                **operators})
            control_curve = CurveServer(self.authenticator, config.key_pair, operators)
        try:
            storage = LmdbStorage(config.data_dir / "raft", cluster_id=config.cluster_id)
        except BaseException:
            if self.authenticator is not None:
                self.authenticator.close()
            raise
        try:
            codec = RaftCodec(config.cluster_id, config.raft_addresses.keys(), max_frame_bytes=64 << 20)
            self.transport = ZmqTransport(config.me, config.raft_addresses, codec=codec,
                                          faults=self.faults, curve=raft_curve,
                                          peer_keys=config.peer_keys)
        except BaseException:
            storage.close()
            if self.authenticator is not None:
                self.authenticator.close()
            raise
        runtime = RuntimeConfig(tick_seconds=config.tick_seconds,
                                max_raft_state=config.max_raft_state, seed=config.seed)
        # The runtime's threads start inside Raft(): its apply thread may ask for a snapshot
        # (a restart with a log already past max_raft_state) before `self.raft` is assigned.
        self._raft_assigned = threading.Event()
        self.raft = Raft(sorted(config.raft_addresses), config.me, storage, self._apply,
                         self._snapshot_requested, runtime, transport=self.transport)
        self._raft_assigned.set()
        self.clients = RpcServer(config.client_address, self._handle_client, name="kv",
                                 batch_handler=self._handle_batch, curve=client_curve)
        self.control = (
            ControlEndpoint(config.control_address, self.raft, self.transport, self.faults,
                            stats=lambda: {"kv": dict(self.counters),
                                           "clients": dict(self.clients.counters),
                                           "auth": self.auth_stats()},
                            curve=control_curve)
            if config.control_address else None
        )
        if config.control_address is None:
            log.info("peer %d: control endpoint disabled (production start)", self.me)
        if self.authenticator is not None:
            log.info("peer %d: CURVE authentication on: %d peer, %d client, %d operator keys",
                     self.me, len(config.peer_keys or {}), len(config.client_keys),
                     len(config.operator_keys))

    def auth_stats(self) -> dict[str, dict[str, int]] | None:
        """Per listening socket ("raft", "kv" for clients, "control"): connections accepted and
        refused (by key, by handshake); None without keys."""
        return self.authenticator.stats() if self.authenticator is not None else None

    # ================================================================ client requests

    def _handle_client(self, identity: bytes, request: Mapping[str, Any]) -> dict[str, Any] | None:
        """One request on its own: a batch of one."""
        return self._handle_batch([(identity, request)])[0]

    def _handle_batch(self, batch: Sequence[tuple[bytes, Mapping[str, Any]]]) -> list[dict[str, Any] | None]:
        """The well-formed requests of one client-socket drain, in arrival order; one reply
        (None: answered later) per request. All writes of the batch become ONE Raft proposal
        (`start_many`: one lock, one event-loop wake-up, one AppendEntries round for the
        lot) and all gets share ONE ReadIndex round (thesis §6.4). Every request of a batch
        arrived before any of them was answered, so they are concurrent and any order
        among them is linearizable; writes are proposed first, in arrival order."""
        replies: list[dict[str, Any] | None] = [None] * len(batch)
        writes: list[tuple[int, bytes, int, KVCommand]] = []
        gets: list[tuple[bytes, int, str]] = []
        for position, (identity, request) in enumerate(batch):
            op = request["op"]
            if op in WRITE_OPS:
                command = self._parse_write(op, request)
                if isinstance(command, dict):
                    replies[position] = command
                else:
                    writes.append((position, identity, request["id"], command))
            elif op == "get":
                key = self._validate_key(request)
                if isinstance(key, dict):
                    replies[position] = key
                else:
                    gets.append((identity, request["id"], key))
            else:
                replies[position] = self._handle_other(request)
        if writes:
            self._propose_writes(writes, replies)
        if gets:
            self._request_reads(gets)
        return replies

    def _handle_other(self, request: Mapping[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "status":
            status = self.raft.status()
            return {"ok": True, "peer_id": self.me, "role": status.role.value, "term": status.term,
                    "leader_id": status.leader_id, "commit_index": status.commit_index,
                    "applied_index": status.applied_index, "last_index": status.last_index,
                    "snapshot_index": status.snapshot_index, "state_bytes": status.state_bytes,
                    "pid": os.getpid(), "auth": self.auth_stats()}
        self.counters["bad_requests"] += 1
        return _error("bad_request", f"unknown op {op!r}")

    def _validate_key(self, request: Mapping[str, Any]) -> str | dict[str, Any]:
        key = request.get("key")
        if not isinstance(key, str):
            self.counters["bad_requests"] += 1
            return _error("bad_request", "key must be a string")
        if len(key.encode()) > MAX_KEY_BYTES:
            self.counters["bad_requests"] += 1
            return _error("too_large", f"key longer than {MAX_KEY_BYTES} bytes")
        return key

    def _wrong_leader(self, requests: int = 1) -> dict[str, Any]:
        """The `wrong_leader` reply, counted once per request it answers."""
        self.counters["wrong_leader"] += requests
        return _error("wrong_leader", f"peer {self.me} is not the leader",
                      leader_hint=self.raft.status().leader_id)

    def _storage_unavailable(self, problem: str, requests: int = 1,
                             what: str = "writes") -> dict[str, Any]:
        """A definite refusal while this peer's disk is full: it could not make a write
        durable, nor confirm a read while its event loop waits for space, so it does neither
        (the client tries another peer). Counted once per request it answers."""
        self.counters["storage_full"] += requests
        return _error("unavailable", f"peer {self.me} cannot accept {what}: disk full "
                      f"({problem})",
                      leader_hint=self.raft.status().leader_id)

    def _parse_write(self, op: str, request: Mapping[str, Any]) -> KVCommand | dict[str, Any]:
        """The write's command, or the definite error reply for a malformed one."""
        key = self._validate_key(request)
        if isinstance(key, dict):
            return key
        value, client_id, seq = request.get("value"), request.get("client_id"), request.get("seq")
        if not isinstance(value, str) or not isinstance(client_id, str) or not client_id:
            self.counters["bad_requests"] += 1
            return _error("bad_request", "value and client_id must be strings")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            self.counters["bad_requests"] += 1
            return _error("bad_request", "seq must be a positive integer")
        if len(value.encode()) > MAX_VALUE_BYTES:
            self.counters["bad_requests"] += 1
            return _error("too_large", f"value longer than {MAX_VALUE_BYTES} bytes")
        return KVCommand(client_id, seq, op, key, value)

    def _propose_writes(self, writes: list[tuple[int, bytes, int, KVCommand]],
                        replies: list[dict[str, Any] | None]) -> None:
        """Propose the batch's writes as one `start_many`; fills `replies` for those answered
        now (already-applied duplicates, errors); the rest are answered by `_apply`. A
        request repeated inside the batch (same client and seq) is proposed once and every
        copy is answered when that entry applies."""
        with self._lock:
            commands: list[list[Any]] = []
            ops: list[str] = []
            offsets: dict[tuple[str, int], int] = {}
            waiting: list[tuple[int, int, _PendingWrite]] = []  # (offset, position, pending)
            for position, identity, request_id, command in writes:
                if self._sm.is_duplicate(command.client_id, command.seq):
                    # Already applied (a retry whose first reply was lost): answer from the table.
                    self.counters["duplicates"] += 1
                    replies[position] = {"ok": True}
                    continue
                session = (command.client_id, command.seq)
                offset = offsets.get(session)
                if offset is None:
                    offset = offsets[session] = len(commands)
                    commands.append(command.encode())
                    ops.append(command.op)
                else:
                    self.counters["duplicates"] += 1
                waiting.append((offset, position, _PendingWrite(identity, request_id,
                                                                command.client_id, command.seq)))
            if not commands:
                return
            problem = self.raft.storage_problem
            if problem is not None:
                full = self._storage_unavailable(problem, len(waiting))
                for _, position, _ in waiting:
                    replies[position] = full
                return
            try:
                started = self.raft.start_many(commands)
            except RaftStoppedError:
                stopping = _error("unavailable", "server is stopping")
                for _, position, _ in waiting:
                    replies[position] = stopping
                return
            if started is None:
                wrong = self._wrong_leader(len(waiting))
                for _, position, _ in waiting:
                    replies[position] = wrong
                return
            for op in ops:
                self.counters[op + "s"] += 1
            first = started[0]
            for offset, _, pending in waiting:
                self._pending_writes.setdefault(first + offset, []).append(pending)

    def _request_reads(self, gets: list[tuple[bytes, int, str]]) -> None:
        """One ReadIndex round for all the batch's gets; they are answered together once the
        state machine has applied the confirmed read index."""
        self.counters["gets"] += len(gets)
        problem = self.raft.storage_problem
        if problem is not None:
            full = self._storage_unavailable(problem, len(gets), "reads")
            for identity, request_id, _ in gets:
                self.clients.reply(identity, request_id, full)
            return
        try:
            future = self.raft.request_read()
        except RaftStoppedError:
            stopping = _error("unavailable", "server is stopping")
            for identity, request_id, _ in gets:
                self.clients.reply(identity, request_id, stopping)
            return

        def confirmed(done: Any) -> None:
            try:
                read_index = done.result()
            except NotLeaderError:
                wrong = self._wrong_leader(len(gets))
                for identity, request_id, _ in gets:
                    self.clients.reply(identity, request_id, wrong)
                return
            except RaftStoppedError:
                stopping = _error("unavailable", "server is stopping")
                for identity, request_id, _ in gets:
                    self.clients.reply(identity, request_id, stopping)
                return
            with self._lock:
                if self._sm.applied_index >= read_index:
                    self._answer_gets(gets)
                else:
                    self._read_seq += 1
                    heapq.heappush(self._pending_reads, (read_index, self._read_seq, gets))

        future.add_done_callback(confirmed)

    def _answer_gets(self, gets: list[tuple[bytes, int, str]]) -> None:
        for identity, request_id, key in gets:
            self.clients.reply(identity, request_id, {"ok": True, "value": self._sm.get(key)})

    # ================================================================ apply thread

    def _apply(self, msg: CommandApplied | SnapshotApplied) -> None:
        with self._lock:
            if isinstance(msg, SnapshotApplied):
                self._sm.restore(msg.data)
                self._sm.applied_index = msg.index
                for index in [i for i in self._pending_writes if i <= msg.index]:
                    self._answer_writes(index, None)
            else:
                result: Any = None
                command: KVCommand | None = None
                if msg.command is not None:  # None: a leader's no-op
                    command = KVCommand.decode(msg.command)
                    result = self._sm.apply(msg.index, command)
                else:
                    self._sm.applied_index = msg.index
                if msg.index in self._pending_writes:
                    self._answer_writes(msg.index, command, result)
            self._answer_reads()

    def _answer_writes(self, index: int, applied: KVCommand | None, result: Any = None) -> None:
        now = time.monotonic()
        for pending in self._pending_writes.pop(index, []):
            if applied is not None and (applied.client_id, applied.seq) == (pending.client_id, pending.seq):
                self.clients.reply(pending.identity, pending.request_id, {"ok": True, "result": result})
            elif self._sm.is_duplicate(pending.client_id, pending.seq):
                self.clients.reply(pending.identity, pending.request_id, {"ok": True})
            else:
                # Another entry took this index: our proposal was lost with a leadership change.
                self.clients.reply(pending.identity, pending.request_id, self._wrong_leader())
        if len(self._pending_writes) > 10_000:
            stale = [i for i, ws in self._pending_writes.items()
                     if all(now - w.since > PENDING_TIMEOUT for w in ws)]
            for i in stale:
                del self._pending_writes[i]

    def _answer_reads(self) -> None:
        while self._pending_reads and self._pending_reads[0][0] <= self._sm.applied_index:
            self._answer_gets(heapq.heappop(self._pending_reads)[2])

    def _snapshot_requested(self, applied_index: int) -> None:
        self._raft_assigned.wait()
        with self._lock:
            index = self._sm.applied_index
            data = self._sm.snapshot()
            self.raft.snapshot(index, data)

    # ================================================================ lifecycle

    def close(self, graceful: bool = True) -> None:
        """Stop serving, stop Raft (re-raising any error it recorded). Gracefully, a leader
        first hands leadership to its most up-to-date follower (thesis §3.10), so clients
        wait for one leadership transfer instead of an election timeout."""
        if graceful and self.raft.error is None:
            try:
                if self.raft.hand_off_leadership(timeout=2.0) is False:
                    log.warning("peer %d: leadership hand-off did not finish in time", self.me)
            except RaftStoppedError:
                pass
        if self.control is not None:
            self.control.close()
        self.clients.close()
        self.raft.kill()
        if self.authenticator is not None:
            self.authenticator.close()


def parse_peers(specs: list[str]) -> dict[int, str]:
    peers: dict[int, str] = {}
    for spec in specs:
        peer_id, sep, address = spec.partition("=")
        if not sep or not peer_id.isdigit() or not address:
            raise SystemExit(f"error: --peer wants ID=ADDRESS, got {spec!r}")
        peers[int(peer_id)] = address
    return peers


def run_server(config: KVServerConfig, verbose: bool = False) -> int:
    """Run a KV peer until SIGTERM/SIGINT; returns the process exit status."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    configure_peer_logging(config.data_dir / "peer.log", verbose)
    loose = config.data_dir.stat().st_mode & 0o077
    if loose:
        # The store and the log are the cluster's data: owner-only, like the umask-proof
        # mode the folder is created with.
        os.chmod(config.data_dir, 0o700)
        log.warning("peer %d: data dir %s was open to others (mode %o); made it 0700",
                    config.me, config.data_dir, 0o700 | loose)
    error_file = config.data_dir / "peer-error.txt"
    try:
        server = KVServer(config)
    except Exception as exc:
        log.exception("peer %d could not start", config.me)
        error_file.write_text(f"could not start: {exc}\n")
        print(f"peer {config.me}: could not start: {exc}", file=sys.stderr)
        return 1
    log.info("peer %d serving clients at %s", config.me, server.clients.address)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.05):
        if server.raft.error is not None:
            error_file.write_text(repr(server.raft.error) + "\n")
            log.error("peer %d failed: %r", config.me, server.raft.error)
            return 1
    try:
        server.close()
    except BaseException as exc:
        error_file.write_text(repr(exc) + "\n")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kv", description="Run one KV peer.")
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--peer", action="append", required=True, help="ID=RAFT_ADDRESS, one per peer")
    parser.add_argument("--client-listen", required=True, help="address for KV clients")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--cluster-id", default="ruaft")
    parser.add_argument("--maxraftstate", type=int, default=None)
    parser.add_argument("--control", help="test mode: control endpoint address")
    parser.add_argument("--faults", help="test mode: initial fault rules (JSON)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--tick-ms", type=float, default=10.0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    peers = parse_peers(args.peer)
    if args.id not in peers:
        parser.error(f"--id {args.id} is not among the --peer ids {sorted(peers)}")
    config = KVServerConfig(
        me=args.id, raft_addresses=peers, client_address=args.client_listen,
        data_dir=Path(args.data_dir), cluster_id=args.cluster_id,
        max_raft_state=args.maxraftstate, control_address=args.control,
        initial_faults=json.loads(args.faults) if args.faults else None,
        tick_seconds=args.tick_ms / 1000.0, seed=args.seed,
    )
    code = run_server(config, args.verbose)
    logging.shutdown()
    os._exit(code)
