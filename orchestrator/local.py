"""A local KV cluster on this machine, driven by its cluster file: what `ruaft-cluster` runs.

Unlike the test harness (`orchestrator.cluster`), these peers outlive the command that
started them: each runs in its own session, and its pid is kept in `peer-N/pid` in the data
dir, so a later `ruaft-cluster status`, `kill`, `restart` or `down` finds it again.

Two kinds of start: the playground (control endpoint on, for partition/heal; optionally
keyed) and production (`control=False`: no control endpoint, always keyed). Everything binds
the given host, 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import psutil

from kv.clusterfile import CLUSTER_FILE_NAME, AuthSpec, ClusterSpec, PeerSpec, load
from transport_zmq.auth import CurveKeyPair, generate_key_pair, write_key_pair
from transport_zmq.rpc import RpcClient, RpcError
from transport_zmq.transport import free_tcp_ports

PID_FILE = "pid"
KEYS_DIR = "keys"


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """One row of `ruaft-cluster status` (field names are the --json keys)."""

    id: int
    pid: int | None
    alive: bool
    role: str | None
    term: int | None
    commit_index: int | None
    applied_index: int | None
    last_index: int | None
    snapshot_index: int | None
    state_bytes: int | None
    address: str


def new_spec(n: int, data_dir: Path, host: str = "127.0.0.1", base_port: int | None = None,
             maxraftstate: int | None = 1 << 20, control: bool = True) -> ClusterSpec:
    """A fresh cluster description: raft, client and control ports per peer (consecutive
    from `base_port`: raft P+i, client P+100+i, control P+200+i; free ports otherwise).
    `control=False`: no control endpoint (production)."""
    if n < 1:
        raise ValueError("a cluster needs at least one peer")
    if base_port is not None:
        if not 1024 <= base_port <= 65535 - 200 - n:
            raise ValueError(f"--base-port must leave room for 3×{n} ports below 65536")
        raft = [base_port + i for i in range(n)]
        client = [base_port + 100 + i for i in range(n)]
        control_ports = [base_port + 200 + i for i in range(n)]
    else:
        ports = free_tcp_ports(3 * n)
        raft, client, control_ports = ports[:n], ports[n:2 * n], ports[2 * n:]
    peers = tuple(
        PeerSpec(id=i, raft_address=f"tcp://{host}:{raft[i]}", raft_bind=f"tcp://{host}:{raft[i]}",
                 client_address=f"tcp://{host}:{client[i]}", client_bind=f"tcp://{host}:{client[i]}",
                 control_address=f"tcp://{host}:{control_ports[i]}" if control else None,
                 data_dir=f"peer-{i}")
        for i in range(n)
    )
    return ClusterSpec(cluster_id=secrets.token_hex(8), peers=peers, maxraftstate=maxraftstate,
                       path=data_dir / CLUSTER_FILE_NAME)


def add_keys(spec: ClusterSpec, clients: int = 1) -> ClusterSpec:
    """Generate CURVE key pairs for `spec` — one per peer, `clients` client pairs and one
    operator pair — into ``keys/`` beside the cluster file (folder 0700, files 0600), and
    return the spec with their public keys and key file paths (the caller writes it).
    Existing key files there are replaced: every peer must then be restarted."""
    if spec.path is None:
        raise ValueError("keys need a cluster file path")
    if clients < 1:
        raise ValueError("a keyed cluster needs at least one client key")
    keys_dir = spec.path.parent / KEYS_DIR
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(keys_dir, 0o700)

    def new_pair(name: str, what: str) -> tuple[str, str]:
        pair = generate_key_pair()
        write_key_pair(keys_dir / f"{name}.key_secret", pair, what)
        return pair.public.decode(), f"{KEYS_DIR}/{name}.key_secret"

    peers = []
    for peer in spec.peers:
        public, path = new_pair(f"peer-{peer.id}", f"Ruaft peer {peer.id} of {spec.cluster_id}")
        peers.append(dataclasses.replace(peer, public_key=public, secret_key_file=path))
    client_keys = [new_pair(f"client-{i}", f"Ruaft client {i} of {spec.cluster_id}")[0]
                   for i in range(clients)]
    client_file = f"{KEYS_DIR}/client-0.key_secret"  # what `ruaft-kv` uses on this host
    operator_key, operator_file = new_pair("operator", f"Ruaft operator of {spec.cluster_id}")
    auth = AuthSpec(client_keys=tuple(client_keys), operator_keys=(operator_key,),
                    client_key_file=client_file, operator_key_file=operator_file)
    return dataclasses.replace(spec, peers=tuple(peers), auth=auth)


class LocalCluster:
    """The peers of one cluster file, as processes on this machine."""

    def __init__(self, spec: ClusterSpec):
        if spec.path is None:
            raise ValueError("a local cluster needs a cluster file path")
        # Absolute, so the pid check below matches whatever folder the command runs in.
        self.spec = dataclasses.replace(spec, path=spec.path.resolve())
        self.dir = self.spec.path.parent  # type: ignore[union-attr]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        """The last process this object started for each peer id. `Popen.wait` gives its exit
        status (-9 after SIGKILL) unless `stop` has reaped it already."""
        # Keyed: the operator's pair opens the control port (and the client port for status).
        # Read lazily, so commands that need no connection work without the key file.
        self._operator_pair: CurveKeyPair | None = None

    @classmethod
    def open(cls, data_dir: Path) -> "LocalCluster":
        return cls(load(data_dir / CLUSTER_FILE_NAME))

    @property
    def ids(self) -> list[int]:
        return [p.id for p in self.spec.peers]

    @property
    def has_control(self) -> bool:
        """Whether the peers serve the control endpoint (a playground, not production)."""
        return all(p.control_address is not None for p in self.spec.peers)

    def _rpc(self, address: str, peer_id: int) -> RpcClient:
        """A client to one of peer `peer_id`'s ports, with the operator's key if keyed.
        Raises ClusterFileError if the operator key file cannot be read."""
        if not self.spec.keyed:
            return RpcClient(address)
        if self._operator_pair is None:
            self._operator_pair = self.spec.user_key_pair("operator")
        return RpcClient(address, curve=self._operator_pair,
                         server_key=self.spec.peer_public_keys()[peer_id])

    # ---------------------------------------------------------------------------- processes

    def pid(self, peer_id: int) -> int | None:
        """The pid of the running peer process, or None if it is not running."""
        pid_file = self.spec.data_dir(peer_id) / PID_FILE
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            cmdline = process.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        # Guard against a recycled pid: it must be our peer, with our id and cluster file.
        if "kv.peer_cli" in cmdline and str(peer_id) in cmdline and str(self.spec.path) in cmdline:
            return pid
        return None

    def start(self, peer_id: int, env: Mapping[str, str] | None = None) -> int:
        """Start peer `peer_id` in the background (no-op if it runs); returns its pid. `env`
        adds variables to the peer's environment (e.g. `ruaft.failpoints.ENV_VAR`)."""
        running = self.pid(peer_id)
        if running is not None:
            return running
        data_dir = self.spec.data_dir(peer_id)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        output = open(data_dir / "output.txt", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "kv.peer_cli", "--cluster", str(self.spec.path),
             "--id", str(peer_id)],
            stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True,
            env=None if env is None else {**os.environ, **env},
        )
        output.close()
        self.processes[peer_id] = process
        (data_dir / PID_FILE).write_text(f"{process.pid}\n")
        return process.pid

    def send_signal(self, peer_id: int, sig: signal.Signals) -> int | None:
        """Send `sig` to the peer's process; returns its pid, or None if not running."""
        pid = self.pid(peer_id)
        if pid is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return None
        return pid

    def stop(self, peer_id: int, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> bool:
        """Signal the peer and wait until its pid is gone (SIGKILL after `timeout`).
        Returns whether it was running."""
        pid = self.send_signal(peer_id, sig)
        if pid is None:
            return False
        try:
            process = psutil.Process(pid)
            process.wait(timeout)
        except psutil.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            psutil.Process(pid).wait(5)
        except psutil.NoSuchProcess:
            pass
        return True

    # ---------------------------------------------------------------------------- control

    def control(self, peer_id: int, op: str, timeout: float = 1.0, **fields: Any) -> dict[str, Any] | None:
        """One request to the peer's control endpoint; None if it has none or is silent."""
        address = self.spec.peer(peer_id).control_address
        if address is None:
            return None
        client = self._rpc(address, peer_id)
        try:
            return client.call(op, timeout=timeout, **fields)
        except (TimeoutError, RpcError):
            return None
        finally:
            client.close()

    def client_status(self, peer_id: int, timeout: float = 1.0) -> dict[str, Any] | None:
        """The KV `status` op on the peer's client port (role, term, indexes, refusal
        counters); None if silent. The way to ask a peer without a control endpoint."""
        client = self._rpc(self.spec.peer(peer_id).client_address, peer_id)
        try:
            return client.call("status", timeout=timeout)
        except (TimeoutError, RpcError):
            return None
        finally:
            client.close()

    def status(self) -> list[PeerStatus]:
        rows = []
        for peer in self.spec.peers:
            pid = self.pid(peer.id)
            if pid is None:
                state = None
            elif peer.control_address is not None:
                state = self.control(peer.id, "get_state")
            else:
                state = self.client_status(peer.id)
            rows.append(PeerStatus(
                id=peer.id, pid=pid, alive=pid is not None,
                role=state["role"] if state else None,
                term=state["term"] if state else None,
                commit_index=state["commit_index"] if state else None,
                applied_index=state["applied_index"] if state else None,
                last_index=state["last_index"] if state else None,
                snapshot_index=state["snapshot_index"] if state else None,
                state_bytes=state["state_bytes"] if state else None,
                address=peer.client_address,
            ))
        return rows

    def leader(self) -> int | None:
        for row in self.status():
            if row.role == "leader":
                return row.id
        return None

    def wait_leader(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.1)
        return None

    def partition(self, groups: Sequence[Sequence[int]]) -> list[int]:
        """Let peers talk only within their group; peers in no group are isolated. Returns
        the ids of peers that could not be told (not running)."""
        group_of = {peer: g for g, members in enumerate(groups) for peer in members}
        unknown = sorted(set(group_of) - set(self.ids))
        if unknown:
            raise ValueError(f"no such peer: {', '.join(map(str, unknown))}")
        disabled = [[a, b] for a in self.ids for b in self.ids
                    if a != b and group_of.get(a, -1 - a) != group_of.get(b, -1 - b)]
        missed = []
        for peer in self.ids:
            rules = {"disabled_links": [link for link in disabled if peer in link],
                     "unreliable": False, "long_reordering": False, "long_delays": False}
            if self.control(peer, "set_faults", rules=rules) is None:
                missed.append(peer)
        return missed

    def heal(self) -> list[int]:
        return self.partition([self.ids])
