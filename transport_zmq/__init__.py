"""The wire: the only package that imports pyzmq.

* `RaftCodec` — msgpack-array frames for the Raft messages, strictly validated on decode.
* `ZmqTransport` — the `ruaft.transport.Transport` over ZeroMQ ROUTER/DEALER sockets.
* `FaultInjector` — the test network model (drops, delays, partitions per directed link),
  present only when the orchestrator starts a peer in test mode.
"""

from .codec import (
    DEFAULT_MAX_FRAME_BYTES,
    MAX_UINT,
    WIRE_VERSION,
    DecodeError,
    DecodeErrorKind,
    EncodeError,
    RaftCodec,
    describe_layouts,
)
from .faults import FaultInjector
from .transport import ZmqTransport, free_tcp_ports, peer_identity

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "MAX_UINT",
    "WIRE_VERSION",
    "DecodeError",
    "DecodeErrorKind",
    "EncodeError",
    "RaftCodec",
    "describe_layouts",
    "FaultInjector",
    "ZmqTransport",
    "free_tcp_ports",
    "peer_identity",
]
