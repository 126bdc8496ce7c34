"""Client-request batching: the RpcServer hands each socket drain to a batch handler, and
the KV server turns a batch's writes into ONE Raft proposal and its gets into ONE ReadIndex
round. The KV server runs here over a scripted Raft stand-in (so a test decides when
entries commit and when leadership is lost) and a real client socket."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import msgpack
import pytest
import zmq

import kv.server as kv_server
from kv.server import KVServer, KVServerConfig
from kv.state_machine import KVCommand
from ruaft import CommandApplied, NotLeaderError
from ruaft.core.types import Role
from transport_zmq.rpc import RpcServer


# ============================================================================ RpcServer


def test_rpc_server_hands_one_drain_to_the_batch_handler() -> None:
    """Requests queued while the handler is busy arrive together in the next call, in
    order; malformed frames among them are answered here and never reach the handler."""
    ctx = zmq.Context.instance()
    address = f"inproc://batch-{id(object())}"
    calls: list[list[int]] = []
    release = threading.Event()

    def batch_handler(batch: Sequence[tuple[bytes, Mapping[str, Any]]]) -> list[dict[str, Any] | None]:
        calls.append([request["n"] for _, request in batch])
        if len(calls) == 1:
            release.wait(10)  # hold the server thread while the rest queue up
        return [{"ok": True, "n": request["n"]} for _, request in batch]

    server = RpcServer(address, lambda i, r: None, batch_handler=batch_handler, context=ctx)
    client = ctx.socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    try:
        client.connect(address)
        client.send(msgpack.packb({"id": 1, "op": "put", "n": 1}))
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.001)
        assert calls == [[1]]
        for n in range(2, 51):
            client.send(msgpack.packb({"id": n, "op": "put", "n": n}))
            if n == 25:
                client.send(b"\xc1 not msgpack")
                client.send(msgpack.packb({"id": 999, "op": 7}))  # op not a string
        release.set()
        replies = []
        while len(replies) < 51 and client.poll(10_000):
            replies.append(msgpack.unpackb(client.recv()))
        assert [r["id"] for r in replies if r["ok"]] == list(range(1, 51))
        assert [r["n"] for r in replies if r["ok"]] == list(range(1, 51))
        assert [(r["id"], r["error_kind"]) for r in replies if not r["ok"]] == [(999, "malformed")]
        assert calls[1] == list(range(2, 51)), calls  # everything queued: one drain, one call
        assert server.counters["malformed"] == 2
    finally:
        release.set()
        client.close(0)
        server.close()


def test_rpc_server_batch_handler_error_answers_every_request() -> None:
    ctx = zmq.Context.instance()
    address = f"inproc://batch-error-{id(object())}"

    def broken(batch: Sequence[tuple[bytes, Mapping[str, Any]]]) -> list[dict[str, Any] | None]:
        raise RuntimeError("boom")

    server = RpcServer(address, lambda i, r: None, batch_handler=broken, context=ctx)
    client = ctx.socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    try:
        client.connect(address)
        for n in range(1, 4):
            client.send(msgpack.packb({"id": n, "op": "put"}))
        replies = []
        while len(replies) < 3 and client.poll(10_000):
            replies.append(msgpack.unpackb(client.recv()))
        assert sorted(r["id"] for r in replies) == [1, 2, 3]
        assert {r["error_kind"] for r in replies} == {"internal"}
        assert server.counters["handler_errors"] >= 1
    finally:
        client.close(0)
        server.close()


# ============================================================================ KV server


class _Status:
    def __init__(self, raft: "ScriptedRaft"):
        self.role = Role.LEADER if raft.leader else Role.FOLLOWER
        self.leader_id = 0 if raft.leader else 1
        self.term = raft.term
        self.commit_index = self.applied_index = self.last_index = raft.last_index
        self.snapshot_index = self.state_bytes = 0


class ScriptedRaft:
    """Stands in for `ruaft.Raft`: records proposals and read requests; the test commits
    entries by calling `deliver` (as the apply thread would) and resolves reads itself."""

    instances: list["ScriptedRaft"] = []

    def __init__(self, peers: Any, me: int, storage: Any, apply: Any, snapshot_requested: Any,
                 runtime: Any, *, transport: Any):
        self.apply = apply
        self.leader = True
        self.term = 1
        self.last_index = 0
        self.proposals: list[list[Any]] = []
        self.reads: list[concurrent.futures.Future[int]] = []
        self.error = None
        self.storage_problem = None
        ScriptedRaft.instances.append(self)

    def start_many(self, commands: Sequence[Any]) -> tuple[int, int] | None:
        if not self.leader:
            return None
        self.proposals.append(list(commands))
        first = self.last_index + 1
        self.last_index += len(commands)
        return first, self.term

    def request_read(self) -> concurrent.futures.Future[int]:
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        if not self.leader:
            future.set_exception(NotLeaderError("not the leader"))
        self.reads.append(future)
        return future

    def status(self) -> _Status:
        return _Status(self)

    def deliver(self, index: int, command: Any) -> None:
        self.apply(CommandApplied(index, self.term, command))

    def hand_off_leadership(self, timeout: float = 3.0) -> bool:
        return True

    def kill(self) -> None:
        pass


class _Closeable:
    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def close(self) -> None:
        pass


class Replies:
    """Collects the server's (deferred) replies by request id."""

    def __init__(self) -> None:
        self.by_id: dict[int, dict[str, Any]] = {}
        self.order: list[int] = []
        self._cond = threading.Condition()

    def __call__(self, identity: bytes, request_id: int, fields: Mapping[str, Any]) -> None:
        with self._cond:
            assert request_id not in self.by_id, f"request {request_id} answered twice"
            self.by_id[request_id] = dict(fields)
            self.order.append(request_id)
            self._cond.notify_all()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[KVServer, ScriptedRaft, Replies]]:
    monkeypatch.setattr(kv_server, "Raft", ScriptedRaft)
    monkeypatch.setattr(kv_server, "LmdbStorage", _Closeable)
    monkeypatch.setattr(kv_server, "ZmqTransport", _Closeable)
    ScriptedRaft.instances.clear()
    config = KVServerConfig(me=0, raft_addresses={0: "tcp://127.0.0.1:1", 1: "tcp://127.0.0.1:2",
                                                  2: "tcp://127.0.0.1:3"},
                            client_address="tcp://127.0.0.1:*", data_dir=tmp_path)
    srv = KVServer(config)
    replies = Replies()
    srv.clients.reply = replies  # type: ignore[method-assign]
    try:
        yield srv, ScriptedRaft.instances[0], replies
    finally:
        srv.close(graceful=False)


