"""The replicated key-value state machine: string keys and values, get/put/append, with a
session table that makes every client request take effect exactly once.

The session table (`client_id → (last_seq, last_result)`) is part of the replicated state
and of the snapshot, so a request retried after a leader change, a crash or a snapshot
install is recognised and not applied twice (thesis §6.3). Clients number their requests
1, 2, 3, … and have at most one outstanding at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgpack


class Op(Enum):
    GET = "get"
    PUT = "put"
    APPEND = "append"


WRITE_OPS = frozenset({Op.PUT.value, Op.APPEND.value})


@dataclass(frozen=True, slots=True)
class KVCommand:
    """A write as it travels through the Raft log (encoded as a msgpack array)."""

    client_id: str
    seq: int
    op: str
    key: str
    value: str

    def encode(self) -> list[Any]:
        return [self.client_id, self.seq, self.op, self.key, self.value]

    @classmethod
    def decode(cls, raw: Any) -> "KVCommand":
        """Raises ValueError if `raw` is not an encoded command (a corrupted or foreign log)."""
        if not (isinstance(raw, list) and len(raw) == 5):
            raise ValueError(f"not a KV command: {raw!r:.80}")
        client_id, seq, op, key, value = raw
        if not (isinstance(client_id, str) and isinstance(seq, int) and op in WRITE_OPS
                and isinstance(key, str) and isinstance(value, str)):
            raise ValueError(f"malformed KV command: {raw!r:.80}")
        return cls(client_id, seq, op, key, value)


class KVStateMachine:
    """`dict[str, str]` plus sessions. Not thread-safe: the server serialises access."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.sessions: dict[str, tuple[int, Any]] = {}
        self.applied_index = 0

    def get(self, key: str) -> str:
        """A missing key reads as the empty string (as in the course's KV service)."""
        return self.data.get(key, "")

    def is_duplicate(self, client_id: str, seq: int) -> bool:
        session = self.sessions.get(client_id)
        return session is not None and seq <= session[0]

    def apply(self, index: int, command: KVCommand) -> Any:
        """Apply a committed write at log `index`; a duplicate (seq already seen for the
        client) changes nothing. Returns the request's result (None for put/append)."""
        self.applied_index = index
        if self.is_duplicate(command.client_id, command.seq):
            return self.sessions[command.client_id][1]
        if command.op == Op.PUT.value:
            self.data[command.key] = command.value
        else:
            self.data[command.key] = self.data.get(command.key, "") + command.value
        self.sessions[command.client_id] = (command.seq, None)
        return None

    def snapshot(self) -> bytes:
        """msgpack of (applied index, data, sessions)."""
        sessions = {cid: [seq, result] for cid, (seq, result) in self.sessions.items()}
        return msgpack.packb([self.applied_index, self.data, sessions], use_bin_type=True)

    def restore(self, snapshot: bytes) -> None:
        """Replace the whole state with a snapshot's. Raises ValueError on a malformed one."""
        try:
            applied_index, data, sessions = msgpack.unpackb(snapshot, raw=False)
        except Exception as exc:
            raise ValueError(f"malformed KV snapshot: {exc}") from exc
        self.applied_index = applied_index
        # unpackb already built a dict: no copy (for 1M keys the copy's table alone is ~40 MB).
        self.data = data if type(data) is dict else dict(data)
        self.sessions = {cid: (seq, result) for cid, (seq, result) in sessions.items()}
