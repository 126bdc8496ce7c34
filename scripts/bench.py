#!/usr/bin/env python3
"""Ruaft benchmark: durable KV throughput and latency, library-level proposals, failover,
restart and memory, side by side with PySyncObj and etcd in the same run.

    pip install -e '.[bench]'
    python scripts/bench.py --all --compare pysyncobj --compare etcd --install \
        --json bench.json --markdown bench.md --plot docs/bench-throughput-latency.png

Everything runs on 127.0.0.1. Every figure of ours is durable: each peer fsyncs its LMDB
write before it acknowledges (nothing here turns that off). Every process the benchmark
starts is recorded by pid and stopped at the end, whatever happens.

Method (docs/PERFORMANCE.md has the full story):
- kv mode: a cluster of real peer processes (`python -m kv.peer_cli`) started from a fresh
  cluster file; load from separate worker processes, each multiplexing many logical clients
  over one ZeroMQ DEALER (one outstanding request per logical client, each with its own
  client_id and seq, exactly what a `KVClient` sends); each point has a warm-up, then a
  measured window; latency is measured per request in the workers.
- library mode: three processes, each one `ruaft.Raft` on LMDB + ZeroMQ (as in
  examples/replicated_counter.py); the leader's process runs the load loop (PySyncObj's
  method), keeping `clients` proposals outstanding; latency is proposal -> applied on the
  leader.
- peer CPU is psutil's user+system time over the window (in cores: 1.0 = one core busy),
  RSS at the window's end; the generator's CPU is measured the same way in the workers.

`main(argv)` is the entry point for `ruaft-cluster bench`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parent.parent
BENCH_FILE = Path(__file__).resolve()
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ANCHORS = {
    "etcd": {"throughput": 3800.0, "p50_ms": 1.5},
    "pysyncobj": {"throughput": 6000.0, "p50_ms": 0.8},
}
GOALS = {
    "kv_put_3": 10_000.0,
    "kv_put_5": 7_000.0,
    "library": 15_000.0,
    "one_client_p50_ms": 1.0,
    "one_client_p99_ms": 3.0,
    "gets": 20_000.0,
    "failover_p50_s": 1.0,
    "restart_s": 2.0,
}

# ============================================================================ small helpers


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def latency_summary(latencies_us: Iterable[float]) -> dict[str, float | None]:
    values = sorted(latencies_us)
    out: dict[str, float | None] = {}
    for name, q in (("p50_ms", 0.50), ("p99_ms", 0.99), ("p999_ms", 0.999)):
        v = percentile(values, q)
        out[name] = None if v is None else round(v / 1000.0, 3)
    out["mean_ms"] = round(sum(values) / len(values) / 1000.0, 3) if values else None
    out["samples"] = len(values)
    return out


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def env_with_repo() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class Processes:
    """Every process the benchmark starts, by pid; `stop_all` ends them (TERM, then KILL)."""

    def __init__(self) -> None:
        self._pids: dict[int, str] = {}
        self.history: list[int] = []
        self._popen: dict[int, subprocess.Popen[Any]] = {}
        self._lock = threading.Lock()

    def add(self, pid: int, what: str, popen: subprocess.Popen[Any] | None = None) -> int:
        with self._lock:
            self._pids[pid] = what
            self.history.append(pid)
            if popen is not None:
                self._popen[pid] = popen
        return pid

    def popen(self, argv: list[str], what: str, **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("env", env_with_repo())
        process = subprocess.Popen(argv, **kwargs)
        self.add(process.pid, what, process)
        return process

    def forget(self, pid: int) -> None:
        with self._lock:
            self._pids.pop(pid, None)
            self._popen.pop(pid, None)

    def stop(self, pid: int, timeout: float = 10.0) -> None:
        import psutil

        with self._lock:
            popen = self._popen.get(pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            if popen is not None:
                popen.wait(timeout)
            else:
                psutil.Process(pid).wait(timeout)
        except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                if popen is not None:
                    popen.wait(5)
                else:
                    psutil.Process(pid).wait(5)
            except Exception:
                pass
        except (psutil.NoSuchProcess, ChildProcessError):
            pass
        self.forget(pid)

    def stop_all(self) -> None:
        with self._lock:
            pids = list(self._pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in pids:
            self.stop(pid, timeout=8.0)

    def alive(self) -> list[int]:
        """Pids ever started that still run (zombies of our own children do not count)."""
        import psutil

        with self._lock:
            pids = list(self.history)
        left = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
            except psutil.NoSuchProcess:
                pass
        return left


PROCS = Processes()


class ProcSampler:
    """CPU seconds (user+system) and RSS of a set of pids between two samples."""

    def __init__(self, pids: dict[str, int]):
        import psutil

        self.procs = {}
        for name, pid in pids.items():
            try:
                self.procs[name] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass
        self._t0 = 0.0
        self._cpu0: dict[str, float] = {}

    def _cpu(self) -> dict[str, float]:
        out = {}
        for name, p in self.procs.items():
            try:
                t = p.cpu_times()
                out[name] = t.user + t.system
            except Exception:
                pass
        return out

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._cpu0 = self._cpu()

    def stop(self) -> dict[str, Any]:
        elapsed = max(1e-6, time.monotonic() - self._t0)
        cpu1 = self._cpu()
        cores = {n: round((cpu1[n] - self._cpu0.get(n, cpu1[n])) / elapsed, 3) for n in cpu1}
        rss = {}
        for name, p in self.procs.items():
            try:
                rss[name] = round(p.memory_info().rss / 2**20, 1)
            except Exception:
                pass
        return {"cpu_cores": cores, "rss_mb": rss}


class Progress:
    """A rich progress bar over the run's steps (falls back to plain lines)."""

    def __init__(self, total: float, enabled: bool = True):
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None
        if enabled:
            try:
                from rich.console import Console
                from rich.progress import (BarColumn, Progress as RichProgress, TextColumn,
                                           TimeElapsedColumn, TimeRemainingColumn)

                self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                         TextColumn("{task.percentage:>3.0f}%"),
                                         TimeElapsedColumn(), TimeRemainingColumn(),
                                         console=Console(stderr=True), transient=False)
                self._task = self._bar.add_task("bench", total=total)
                self._bar.start()
            except ImportError:
                self._bar = None

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=text)
        elif self.enabled:
            print(f"[bench] {text}", file=sys.stderr, flush=True)

    def advance(self, amount: float = 1.0) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def log(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def sleep_until(deadline: float, tick: Callable[[], None] | None = None,
                done: Callable[[], bool] | None = None) -> None:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (done is not None and done()):
            return
        time.sleep(min(0.25, remaining))
        if tick is not None:
            tick()


# ============================================================================ worker roles
# These run in child processes started as `python scripts/bench.py _ROLE SPEC_JSON`; they
# import only what they need so they start fast.


def role_kvload(spec: dict[str, Any]) -> int:
    """Load worker: `clients` logical clients over one DEALER, one outstanding request each."""
    import msgpack
    import zmq

    n = int(spec["clients"])
    start_at, warm_end, end = spec["start_at"], spec["warm_end"], spec["end"]
    workload = spec["workload"]
    read_ratio = float(spec.get("read_ratio", 0.5))
    max_ops = spec.get("max_ops")  # None: time-bounded only
    value = "v" * int(spec["value_size"])
    keyspace = max(1, int(spec["keyspace"]))
    keys = [f"key{i:07d}" for i in range(keyspace)]
    tag = f"{spec['tag']}-{os.getpid()}-"
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 1_000_000)
    sock.setsockopt(zmq.RCVHWM, 1_000_000)
    sock.connect(spec["address"])
    seqs = [0] * n
    cids = [f"{tag}{i}" for i in range(n)]
    inflight: dict[int, tuple[int, float, int]] = {}
    lat = array("I")
    ops = [0, 0]  # writes, reads completed in the window
    errors: dict[str, int] = {}
    counter = 0
    rid = 0
    sent = 0
    packb, unpackb, monotonic = msgpack.packb, msgpack.unpackb, time.monotonic

    def send(vc: int) -> None:
        nonlocal rid, counter, sent
        rid += 1
        counter += 1
        sent += 1
        key = keys[(counter * 7919) % keyspace]
        is_read = workload == "get" or (workload == "mixed" and (counter * 2654435761 % 1000) < read_ratio * 1000)
        if is_read:
            msg = {"id": rid, "op": "get", "key": key}
        else:
            seqs[vc] += 1
            msg = {"id": rid, "op": "put", "key": key, "value": value, "client_id": cids[vc],
                   "seq": seqs[vc]}
        inflight[rid] = (vc, monotonic(), 1 if is_read else 0)
        sock.send(packb(msg))

    while monotonic() < start_at:
        time.sleep(min(0.05, max(0.0, start_at - monotonic())))
    for vc in range(n):
        if max_ops is None or sent < max_ops:
            send(vc)
    cpu0: float | None = None
    cpu1 = 0.0
    while inflight:
        now = monotonic()
        if now >= end:
            break
        if cpu0 is None and now >= warm_end:
            t = os.times()
            cpu0 = t.user + t.system
        if not sock.poll(int(min(100.0, (end - now) * 1000)) + 1):
            continue
        while True:
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            reply = unpackb(frame, raw=False)
            entry = inflight.pop(reply.get("id"), None)
            if entry is None:
                continue
            t = monotonic()
            vc, sent_at, kind = entry
            if reply.get("ok"):
                if sent_at >= warm_end and t <= end:
                    lat.append(min(int((t - sent_at) * 1e6), 4_000_000_000))
                if warm_end <= t <= end:
                    ops[kind] += 1
            else:
                kind_name = str(reply.get("error_kind"))
                errors[kind_name] = errors.get(kind_name, 0) + 1
                if kind == 0:
                    seqs[vc] -= 1  # retry the same seq
                time.sleep(0.002)
            if t < end and (max_ops is None or sent < max_ops):
                send(vc)
    t = os.times()
    cpu1 = t.user + t.system
    window = max(1e-6, min(end, monotonic()) - warm_end)
    result = {"writes": ops[0], "reads": ops[1], "errors": errors, "outstanding": len(inflight),
              "sent": sent, "gen_cpu_cores": round((cpu1 - (cpu0 if cpu0 is not None else cpu1)) / window, 3)}
    Path(spec["out"] + ".lat").write_bytes(lat.tobytes())
    Path(spec["out"]).write_text(json.dumps(result))
    sock.close(0)
    ctx.term()
    return 0