def answer(srv: KVServer, replies: Replies, batch: list[dict[str, Any]]) -> None:
    """Run one batch through the server's batch handler, recording the immediate replies
    as the RpcServer would."""
    immediate = srv._handle_batch([(b"client", request) for request in batch])
    assert len(immediate) == len(batch)
    for request, fields in zip(batch, immediate):
        if fields is not None:
            replies(b"client", request["id"], fields)


def put(request_id: int, key: str, value: str, client: str, seq: int, op: str = "put") -> dict[str, Any]:
    return {"id": request_id, "op": op, "key": key, "value": value, "client_id": client, "seq": seq}


def get(request_id: int, key: str) -> dict[str, Any]:
    return {"id": request_id, "op": "get", "key": key}


def test_writes_of_one_batch_are_one_proposal(server: tuple[KVServer, ScriptedRaft, Replies]) -> None:
    srv, raft, replies = server
    batch = [put(i, f"k{i}", f"v{i}", f"c{i}", 1) for i in range(1, 9)]
    answer(srv, replies, batch)
    assert len(raft.proposals) == 1 and len(raft.proposals[0]) == 8
    assert replies.by_id == {}  # nothing answered before it commits
    for index, command in enumerate(raft.proposals[0], start=1):
        raft.deliver(index, command)
    assert replies.order == list(range(1, 9))
    assert all(replies.by_id[i] == {"ok": True, "result": None} for i in range(1, 9))
    assert srv._sm.data == {f"k{i}": f"v{i}" for i in range(1, 9)}
    assert srv.counters["puts"] == 8


def test_duplicates_inside_one_batch_are_proposed_once_and_each_answered(
        server: tuple[KVServer, ScriptedRaft, Replies]) -> None:
    srv, raft, replies = server
    # An earlier write of client "a" is already applied: its retry is answered at once.
    answer(srv, replies, [put(1, "x", "1", "a", 1, op="append")])
    raft.deliver(1, raft.proposals[0][0])
    batch = [put(2, "x", "2", "a", 2, op="append"),
             put(3, "x", "2", "a", 2, op="append"),   # the same request twice (a retry)
             put(4, "x", "1", "a", 1, op="append"),   # already applied
             put(5, "y", "3", "b", 1, op="append")]
    answer(srv, replies, batch)
    assert replies.by_id[4] == {"ok": True}
    assert len(raft.proposals) == 2 and len(raft.proposals[1]) == 2  # a/2 once, b/1
    raft.deliver(2, raft.proposals[1][0])
    raft.deliver(3, raft.proposals[1][1])
    assert sorted(replies.by_id) == [1, 2, 3, 4, 5]
    assert all(replies.by_id[i]["ok"] for i in (2, 3, 5))
    assert srv._sm.data == {"x": "12", "y": "3"}  # a/2 applied once
    assert srv.counters["duplicates"] == 2


