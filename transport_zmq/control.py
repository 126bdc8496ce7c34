"""The control endpoint's common operations, served by every peer started in test mode.

The orchestrator asks a peer about its Raft state and sets its fault rules through these;
a program adds its own operations (`extra`) — the test applier adds `start` and `applied`.
The endpoint is never opened in a production start.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from ruaft import Raft, failpoints
from transport_zmq.auth import CurveServer
from transport_zmq.faults import FaultInjector
from transport_zmq.rpc import RpcServer
from transport_zmq.transport import ZmqTransport

ExtraOp = Callable[[Mapping[str, Any]], dict[str, Any]]


class ControlEndpoint:
    """Serves `ping`, `get_state`, `stats`, `set_faults`, `set_failpoint`, `log_size`,
    `snapshot_size`, plus the program's `extra` operations, on an `RpcServer` bound at
    `address`. `set_failpoint` takes `spec` (`ruaft.failpoints` syntax, e.g.
    "log.truncate.before=kill") and answers the armed failpoints. With `curve` (whose allow
    list should hold the operators' keys only) it admits only those keys."""

    def __init__(
        self,
        address: str,
        raft: Raft,
        transport: ZmqTransport,
        faults: FaultInjector | None,
        extra: Mapping[str, ExtraOp] | None = None,
        stats: Callable[[], dict[str, Any]] | None = None,
        curve: CurveServer | None = None,
    ):
        self._raft = raft
        self._transport = transport
        self._faults = faults
        self._extra = dict(extra or {})
        self._extra_stats = stats
        self.server = RpcServer(address, self._handle, name="control", curve=curve)

    def _handle(self, identity: bytes, request: Mapping[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op in self._extra:
            return self._extra[op](request)
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "get_state":
            status = self._raft.status()
            return {
                "ok": True, "term": status.term, "is_leader": status.role.value == "leader",
                "role": status.role.value, "leader_id": status.leader_id,
                "commit_index": status.commit_index, "applied_index": status.applied_index,
                "last_index": status.last_index, "snapshot_index": status.snapshot_index,
                "state_bytes": status.state_bytes, "snapshot_bytes": status.snapshot_bytes,
            }
        if op == "stats":
            reply = {"ok": True, "transport": self._transport.stats(),
                     "dropped": self._raft.status().dropped,
                     "control": dict(self.server.counters)}
            if self._extra_stats is not None:
                reply.update(self._extra_stats())
            return reply
        if op == "set_faults":
            if self._faults is None:
                return {"ok": False, "error_kind": "unsupported", "error": "no fault injector"}
            rules = request.get("rules")
            if not isinstance(rules, dict):
                return {"ok": False, "error_kind": "bad_request", "error": "rules must be a map"}
            try:
                self._faults.apply(rules)
            except (ValueError, TypeError) as exc:  # refused as a whole: nothing changed
                return {"ok": False, "error_kind": "bad_request", "error": str(exc)[:200]}
            return {"ok": True}
        if op == "set_failpoint":
            spec = request.get("spec")
            if not isinstance(spec, str):
                return {"ok": False, "error_kind": "bad_request", "error": "spec must be a string"}
            try:
                failpoints.configure(spec)
            except ValueError as exc:
                return {"ok": False, "error_kind": "bad_request", "error": str(exc)}
            return {"ok": True, "failpoints": failpoints.active()}
        if op == "log_size":
            return {"ok": True, "bytes": self._raft.status().state_bytes}
        if op == "snapshot_size":
            return {"ok": True, "bytes": self._raft.status().snapshot_bytes}
        return {"ok": False, "error_kind": "unknown_op", "error": f"unknown op {op!r}"}

    def close(self) -> None:
        self.server.close()
