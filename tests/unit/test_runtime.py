"""The runtime (`ruaft.Raft`) with three peers over the in-memory network, in one process."""

from __future__ import annotations

import threading
import time
from typing import Callable

import msgpack
import pytest

from ruaft import CommandApplied, Raft, RaftStoppedError, RuntimeConfig, SnapshotApplied
from ruaft.core.types import Config
from ruaft.storage.memory import MemoryStorage
from ruaft.testing.network import InMemoryNetwork

PEERS = [0, 1, 2]
FAST = RuntimeConfig(tick_seconds=0.01, core=Config(heartbeat_ticks=3, election_ticks=10))


class Applier:
    """Records applied commands by index; rebuilds from snapshots; snapshots every 10."""

    def __init__(self, snapshot_every: int | None = None):
        self.log: dict[int, object] = {}
        self.last = 0
        self.raft: Raft | None = None
        self.snapshot_every = snapshot_every
        self.cond = threading.Condition()
        self.snapshots_installed = 0

    def __call__(self, msg: CommandApplied | SnapshotApplied) -> None:
        with self.cond:
            if isinstance(msg, SnapshotApplied):
                self.log = {int(k): v for k, v in msgpack.unpackb(msg.data, strict_map_key=False).items()}
                self.last = msg.index
                self.snapshots_installed += 1
            else:
                assert msg.index == self.last + 1, f"apply out of order: {msg.index} after {self.last}"
                self.log[msg.index] = msg.command
                self.last = msg.index
                if self.snapshot_every and msg.index % self.snapshot_every == 0 and self.raft:
                    self.raft.snapshot(msg.index, msgpack.packb(self.log))
            self.cond.notify_all()


