"""The generic KV fault-test driver of TESTS.md §3 (the Go original's `GenericTest`), and the
helpers the KV tests share.

Clients run in threads of the test process, one `KVClient` each. While a round runs every
call retries forever (`timeout=None`), so no operation ends indefinite mid-round; at the
round's end the round's `stop` event makes every call in progress give up within about one
attempt timeout (0.5 s), with the client's definite/indefinite outcome. A write that ended
indefinite is recorded as `info` (it may or may not have happened) and is allowed for in the
final value checks; nothing can hang the test past the join bound.
"""

from __future__ import annotations

import random
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pytest

from kv.client import BadRequestError, DefiniteError, IndefiniteError, KVClient
from orchestrator.checker import MODELS, HistoryRecorder, Verdict, check_events, write_html
from orchestrator.cluster import ELECTION_TIMEOUT
from orchestrator.kvcluster import KVCluster

MakeKVCluster = Callable[..., KVCluster]

ROUNDS = 3
ROUND_SECONDS = 5.0
"""How long the clients run each round (after the head start with partitions)."""
PARTITION_HEAD_START = 1.0
"""With partitions, the clients run this long on a whole network before the partitioner
starts (as in Go)."""
MIN_OPS = 10
CHECK_TIMEOUT = 30.0
"""Bound on the final gets (after a crash all servers restart, elect and replay)."""
JOIN_TIMEOUT = 15.0
"""A client thread must end this soon after its round's stop event (calls give up within
about 0.5 s); a thread still alive then is a bug in the client, and fails the test."""
LINEARIZABILITY_BUDGET = 20.0
"""Seconds the checker may spend on the history before answering UNKNOWN."""


class LinearizabilityUnknown(UserWarning):
    """The checker ran out of its time budget: the history was neither proved linearizable
    nor refuted. Reported loudly, never counted as a pass silently."""


class FewOpsWarning(UserWarning):
    """A client completed fewer than MIN_OPS operations in a round where the scenario made
    that impossible to require (constant partitions on an unreliable network)."""


# ------------------------------------------------------------------------- value checks

def check_clnt_appends(clnt: int, value: str, count: int) -> None:
    """Client `clnt`'s appends 0..count-1 are each in `value` exactly once, in order (Go's
    checkClntAppends)."""
    last = -1
    for j in range(count):
        wanted = f"x {clnt} {j} y"
        off = value.find(wanted)
        assert off >= 0, f"client {clnt}: missing element {wanted!r} in append result {value!r}"
        assert value.rfind(wanted) == off, f"duplicate element {wanted!r} in append result"
        assert off > last, f"wrong order for element {wanted!r} in append result"
        last = off


def check_concurrent_appends(value: str, counts: Sequence[int]) -> None:
    """Every client's known appends are present once and in per-client order."""
    for clnt, count in enumerate(counts):
        check_clnt_appends(clnt, value, count)


def check_get(client: KVClient, key: str, expected: str) -> None:
    value = client.get(key)
    assert value == expected, f"get({key!r}): expected {expected!r}, got {value!r}"


def report_state_sizes(cfg: KVCluster, maxraftstate: int, what: str = "") -> int:
    """Assert every live server's Raft state ≤ 8 × maxraftstate; print when above the 2×
    goal. Returns the largest size."""
    sizes = cfg.raft_state_sizes()
    largest = max(sizes.values())
    print(f"raft state sizes{what}: {sizes} (max {largest / maxraftstate:.2f} × maxraftstate)")
    if largest > 2 * maxraftstate:
        print(f"NOTE: raft state {largest} is above the 2 × {maxraftstate} goal")
    assert largest <= 8 * maxraftstate, f"logs were not trimmed ({sizes} > 8*{maxraftstate})"
    return largest


# ------------------------------------------------------------------------- the driver

