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

Format 2 adds CURVE authentication (written by `ruaft-cluster keys` / `up --secure`); a
format-1 file, or a format-2 file without "auth", means no authentication:

    {
      "format": 2, …,
      "auth": {
        "client_keys": ["<Z85 public key>", …],      # may use the client port
        "operator_keys": ["<Z85 public key>", …],    # may use the client and control ports
        "client_key_file": "keys/client-0.key_secret",   # the pair `ruaft-kv` uses (optional)
        "operator_key_file": "keys/operator.key_secret"  # the pair `ruaft-cluster` uses (optional)
      },
      "peers": [{…, "public_key": "<Z85>", "secret_key_file": "keys/peer-0.key_secret"}, …]
    }

Key file paths are relative to the file's folder like `data_dir`. A peer needs only its own
secret key file; a client host needs only a client's.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transport_zmq.auth import CurveKeyError, CurveKeyPair, check_public_key, read_key_pair

CLUSTER_FILE_NAME = "cluster.json"
FORMAT = 2
"""The newest format; a file without keys is still written as format 1, which older
releases read too (one with keys must not be, lest they run it unauthenticated)."""
FORMATS = (1, 2)


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
    public_key: str | None = None
    """CURVE public key (Z85), in a keyed cluster."""
    secret_key_file: str | None = None
    """Where this peer's secret key is, in a keyed cluster."""