def _wait_term() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def role_libpeer(spec: dict[str, Any]) -> int:
    """One `ruaft.Raft` on LMDB + ZeroMQ; if it leads, run the schedule of load points."""
    import msgpack

    from ruaft import CommandApplied, Raft, RuntimeConfig, SnapshotApplied
    from ruaft.storage import LmdbStorage
    from transport_zmq import RaftCodec, ZmqTransport

    stop = _wait_term()
    me = int(spec["id"])
    addresses = {int(k): v for k, v in spec["addresses"].items()}
    folder = Path(spec["folder"])
    data: dict[str, str] = {}
    cond = threading.Condition()
    st: dict[str, Any] = {"applied": 0, "start_t": {}, "lat": array("I"), "count": 0,
                          "warm_end": 0.0, "end": 0.0}
    raft_box: list[Any] = []

    def apply(msg: Any) -> None:
        if isinstance(msg, SnapshotApplied):
            restored = msgpack.unpackb(msg.data, raw=False)
            data.clear()
            data.update(restored)
        elif msg.command is not None:
            _, _, _, key, value = msg.command
            data[key] = value
        t = time.monotonic()
        with cond:
            st["applied"] = msg.index
            started = st["start_t"].pop(msg.index, None)
            if started is not None:
                if started >= st["warm_end"] and t <= st["end"]:
                    st["lat"].append(min(int((t - started) * 1e6), 4_000_000_000))
                if st["warm_end"] <= t <= st["end"]:
                    st["count"] += 1
            cond.notify_all()

    def snapshot_requested(applied_index: int) -> None:
        with cond:
            blob = msgpack.packb(data, use_bin_type=True)
            index = st["applied"]
        raft_box[0].snapshot(index, blob)

    storage = LmdbStorage(folder / f"peer-{me}", cluster_id=spec["cluster_id"])
    codec = RaftCodec(spec["cluster_id"], addresses.keys(), max_frame_bytes=64 << 20)
    transport = ZmqTransport(me, addresses, codec=codec)
    raft = Raft(sorted(addresses), me, storage, apply, snapshot_requested,
                RuntimeConfig(max_raft_state=spec.get("max_raft_state", 1 << 20)), transport=transport)
    raft_box.append(raft)
    try:
        # Report who leads until the schedule arrives (leadership may move meanwhile).
        go = folder / "go.json"
        deadline = time.monotonic() + 120
        while not stop.is_set() and not go.exists() and time.monotonic() < deadline:
            leader = raft.status().leader_id
            if leader >= 0:
                tmp_ready = folder / f"ready-{me}.tmp"
                tmp_ready.write_text(json.dumps({"leader": leader, "pid": os.getpid()}))
                os.replace(tmp_ready, folder / f"ready-{me}.json")
            time.sleep(0.05)
        if stop.is_set():
            return 0
        schedule = json.loads(go.read_text())
        if schedule["leader"] != me:
            stop.wait(3600)
            return 0
        value = "v" * int(schedule["value_size"])
        keyspace = int(schedule["keyspace"])
        use_many = schedule.get("propose") == "start_many"
        results = []
        seq = 0
        for point in schedule["points"]:
            window = int(point["clients"])
            with cond:
                st["start_t"] = {}
                st["lat"] = array("I")
                st["count"] = 0
                st["warm_end"], st["end"] = point["warm_end"], point["end"]
            last = st["applied"]
            error = None
            while time.monotonic() < point["start_at"]:
                time.sleep(0.01)
            while not stop.is_set():
                now = time.monotonic()
                if now >= point["end"]:
                    break
                with cond:
                    while last - st["applied"] >= window and time.monotonic() < point["end"]:
                        cond.wait(0.05)
                    room = window - (last - st["applied"])
                if room <= 0:
                    continue
                cmds = []
                for _ in range(room):
                    seq += 1
                    cmds.append([f"lib-{me}", seq, "put", f"key{(seq * 7919) % keyspace:07d}", value])
                t = time.monotonic()
                if use_many:
                    started = raft.start_many(cmds)
                    if started is None:
                        error = "lost leadership"
                        break
                    first = started[0]
                    with cond:
                        for i in range(len(cmds)):
                            st["start_t"][first + i] = t
                    last = first + len(cmds) - 1
                else:
                    for cmd in cmds:
                        t = time.monotonic()
                        started = raft.start(cmd)
                        if started is None:
                            error = "lost leadership"
                            break
                        with cond:
                            st["start_t"][started[0]] = t
                        last = started[0]
                    if error:
                        break
            # Let what is outstanding finish before the next point.
            raft.wait_applied(last, timeout=10)
            with cond:
                lat = sorted(st["lat"])
                count = st["count"]
            duration = point["end"] - point["warm_end"]
            results.append({"clients": window, "throughput": round(count / duration, 1),
                            **latency_summary(lat), "error": error})
            (folder / "result.json").write_text(json.dumps(results))
        (folder / "done.json").write_text(json.dumps(results))
        stop.wait(3600)
        return 0
    finally:
        try:
            raft.kill()
        except Exception:
            pass