@dataclass
class _ClientResult:
    """What one client thread did in one round."""

    ops: int = 0
    appends: int = 0
    """Completed appends (`x cli j y` for j < appends are certainly in the key's value)."""
    acceptable: set[str] = field(default_factory=set)
    """Non-linearizable mode: the values the client's key may hold after the round."""
    indefinite: bool = False
    """The client's last write ended indefinite at the round's end (recorded as info)."""
    error: str | None = None


def _nonlinearizable_client(cli: int, ck: KVClient, stop: threading.Event, rng: random.Random,
                            before: set[str], result: _ClientResult) -> None:
    """One key per client; 50 % append, 50 % get checked against the client's own value."""
    key = str(cli)
    try:
        try:
            ck.put(key, "")
        except IndefiniteError:
            result.acceptable = before | {""}
            result.indefinite = True
            return
        except BadRequestError as exc:
            result.error = f"client {cli}: put refused: {exc}"
            return
        except DefiniteError:  # stopped before anything was sent
            result.acceptable = before
            return
        result.ops += 1
        last = ""
        result.acceptable = {last}
        while not stop.is_set():
            if rng.random() < 0.5:
                nv = f"x {cli} {result.appends} y"
                try:
                    ck.append(key, nv)
                except IndefiniteError:
                    result.acceptable = {last, last + nv}
                    result.indefinite = True
                    return
                except BadRequestError as exc:
                    result.error = f"client {cli}: append refused: {exc}"
                    return
                except DefiniteError:  # stopped before anything was sent
                    return
                last += nv
                result.acceptable = {last}
                result.appends += 1
            else:
                try:
                    value = ck.get(key)
                except BadRequestError as exc:
                    result.error = f"client {cli}: get refused: {exc}"
                    return
                except DefiniteError:  # stopped
                    return
                if value != last:
                    result.error = (f"client {cli}: get({key!r}) returned a wrong value; wanted\n"
                                    f"{last!r}\ngot\n{value!r}")
                    return
            result.ops += 1
    except Exception as exc:  # noqa: BLE001 — reported by the main thread
        result.error = f"client {cli} raised {exc!r}"


def _linearizable_client(cli: int, process: str, ck: KVClient, stop: threading.Event,
                         rng: random.Random, nkeys: int, round_no: int,
                         recorder: HistoryRecorder, result: _ClientResult) -> None:
    """Random keys: 45 % get, 50 % append, 5 % put; every operation recorded."""
    j = 0
    try:
        while not stop.is_set():
            key = str(rng.randrange(nkeys))
            nv = f"x {cli} {round_no}.{j} y"
            draw = rng.random()
            f = "append" if draw < 0.5 else "put" if draw < 0.55 else "get"
            recorder.invoke(process, f, key, None if f == "get" else nv)
            try:
                if f == "append":
                    ck.append(key, nv)
                    output = None
                elif f == "put":
                    ck.put(key, nv)
                    output = None
                else:
                    output = ck.get(key)
            except IndefiniteError:
                recorder.info(process)
                result.indefinite = True
                return
            except DefiniteError as exc:
                recorder.fail(process)
                if isinstance(exc, BadRequestError):
                    result.error = f"client {cli}: {f} refused: {exc}"
                return
            recorder.ok(process, output)
            result.ops += 1
            j += 1
    except Exception as exc:  # noqa: BLE001 — reported by the main thread
        result.error = f"client {cli} raised {exc!r}"
        if process in recorder.open_processes():
            recorder.info(process)


def _partitioner(cfg: KVCluster, clients: list[KVClient], stop: threading.Event,
                 rng: random.Random, log: list[str]) -> None:
    """Re-partition the servers at random every 1.0–1.2 s; cut each client off to the
    servers of one side (a random side that has servers)."""
    if stop.wait(PARTITION_HEAD_START):
        return
    while not stop.is_set():
        side = [rng.randrange(2) for _ in range(cfg.n)]
        groups = [[i for i in range(cfg.n) if side[i] == g] for g in range(2)]
        cfg.partition(groups[0], groups[1])
        nonempty = [g for g in groups if g]
        for ck in clients:
            ck.set_reachable(rng.choice(nonempty))
        log.append(f"{cfg.elapsed():7.2f}s partition {groups[0]} | {groups[1]}")
        stop.wait(rng.uniform(1.0, 1.2))


