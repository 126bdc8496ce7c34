"""The KV flavour of the harness: KV peer processes (`python -m kv`) plus clients in the test
process (TESTS.md §3). Extends `Cluster` with client addresses, `maxraftstate`, partitions
into groups, and clients that a partition can cut off from some servers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

from kv.client import ClientFaults, KVClient
from orchestrator.cluster import Cluster, ClusterFailure
from transport_zmq.transport import free_tcp_ports


class KVCluster(Cluster):
    """n KV servers. `maxraftstate` (bytes) turns snapshots on; None leaves them off."""

    def __init__(self, n: int, unreliable: bool = False, maxraftstate: int | None = None, *,
                 base_dir: Path, seed: int | None = None, **options: Any):
        self.maxraftstate = maxraftstate
        self.client_addresses: dict[int, str] = {}
        """Chosen when the first server starts (`_choose_client_addresses`)."""
        self.clients: list[KVClient] = []
        super().__init__(n, unreliable, snapshot=False, base_dir=base_dir, peer_module="kv",
                         seed=seed, **options)

    def _choose_client_addresses(self) -> None:
        """The servers' client ports (`free_tcp_ports` draws below the ephemeral range and
        never repeats a port within this process, so they cannot meet `Cluster`'s)."""
        ports = free_tcp_ports(self.n)
        self.client_addresses = {i: f"tcp://127.0.0.1:{port}" for i, port in enumerate(ports)}

    def peer_args(self, i: int) -> list[str]:
        if not self.client_addresses:  # the first start: Cluster has drawn its ports by now
            self._choose_client_addresses()
        args = ["--client-listen", self.client_addresses[i]]
        if self.maxraftstate is not None:
            args += ["--maxraftstate", str(self.maxraftstate)]
        return args

    def make_client(self, servers: Sequence[int] | None = None, *, timeout: float | None = None,
                    unreliable: bool | None = None, stop: threading.Event | None = None) -> KVClient:
        """A client in the test process; `servers` limits which servers it can reach. With an
        unreliable network its requests and replies are dropped as labrpc's are. `stop` ends
        its calls on demand (see `KVClient`)."""
        unreliable = self.unreliable if unreliable is None else unreliable
        faults = ClientFaults(seed=self.rng.randrange(1 << 30)) if unreliable else None
        client = KVClient([self.client_addresses[i] for i in range(self.n)], timeout=timeout,
                          attempt_timeout=0.5, faults=faults, stop=stop)
        client.set_reachable(list(range(self.n)) if servers is None else servers)
        self.clients.append(client)
        return client

    def partition(self, *groups: Sequence[int]) -> None:
        """Peers talk only within their group (the course's `partition(p1, p2)`)."""
        with self._lock:
            group_of = {peer: g for g, members in enumerate(groups) for peer in members}
            self._disabled = {
                (a, b) for a in range(self.n) for b in range(self.n)
                if a != b and group_of.get(a, -1) != group_of.get(b, -2)
            }
            for i in range(self.n):
                self.connected[i] = True
            self._push_rules()

    def connect_all(self) -> None:
        self.partition(list(range(self.n)))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until every live server answers on its control endpoint (after `start1`,
        which does not wait); fails after `timeout` seconds."""
        self._wait_ready([i for i in range(self.n) if self.peers[i] is not None], timeout)

    def message_stats(self, i: int) -> dict[str, Any]:
        """Server i's fault-injector counters (`FaultInjector.stats`: `rpcs_by_kind` counts
        the requests it sent, `replies_by_kind` the replies it sent, by message kind)."""
        reply = self.stats(i)
        if reply is None:
            raise ClusterFailure(f"peer {i} did not report its stats")
        faults = reply["transport"].get("faults")
        return dict(faults or {})

    def raft_state_sizes(self) -> dict[int, int]:
        return {i: self.log_size(i) for i in range(self.n) if self.peers[i] is not None}

    def cleanup(self, check: bool = True) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()
        super().cleanup(check)