class Cluster:
    def __init__(self, snapshot_every: int | None = None):
        self.net = InMemoryNetwork(seed=7)
        self.storages = {p: MemoryStorage() for p in PEERS}
        self.appliers: dict[int, Applier] = {}
        self.rafts: dict[int, Raft | None] = {}
        self.snapshot_every = snapshot_every
        for p in PEERS:
            self.start(p)

    def start(self, p: int, apply: Callable[[object], None] | None = None) -> None:
        applier = Applier(self.snapshot_every)
        self.appliers[p] = applier
        raft = Raft(PEERS, p, self.storages[p], apply or applier,
                    config=RuntimeConfig(tick_seconds=0.01, core=FAST.core, seed=p),
                    transport=self.net.endpoint(p))
        applier.raft = raft
        self.rafts[p] = raft

    def leader(self, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = [p for p, r in self.rafts.items() if r and r.get_state()[1]]
            if len(leaders) == 1:
                return leaders[0]
            time.sleep(0.01)
        raise AssertionError("no single leader")

    def wait_all_applied(self, index: int, peers: list[int], timeout: float = 5.0) -> None:
        for p in peers:
            raft = self.rafts[p]
            assert raft is not None and raft.wait_applied(index, timeout), f"peer {p} did not apply {index}"

    def kill_all(self) -> None:
        for raft in self.rafts.values():
            if raft:
                raft.kill()


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.kill_all()


def test_elect_and_replicate(cluster: Cluster) -> None:
    leader = cluster.leader()
    raft = cluster.rafts[leader]
    assert raft is not None
    indexes = [raft.start({"n": i}) for i in range(20)]
    assert all(ix is not None for ix in indexes)
    last = indexes[-1][0]  # type: ignore[index]
    cluster.wait_all_applied(last, PEERS)
    logs = [cluster.appliers[p].log for p in PEERS]
    assert logs[0] == logs[1] == logs[2]
    assert [logs[0][i[0]] for i in indexes] == [{"n": i} for i in range(20)]  # type: ignore[index]


def test_start_many_batch_is_applied_in_order_and_waiters_wake(cluster: Cluster) -> None:
    """A batch's committed entries reach the apply thread as one hand-off: each is still
    delivered once, in order (the Applier asserts it), and `wait_applied` wakes for it."""
    leader = cluster.leader()
    raft = cluster.rafts[leader]
    assert raft is not None
    started = raft.start_many([{"b": i} for i in range(200)])
    assert started is not None
    first, _ = started
    cluster.wait_all_applied(first + 199, PEERS)
    assert [cluster.appliers[leader].log[first + i] for i in range(200)] == [{"b": i} for i in range(200)]
    assert raft.status().applied_index >= first + 199


def test_follower_cannot_start(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = next(p for p in PEERS if p != leader)
    assert cluster.rafts[follower].start("x") is None  # type: ignore[union-attr]


def test_read_index_on_leader_and_follower(cluster: Cluster) -> None:
    leader = cluster.leader()
    raft = cluster.rafts[leader]
    assert raft is not None
    index, _ = raft.start("w")  # type: ignore[misc]
    cluster.wait_all_applied(index, [leader])
    assert raft.read_index(timeout=5) >= index
    import asyncio
    assert asyncio.run(asyncio.wait_for(raft.read_index_async(), 5)) >= index
    follower = next(p for p in PEERS if p != leader)
    from ruaft import NotLeaderError
    with pytest.raises(NotLeaderError):
        cluster.rafts[follower].read_index(timeout=5)  # type: ignore[union-attr]


def test_survives_leader_kill_and_restart(cluster: Cluster) -> None:
    leader = cluster.leader()
    raft = cluster.rafts[leader]
    first, _ = raft.start("before")  # type: ignore[union-attr,misc]
    cluster.wait_all_applied(first, PEERS)
    raft.kill()  # type: ignore[union-attr]
    cluster.rafts[leader] = None
    survivors = [p for p in PEERS if p != leader]
    new_leader = cluster.leader()
    assert new_leader in survivors
    index, _ = cluster.rafts[new_leader].start("after")  # type: ignore[union-attr,misc]
    cluster.wait_all_applied(index, survivors)
    cluster.start(leader)  # restart on the same storage: the log comes back
    cluster.wait_all_applied(index, PEERS)
    assert cluster.appliers[leader].log[first] == "before"
    assert cluster.appliers[leader].log[index] == "after"


def test_snapshot_and_install_on_lagging_follower() -> None:
    cluster = Cluster(snapshot_every=10)
    try:
        leader = cluster.leader()
        lagging = next(p for p in PEERS if p != leader)
        cluster.net.isolate(lagging, PEERS)
        raft = cluster.rafts[leader]
        last = 0
        for i in range(35):
            result = raft.start(i)  # type: ignore[union-attr]
            assert result is not None
            last = result[0]
        others = [p for p in PEERS if p != lagging]
        cluster.wait_all_applied(last, others)
        deadline = time.monotonic() + 5
        while cluster.storages[leader].snapshot() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        snap = cluster.storages[leader].snapshot()
        assert snap is not None and snap.index >= 30
        assert cluster.storages[leader].first_index() > 1  # the log was compacted
        cluster.net.heal()
        cluster.wait_all_applied(last, [lagging])
        assert cluster.appliers[lagging].snapshots_installed >= 1  # caught up by InstallSnapshot
        assert cluster.appliers[lagging].log == cluster.appliers[leader].log
    finally:
        cluster.kill_all()


def test_kill_reraises_callback_error() -> None:
    net = InMemoryNetwork(seed=1)

    def explode(msg: object) -> None:
        if isinstance(msg, CommandApplied) and msg.command == "boom":
            raise RuntimeError("injected failure in apply_command")

    raft = Raft([0], 0, MemoryStorage(), explode, config=FAST, transport=net.endpoint(0))
    deadline = time.monotonic() + 5
    while not raft.get_state()[1] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert raft.start("boom") is not None
    deadline = time.monotonic() + 5
    while raft.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(RuntimeError, match="injected failure"):
        raft.kill()
    with pytest.raises(RaftStoppedError):
        raft.start("after death")


def test_kill_is_clean_without_errors() -> None:
    net = InMemoryNetwork(seed=2)
    raft = Raft([0], 0, MemoryStorage(), lambda m: None, config=FAST, transport=net.endpoint(0))
    raft.kill()
    raft.kill()  # idempotent


def test_hand_off_leadership_moves_leader_to_a_follower(cluster: Cluster) -> None:
    leader = cluster.leader()
    raft = cluster.rafts[leader]
    assert raft is not None
    index, _ = raft.start("before hand-off")  # type: ignore[misc]
    cluster.wait_all_applied(index, PEERS)
    assert raft.hand_off_leadership(timeout=5.0)
    new_leader = cluster.leader()
    assert new_leader != leader
    index2, _ = cluster.rafts[new_leader].start("after hand-off")  # type: ignore[union-attr,misc]
    cluster.wait_all_applied(index2, PEERS)


class FillingStorage(MemoryStorage):
    """A MemoryStorage whose device is 'full' while `full` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.full = threading.Event()
        self.refused = 0

    def save(self, hard_state, entries, snapshot=None):  # type: ignore[no-untyped-def]
        if self.full.is_set():
            self.refused += 1
            from ruaft.storage import StorageFullError
            raise StorageFullError("test device is full")
        super().save(hard_state, entries, snapshot)


def test_full_disk_pauses_the_peer_and_it_resumes_when_space_returns() -> None:
    net = InMemoryNetwork(seed=3)
    storage = FillingStorage()
    applied: list[object] = []
    raft = Raft([0], 0, storage, lambda m: applied.append(getattr(m, "command", None)),
                config=FAST, transport=net.endpoint(0))
    try:
        deadline = time.monotonic() + 5
        while not raft.get_state()[1] and time.monotonic() < deadline:
            time.sleep(0.01)
        storage.full.set()
        index, _ = raft.start("waits for space")  # type: ignore[misc]
        deadline = time.monotonic() + 5
        while storage.refused < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert raft.storage_problem is not None and "full" in raft.storage_problem
        assert not raft.wait_applied(index, timeout=0.3)  # not durable, so not committed
        assert raft.error is None  # paused, not dead
        storage.full.clear()
        assert raft.wait_applied(index, timeout=5)
        assert raft.storage_problem is None
        assert "waits for space" in applied
    finally:
        raft.kill()


def test_state_size_is_tracked_and_a_snapshot_is_requested_past_the_limit() -> None:
    net = InMemoryNetwork(seed=4)
    storage = MemoryStorage()
    requested: list[int] = []
    holder: dict[str, Raft] = {}

    def request_snapshot(applied_index: int) -> None:
        requested.append(applied_index)
        holder["raft"].snapshot(applied_index, b"state")

    config = RuntimeConfig(tick_seconds=0.01, core=FAST.core, max_raft_state=2000)
    raft = Raft([0], 0, storage, lambda m: None, request_snapshot, config, transport=net.endpoint(0))
    holder["raft"] = raft
    try:
        deadline = time.monotonic() + 5
        while not raft.get_state()[1] and time.monotonic() < deadline:
            time.sleep(0.01)
        before = raft.status().state_bytes
        index, _ = raft.start("x" * 100)  # type: ignore[misc]
        assert raft.wait_applied(index, timeout=5)
        assert raft.status().state_bytes > before  # the size follows what was persisted
        for _ in range(40):
            result = raft.start("y" * 100)
            assert result is not None
        assert raft.wait_applied(result[0], timeout=5)
        deadline = time.monotonic() + 5
        while storage.snapshot() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert requested, "no snapshot was requested past max_raft_state"
        assert storage.snapshot() is not None
        deadline = time.monotonic() + 5
        while raft.status().state_bytes > 2000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert raft.status().state_bytes <= 2000
        assert raft.status().snapshot_bytes == len(b"state")
    finally:
        raft.kill()