def _run_round(cfg: KVCluster, clients: list[KVClient], threads: list[threading.Thread],
               stop: threading.Event, stop_partitioner: threading.Event, partitions: bool,
               rng: random.Random, partition_log: list[str]) -> None:
    """Let the clients run (with the partitioner if `partitions`), heal, then stop the
    clients and wait for their threads; the clients are closed afterwards."""
    partitioner = None
    if partitions:
        partitioner = threading.Thread(
            target=_partitioner, name="partitioner", daemon=True,
            args=(cfg, clients, stop_partitioner, rng, partition_log))
        partitioner.start()
        time.sleep(PARTITION_HEAD_START)
    time.sleep(ROUND_SECONDS)

    if partitioner is not None:
        stop_partitioner.set()
        partitioner.join(JOIN_TIMEOUT)
        assert not partitioner.is_alive(), "the partitioner did not stop"
        # Heal: a request submitted in a minority completes once its server learns of the
        # new term; let that happen before the clients stop.
        cfg.connect_all()
        for client in clients:
            client.set_reachable(range(cfg.n))
        time.sleep(ELECTION_TIMEOUT)

    stop.set()
    t_stop = time.monotonic()
    for thread in threads:
        thread.join(max(0.1, t_stop + JOIN_TIMEOUT - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"client threads did not stop within {JOIN_TIMEOUT}s: {stuck}"
    for client in clients:
        client.close()  # nothing of this round's stays queued for a restarted server


def generic(
    make_kv_cluster: MakeKVCluster,
    nclients: int,
    unreliable: bool,
    crash: bool,
    partitions: bool,
    maxraftstate: int | None,
    linearizable: bool,
    *,
    seed: int | None = None,
) -> KVCluster:
    """TESTS.md §3's generic driver. 5 servers (7 when linearizable), `nclients` clients,
    3 rounds; see the module docstring for how calls end. Returns the cluster."""
    rng = random.Random(seed)
    nservers = 7 if linearizable else 5
    cfg = make_kv_cluster(nservers, unreliable, maxraftstate)
    title = ", ".join(word for word, on in [
        ("unreliable net", unreliable), ("restarts", crash), ("partitions", partitions),
        ("snapshots", maxraftstate is not None), ("random keys", linearizable)] if on)
    print(f"Test: {title or 'reliable'}, {nclients} client(s), {nservers} servers")
    recorder = HistoryRecorder() if linearizable else None
    ck = cfg.make_client(timeout=CHECK_TIMEOUT)
    expected: list[set[str]] = [{""} for _ in range(nclients)]
    partition_log: list[str] = []
    few_ops: list[str] = []

    for round_no in range(ROUNDS):
        t_round = time.monotonic()
        stop = threading.Event()
        clients = [cfg.make_client(timeout=None, stop=stop) for _ in range(nclients)]
        results = [_ClientResult() for _ in range(nclients)]
        threads = []
        for cli in range(nclients):
            client_rng = random.Random(rng.randrange(1 << 30))
            if recorder is not None:
                target, args = _linearizable_client, (
                    cli, f"r{round_no}c{cli}", clients[cli], stop, client_rng, nclients, round_no,
                    recorder, results[cli])
            else:
                target, args = _nonlinearizable_client, (  # type: ignore[assignment]
                    cli, clients[cli], stop, client_rng, expected[cli], results[cli])
            thread = threading.Thread(target=target, args=args, name=f"kv-client-{cli}",
                                      daemon=True)
            thread.start()
            threads.append(thread)

        stop_partitioner = threading.Event()
        try:
            _run_round(cfg, clients, threads, stop, stop_partitioner, partitions,
                       random.Random(rng.randrange(1 << 30)), partition_log)
        finally:  # whatever failed, no client or partitioner thread outlives its round
            stop_partitioner.set()
            stop.set()
        errors = [r.error for r in results if r.error]
        assert not errors, "\n".join(errors)

        if crash:
            for i in range(cfg.n):
                cfg.crash1(i)
            for i in range(cfg.n):
                cfg.start1(i)
            for i in range(cfg.n):
                cfg.connect(i)
            cfg.wait_ready()

        for cli in range(nclients):
            key = str(cli)
            if recorder is not None:
                recorder.invoke("check", "get", key)
                try:
                    value = ck.get(key)
                except DefiniteError:
                    recorder.fail("check")
                    raise
                recorder.ok("check", value)
            else:
                value = ck.get(key)
                check_clnt_appends(cli, value, results[cli].appends)
                assert value in results[cli].acceptable, (
                    f"round {round_no}: client {cli}'s key holds {value!r}; expected one of "
                    f"{sorted(results[cli].acceptable)!r}")
                expected[cli] = results[cli].acceptable

        ops = [r.ops for r in results]
        for line in partition_log:
            print(line)
        partition_log.clear()
        indefinite = sum(r.indefinite for r in results)
        print(f"round {round_no}: {time.monotonic() - t_round:.1f}s, ops per client {ops}, "
              f"{indefinite} ended indefinite")
        for cli, count in enumerate(ops):
            if count < MIN_OPS:
                message = (f"round {round_no}: client {cli} completed only {count} operations "
                           f"(< {MIN_OPS})")
                if partitions and unreliable:
                    few_ops.append(message)
                else:
                    pytest.fail(message)

        if maxraftstate is not None:
            # After the servers processed all client requests and had time to checkpoint.
            report_state_sizes(cfg, maxraftstate, f" after round {round_no}")
            # Every round writes far more than maxraftstate: with no snapshot anywhere, a
            # small reported Raft state would be a wrong report, not a trimmed log.
            snapshots = {i: cfg.snapshot_size(i) for i in range(cfg.n)}
            assert any(snapshots.values()), f"no server took a snapshot: {snapshots}"
        else:
            snapshots = {i: cfg.snapshot_size(i) for i in range(cfg.n)}
            assert not any(snapshots.values()), (
                f"snapshots exist without maxraftstate: {snapshots}")

    for message in few_ops:
        warnings.warn(message, FewOpsWarning, stacklevel=2)
        print("WARNING:", message)

    if recorder is not None:
        check_history(recorder, cfg.base_dir)
    return cfg


def check_history(recorder: HistoryRecorder, out_dir: Path,
                  budget: float = LINEARIZABILITY_BUDGET) -> Verdict:
    """Check the recorded history with the kv model within `budget` seconds. The history is
    written to `out_dir`/history.jsonl; ILLEGAL fails the test after writing the HTML
    timeline to `out_dir`/linearizability.html (next to the peer logs); UNKNOWN is printed
    and raised as a `LinearizabilityUnknown` warning, never passed silently."""
    events = recorder.events()
    history_path = out_dir / "history.jsonl"
    recorder.write_jsonl(history_path)
    t0 = time.monotonic()
    result = check_events(MODELS["kv"], events, timeout=budget)
    print(f"linearizability: {result.verdict} in {time.monotonic() - t0:.1f}s "
          f"({len(events)} events; {result.summary()}); history at {history_path}")
    if result.verdict is Verdict.ILLEGAL:
        html = out_dir / "linearizability.html"
        write_html(html, result, MODELS["kv"], title="KV history is not linearizable")
        print(f"info: wrote history visualization to {html}")
        pytest.fail(f"history is not linearizable; see {html}")
    if result.verdict is Verdict.UNKNOWN:
        message = (f"linearizability check timed out after {budget}s: the history "
                   f"({history_path}) was NOT verified")
        print("WARNING:", message)
        warnings.warn(message, LinearizabilityUnknown, stacklevel=3)
    return result.verdict
