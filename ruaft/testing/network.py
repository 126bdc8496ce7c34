"""An in-memory network for running several `ruaft.Raft` runtimes in one process.

Each peer gets an `InMemoryTransport` endpoint (the `ruaft.transport.Transport` shape).
Faults — per directed link enable/disable, loss, delay, duplication, and the reordering
that delays cause — all come from one seeded `random.Random`, under one lock.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from ruaft.core.types import Message, PeerId


@dataclass(slots=True)
class LinkFaults:
    """Faults applied to every message; `delay` is a (min, max) range in seconds."""

    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)


class InMemoryNetwork:
    """Connects in-process transports. Thread-safe."""

    def __init__(self, seed: int = 0, faults: LinkFaults | None = None):
        self._rng = random.Random(seed)
        self.faults = faults or LinkFaults()
        self._lock = threading.Lock()
        self._endpoints: dict[PeerId, InMemoryTransport] = {}
        self._disabled: set[tuple[PeerId, PeerId]] = set()
        self.counters: Counter[str] = Counter()

    def endpoint(self, peer: PeerId) -> InMemoryTransport:
        """The transport for `peer`; a new one replaces (and disconnects) an older one, as a
        restarted process would."""
        with self._lock:
            old = self._endpoints.get(peer)
            if old is not None:
                old._closed = True
            transport = InMemoryTransport(self, peer)
            self._endpoints[peer] = transport
            return transport

    def set_link(self, src: PeerId, dst: PeerId, enabled: bool) -> None:
        with self._lock:
            if enabled:
                self._disabled.discard((src, dst))
            else:
                self._disabled.add((src, dst))

    def isolate(self, peer: PeerId, peers: Sequence[PeerId]) -> None:
        """Disable every link to and from `peer`."""
        for other in peers:
            if other != peer:
                self.set_link(peer, other, False)
                self.set_link(other, peer, False)

    def heal(self) -> None:
        with self._lock:
            self._disabled.clear()

    def _route(self, message: Message) -> None:
        with self._lock:
            self.counters["sent"] += 1
            if (message.from_peer, message.to_peer) in self._disabled:
                self.counters["dropped-partition"] += 1
                return
            destination = self._endpoints.get(message.to_peer)
            if destination is None or destination._closed:
                self.counters["dropped-no-peer"] += 1
                return
            if self._rng.random() < self.faults.drop_rate:
                self.counters["dropped-loss"] += 1
                return
            copies = 2 if self._rng.random() < self.faults.duplicate_rate else 1
            low, high = self.faults.delay
            for _ in range(copies):
                delay = self._rng.uniform(low, high) if high > 0 else 0.0
                destination._enqueue(message, time.monotonic() + delay)
            self.counters["delivered"] += copies


class InMemoryTransport:
    """One peer's endpoint on an `InMemoryNetwork`."""

    def __init__(self, network: InMemoryNetwork, me: PeerId):
        self._network = network
        self.me = me
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Message]] = []
        self._seq = itertools.count()
        self._woken = False
        self._closed = False

    def send(self, messages: Sequence[Message]) -> None:
        if self._closed:
            return
        for message in messages:
            self._network._route(message)

    def _enqueue(self, message: Message, due: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), message))
            self._cond.notify()

    def poll(self, timeout: float) -> list[Message]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                ready: list[Message] = []
                while self._heap and self._heap[0][0] <= now:
                    ready.append(heapq.heappop(self._heap)[2])
                if ready or self._woken or now >= deadline or self._closed:
                    self._woken = False
                    return ready
                wait = deadline - now
                if self._heap:
                    wait = min(wait, self._heap[0][0] - now)
                self._cond.wait(wait)

    def wakeup(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
