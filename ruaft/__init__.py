"""Ruaft: the Raft consensus protocol in Python.

The public face is `Raft` (create, `start`, `get_state`, `snapshot`, `read_index`, `kill`);
the pure state machine is `ruaft.core.RaftCore`; storage lives in `ruaft.storage`.
"""

from ruaft.core.types import Config, RaftInvariantError, Role
from ruaft.node import (
    ApplyMsg,
    CommandApplied,
    NotLeaderError,
    Raft,
    RaftError,
    RaftStatus,
    RaftStoppedError,
    RuntimeConfig,
    SnapshotApplied,
)

__all__ = [
    "ApplyMsg",
    "CommandApplied",
    "Config",
    "NotLeaderError",
    "Raft",
    "RaftError",
    "RaftInvariantError",
    "RaftStatus",
    "RaftStoppedError",
    "Role",
    "RuntimeConfig",
    "SnapshotApplied",
]
