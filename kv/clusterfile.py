"""The cluster file: one JSON document that describes a KV cluster, read by every peer
(`ruaft-peer --cluster FILE --id N`), by clients (`ruaft-kv --cluster FILE`) and by the
operator tool (`ruaft-cluster`).

    {
      "format": 1,
      "cluster_id": "3f1c…",
      "maxraftstate": 1048576,            # bytes of Raft state before a snapshot; null: never
      "tick_ms": 10,
      "peers": [
        {"id": 0,
         "raft_address": "tcp://127.0.0.1:7000",   # where the other peers reach it
         "raft_bind": "tcp://127.0.0.1:7000",      # what it binds (may be tcp://0.0.0.0:7000)
         "client_address": "tcp://127.0.0.1:7100",
         "client_bind": "tcp://127.0.0.1:7100",
         "control_address": "tcp://127.0.0.1:7200", # null in a production start
         "data_dir": "peer-0"},                    # relative to the file's folder
        …
      ]
    }

A relative `data_dir` is resolved against the folder holding the file, so a cluster folder
can be moved as a whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CLUSTER_FILE_NAME = "cluster.json"
FORMAT = 1


class ClusterFileError(Exception):
    """The cluster file is missing, unreadable or malformed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class PeerSpec:
    id: int
    raft_address: str
    raft_bind: str
    client_address: str
    client_bind: str
    control_address: str | None
    data_dir: str


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    cluster_id: str
    peers: tuple[PeerSpec, ...]
    maxraftstate: int | None = 1 << 20
    tick_ms: float = 10.0
    path: Path | None = None
    """Where the spec was read from (not written into the file)."""

    def peer(self, peer_id: int) -> PeerSpec:
        for peer in self.peers:
            if peer.id == peer_id:
                return peer
        raise ClusterFileError(f"{self.path}: no peer with id {peer_id} "
                               f"(ids: {', '.join(str(p.id) for p in self.peers)})")

    def data_dir(self, peer_id: int) -> Path:
        data_dir = Path(self.peer(peer_id).data_dir)
        if not data_dir.is_absolute() and self.path is not None:
            data_dir = self.path.parent / data_dir
        return data_dir

    def client_addresses(self) -> list[str]:
        """Client addresses ordered by peer id (what `KVClient` takes)."""
        return [p.client_address for p in sorted(self.peers, key=lambda p: p.id)]

    def to_json(self) -> str:
        document = {"format": FORMAT, "cluster_id": self.cluster_id,
                    "maxraftstate": self.maxraftstate, "tick_ms": self.tick_ms,
                    "peers": [asdict(p) for p in self.peers]}
        return json.dumps(document, indent=2) + "\n"

    def write(self, path: Path) -> None:
        """Write atomically (temp file + rename), readable by the owner only."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


def _field(document: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in document:
        raise ClusterFileError(f"{where}: missing field {name!r}")
    value = document[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ClusterFileError(f"{where}: field {name!r} has the wrong type ({type(value).__name__})")
    return value


def load(path: str | Path) -> ClusterSpec:
    """Read and validate a cluster file. Raises ClusterFileError naming the file and problem."""
    path = Path(path)
    if path.is_dir():
        path = path / CLUSTER_FILE_NAME
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClusterFileError(f"no cluster file at {path} (run `ruaft-cluster up` first, "
                               "or pass --cluster/--data-dir)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterFileError(f"cannot read cluster file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ClusterFileError(f"cluster file {path} is not valid JSON: {exc}") from None
    where = str(path)
    if not isinstance(document, dict):
        raise ClusterFileError(f"{where}: expected a JSON object")
    if document.get("format") != FORMAT:
        raise ClusterFileError(f"{where}: unsupported format {document.get('format')!r} (expected {FORMAT})")
    peers = []
    for position, raw in enumerate(_field(document, "peers", list, where)):
        peer_where = f"{where}: peers[{position}]"
        if not isinstance(raw, dict):
            raise ClusterFileError(f"{peer_where}: expected an object")
        control = raw.get("control_address")
        if control is not None and not isinstance(control, str):
            raise ClusterFileError(f"{peer_where}: control_address must be a string or null")
        peers.append(PeerSpec(
            id=_field(raw, "id", int, peer_where),
            raft_address=_field(raw, "raft_address", str, peer_where),
            raft_bind=raw.get("raft_bind") or _field(raw, "raft_address", str, peer_where),
            client_address=_field(raw, "client_address", str, peer_where),
            client_bind=raw.get("client_bind") or _field(raw, "client_address", str, peer_where),
            control_address=control,
            data_dir=_field(raw, "data_dir", str, peer_where),
        ))
    ids = sorted(p.id for p in peers)
    if not peers or ids != list(range(len(peers))):
        raise ClusterFileError(f"{where}: peer ids must be 0..n-1, got {ids}")
    maxraftstate = document.get("maxraftstate")
    if maxraftstate is not None and (not isinstance(maxraftstate, int) or maxraftstate <= 0):
        raise ClusterFileError(f"{where}: maxraftstate must be a positive integer or null")
    tick_ms = document.get("tick_ms", 10.0)
    if not isinstance(tick_ms, (int, float)) or not 1 <= tick_ms <= 1000:
        raise ClusterFileError(f"{where}: tick_ms must be a number from 1 to 1000")
    return ClusterSpec(cluster_id=_field(document, "cluster_id", str, where),
                       peers=tuple(sorted(peers, key=lambda p: p.id)),
                       maxraftstate=maxraftstate, tick_ms=float(tick_ms), path=path)
