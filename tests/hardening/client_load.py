"""A recorded client load against a KV cluster, for hardening tests that must show the
cluster keeps serving (acknowledged writes keep coming) and stays linearizable while
something else is done to it."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from kv.client import DefiniteError, IndefiniteError, KVClient
from orchestrator.checker import HistoryRecorder
from orchestrator.kvcluster import KVCluster


@dataclass
class _Worker:
    thread: threading.Thread
    client: KVClient
    ops: int = 0
    error: str | None = None


class ClientLoad:
    """`clients` threads, each its own `KVClient` (retrying until `stop()`), doing random
    appends (50 %), puts (5 %) and gets on `keys` keys, every call recorded in `recorder`.
    Bounded: each thread stops after `max_ops` operations or at `stop()`.

    `acknowledged` counts writes whose success was returned; `stop()` ends the calls in
    progress within about one attempt timeout and joins the threads."""

    def __init__(self, cfg: KVCluster, *, clients: int = 3, keys: int = 5, seed: int = 1,
                 max_ops: int = 100_000, prefix: str = ""):
        self.recorder = HistoryRecorder()
        self.keys = [f"{prefix}{k}" for k in range(keys)]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.acknowledged = 0
        self.workers: list[_Worker] = []
        for n in range(clients):
            client = cfg.make_client(timeout=None, stop=self._stop)
            worker = _Worker(threading.Thread(target=self._run, args=(n, random.Random(seed * 1000 + n), max_ops),
                                              name=f"load-{n}", daemon=True), client)
            self.workers.append(worker)
        for worker in self.workers:
            worker.thread.start()

    def _run(self, n: int, rng: random.Random, max_ops: int) -> None:
        worker = self.workers[n]
        process = f"c{n}"
        try:
            for j in range(max_ops):
                if self._stop.is_set():
                    return
                key = rng.choice(self.keys)
                draw = rng.random()
                f = "append" if draw < 0.5 else "put" if draw < 0.55 else "get"
                value = f"<{n}.{j}>"
                self.recorder.invoke(process, f, key, None if f == "get" else value)
                try:
                    if f == "append":
                        worker.client.append(key, value)
                        output = None
                    elif f == "put":
                        worker.client.put(key, value)
                        output = None
                    else:
                        output = worker.client.get(key)
                except IndefiniteError:
                    self.recorder.info(process)
                    return
                except DefiniteError:
                    self.recorder.fail(process)
                    return
                self.recorder.ok(process, output)
                worker.ops += 1
                if f != "get":
                    with self._lock:
                        self.acknowledged += 1
        except Exception as exc:  # noqa: BLE001 -- reported by the test through `errors`
            worker.error = f"client {n} raised {exc!r}"
            if process in self.recorder.open_processes():
                self.recorder.info(process)

    def wait_acknowledged(self, count: int, timeout: float) -> bool:
        """Wait until at least `count` writes have been acknowledged in all."""
        deadline = time.monotonic() + timeout
        while self.acknowledged < count:
            if time.monotonic() > deadline or not any(w.thread.is_alive() for w in self.workers):
                return False
            time.sleep(0.01)
        return True

    def stop(self, join_timeout: float = 15.0) -> list[str]:
        """Stop and join every thread; returns the problems (a thread that raised or that
        did not end in time)."""
        self._stop.set()
        problems = []
        for worker in self.workers:
            worker.thread.join(join_timeout)
            if worker.thread.is_alive():
                problems.append(f"{worker.thread.name} did not stop within {join_timeout} s")
            if worker.error:
                problems.append(worker.error)
        return problems

    @property
    def ops(self) -> int:
        return sum(w.ops for w in self.workers)