def role_psopeer(spec: dict[str, Any]) -> int:
    """One PySyncObj node (in-memory journal: it never fsyncs) with a `set` method; if it
    leads, run the same schedule of load points (PySyncObj's own method: load from inside
    the leader's process, completion via callbacks)."""
    from pysyncobj import SyncObj, SyncObjConf, replicated

    stop = _wait_term()
    folder = Path(spec["folder"])
    me = int(spec["id"])
    addrs = spec["addresses"]

    class KV(SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            conf = SyncObjConf(appendEntriesUseBatch=bool(spec.get("batch", True)),
                               dynamicMembershipChange=False)
            super().__init__(addrs[me], [a for i, a in enumerate(addrs) if i != me], conf)
            self.data: dict[str, str] = {}

        @replicated
        def set(self, key: str, value: str) -> None:
            self.data[key] = value

    obj = KV()
    go = folder / "go.json"
    deadline = time.monotonic() + 120
    while not stop.is_set() and not go.exists() and time.monotonic() < deadline:
        leader = obj._getLeader()
        if leader is not None:
            tmp_ready = folder / f"ready-{me}.tmp"
            tmp_ready.write_text(json.dumps({"leader": str(leader), "me": addrs[me], "pid": os.getpid()}))
            os.replace(tmp_ready, folder / f"ready-{me}.json")
        time.sleep(0.05)
    if stop.is_set():
        obj.destroy()
        return 0
    schedule = json.loads(go.read_text())
    if schedule["leader"] != addrs[me]:
        stop.wait(3600)
        obj.destroy()
        return 0
    value = "v" * int(schedule["value_size"])
    keyspace = int(schedule["keyspace"])
    cond = threading.Condition()
    results = []
    counter = 0
    for point in schedule["points"]:
        window = int(point["clients"])
        box: dict[str, Any] = {"outstanding": 0, "lat": array("I"), "count": 0, "errors": 0}
        warm_end, end = point["warm_end"], point["end"]

        def make_cb(t0: float) -> Callable[[Any, Any], None]:
            def cb(result: Any, error: Any) -> None:
                t = time.monotonic()
                with cond:
                    box["outstanding"] -= 1
                    if error == 0:  # FAIL_REASON.SUCCESS
                        if t0 >= warm_end and t <= end:
                            box["lat"].append(min(int((t - t0) * 1e6), 4_000_000_000))
                        if warm_end <= t <= end:
                            box["count"] += 1
                    else:
                        box["errors"] += 1
                    cond.notify_all()
            return cb

        while time.monotonic() < point["start_at"]:
            time.sleep(0.01)
        while not stop.is_set() and time.monotonic() < end:
            with cond:
                while box["outstanding"] >= window and time.monotonic() < end:
                    cond.wait(0.05)
                room = window - box["outstanding"]
                box["outstanding"] += max(0, room)
            for _ in range(max(0, room)):
                counter += 1
                obj.set(f"key{(counter * 7919) % keyspace:07d}", value, callback=make_cb(time.monotonic()))
        drain_deadline = time.monotonic() + 10
        with cond:
            while box["outstanding"] > 0 and time.monotonic() < drain_deadline:
                cond.wait(0.05)
            lat = sorted(box["lat"])
            count = box["count"]
        results.append({"clients": window, "throughput": round(count / (end - warm_end), 1),
                        **latency_summary(lat), "errors": box["errors"]})
        (folder / "result.json").write_text(json.dumps(results))
    (folder / "done.json").write_text(json.dumps(results))
    stop.wait(3600)
    obj.destroy()
    return 0


ROLES: dict[str, Callable[[dict[str, Any]], int]] = {
    "_kvload": role_kvload, "_libpeer": role_libpeer, "_psopeer": role_psopeer,
}

# ============================================================================ KV clusters


class KVBenchCluster:
    """A LocalCluster in a temp folder whose pids are registered with PROCS."""

    def __init__(self, root: Path, n: int, maxraftstate: int | None = 1 << 20):
        from orchestrator.local import LocalCluster, new_spec

        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        spec = new_spec(n, root, maxraftstate=maxraftstate)
        # A production start: no control endpoint, no fault injector on the message path.
        spec = dataclasses.replace(spec, peers=tuple(dataclasses.replace(p, control_address=None)
                                                     for p in spec.peers))
        spec.write(spec.path)  # type: ignore[arg-type]
        self.cluster = LocalCluster(spec)
        self.spec = self.cluster.spec
        self.pids: dict[int, int] = {}

    def start(self, peer_ids: Iterable[int] | None = None) -> None:
        for i in (self.cluster.ids if peer_ids is None else peer_ids):
            pid = self.cluster.start(i)
            self.pids[i] = pid
            PROCS.add(pid, f"kv peer {i}")

    def wait_leader(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in self.pids:
                st = self.state(i, timeout=0.5)
                if st is not None and st.get("role") == "leader":
                    return i
            time.sleep(0.1)
        raise RuntimeError(f"no leader within {timeout} s")

    def state(self, peer_id: int, timeout: float = 1.0) -> dict[str, Any] | None:
        """The peer's `status` reply on its client endpoint (role, indexes), or None.

        A raw DEALER, not `RpcClient.call`: the KV server's status reply carries the peer's
        id in the `id` field, which overwrites the request id, so `RpcClient` discards it as
        stale (see scripts/BENCH_FINDINGS.md). One fresh socket per call, so any reply on it
        is the answer."""
        import msgpack
        import zmq

        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.client_address(peer_id))
            sock.send(msgpack.packb({"id": 1, "op": "status"}))
            if not sock.poll(int(timeout * 1000)):
                return None
            reply = msgpack.unpackb(sock.recv(), raw=False)
            return reply if isinstance(reply, dict) and reply.get("ok") and "role" in reply else None
        finally:
            sock.close(0)

    def kill(self, peer_id: int, sig: signal.Signals = signal.SIGKILL) -> int:
        pid = self.pids[peer_id]
        os.kill(pid, sig)
        try:
            import psutil

            psutil.Process(pid).wait(10)
        except Exception:
            pass
        PROCS.forget(pid)
        return pid

    def client_address(self, peer_id: int) -> str:
        return self.spec.peer(peer_id).client_address

    def stop(self) -> None:
        for pid in list(self.pids.values()):
            PROCS.stop(pid)
        self.pids.clear()


def run_kv_point(cluster: KVBenchCluster, leader: int, workload: str, clients: int, args: argparse.Namespace,
                 tmp: Path, progress: Progress, label: str, max_ops: int | None = None,
                 warmup: float | None = None, duration: float | None = None) -> dict[str, Any]:
    warmup = args.warmup if warmup is None else warmup
    duration = args.duration if duration is None else duration
    workers = max(1, min(args.workers, clients))
    share = [clients // workers + (1 if i < clients % workers else 0) for i in range(workers)]
    start_at = time.monotonic() + 1.5
    warm_end = start_at + warmup
    end = warm_end + duration
    procs = []
    outs = []
    for w, n in enumerate(share):
        out = tmp / f"kvload-{label}-{w}.json"
        outs.append(out)
        spec = {"address": cluster.client_address(leader), "clients": n, "start_at": start_at,
                "warm_end": warm_end, "end": end, "workload": workload, "value_size": args.value_size,
                "keyspace": args.keyspace, "tag": f"{label}-{w}", "out": str(out),
                "read_ratio": args.read_ratio,
                "max_ops": None if max_ops is None else max(1, max_ops // workers)}
        procs.append(PROCS.popen([sys.executable, str(BENCH_FILE), "_kvload", json.dumps(spec)],
                                 f"kv load worker {w}"))
    sampler = ProcSampler({f"peer{i}": pid for i, pid in cluster.pids.items()})
    total = end - time.monotonic()
    begin = time.monotonic()
    last = [begin]

    def tick() -> None:
        now = time.monotonic()
        progress.advance((now - last[0]) / max(total, 1e-6))
        last[0] = now

    def finished() -> bool:
        return all(p.poll() is not None for p in procs)

    sleep_until(warm_end, tick, finished)
    load0 = loadavg()
    sampler.start()
    sleep_until(end, tick, finished)
    stats = sampler.stop()
    measured = min(duration, max(1e-6, time.monotonic() - warm_end))
    for p in procs:
        try:
            p.wait(timeout=30 + (0 if max_ops is None else duration))
        except subprocess.TimeoutExpired:
            pass
        PROCS.stop(p.pid)
    progress.advance(max(0.0, 1.0 - (last[0] - begin) / max(total, 1e-6)))
    writes = reads = outstanding = 0
    gen_cpu = 0.0
    errors: dict[str, int] = {}
    lat = array("I")
    for out in outs:
        try:
            r = json.loads(out.read_text())
        except (OSError, ValueError):
            errors["worker_failed"] = errors.get("worker_failed", 0) + 1
            continue
        writes += r["writes"]
        reads += r["reads"]
        outstanding += r["outstanding"]
        gen_cpu += r["gen_cpu_cores"]
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
        lat.frombytes(Path(str(out) + ".lat").read_bytes())
    peer_cpu = stats["cpu_cores"]
    return {
        "kind": "kv", "workload": workload, "peers": len(cluster.pids), "clients": clients,
        "workers": workers, "value_size": args.value_size, "duration_s": duration, "warmup_s": warmup,
        "throughput": round((writes + reads) / measured, 1), "writes_per_s": round(writes / measured, 1),
        "reads_per_s": round(reads / measured, 1), **latency_summary(lat), "errors": errors,
        "leader": leader, "peer_cpu_cores": peer_cpu,
        "leader_cpu_cores": peer_cpu.get(f"peer{leader}"), "peer_cpu_total": round(sum(peer_cpu.values()), 3),
        "peer_rss_mb": stats["rss_mb"], "gen_cpu_cores": round(gen_cpu, 3), "loadavg": load0,
        "durable": True,
    }


def kv_sweeps(args: argparse.Namespace, tmp: Path, progress: Progress, results: dict[str, Any]) -> None:
    for peers in args.peers:
        cluster = KVBenchCluster(tmp / f"kv-{peers}", peers)
        try:
            progress.describe(f"kv: starting {peers} peers")
            cluster.start()
            leader = cluster.wait_leader()
            for workload in args.workloads:
                for clients in args.clients:
                    label = f"{workload}-{peers}p-{clients}c"
                    progress.describe(f"kv {workload}, {peers} peers, {clients} clients")
                    # The leader may have moved (it should not): ask again before each point.
                    leader = cluster.wait_leader()
                    point = run_kv_point(cluster, leader, workload, clients, args, tmp, progress, label)
                    results["points"].append(point)
                    progress.log(f"  {label}: {point['throughput']:.0f} ops/s, p50 {point['p50_ms']} ms, "
                                 f"p99 {point['p99_ms']} ms, peers {point['peer_cpu_total']} cores, "
                                 f"gen {point['gen_cpu_cores']} cores, errors {point['errors'] or 0}, "
                                 f"load {point['loadavg'][:1]}")
            if peers == 3 and args.profile_dir is not None:
                results["profile"] = profile_leader(cluster, cluster.wait_leader(), args, tmp, progress)
            if peers == 3 and args.failover > 0:
                results["failover"] = failover(cluster, args, progress)
        finally:
            cluster.stop()


# ============================================================================ failover


def failover(cluster: KVBenchCluster, args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """SIGKILL the leader while a prober sends a fresh put to every live peer every 5 ms;
    unavailability = kill -> first acknowledged put that was sent after the kill."""
    import msgpack
    import zmq

    samples = []
    notes = []
    ctx = zmq.Context.instance()
    for attempt in range(args.failover):
        progress.describe(f"failover {attempt + 1}/{args.failover}")
        leader = cluster.wait_leader()
        socks = {}
        for i in cluster.pids:
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(cluster.client_address(i))
            socks[i] = s
        poller = zmq.Poller()
        for s in socks.values():
            poller.register(s, zmq.POLLIN)
        sent_at: dict[int, float] = {}
        rid = 0
        t_kill: float | None = None
        t_ack: float | None = None
        acks_before = 0
        dead: set[int] = set()
        next_send = time.monotonic()
        deadline = time.monotonic() + 20.0
        warm_until = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            now = time.monotonic()
            if t_kill is None and now >= warm_until and acks_before > 0:
                cluster.kill(leader)  # SIGKILL, then wait for the pid to be gone
                dead.add(leader)
                t_kill = now
            if now >= next_send:
                for i, s in socks.items():
                    if i in dead:
                        continue
                    rid += 1
                    sent_at[rid] = time.monotonic()
                    s.send(msgpack.packb({"id": rid, "op": "put", "key": "failover", "value": str(rid),
                                          "client_id": f"probe-{attempt}-{rid}", "seq": 1}))
                next_send = now + 0.005
            for s, _ in poller.poll(2):
                while True:
                    try:
                        reply = msgpack.unpackb(s.recv(zmq.NOBLOCK), raw=False)
                    except zmq.Again:
                        break
                    if not reply.get("ok"):
                        continue
                    t = time.monotonic()
                    sent = sent_at.get(reply.get("id"), 0.0)
                    if t_kill is None:
                        acks_before += 1
                    elif sent > t_kill and t_ack is None:
                        t_ack = t
            if t_ack is not None:
                break
        for s in socks.values():
            s.close(0)
        if t_kill is None:
            notes.append(f"attempt {attempt}: no acknowledged put before the kill")
        elif t_ack is None:
            notes.append(f"attempt {attempt}: no acknowledged put within 20 s of the kill")
        else:
            samples.append(round(t_ack - t_kill, 3))
            progress.log(f"  failover {attempt + 1}: {samples[-1]:.3f} s without writes")
        # Bring the killed peer back and let it catch up before the next attempt.
        cluster.start([leader])
        new_leader = cluster.wait_leader()
        target = (cluster.state(new_leader) or {}).get("commit_index", 0)
        catch_deadline = time.monotonic() + 30
        while time.monotonic() < catch_deadline:
            st = cluster.state(leader)
            if st and st.get("applied_index", 0) >= target:
                break
            time.sleep(0.1)
        progress.advance(1)
    ordered = sorted(samples)
    return {"samples_s": samples, "p50_s": percentile(ordered, 0.5), "max_s": ordered[-1] if ordered else None,
            "notes": notes, "loadavg": loadavg(),
            "method": "SIGKILL of the leader; a prober sends a new put to every live peer every 5 ms; "
                      "time from the kill to the first acknowledged put sent after it"}


# ============================================================================ restart


def restart_measurement(args: argparse.Namespace, tmp: Path, progress: Progress) -> dict[str, Any]:
    """Load `restart_entries` puts into a 3-peer cluster that never snapshots, SIGKILL a
    follower, start it again and time it until it answers and until it has re-applied."""
    entries = args.restart_entries
    cluster = KVBenchCluster(tmp / "restart", 3, maxraftstate=None)
    try:
        progress.describe(f"restart: loading {entries} entries")
        cluster.start()
        leader = cluster.wait_leader()
        t0 = time.monotonic()
        run_kv_point(cluster, leader, "put", 64, args, tmp, Progress(1, enabled=False), "restart-load",
                     max_ops=entries, warmup=0.0, duration=min(600.0, args.restart_load_timeout))
        load_s = time.monotonic() - t0
        st = cluster.state(leader) or {}
        follower = next(i for i in cluster.pids if i != leader)
        # Let the follower apply everything, then crash it.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            fst = cluster.state(follower) or {}
            if fst.get("applied_index", 0) >= st.get("commit_index", 0):
                break
            time.sleep(0.1)
        fst = cluster.state(follower) or {}
        target = fst.get("applied_index", 0)
        log_entries = fst.get("last_index", 0) - fst.get("snapshot_index", 0)
        progress.describe("restart: crash and restart a follower")
        cluster.kill(follower)
        t_spawn = time.monotonic()
        cluster.start([follower])
        t_answer = t_caught = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            s = cluster.state(follower, timeout=0.2)
            now = time.monotonic()
            if s is not None and t_answer is None:
                t_answer = now
            if s is not None and s.get("applied_index", 0) >= target:
                t_caught = now
                break
            time.sleep(0.01)
        rss = ProcSampler({"restarted": cluster.pids[follower]}).stop()["rss_mb"].get("restarted")
        progress.advance(1)
        return {"log_entries": log_entries, "applied_target": target, "load_s": round(load_s, 1),
                "answers_s": None if t_answer is None else round(t_answer - t_spawn, 3),
                "serves_s": None if t_caught is None else round(t_caught - t_spawn, 3),
                "rss_mb_after": rss, "loadavg": loadavg(),
                "method": "follower with N log entries (no snapshot) SIGKILLed, restarted; 'answers' = its "
                          "control endpoint replies, 'serves' = its applied index is back to where it was"}
    finally:
        cluster.stop()


# ============================================================================ memory


def memory_measurement(args: argparse.Namespace, tmp: Path, progress: Progress) -> list[dict[str, Any]]:
    """Peer RSS with N keys: seed every peer's storage with a KV snapshot of N keys (what the
    peers would hold after N puts and a compaction), start the cluster, do puts, read RSS.
    Also, for the smallest N, load the keys through real puts and compare."""
    import msgpack

    from ruaft.core.types import HardState, Snapshot
    from ruaft.storage import LmdbStorage

    rows = []
    value = "v" * args.value_size
    for n in args.memory_keys:
        progress.describe(f"memory: {n} keys")
        cluster = KVBenchCluster(tmp / f"mem-{n}", 3)
        try:
            data = {f"key{i:09d}": value for i in range(n)}
            live = sum(len(k) + len(v) for k, v in data.items())
            blob = msgpack.packb([n, data, {}], use_bin_type=True)
            del data
            for i in cluster.cluster.ids:
                storage = LmdbStorage(cluster.spec.data_dir(i) / "raft", cluster_id=cluster.spec.cluster_id)
                try:
                    storage.save(HardState(term=1, vote=-1, commit=n), [], Snapshot(index=n, term=1, data=blob))
                finally:
                    storage.close()
            del blob
            t0 = time.monotonic()
            cluster.start()
            leader = cluster.wait_leader(timeout=120)
            start_s = time.monotonic() - t0
            point = run_kv_point(cluster, leader, "put", 8, args, tmp, Progress(1, enabled=False),
                                 f"mem-{n}", warmup=0.5, duration=2.0)
            time.sleep(1.0)
            rss = ProcSampler({f"peer{i}": p for i, p in cluster.pids.items()}).stop()["rss_mb"]
            live_mb = live / 2**20
            bound = 2.5 * live_mb + 60
            rows.append({"keys": n, "live_data_mb": round(live_mb, 1), "peer_rss_mb": rss,
                         "max_rss_mb": max(rss.values()) if rss else None, "goal_mb": round(bound, 1),
                         "met": bool(rss) and max(rss.values()) <= bound, "start_to_leader_s": round(start_s, 2),
                         "puts_after_start": point["throughput"], "loadavg": loadavg(),
                         "method": "keys seeded as a KV snapshot in each peer's LMDB, then the cluster "
                                   "started and 2 s of puts (8 clients)"})
            progress.log(f"  {n} keys: live {live_mb:.1f} MB, peer RSS {rss} MB (goal <= {bound:.0f} MB)")
        finally:
            cluster.stop()
            shutil.rmtree(cluster.root, ignore_errors=True)
        progress.advance(1)
    return rows


# ============================================================================ library mode / PySyncObj


def schedule_points(clients: Sequence[int], warmup: float, duration: float, first_at: float,
                    gap: float = 1.0) -> list[dict[str, Any]]:
    points = []
    t = first_at
    for c in clients:
        points.append({"clients": c, "start_at": t, "warm_end": t + warmup, "end": t + warmup + duration})
        t += warmup + duration + gap + 2.0  # +2: the leader drains what is outstanding
    return points


def run_in_leader_process(kind: str, args: argparse.Namespace, tmp: Path, progress: Progress,
                          extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Start 3 peer processes of `kind` (_libpeer or _psopeer), wait for a leader, hand the
    leader the schedule, sample all three processes' CPU/RSS per point, collect results."""
    from transport_zmq.transport import free_tcp_ports

    folder = tmp / f"{kind.strip('_')}-{(extra or {}).get('propose', '')}{(extra or {}).get('batch', '')}"
    folder.mkdir(parents=True, exist_ok=True)
    ports = free_tcp_ports(3)
    if kind == "_libpeer":
        addresses: Any = {str(i): f"tcp://127.0.0.1:{p}" for i, p in enumerate(ports)}
    else:
        addresses = [f"127.0.0.1:{p}" for p in ports]
    pids = {}
    for i in range(3):
        spec = {"id": i, "addresses": addresses, "folder": str(folder), "cluster_id": "bench-lib",
                **(extra or {})}
        out = open(folder / f"output-{i}.txt", "ab")
        p = PROCS.popen([sys.executable, str(BENCH_FILE), kind, json.dumps(spec)], f"{kind} {i}",
                        stdout=out, stderr=out)
        out.close()
        pids[i] = p.pid
    try:
        deadline = time.monotonic() + 60
        leader: Any = None
        while time.monotonic() < deadline:
            try:
                ready = [json.loads(f.read_text()) for f in folder.glob("ready-*.json")]
            except ValueError:
                ready = []
            if len(ready) == 3 and len({r["leader"] for r in ready}) == 1:
                leader = ready[0]["leader"]
                break
            time.sleep(0.1)
        if leader is None:
            raise RuntimeError(f"{kind}: no agreed leader within 60 s (see {folder}/output-*.txt)")
        time.sleep(0.5)
        points = schedule_points(args.lib_clients, args.warmup, args.duration, time.monotonic() + 1.0)
        schedule = {"leader": leader, "value_size": args.value_size, "keyspace": args.keyspace,
                    "points": points, **(extra or {})}
        tmpgo = folder / "go.tmp"
        tmpgo.write_text(json.dumps(schedule))
        os.replace(tmpgo, folder / "go.json")
        per_point = []
        for point in points:
            sampler = ProcSampler({f"peer{i}": pid for i, pid in pids.items()})
            sleep_until(point["warm_end"])
            load0 = loadavg()
            sampler.start()
            sleep_until(point["end"])
            per_point.append({**sampler.stop(), "loadavg": load0})
            progress.advance(1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (folder / "done.json").exists():
            time.sleep(0.1)
        try:
            results = json.loads((folder / "done.json").read_text())
        except OSError:
            results = json.loads((folder / "result.json").read_text()) if (folder / "result.json").exists() else []
        leader_name = None
        for i, addr in (addresses.items() if isinstance(addresses, dict) else enumerate(addresses)):
            if str(leader) in (str(i), addr):
                leader_name = f"peer{i}"
        rows = []
        for r, s in zip(results, per_point):
            cpu = s["cpu_cores"]
            rows.append({**r, "peers": 3, "value_size": args.value_size, "duration_s": args.duration,
                         "warmup_s": args.warmup, "peer_cpu_cores": cpu,
                         "leader_cpu_cores": cpu.get(leader_name or ""), "peer_cpu_total": round(sum(cpu.values()), 3),
                         "peer_rss_mb": s["rss_mb"], "gen_cpu_cores": None, "loadavg": s["loadavg"]})
        return rows
    finally:
        for pid in pids.values():
            PROCS.stop(pid)


def library_sweep(args: argparse.Namespace, tmp: Path, progress: Progress, results: dict[str, Any]) -> None:
    for propose in args.lib_propose:
        progress.describe(f"library mode ({propose}), 3 peers")
        rows = run_in_leader_process("_libpeer", args, tmp, progress, {"propose": propose})
        for r in rows:
            r.update({"kind": "library", "workload": "put", "propose": propose, "durable": True})
            results["points"].append(r)
            progress.log(f"  library/{propose} {r['clients']}: {r['throughput']:.0f} ops/s, p50 {r['p50_ms']} ms, "
                         f"p99 {r['p99_ms']} ms, peers {r['peer_cpu_total']} cores")


def compare_pysyncobj(args: argparse.Namespace, tmp: Path, progress: Progress, results: dict[str, Any]) -> None:
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        results["skipped"].append("pysyncobj: not installed (pip install -e '.[bench]')")
        progress.log("pysyncobj: not installed; skipped (pip install -e '.[bench]')")
        progress.advance(len(args.clients))
        return
    for batch in (True, False):
        # appendEntriesUseBatch=True (its default) sends AppendEntries every 100 ms: its best
        # throughput; False sends at once: its best latency. Both run; the summary takes the
        # better figure of each.
        progress.describe(f"PySyncObj, 3 processes, appendEntriesUseBatch={batch}")
        rows = run_in_leader_process("_psopeer", args, tmp, progress, {"batch": batch})
        for r in rows:
            r.update({"kind": "pysyncobj", "workload": "put", "durable": False,
                      "propose": "batch" if batch else "nobatch"})
            results["points"].append(r)
            progress.log(f"  pysyncobj (appendEntriesUseBatch={batch}) {r['clients']}: {r['throughput']:.0f} ops/s, "
                         f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms (never fsyncs)")


# ============================================================================ etcd


def _http_json(conn: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"etcd {path}: HTTP {response.status} {data[:200]!r}")
    return json.loads(data)  # type: ignore[no-any-return]


def compare_etcd(args: argparse.Namespace, tmp: Path, progress: Progress, results: dict[str, Any]) -> None:
    import base64
    import http.client

    from transport_zmq.transport import free_tcp_ports

    etcd, etcdctl = shutil.which("etcd"), shutil.which("etcdctl")
    if (etcd is None or etcdctl is None) and args.install:
        progress.describe("etcd: apt-get install etcd-server etcd-client")
        subprocess.run(["apt-get", "install", "-y", "etcd-server", "etcd-client"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        etcd, etcdctl = shutil.which("etcd"), shutil.which("etcdctl")
    if etcd is None or etcdctl is None:
        msg = "etcd: etcd/etcdctl not found (apt-get install -y etcd-server etcd-client, or pass --install)"
        results["skipped"].append(msg)
        progress.log(msg + "; skipped")
        progress.advance(3)
        return
    version = subprocess.run([etcd, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    ports = free_tcp_ports(6)
    client_ports, peer_ports = ports[:3], ports[3:]
    initial = ",".join(f"m{i}=http://127.0.0.1:{peer_ports[i]}" for i in range(3))
    pids = {}
    folder = tmp / "etcd"
    folder.mkdir(parents=True, exist_ok=True)
    progress.describe("etcd: starting 3 members")
    try:
        for i in range(3):
            out = open(folder / f"m{i}.log", "ab")
            p = PROCS.popen([etcd, "--name", f"m{i}", "--data-dir", str(folder / f"m{i}"),
                             "--listen-client-urls", f"http://127.0.0.1:{client_ports[i]}",
                             "--advertise-client-urls", f"http://127.0.0.1:{client_ports[i]}",
                             "--listen-peer-urls", f"http://127.0.0.1:{peer_ports[i]}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_ports[i]}",
                             "--initial-cluster", initial, "--initial-cluster-state", "new",
                             "--initial-cluster-token", f"bench-{os.getpid()}",
                             "--listen-metrics-urls", "", "--logger", "zap", "--log-outputs", "stderr"],
                            f"etcd m{i}", stdout=out, stderr=out, env=dict(os.environ))
            out.close()
            pids[i] = p.pid
        endpoints = ",".join(f"127.0.0.1:{p}" for p in client_ports)
        leader_port = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and leader_port is None:
            r = subprocess.run([etcdctl, "--endpoints", endpoints, "endpoint", "status", "-w", "json"],
                               capture_output=True, text=True, timeout=20, env={**os.environ, "ETCDCTL_API": "3"})
            try:
                for row in json.loads(r.stdout or "[]"):
                    if row["Status"]["header"]["member_id"] == row["Status"]["leader"]:
                        leader_port = int(row["Endpoint"].rsplit(":", 1)[1])
            except (ValueError, KeyError):
                pass
            if leader_port is None:
                time.sleep(0.5)
        if leader_port is None:
            raise RuntimeError("etcd: no leader within 60 s")
        leader_idx = client_ports.index(leader_port)
        # One client, sequential durable puts over the v3 JSON gateway (HTTP keep-alive).
        progress.describe("etcd: one client, sequential puts")
        conn = http.client.HTTPConnection("127.0.0.1", leader_port, timeout=10)
        value = base64.b64encode(b"v" * args.value_size).decode()
        lat = array("I")
        sampler = ProcSampler({f"m{i}": pid for i, pid in pids.items()})
        t_end = time.monotonic() + args.warmup + args.duration
        warm_end = time.monotonic() + args.warmup
        n = 0
        load0 = loadavg()
        started = False
        while time.monotonic() < t_end:
            n += 1
            key = base64.b64encode(f"key{n % args.keyspace:07d}".encode()).decode()
            t0 = time.monotonic()
            if not started and t0 >= warm_end:
                sampler.start()
                started = True
            _http_json(conn, "/v3/kv/put", {"key": key, "value": value})
            t1 = time.monotonic()
            if t0 >= warm_end:
                lat.append(int((t1 - t0) * 1e6))
        conn.close()
        s1 = sampler.stop()
        one = {"kind": "etcd", "workload": "put", "clients": 1, "peers": 3, "value_size": args.value_size,
               "throughput": round(len(lat) / args.duration, 1), **latency_summary(lat),
               "method": "one client, sequential puts over etcd's v3 JSON gateway (HTTP/1.1 keep-alive): "
                         "includes the gateway's JSON/gRPC hop, so etcd's own latency is lower",
               "peer_cpu_cores": s1["cpu_cores"], "peer_cpu_total": round(sum(s1["cpu_cores"].values()), 3),
               "peer_rss_mb": s1["rss_mb"], "leader_cpu_cores": s1["cpu_cores"].get(f"m{leader_idx}"),
               "gen_cpu_cores": None, "loadavg": load0, "durable": True, "version": version}
        results["points"].append(one)
        progress.log(f"  etcd 1 client: {one['throughput']:.0f} puts/s, p50 {one['p50_ms']} ms, p99 {one['p99_ms']} ms")
        progress.advance(1)
        # Many clients: etcdctl check perf (Go client, 60 s, --load l: 500 clients, capped at 8000 puts/s).
        progress.describe(f"etcd: etcdctl check perf --load={args.etcd_load} (60 s)")
        sampler = ProcSampler({f"m{i}": pid for i, pid in pids.items()})
        load0 = loadavg()
        sampler.start()
        perf = PROCS.popen([etcdctl, "--endpoints", endpoints, "check", "perf", f"--load={args.etcd_load}"],
                           "etcdctl check perf", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env={**os.environ, "ETCDCTL_API": "3"}, text=True)
        gen = ProcSampler({"etcdctl": perf.pid})
        gen.start()
        t0 = time.monotonic()
        gen_cpu = 0.0
        while perf.poll() is None and time.monotonic() - t0 < 120:
            time.sleep(1.0)
            progress.advance(1 / 62)
            g = gen.stop()["cpu_cores"].get("etcdctl")
            if g is not None:
                gen_cpu = g
        s2 = sampler.stop()
        output = perf.stdout.read() if perf.stdout else ""
        PROCS.stop(perf.pid)
        throughput = None
        import re

        found = re.search(r"Throughput[^0-9]*?(\d+) writes/s", output)
        if found:
            throughput = float(found.group(1))
        slowest = next((ln.strip() for ln in output.splitlines() if "Slowest" in ln), None)
        many = {"kind": "etcd", "workload": "put", "clients": {"s": 50, "m": 200, "l": 500, "xl": 1000}.get(args.etcd_load),
                "peers": 3, "value_size": None, "throughput": throughput, "p50_ms": None, "p99_ms": None,
                "p999_ms": None, "slowest": slowest,
                "method": f"etcdctl check perf --load={args.etcd_load} (its own key/value sizes and rate cap)",
                "peer_cpu_cores": s2["cpu_cores"], "peer_cpu_total": round(sum(s2["cpu_cores"].values()), 3),
                "peer_rss_mb": s2["rss_mb"], "leader_cpu_cores": s2["cpu_cores"].get(f"m{leader_idx}"),
                "gen_cpu_cores": round(gen_cpu, 3), "loadavg": load0, "durable": True, "version": version,
                "raw": output.strip().splitlines()[-4:]}
        results["points"].append(many)
        progress.log(f"  etcd check perf: {throughput} puts/s ({slowest})")
        progress.advance(1)
    finally:
        for pid in pids.values():
            PROCS.stop(pid)


# ============================================================================ floors


def measure_floors(tmp: Path, samples: int = 200) -> dict[str, Any]:
    """The machine's floors right now (they drift with the other load on it): one fsync of
    a 4 KiB write, one durable LMDB transaction (sync + metasync, as the peers open it) of
    one 130-byte put and of 100 such puts, and a pyzmq DEALER/ROUTER round trip between two
    threads. p50 in ms."""
    import lmdb
    import zmq

    out: dict[str, Any] = {}
    path = tmp / "fsync.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    ts = []
    try:
        for _ in range(samples):
            os.write(fd, b"x" * 4096)
            t = time.perf_counter()
            os.fsync(fd)
            ts.append((time.perf_counter() - t) * 1e3)
    finally:
        os.close(fd)
        path.unlink()
    ts.sort()
    out["fsync_4k_ms"] = {"p50": round(ts[len(ts) // 2], 3), "p99": round(ts[int(len(ts) * 0.99)], 3)}
    env = lmdb.open(str(tmp / "floor-lmdb"), map_size=1 << 28, sync=True, metasync=True)
    try:
        for batch in (1, 100):
            ts = []
            for i in range(samples // 2):
                t = time.perf_counter()
                with env.begin(write=True) as txn:
                    for j in range(batch):
                        txn.put(f"{i:08d}{j:04d}".encode(), b"v" * 130)
                ts.append((time.perf_counter() - t) * 1e3)
            ts.sort()
            out[f"lmdb_txn_{batch}_puts_ms"] = {"p50": round(ts[len(ts) // 2], 3),
                                               "puts_per_s": round(batch * 1000 / ts[len(ts) // 2])}
    finally:
        env.close()
        shutil.rmtree(tmp / "floor-lmdb", ignore_errors=True)
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            if router.poll(50):
                router.send_multipart(router.recv_multipart())

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    ts = []
    for _ in range(samples * 2):
        t = time.perf_counter()
        dealer.send(b"x" * 100)
        dealer.recv()
        ts.append((time.perf_counter() - t) * 1e3)
    stop.set()
    thread.join(1)
    dealer.close(0)
    router.close(0)
    ctx.term()
    ts.sort()
    out["zmq_round_trip_ms"] = {"p50": round(ts[len(ts) // 2], 3)}
    out["loadavg"] = loadavg()
    return out


# ============================================================================ profile


def summarize_collapsed(path: Path, top: int = 15) -> dict[str, Any]:
    """Top functions of a py-spy `--format raw` (collapsed stacks) file: by self samples
    (the leaf frame) and by inclusive samples, plus samples per thread."""
    self_counts: dict[str, int] = {}
    incl: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if frames and frames[0].startswith(("thread", "process")):
            while frames and frames[0].startswith(("process", "thread")):
                head = frames.pop(0)
                if head.startswith("thread"):
                    threads[head] = threads.get(head, 0) + count
        names = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 2)[-1] + ")"
                 if " (" in f else f for f in frames]
        if names:
            self_counts[names[-1]] = self_counts.get(names[-1], 0) + count
        for name in set(names):
            incl[name] = incl.get(name, 0) + count

    def share(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / max(1, total), 1)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    per_thread = {}
    for thread, tcount in threads.items():
        t_incl: dict[str, int] = {}
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if f";{thread};" not in f";{stack};" or not count_text.isdigit():
                continue
            for f in set(stack.split(";")):
                if " (" in f and not f.startswith(("Thread.", "thread", "process", "Raft._guard")):
                    name = f.split(" (")[0]
                    t_incl[name] = t_incl.get(name, 0) + int(count_text)
        per_thread[thread] = [(k, round(100.0 * v / max(1, tcount), 1))
                              for k, v in sorted(t_incl.items(), key=lambda kv: -kv[1])[:10]]
    return {"samples": total, "self_pct": share(self_counts), "inclusive_pct": share(incl),
            "threads_pct": share(threads), "per_thread_inclusive_pct": per_thread}


def profile_leader(cluster: "KVBenchCluster", leader: int, args: argparse.Namespace, tmp: Path,
                   progress: Progress) -> dict[str, Any]:
    """An extra kv put point (not in the table) while py-spy samples the leader: a flame
    graph SVG, collapsed stacks (all samples, and only those holding the GIL), one dump."""
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        progress.log("profile skipped: py-spy not found (pip install py-spy)")
        return {"skipped": "py-spy not found"}
    out_dir = args.profile_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    pid = cluster.pids[leader]
    secs = args.profile_seconds
    clients = max(args.clients)
    total = secs + 2 * max(5, secs // 2) + 6
    box: dict[str, Any] = {}

    def load() -> None:
        box["point"] = run_kv_point(cluster, leader, "put", clients, args, tmp, Progress(1, enabled=False),
                                    "profile", warmup=2.0, duration=float(total))

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    time.sleep(1.5 + 2.0 + 0.5)
    svg = out_dir / "profile-leader.svg"
    raw = tmp / "profile-leader.txt"
    raw_gil = tmp / "profile-leader-gil.txt"
    progress.describe(f"profile: py-spy record {secs} s on leader pid {pid}")
    runs = [([pyspy, "record", "-o", str(svg), "--pid", str(pid), "--duration", str(secs), "--threads"], secs),
            ([pyspy, "record", "-o", str(raw), "--format", "raw", "--pid", str(pid), "--duration",
              str(max(5, secs // 2)), "--threads"], max(5, secs // 2)),
            ([pyspy, "record", "-o", str(raw_gil), "--format", "raw", "--pid", str(pid), "--duration",
              str(max(5, secs // 2)), "--threads", "--gil"], max(5, secs // 2))]
    for argv, d in runs:
        p = PROCS.popen(argv, "py-spy", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            p.wait(d + 30)
        except subprocess.TimeoutExpired:
            pass
        PROCS.stop(p.pid)
    dump = subprocess.run([pyspy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30).stdout
    (out_dir / "profile-leader-dump.txt").write_text(dump)
    loader.join(total + 60)
    report: dict[str, Any] = {"pid": pid, "seconds": secs, "clients": clients, "svg": str(svg),
                              "point": box.get("point"), "loadavg": loadavg()}
    if raw.exists():
        report["all"] = summarize_collapsed(raw)
        shutil.copy(raw, out_dir / "profile-leader-collapsed.txt")
    if raw_gil.exists():
        report["gil"] = summarize_collapsed(raw_gil)
    (out_dir / "profile-leader-summary.json").write_text(json.dumps(report, indent=1))
    progress.advance(1)
    return report


# ============================================================================ report


def best(points: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    cands = [p for p in points if all(p.get(k) == v for k, v in match.items()) and p.get("throughput")]
    return max(cands, key=lambda p: p["throughput"]) if cands else None


def one_client(points: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    """The one-client point with the lowest p50 among those matching."""
    cands = [p for p in points if p.get("clients") == 1 and p.get("p50_ms") is not None
             and all(p.get(k) == v for k, v in match.items())]
    return min(cands, key=lambda p: p["p50_ms"]) if cands else None


def _fmt(v: Any, nd: int = 0) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return str(v)


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers, goals and ratios ours/theirs from this run."""
    pts = results["points"]
    s: dict[str, Any] = {}
    kv3 = best(pts, kind="kv", workload="put", peers=3)
    kv5 = best(pts, kind="kv", workload="put", peers=5)
    lib = max([p for p in pts if p.get("kind") == "library" and p.get("throughput")],
              key=lambda p: p["throughput"], default=None)
    gets = best(pts, kind="kv", workload="get", peers=3)
    one = one_client(pts, kind="kv", workload="put", peers=3)
    pso = best(pts, kind="pysyncobj")
    pso1 = one_client(pts, kind="pysyncobj")
    lib1 = one_client(pts, kind="library")
    etcd_many = next((p for p in pts if p.get("kind") == "etcd" and p.get("clients") != 1), None)
    etcd_one = one_client(pts, kind="etcd")
    fo = results.get("failover") or {}
    rs = results.get("restart") or {}
    goals = []

    def goal(name: str, value: Any, target: str, met: bool | None, bound: str = "") -> None:
        goals.append({"metric": name, "value": value, "goal": target, "met": met})

    def tp(p: dict[str, Any] | None) -> float | None:
        return None if p is None else p.get("throughput")

    goal("durable KV puts/s, 3 peers", tp(kv3), ">= 10,000", None if kv3 is None else kv3["throughput"] >= GOALS["kv_put_3"])
    goal("durable KV puts/s, 5 peers", tp(kv5), ">= 7,000", None if kv5 is None else kv5["throughput"] >= GOALS["kv_put_5"])
    goal(f"library puts/s (in the leader's process, best: {(lib or {}).get('propose')}, window {(lib or {}).get('clients')})",
         tp(lib), ">= 15,000",
         None if lib is None else lib["throughput"] >= GOALS["library"])
    goal("one client p50 / p99 (ms)", None if one is None else f"{one['p50_ms']} / {one['p99_ms']}",
         "<= 1.0 / <= 3", None if one is None or one["p50_ms"] is None else
         one["p50_ms"] <= GOALS["one_client_p50_ms"] and one["p99_ms"] <= GOALS["one_client_p99_ms"])
    goal("linearizable gets/s (ReadIndex)", tp(gets), ">= 20,000", None if gets is None else gets["throughput"] >= GOALS["gets"])
    goal("write unavailability after leader SIGKILL, p50 (s)", fo.get("p50_s"), "<= 1",
         None if fo.get("p50_s") is None else fo["p50_s"] <= GOALS["failover_p50_s"])
    goal(f"restart with {rs.get('log_entries', 0):,} log entries until it serves (s)", rs.get("serves_s"), "<= 2 (at 100k)",
         None if rs.get("serves_s") is None else rs["serves_s"] <= GOALS["restart_s"])
    for m in results.get("memory", []):
        goal(f"peer RSS at {m['keys']:,} keys (MB)", m["max_rss_mb"], f"<= {m['goal_mb']} (2.5 x {m['live_data_mb']} + 60)", m["met"])
    s["goals"] = goals
    ratios = {}
    if kv3 and etcd_many and etcd_many.get("throughput"):
        ratios["kv puts/s 3 peers, ours/etcd"] = round(kv3["throughput"] / etcd_many["throughput"], 2)
    if one and etcd_one and etcd_one.get("p50_ms"):
        ratios["one-client p50, ours/etcd (lower is better)"] = round(one["p50_ms"] / etcd_one["p50_ms"], 2)
    if lib and pso:
        ratios["library puts/s, ours/pysyncobj"] = round(lib["throughput"] / pso["throughput"], 2)
    if kv3 and pso:
        ratios["kv puts/s 3 peers, ours/pysyncobj"] = round(kv3["throughput"] / pso["throughput"], 2)
    if lib1 and pso1 and pso1.get("p50_ms"):
        ratios["library one-proposal p50, ours/pysyncobj (lower is better)"] = round(lib1["p50_ms"] / pso1["p50_ms"], 2)
    s["ratios"] = ratios
    s["anchor_rows"] = [
        ("ruaft KV, 3 peers, durable (external clients)", tp(kv3), None if one is None else one["p50_ms"]),
        ("ruaft KV, 5 peers, durable", tp(kv5), one_client(pts, kind="kv", workload="put", peers=5) and
         one_client(pts, kind="kv", workload="put", peers=5)["p50_ms"]),  # type: ignore[index]
        (f"ruaft library, 3 processes, durable (load in the leader; {(lib or {}).get('propose')}; one-proposal p50 "
         f"with {(lib1 or {}).get('propose')})", tp(lib), None if lib1 is None else lib1["p50_ms"]),
        (f"etcd {(etcd_many or etcd_one or {}).get('version', '').replace('etcd Version: ', '')}, 3 members, durable",
         tp(etcd_many), None if etcd_one is None else etcd_one["p50_ms"]),
        ("PySyncObj, 3 processes, NEVER fsyncs, load in the leader", tp(pso), None if pso1 is None else pso1["p50_ms"]),
    ]
    return s


def _floors_text(f: Any) -> str:
    if not isinstance(f, dict):
        return "–"
    return (f"fsync p50 {f['fsync_4k_ms']['p50']} ms (p99 {f['fsync_4k_ms']['p99']} ms), durable LMDB txn p50 "
            f"{f['lmdb_txn_1_puts_ms']['p50']} ms (100 puts/txn: {f['lmdb_txn_100_puts_ms']['puts_per_s']:,} puts/s), "
            f"zmq round trip p50 {f['zmq_round_trip_ms']['p50']} ms, load {f['loadavg']}")


def markdown(results: dict[str, Any]) -> str:
    s = summary(results)
    meta = results["meta"]
    lines = [f"# Ruaft benchmark — {meta['started']}", "",
             f"Machine: {meta['cpus']} CPUs, load average at start {meta['loadavg_start']}, at end "
             f"{meta.get('loadavg_end')}; value size {meta['value_size']} B; {meta['duration']} s per point after "
             f"{meta['warmup']} s warm-up. Every ruaft and etcd figure is durable (fsync before ack); "
             "PySyncObj never fsyncs.", "",
             f"Floors at start: {_floors_text(meta.get('floors_start'))}; at end: {_floors_text(meta.get('floors_end'))}.", "",
             "## Against the anchors (this run)", "",
             "| system | throughput, many clients (ops/s) | one client, p50 (ms) |", "|---|---:|---:|"]
    for name, t, p50 in s["anchor_rows"]:
        lines.append(f"| {name} | {_fmt(t)} | {_fmt(p50, 3) if isinstance(p50, float) else _fmt(p50)} |")
    if s["ratios"]:
        lines += ["", "Ratios from this run:", ""]
        lines += [f"- {k}: **{v}**" for k, v in s["ratios"].items()]
    lines += ["", "## Goals", "", "| metric | this run | goal | met |", "|---|---:|---|---|"]
    for g in s["goals"]:
        met = "–" if g["met"] is None else ("yes" if g["met"] else "**no**")
        v = g["value"]
        lines.append(f"| {g['metric']} | {_fmt(v, 1) if isinstance(v, float) else _fmt(v)} | {g['goal']} | {met} |")
    lines += ["", "## Every point", "",
              "| system | workload | peers | clients | ops/s | p50 ms | p99 ms | p99.9 ms | leader CPU | peers CPU | "
              "peer RSS MB (max) | generator CPU | load avg | notes |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for p in results["points"]:
        system = p["kind"] + (f"/{p['propose']}" if p.get("propose") else "")
        rss = p.get("peer_rss_mb") or {}
        notes = []
        if p.get("durable") is False:
            notes.append("never fsyncs")
        if p.get("errors"):
            notes.append(f"errors {p['errors']}")
        if p.get("kind") == "etcd":
            notes.append(p.get("method", "").split(":")[0])
        lines.append(
            f"| {system} | {p.get('workload')} | {p.get('peers')} | {_fmt(p.get('clients'))} | {_fmt(p.get('throughput'))} | "
            f"{_fmt(p.get('p50_ms'), 2)} | {_fmt(p.get('p99_ms'), 2)} | {_fmt(p.get('p999_ms'), 2)} | "
            f"{_fmt(p.get('leader_cpu_cores'), 2)} | {_fmt(p.get('peer_cpu_total'), 2)} | "
            f"{_fmt(max(rss.values()) if rss else None)} | {_fmt(p.get('gen_cpu_cores'), 2)} | "
            f"{_fmt((p.get('loadavg') or [None])[0], 1)} | {'; '.join(notes)} |")
    fo = results.get("failover")
    if fo:
        lines += ["", f"**Failover** (SIGKILL of the leader → next acknowledged write): samples {fo['samples_s']} s, "
                      f"p50 **{fo['p50_s']} s**. {fo['method']}."]
    rs = results.get("restart")
    if rs:
        lines += ["", f"**Restart** of a follower with {rs['log_entries']:,} log entries: answers after "
                      f"{rs['answers_s']} s, has re-applied all ({rs['applied_target']:,}) after **{rs['serves_s']} s** "
                      f"(RSS then {rs['rss_mb_after']} MB; loading the entries took {rs['load_s']} s)."]
    mem = results.get("memory")
    if mem:
        lines += ["", "**Memory** (peer RSS with N keys of the value size; keys seeded as a snapshot):", "",
                  "| keys | live data MB | peer RSS MB | goal MB | met |", "|---:|---:|---|---:|---|"]
        for m in mem:
            rss_text = " / ".join(f"{v:.0f}" for v in m["peer_rss_mb"].values())
            lines.append(f"| {m['keys']:,} | {m['live_data_mb']} | {rss_text} | {m['goal_mb']} | "
                         f"{'yes' if m['met'] else '**no**'} |")
    if results["skipped"]:
        lines += ["", "Skipped: " + "; ".join(results["skipped"])]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path, progress: Progress) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress.log("plot skipped: matplotlib is not installed (pip install -e '.[bench]')")
        return False
    series: dict[str, list[dict[str, Any]]] = {}
    for p in results["points"]:
        if p.get("p50_ms") is None or not p.get("throughput"):
            continue
        name = {"kv": f"ruaft KV {p['workload']}, {p['peers']} peers",
                "library": f"ruaft library ({p.get('propose')}), 3 peers",
                "pysyncobj": f"PySyncObj ({p.get('propose')}), 3 peers, NO fsync",
                "etcd": "etcd, 3 members (1 client)"}.get(p["kind"], p["kind"])
        series.setdefault(name, []).append(p)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, key, title in ((axes[0], "p50_ms", "p50 latency"), (axes[1], "p99_ms", "p99 latency")):
        for name, pts in series.items():
            pts = sorted(pts, key=lambda p: p.get("clients") or 0)
            ax.plot([p["throughput"] for p in pts], [p[key] for p in pts], marker="o", label=name)
            for p in pts:
                ax.annotate(str(p.get("clients")), (p["throughput"], p[key]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        etcd_many = next((p for p in results["points"] if p.get("kind") == "etcd" and p.get("clients") != 1), None)
        if etcd_many and etcd_many.get("throughput"):
            ax.axvline(etcd_many["throughput"], color="grey", linestyle="--", linewidth=1,
                       label="etcd check perf (throughput)")
        ax.set_xlabel("throughput (ops/s, log)")
        ax.set_xscale("log")
        ax.set_ylabel(f"{title} (ms, log)")
        ax.set_yscale("log")
        ax.set_title(f"throughput vs {title} (labels: clients / window)")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Ruaft benchmark {results['meta']['started']} — {results['meta']['cpus']} cores, "
                 f"load avg {results['meta']['loadavg_start']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ============================================================================ main


def parse_list(text: str, kind: Callable[[str], Any] = str) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench.py", description="Ruaft benchmark (durable KV, library mode, failover, restart, memory; "
        "PySyncObj and etcd side by side).", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--mode", default="kv", help="comma list of: kv (external clients), library (proposals in the leader's process)")
    p.add_argument("--workload", default="put", help="comma list of: put, get, mixed")
    p.add_argument("--peers", default="3", help="comma list of cluster sizes (3 and/or 5)")
    p.add_argument("--clients", default="1,8,64,256", help="concurrency sweep (logical clients / proposal window)")
    p.add_argument("--workers", type=int, default=2, help="load-generator processes per point (kv mode)")
    p.add_argument("--value-size", type=int, default=100, help="value bytes")
    p.add_argument("--keyspace", type=int, default=10_000, help="distinct keys the load writes/reads")
    p.add_argument("--read-ratio", type=float, default=0.5, help="share of gets in the mixed workload")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per point")
    p.add_argument("--lib-propose", default="start,start_many", help="library mode: start() per command and/or start_many() batches")
    p.add_argument("--lib-clients", default="1,8,64,256,1024",
                   help="library mode and PySyncObj: proposals kept outstanding in the leader's process (its "
                        "batching mode waits 100 ms per AppendEntries round, so it needs large windows)")
    p.add_argument("--failover", type=int, default=0, help="leader SIGKILL repetitions (on the 3-peer kv cluster; 0: skip)")
    p.add_argument("--restart-entries", type=int, default=0, help="restart measurement with this many log entries (0: skip)")
    p.add_argument("--restart-load-timeout", type=float, default=300.0, help="max seconds to load the restart entries")
    p.add_argument("--memory-keys", default="", help="comma list of key counts for the RSS measurement (e.g. 100000,1000000)")
    p.add_argument("--compare", action="append", default=[], choices=["pysyncobj", "etcd"],
                   help="also run PySyncObj / etcd in the same run (repeatable)")
    p.add_argument("--etcd-load", default="l", choices=["s", "m", "l", "xl"], help="etcdctl check perf --load")
    p.add_argument("--install", action="store_true", help="allow apt-get install of etcd-server/etcd-client if missing")
    p.add_argument("--all", action="store_true",
                   help="the full run: modes kv,library; workloads put,get,mixed; peers 3,5 (put only on 5); "
                        "failover x5; restart with 100k entries; RSS at 100k and 1M keys")
    p.add_argument("--json", type=Path, help="write all results as JSON here")
    p.add_argument("--markdown", type=Path, help="write the Markdown report here (it is printed too)")
    p.add_argument("--plot", type=Path, help="write the throughput/latency PNG here (needs matplotlib)")
    p.add_argument("--profile-dir", type=Path, default=None,
                   help="also profile the 3-peer leader with py-spy under put load (an extra point, "
                        "not in the table): profile-leader.svg, collapsed stacks and a summary here")
    p.add_argument("--profile-seconds", type=int, default=20, help="py-spy flame-graph duration")
    p.add_argument("--from-json", type=Path, default=None,
                   help="run nothing: re-render the report (and --plot) from a saved --json file")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (peer logs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ROLES:
        return ROLES[argv[0]](json.loads(argv[1]))
    args = build_parser().parse_args(argv)
    args.modes = parse_list(args.mode)
    args.workloads = parse_list(args.workload)
    args.peers = parse_list(args.peers, int)
    args.clients = parse_list(args.clients, int)
    args.lib_propose = parse_list(args.lib_propose)
    args.lib_clients = parse_list(args.lib_clients, int)
    args.memory_keys = parse_list(args.memory_keys, int)
    if args.all:
        args.modes = ["kv", "library"]
        args.workloads = ["put", "get", "mixed"]
        args.peers = [3, 5]
        args.failover = args.failover or 5
        args.restart_entries = args.restart_entries or 100_000
        args.memory_keys = args.memory_keys or [100_000, 1_000_000]
    bad = [m for m in args.modes if m not in ("kv", "library")] + \
          [w for w in args.workloads if w not in ("put", "get", "mixed")] + \
          [str(n) for n in args.peers if n not in (3, 5)] + \
          [x for x in args.lib_propose if x not in ("start", "start_many")]
    if bad or not args.clients or min(args.clients) < 1 or args.duration <= 0 or args.warmup < 0:
        print(f"bench.py: bad option value(s): {bad or 'clients/duration/warm-up'}", file=sys.stderr)
        return 2
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        saved["summary"] = summary(saved)
        report = markdown(saved)
        print(report)
        if args.markdown:
            args.markdown.write_text(report)
        if args.plot:
            plot(saved, args.plot, Progress(1, enabled=False))
        return 0
    os.environ["PYTHONPATH"] = env_with_repo()["PYTHONPATH"]  # peers started by LocalCluster find the repo

    # Work out the progress bar's total (units: one per point / measurement).
    kv_points = 0
    if "kv" in args.modes:
        for n in args.peers:
            kv_points += len(args.clients) * (len(args.workloads) if (n == 3 or not args.all) else 1)
    total = kv_points + (len(args.lib_clients) * len(args.lib_propose) if "library" in args.modes else 0)
    total += args.failover + (1 if args.restart_entries else 0) + len(args.memory_keys)
    total += 2 * len(args.lib_clients) if "pysyncobj" in args.compare else 0
    total += 2 if "etcd" in args.compare else 0
    total += 1 if args.profile_dir is not None and "kv" in args.modes else 0
    progress = Progress(max(1, total), enabled=not args.no_progress)
    results: dict[str, Any] = {
        "meta": {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "loadavg_start": loadavg(),
                 "value_size": args.value_size, "duration": args.duration, "warmup": args.warmup,
                 "python": sys.version.split()[0], "argv": argv},
        "points": [], "skipped": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="ruaft-bench-"))
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    rc = 0
    try:
        progress.describe("floors: fsync, LMDB transaction, zmq round trip")
        results["meta"]["floors_start"] = measure_floors(tmp)
        progress.log(f"  floors: {results['meta']['floors_start']}")
        if "kv" in args.modes:
            if args.all:  # put/get/mixed on 3 peers; the put sweep only on 5 peers
                workloads = args.workloads
                for n in args.peers:
                    args.workloads = workloads if n == 3 else ["put"]
                    peers_all = args.peers
                    args.peers = [n]
                    kv_sweeps(args, tmp, progress, results)
                    args.peers = peers_all
                args.workloads = workloads
            else:
                kv_sweeps(args, tmp, progress, results)
        elif args.failover:
            cluster = KVBenchCluster(tmp / "failover", 3)
            try:
                cluster.start()
                cluster.wait_leader()
                results["failover"] = failover(cluster, args, progress)
            finally:
                cluster.stop()
        # Each later phase runs even if an earlier one failed; a failure is reported.
        phases: list[tuple[str, Callable[[], None]]] = []
        if "library" in args.modes:
            phases.append(("library", lambda: library_sweep(args, tmp, progress, results)))
        if "pysyncobj" in args.compare:
            phases.append(("pysyncobj", lambda: compare_pysyncobj(args, tmp, progress, results)))
        if "etcd" in args.compare:
            phases.append(("etcd", lambda: compare_etcd(args, tmp, progress, results)))
        if args.restart_entries:
            phases.append(("restart", lambda: results.__setitem__("restart", restart_measurement(args, tmp, progress))))
        if args.memory_keys:
            phases.append(("memory", lambda: results.__setitem__("memory", memory_measurement(args, tmp, progress))))
        for name, phase in phases:
            try:
                phase()
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                progress.log(f"{name} failed: {exc!r}")
                results["skipped"].append(f"{name}: failed: {exc!r}")
                rc = 1
    except KeyboardInterrupt:
        progress.log("interrupted: stopping every process started")
        rc = 130
    except Exception as exc:
        progress.log(f"bench failed: {exc!r}")
        results["error"] = repr(exc)
        rc = 1
    finally:
        PROCS.stop_all()
        progress.close()
        signal.signal(signal.SIGTERM, previous)
        left = PROCS.alive()
        if left:
            print(f"bench.py: could not stop pids {left}", file=sys.stderr)
        if args.keep or rc:
            print(f"bench.py: temp folder kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["meta"]["loadavg_end"] = loadavg()
    if rc == 0:
        floor_dir = Path(tempfile.mkdtemp(prefix="ruaft-bench-floor-"))
        try:
            results["meta"]["floors_end"] = measure_floors(floor_dir)
        except Exception as exc:  # a floor is context, not a result
            results["meta"]["floors_end"] = repr(exc)
        finally:
            shutil.rmtree(floor_dir, ignore_errors=True)
    results["meta"]["started_pids"] = list(PROCS.history)
    results["meta"]["pids_left_running"] = left
    results["summary"] = summary(results)
    report = markdown(results)
    print(report)
    if args.markdown:
        args.markdown.write_text(report)
    if args.plot:
        if plot(results, args.plot, progress):
            results["meta"]["plot"] = str(args.plot)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return rc


if __name__ == "__main__":
    sys.exit(main())