def test_mixed_batch_reads_share_one_read_index_and_see_their_index(
        server: tuple[KVServer, ScriptedRaft, Replies]) -> None:
    srv, raft, replies = server
    answer(srv, replies, [put(1, "k", "old", "a", 1)])
    raft.deliver(1, raft.proposals[0][0])
    batch = [get(2, "k"), put(3, "k", "new", "b", 1), get(4, "k"), get(5, "missing"),
             {"id": 6, "op": "get"},  # no key: a definite error, in place
             put(7, "j", "v", "c", 1)]
    answer(srv, replies, batch)
    assert replies.by_id[6]["error_kind"] == "bad_request"
    assert len(raft.proposals) == 2 and [KVCommand.decode(c).key for c in raft.proposals[1]] == ["k", "j"]
    assert len(raft.reads) == 1  # one ReadIndex round for the three gets
    # The read point is the commit index when the round was asked (1): the concurrent puts
    # of the same batch are not in it, and the gets answer at once.
    raft.reads[0].set_result(1)
    assert [replies.by_id[i] for i in (2, 4, 5)] == [{"ok": True, "value": "old"},
                                                      {"ok": True, "value": "old"},
                                                      {"ok": True, "value": ""}]
    assert 3 not in replies.by_id and 7 not in replies.by_id
    # A read point beyond what is applied waits for the apply thread.
    answer(srv, replies, [get(8, "k"), get(9, "j")])
    raft.reads[1].set_result(3)
    assert 8 not in replies.by_id
    raft.deliver(2, raft.proposals[1][0])
    assert 8 not in replies.by_id
    raft.deliver(3, raft.proposals[1][1])
    assert replies.by_id[8] == {"ok": True, "value": "new"}
    assert replies.by_id[9] == {"ok": True, "value": "v"}
    assert replies.order.index(3) < replies.order.index(8)


def test_batch_straddling_leadership_loss(server: tuple[KVServer, ScriptedRaft, Replies]) -> None:
    """Writes proposed before leadership is lost and overwritten by the new leader's entries
    get `wrong_leader` (nothing of theirs applied); a batch arriving after the loss is
    refused as a whole; reads waiting on a round the leader could not confirm fail."""
    srv, raft, replies = server
    answer(srv, replies, [put(1, "k", "a", "a", 1), get(2, "k"), put(3, "k", "b", "b", 1)])
    assert len(raft.proposals[0]) == 2
    raft.leader = False
    raft.reads[0].set_exception(NotLeaderError("lost leadership"))
    assert replies.by_id[2]["error_kind"] == "wrong_leader"
    answer(srv, replies, [put(4, "k", "c", "c", 1), get(5, "k"), put(6, "k", "d", "d", 1)])
    assert [replies.by_id[i]["error_kind"] for i in (4, 5, 6)] == ["wrong_leader"] * 3
    assert replies.by_id[4]["leader_hint"] == 1
    assert len(raft.proposals) == 1
    # The new leader's log put other entries at indexes 1 and 2: one of them is b's same
    # request, retried through the new leader (so it did take effect: ok), the other not.
    raft.deliver(1, KVCommand("z", 1, "put", "k", "z").encode())
    raft.deliver(2, KVCommand("b", 1, "put", "k", "b").encode())
    assert replies.by_id[1]["error_kind"] == "wrong_leader"
    assert replies.by_id[3] == {"ok": True, "result": None}
    assert srv._sm.data == {"k": "b"}
    assert srv.counters["wrong_leader"] == 1 + 3 + 1


def test_full_disk_refuses_a_batch_definitely_and_proposes_nothing(
        server: tuple[KVServer, ScriptedRaft, Replies]) -> None:
    """While the runtime reports a storage problem, the batch's writes and reads get the
    definite `unavailable` disk-full reply at once (counted per request); nothing reaches
    Raft, and once space returns the same requests are served."""
    srv, raft, replies = server
    raft.storage_problem = "raft/data.mdb: 0 bytes free"
    answer(srv, replies, [put(1, "a", "x", "c1", 1), get(2, "a"), put(3, "b", "y", "c2", 1)])
    assert raft.proposals == [] and raft.reads == []
    for request_id, what in [(1, "writes"), (2, "reads"), (3, "writes")]:
        reply = replies.by_id[request_id]
        assert reply["ok"] is False and reply["error_kind"] == "unavailable"
        assert f"cannot accept {what}: disk full" in reply["error"] and "0 bytes free" in reply["error"]
    assert srv.counters["storage_full"] == 3
    raft.storage_problem = None
    answer(srv, replies, [put(4, "a", "x", "c1", 1)])
    assert raft.proposals == [[raft.proposals[0][0]]]
    raft.deliver(1, raft.proposals[0][0])
    assert replies.by_id[4] == {"ok": True, "result": None}
