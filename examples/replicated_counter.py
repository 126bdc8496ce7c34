"""A replicated counter: embed `ruaft.Raft` in your own application.

Three peers run in this one process for the demonstration, but each has what a real
deployment gives every peer: its own LMDB data directory and its own ZeroMQ endpoint on
loopback. Run it twice and the counter continues where it stopped: the state is rebuilt
from each peer's persisted log (and snapshot).

    python examples/replicated_counter.py [--data-dir DIR] [--increments N]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import msgpack

from ruaft import CommandApplied, Raft, RuntimeConfig, SnapshotApplied
from ruaft.storage import LmdbStorage
from transport_zmq import RaftCodec, ZmqTransport, free_tcp_ports


class Counter:
    """The application's state machine: a total and how many increments made it."""

    def __init__(self) -> None:
        self.total = 0
        self.applied_index = 0
        self.raft: Raft | None = None
        self.changed = threading.Condition()

    def apply(self, msg: CommandApplied | SnapshotApplied) -> None:
        """Called by Raft's apply thread, in log order, exactly once per committed entry."""
        with self.changed:
            if isinstance(msg, SnapshotApplied):
                self.total, self.applied_index = msgpack.unpackb(msg.data)
            else:
                if msg.command is not None:  # None is a new leader's no-op entry
                    self.total += msg.command["add"]
                self.applied_index = msg.index
            self.changed.notify_all()

    def snapshot_requested(self, applied_index: int) -> None:
        """Raft's log has grown past `max_raft_state`: hand it our state so it can compact."""
        with self.changed:
            data = msgpack.packb([self.total, self.applied_index])
            index = self.applied_index
        assert self.raft is not None
        self.raft.snapshot(index, data)


def start_peers(data_dir: Path, ports: list[int]) -> tuple[list[Raft], list[Counter]]:
    addresses = {i: f"tcp://127.0.0.1:{port}" for i, port in enumerate(ports)}
    rafts, counters = [], []
    for me in addresses:
        counter = Counter()
        storage = LmdbStorage(data_dir / f"peer-{me}", cluster_id="counter-example")
        codec = RaftCodec("counter-example", addresses.keys(), max_frame_bytes=16 << 20)
        transport = ZmqTransport(me, addresses, codec=codec)
        raft = Raft(sorted(addresses), me, storage, counter.apply, counter.snapshot_requested,
                    RuntimeConfig(max_raft_state=64 * 1024), transport=transport)
        counter.raft = raft
        rafts.append(raft)
        counters.append(counter)
    return rafts, counters


def wait_for_leader(rafts: list[Raft], timeout: float = 10.0) -> Raft:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for raft in rafts:
            if raft.get_state()[1]:
                return raft
        time.sleep(0.05)
    raise TimeoutError("no leader elected")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--increments", type=int, default=100)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="ruaft-counter-"))
    rafts, counters = start_peers(data_dir, free_tcp_ports(3))
    try:
        leader = wait_for_leader(rafts)
        last = None
        for _ in range(args.increments):
            started = leader.start({"add": 1})  # (index, term) if this peer leads
            if started is None:  # leadership moved: find the new leader and go on
                leader = wait_for_leader(rafts)
                continue
            last = started[0]
        if last is not None:
            for raft in rafts:
                raft.wait_applied(last, timeout=10)
        for me, counter in enumerate(counters):
            print(f"peer {me}: total={counter.total} applied_index={counter.applied_index}")
        print(f"data in {data_dir}")
    finally:
        for raft in rafts:
            raft.kill()  # stops its threads, closes storage and transport; re-raises errors
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