@dataclass(frozen=True, slots=True)
class AuthSpec:
    """Who may connect, in a keyed cluster: the public keys (Z85 text) of clients and of
    operators, and where this host's client and operator key pairs are (may be None)."""

    client_keys: tuple[str, ...]
    operator_keys: tuple[str, ...]
    client_key_file: str | None = None
    operator_key_file: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    cluster_id: str
    peers: tuple[PeerSpec, ...]
    maxraftstate: int | None = 1 << 20
    tick_ms: float = 10.0
    path: Path | None = None
    """Where the spec was read from (not written into the file)."""
    auth: AuthSpec | None = None
    """None: no authentication (every peer then has no keys either)."""

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

    def resolve(self, relative: str) -> Path:
        """A path from the file, taken relative to the file's folder unless absolute."""
        path = Path(relative)
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path
        return path

    @property
    def keyed(self) -> bool:
        return self.auth is not None

    def peer_public_keys(self) -> dict[int, bytes]:
        """{peer id: public key} in a keyed cluster; {} otherwise."""
        return {p.id: p.public_key.encode() for p in self.peers if p.public_key is not None}

    def server_keys(self) -> list[bytes] | None:
        """The peers' public keys ordered by id (what `KVClient(server_keys=…)` takes), or
        None in an un-keyed cluster."""
        if self.auth is None:
            return None
        keys = self.peer_public_keys()
        return [keys[p.id] for p in sorted(self.peers, key=lambda p: p.id)]

    def peer_key_pair(self, peer_id: int) -> CurveKeyPair | None:
        """Peer `peer_id`'s key pair read from its secret key file (None if un-keyed).
        Raises ClusterFileError if the file is missing, unsafe, malformed or does not match
        the public key in the cluster file."""
        peer = self.peer(peer_id)
        if self.auth is None or peer.secret_key_file is None:
            return None
        pair = _read_pair(self.resolve(peer.secret_key_file), f"peer {peer_id}'s secret key file")
        if pair.public != (peer.public_key or "").encode():
            raise ClusterFileError(f"{self.path}: peer {peer_id}'s secret key file "
                                   f"{peer.secret_key_file} does not match its public_key")
        return pair

    def user_key_pair(self, role: str, key_file: str | Path | None = None) -> CurveKeyPair | None:
        """The key pair a `role` ("client" or "operator") connects with: read from
        `key_file` if given, else from the file's ``client_key_file`` / ``operator_key_file``.
        None in an un-keyed cluster. Raises ClusterFileError when there is no such file, it
        cannot be read, or its key is not among the cluster's keys for that role (operators'
        keys also serve as client keys)."""
        if self.auth is None:
            return None
        if key_file is None:
            key_file = (self.auth.client_key_file if role == "client"
                        else self.auth.operator_key_file)
            if key_file is None:
                raise ClusterFileError(f"{self.path}: this cluster has keys but names no "
                                       f"{role} key file; pass one with --key")
            key_file = self.resolve(str(key_file))
        pair = _read_pair(Path(key_file), f"{role} secret key file")
        accepted = set(self.auth.operator_keys)
        if role == "client":
            accepted |= set(self.auth.client_keys)
        if pair.public.decode() not in accepted:
            raise ClusterFileError(f"{key_file}: its public key is not one of this cluster's "
                                   f"{role} keys")
        return pair

    def to_json(self) -> str:
        peers = [{k: v for k, v in asdict(p).items()
                  if v is not None or k not in ("public_key", "secret_key_file")}
                 for p in self.peers]
        document: dict[str, Any] = {"format": FORMAT if self.auth is not None else 1,
                                    "cluster_id": self.cluster_id,
                                    "maxraftstate": self.maxraftstate, "tick_ms": self.tick_ms}
        if self.auth is not None:
            document["auth"] = {"client_keys": list(self.auth.client_keys),
                                "operator_keys": list(self.auth.operator_keys),
                                "client_key_file": self.auth.client_key_file,
                                "operator_key_file": self.auth.operator_key_file}
        document["peers"] = peers
        return json.dumps(document, indent=2) + "\n"

    def write(self, path: Path) -> None:
        """Write atomically (temp file + rename), readable by the owner only."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


def _read_pair(path: Path, what: str) -> CurveKeyPair:
    try:
        return read_key_pair(path, what)
    except CurveKeyError as exc:
        raise ClusterFileError(str(exc)) from None


def _keys(raw: object, where: str, name: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise ClusterFileError(f"{where}: {name} must be a list of public keys")
    try:
        return tuple(check_public_key(k, f"{name}[{i}]").decode() for i, k in enumerate(raw))
    except CurveKeyError as exc:
        raise ClusterFileError(f"{where}: {exc}") from None


def _auth(document: dict[str, Any], where: str) -> AuthSpec | None:
    raw = document.get("auth")
    if raw is None:
        return None
    where = f"{where}: auth"
    if not isinstance(raw, dict):
        raise ClusterFileError(f"{where}: expected an object")
    files = {}
    for name in ("client_key_file", "operator_key_file"):
        value = raw.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ClusterFileError(f"{where}: {name} must be a path or null")
        files[name] = value
    auth = AuthSpec(client_keys=_keys(raw.get("client_keys", []), where, "client_keys"),
                    operator_keys=_keys(raw.get("operator_keys", []), where, "operator_keys"),
                    **files)
    if not auth.client_keys and not auth.operator_keys:
        raise ClusterFileError(f"{where}: lists no client or operator key (nobody could connect)")
    return auth


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
    if path.is_dir() and path.name != CLUSTER_FILE_NAME:  # a cluster folder, not a damaged file
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
    file_format = document.get("format")
    if file_format not in FORMATS or isinstance(file_format, bool):
        raise ClusterFileError(f"{where}: unsupported format {file_format!r} "
                               f"(this version reads {', '.join(map(str, FORMATS))})")
    auth = _auth(document, where) if file_format >= 2 else None
    if file_format < 2 and "auth" in document:
        raise ClusterFileError(f"{where}: keys (\"auth\") need \"format\": 2")
    peers = []
    for position, raw in enumerate(_field(document, "peers", list, where)):
        peer_where = f"{where}: peers[{position}]"
        if not isinstance(raw, dict):
            raise ClusterFileError(f"{peer_where}: expected an object")
        control = raw.get("control_address")
        if control is not None and not isinstance(control, str):
            raise ClusterFileError(f"{peer_where}: control_address must be a string or null")
        public_key = secret_key_file = None
        if auth is not None:
            try:
                public_key = check_public_key(_field(raw, "public_key", str, peer_where),
                                              "public_key").decode()
            except CurveKeyError as exc:
                raise ClusterFileError(f"{peer_where}: {exc}") from None
            secret_key_file = _field(raw, "secret_key_file", str, peer_where)
        elif raw.get("public_key") is not None:
            raise ClusterFileError(f"{peer_where}: has a public_key but the file has no \"auth\" "
                                   "section (format 2)")
        peers.append(PeerSpec(
            id=_field(raw, "id", int, peer_where),
            raft_address=_field(raw, "raft_address", str, peer_where),
            raft_bind=raw.get("raft_bind") or _field(raw, "raft_address", str, peer_where),
            client_address=_field(raw, "client_address", str, peer_where),
            client_bind=raw.get("client_bind") or _field(raw, "client_address", str, peer_where),
            control_address=control,
            data_dir=_field(raw, "data_dir", str, peer_where),
            public_key=public_key, secret_key_file=secret_key_file,
        ))
    ids = sorted(p.id for p in peers)
    if not peers or ids != list(range(len(peers))):
        raise ClusterFileError(f"{where}: peer ids must be 0..n-1, got {ids}")
    if auth is not None:
        peer_keys = [p.public_key for p in peers]
        if len(set(peer_keys)) != len(peer_keys):
            raise ClusterFileError(f"{where}: two peers have the same public_key")
        shared = set(peer_keys) & (set(auth.client_keys) | set(auth.operator_keys))
        if shared:
            raise ClusterFileError(f"{where}: a peer's public_key is also a client or operator "
                                   "key (give each its own key pair)")
    maxraftstate = document.get("maxraftstate")
    if maxraftstate is not None and (not isinstance(maxraftstate, int) or maxraftstate <= 0):
        raise ClusterFileError(f"{where}: maxraftstate must be a positive integer or null")
    tick_ms = document.get("tick_ms", 10.0)
    if not isinstance(tick_ms, (int, float)) or not 1 <= tick_ms <= 1000:
        raise ClusterFileError(f"{where}: tick_ms must be a number from 1 to 1000")
    return ClusterSpec(cluster_id=_field(document, "cluster_id", str, where),
                       peers=tuple(sorted(peers, key=lambda p: p.id)),
                       maxraftstate=maxraftstate, tick_ms=float(tick_ms), path=path, auth=auth)
