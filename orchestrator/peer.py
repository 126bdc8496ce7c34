"""A test peer process: Raft + LMDB + ZeroMQ, with the test applier of TESTS.md §1.

    python -m orchestrator.peer --id 0 --peer 0=tcp://127.0.0.1:7000 --peer 1=... \
        --data-dir DIR --control tcp://127.0.0.1:7100 [--snapshot] [--faults JSON]

The orchestrator starts it in test mode: the control endpoint (`get_state`, `start`,
`stats`, `set_faults`, `log_size`, `snapshot_size`, `applied`, `go`) is on, and the transport
carries a fault injector. With `--hold` the peer opens its storage, transport and control
endpoint but starts Raft (and so its clocks) only when told `go`: the orchestrator starts a
new cluster's peers within one tick of each other, as the original's test config starts its
peers at once, however long each process took to come up. The applier records every applied command by index; a gap or a
reorder is an error. On any error inside (invariant violation, storage failure, apply
error) the peer writes `peer-error.txt` in its data dir and exits with status 1. With
RUAFT_TRACE=1 in its environment the peer also logs every election message it sends and
receives (RUAFT_TRACE=all: every message).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import msgpack

from ruaft import CommandApplied, Raft, RuntimeConfig, SnapshotApplied
from ruaft.logsetup import configure_peer_logging
from ruaft.storage import LmdbStorage
from transport_zmq.codec import RaftCodec
from transport_zmq.faults import FaultInjector
from transport_zmq.rpc import RpcServer
from transport_zmq.transport import ZmqTransport

SNAPSHOT_INTERVAL = 10
ERROR_FILE = "peer-error.txt"
LOG_FILE = "peer.log"

log = logging.getLogger("ruaft.peer")


class TestApplier:
    """Records applied commands (TESTS.md §1). In snapshot mode it snapshots its record
    whenever `(index + 1) % 10 == 0` and rebuilds the record from delivered snapshots."""

    def __init__(self, snapshot_mode: bool):
        self.snapshot_mode = snapshot_mode
        self.raft: Raft | None = None
        self.commands: list[Any] = []  # commands[i - 1] is the command applied at index i
        self.events: list[tuple[int, Any]] = []  # the applied-entry stream, in apply order
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, msg: CommandApplied | SnapshotApplied) -> None:
        with self._lock:
            if isinstance(msg, SnapshotApplied):
                restored = msgpack.unpackb(msg.data, raw=False, strict_map_key=False)
                if not isinstance(restored, list) or len(restored) != msg.index:
                    self.errors.append(f"snapshot at {msg.index} holds {len(restored)} commands")
                    return
                self.commands = restored
                self.events.extend((i + 1, c) for i, c in enumerate(restored))
                return
            expected = len(self.commands) + 1
            if msg.index != expected:
                self.errors.append(f"apply out of order: got index {msg.index}, expected {expected}")
                return
            self.commands.append(msg.command)
            self.events.append((msg.index, msg.command))
            snapshot_due = self.snapshot_mode and (msg.index + 1) % SNAPSHOT_INTERVAL == 0
            data = msgpack.packb(self.commands, use_bin_type=True) if snapshot_due else b""
        if snapshot_due and self.raft is not None:
            self.raft.snapshot(msg.index, data)

    def applied_since(self, position: int) -> tuple[list[tuple[int, Any]], list[str]]:
        with self._lock:
            return self.events[position:], list(self.errors)


def parse_peers(specs: list[str]) -> dict[int, str]:
    peers: dict[int, str] = {}
    for spec in specs:
        peer_id, sep, address = spec.partition("=")
        if not sep or not peer_id.isdigit() or not address:
            raise argparse.ArgumentTypeError(f"--peer wants ID=ADDRESS, got {spec!r}")
        peers[int(peer_id)] = address
    return peers


class TracingTransport:
    """Wraps a transport and logs the messages it carries, for diagnosing from the peer log:
    with RUAFT_TRACE=1 in the environment (the orchestrator's children inherit it) the
    election messages (RequestVote and its responses, TimeoutNow), with RUAFT_TRACE=all
    every message (AppendEntries without their entries' data)."""

    ELECTION = frozenset({"REQUEST_VOTE", "REQUEST_VOTE_RESPONSE", "TIMEOUT_NOW"})

    def __init__(self, inner: ZmqTransport, everything: bool):
        self.inner = inner
        self.everything = everything
        self._log = logging.getLogger("ruaft.trace")

    def _trace(self, direction: str, m: Any) -> None:
        if m.kind.name in self.ELECTION:
            self._log.info("%s %r", direction, m)
        elif self.everything:
            entries = getattr(m, "entries", None)
            if entries:
                m = f"{type(m).__name__}(from={m.from_peer}, to={m.to_peer}, term={m.term}, " \
                    f"prev={m.prev_log_index}/{m.prev_log_term}, entries={entries[0].index}.." \
                    f"{entries[-1].index}, commit={m.leader_commit}, seq={m.seq})"
            self._log.info("%s %s", direction, m if isinstance(m, str) else repr(m))

    def send(self, messages: Any) -> None:
        for m in messages:
            self._trace("send", m)
        self.inner.send(messages)

    def poll(self, timeout: float) -> Any:
        messages = self.inner.poll(timeout)
        for m in messages:
            self._trace("recv", m)
        return messages

    def wakeup(self) -> None:
        self.inner.wakeup()

    def close(self) -> None:
        self.inner.close()

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()


class TestPeer:
    """Composition root of a test peer: storage, transport, runtime, applier, control."""

    def __init__(self, args: argparse.Namespace):
        self.me: int = args.id
        self.data_dir = Path(args.data_dir)
        addresses = parse_peers(args.peer)
        if self.me not in addresses:
            raise SystemExit(f"--id {self.me} is not among the --peer ids {sorted(addresses)}")
        rules = json.loads(args.faults) if args.faults else {}
        self.faults = FaultInjector(seed=args.seed)
        if rules:
            self.faults.apply(rules)
        self.storage = LmdbStorage(self.data_dir / "raft", cluster_id=args.cluster_id)
        codec = RaftCodec(args.cluster_id, addresses.keys(), max_frame_bytes=64 << 20)
        self.transport = ZmqTransport(self.me, addresses, codec=codec, faults=self.faults)
        if os.environ.get("RUAFT_TRACE") in ("1", "all"):
            self.transport = TracingTransport(  # type: ignore[assignment]
                self.transport, everything=os.environ["RUAFT_TRACE"] == "all")
        self.applier = TestApplier(args.snapshot)
        self._peer_ids = sorted(addresses)
        self._config = RuntimeConfig(tick_seconds=args.tick_ms / 1000.0,
                                     seed=args.seed)
        self._start_lock = threading.Lock()
        self.raft: Raft | None = None
        if not args.hold:
            self.start_raft()
        self.control = RpcServer(args.control, self.handle_control, name="control")

    def start_raft(self) -> None:
        """Start Raft (idempotent): at once, or on `go` when started with --hold."""
        with self._start_lock:
            if self.raft is not None:
                return
            raft = Raft(self._peer_ids, self.me, self.storage, self.applier,
                        config=self._config, transport=self.transport)
            self.applier.raft = raft
            self.raft = raft

    def handle_control(self, identity: bytes, request: Mapping[str, Any]) -> dict[str, Any] | None:
        op = request["op"]
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "go":
            self.start_raft()
            return {"ok": True}
        if op == "set_faults":
            rules = request.get("rules")
            if not isinstance(rules, dict):
                return {"ok": False, "error_kind": "bad_request", "error": "rules must be a map"}
            try:
                self.faults.apply(rules)
            except (ValueError, TypeError) as exc:  # refused as a whole: nothing changed
                return {"ok": False, "error_kind": "bad_request", "error": str(exc)[:200]}
            return {"ok": True}
        raft = self.raft
        if raft is None:
            return self.handle_held(op, request)
        if op == "get_state":
            status = raft.status()
            return {"ok": True, "term": status.term, "is_leader": status.role.value == "leader",
                    "role": status.role.value, "commit_index": status.commit_index,
                    "last_index": status.last_index, "snapshot_index": status.snapshot_index,
                    "applied_index": status.applied_index}
        if op == "start":
            result = raft.start(request.get("command"))
            return {"ok": True, "index": result[0] if result else None,
                    "term": result[1] if result else None}
        if op == "stats":
            return {"ok": True, "transport": self.transport.stats(),
                    "dropped": raft.status().dropped,
                    "control": dict(self.control.counters)}
        if op == "log_size":
            return {"ok": True, "bytes": raft.status().state_bytes}
        if op == "snapshot_size":
            return {"ok": True, "bytes": raft.status().snapshot_bytes}
        if op == "applied":
            since = request.get("since", 0)
            if not isinstance(since, int) or since < 0:
                return {"ok": False, "error_kind": "bad_request", "error": "since must be >= 0"}
            events, errors = self.applier.applied_since(since)
            return {"ok": True, "events": events, "errors": errors}
        return {"ok": False, "error_kind": "unknown_op", "error": f"unknown op {op!r}"}

    def handle_held(self, op: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Control ops before `go`: a peer whose Raft has not started is a follower of term 0
        that refuses commands and has sent nothing."""
        if op == "get_state":
            return {"ok": True, "term": 0, "is_leader": False, "role": "held", "commit_index": 0,
                    "last_index": 0, "snapshot_index": 0, "applied_index": 0}
        if op == "start":
            return {"ok": True, "index": None, "term": None}
        if op == "stats":
            return {"ok": True, "transport": self.transport.stats(), "dropped": {},
                    "control": dict(self.control.counters)}
        if op == "log_size":
            return {"ok": True, "bytes": self.storage.raft_state_size()}
        if op == "snapshot_size":
            return {"ok": True, "bytes": self.storage.snapshot_size()}
        if op == "applied":
            return {"ok": True, "events": [], "errors": []}
        return {"ok": False, "error_kind": "unknown_op", "error": f"unknown op {op!r}"}

    def run(self) -> int:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.wait(0.05):
            raft = self.raft
            problem = (raft.error if raft is not None else None) or (
                self.applier.errors[0] if self.applier.errors else None)
            if problem is not None:
                return self.fail(repr(problem) if isinstance(problem, BaseException) else problem)
        self.control.close()
        with self._start_lock:
            raft = self.raft
            if raft is None:
                self.transport.close()
                self.storage.close()
                return 0
        try:
            raft.kill()
        except BaseException as exc:
            return self.fail(repr(exc))
        return 0

    def fail(self, problem: str) -> int:
        log.error("peer %d failed: %s", self.me, problem)
        (self.data_dir / ERROR_FILE).write_text(problem + "\n")
        time.sleep(0.2)  # let the control endpoint answer pending questions about the error
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.peer", description=__doc__.split("\n")[0])
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--peer", action="append", required=True, help="ID=ADDRESS, one per peer")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--control", required=True, help="control endpoint address")
    parser.add_argument("--cluster-id", default="test")
    parser.add_argument("--snapshot", action="store_true", help="snapshot every 10 entries")
    parser.add_argument("--faults", help="initial fault rules (JSON)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--tick-ms", type=float, default=10.0)
    parser.add_argument("--hold", action="store_true",
                        help="start Raft only when the control endpoint is told `go`")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    configure_peer_logging(data_dir / LOG_FILE, args.verbose)
    try:
        peer = TestPeer(args)
    except Exception as exc:
        log.exception("peer %d could not start", args.id)
        (data_dir / ERROR_FILE).write_text(f"could not start: {exc!r}\n")
        print(f"peer {args.id}: could not start: {exc}", file=sys.stderr)
        return 1
    code = peer.run()
    logging.shutdown()
    os._exit(code)  # skip interpreter teardown: every thread is already stopped


if __name__ == "__main__":
    sys.exit(main())
