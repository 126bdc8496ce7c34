"""The contract between the Raft runtime and whatever carries its messages.

The runtime (`ruaft.node.Raft`) is given an object of this shape; `ruaft.testing.network`
provides an in-memory one, `transport_zmq.ZmqTransport` the production one.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from ruaft.core.types import Message


class Transport(Protocol):
    """Carries Raft messages between peers. Best effort: messages may be lost, duplicated,
    delayed or reordered, and Raft tolerates all of it.

    Threading: `send`, `poll` and `close` are called by one thread only (the runtime's event
    loop); `wakeup` may be called from any thread.
    """

    def send(self, messages: Sequence[Message]) -> None:
        """Queue `messages` for delivery to their `to_peer`. Never blocks; a message that
        cannot be queued (peer unknown, queue full) is dropped and counted."""
        ...

    def poll(self, timeout: float) -> list[Message]:
        """Wait up to `timeout` seconds until at least one message has arrived or `wakeup()` is
        called, then return every message that has arrived (possibly none)."""
        ...

    def wakeup(self) -> None:
        """Make the current or next `poll` return promptly. Thread-safe."""
        ...

    def close(self) -> None:
        """Release sockets and threads. Idempotent."""
        ...
