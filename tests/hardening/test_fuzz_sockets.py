"""A Hypothesis fuzzer at a live KV peer's three doors -- its Raft peer socket, its KV client
socket and its control socket -- while a recorded client load runs against the cluster.

Every frame is classified before it is sent by a local oracle: the same `RaftCodec` the
peer runs (Raft door), or the request-envelope rules of `transport_zmq.rpc` (client and
control doors). The peer's counters, read through its control endpoint, must then grow by
exactly what the oracle predicts, kind by kind: decode errors for malformed Raft frames,
receive drops for frames that decode (the fuzzing socket is no peer, so a well-formed
message -- stale or far-future term included -- is refused for its sender, never counted
as malformed), `malformed` for bad client and control envelopes. Every request whose id
can be recovered gets a definite reply (`malformed`, `bad_request`, ... or an answer); no
handler raises; no peer dies; the client load keeps succeeding and its history is
linearizable.

The fuzzing sockets never take a peer's identity (b"peer-N": the ROUTER would hand the real
peer's connection over), and never send control requests that act (valid `set_faults`).

Examples per door: RUAFT_FUZZ_EXAMPLES (default 1500 Raft, 800 client, 800 control).
Derandomized (reproducible in CI) unless RUAFT_FUZZ_RANDOM=1.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.kvcluster import KVCluster
from ruaft.core.types import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    MessageKind,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from tests.hardening.client_load import ClientLoad
from tests.kv.generic import check_history
from transport_zmq.codec import MAX_UINT, WIRE_VERSION, DecodeError, RaftCodec
from transport_zmq.rpc import MAX_REQUEST_BYTES
from transport_zmq.transport import free_tcp_ports, peer_identity

TARGET = 0
"""The fuzzed peer (whatever its role)."""
N = 3
"""Peer processes."""
PHANTOM = 3
"""A fourth member of the cluster configuration that no process runs: the fuzzer speaks as
it (identity b"peer-3") to show that well-formed messages from a member are processed, not
rejected -- but only with stale terms: a member is trusted, and a current or future term
from it would legitimately depose the leader. With 4 members a majority is 3, so all three
peer processes take part in every election and commit."""
MEMBERS = N + 1
_EXAMPLES = int(os.environ.get("RUAFT_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    deadline=None,
    derandomize=os.environ.get("RUAFT_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

frames_fuzzed: Counter[str] = Counter()
"""Frames sent per door (printed by the last test for the closing note)."""


# ============================================================================ the live cluster


class PhantomMemberCluster(KVCluster):
    """A KV cluster of N processes whose configuration names one more member, `PHANTOM`,
    at `phantom_address` (where the fuzzer listens for what the peers send it)."""

    def __init__(self, *args: Any, phantom_address: str, **options: Any):
        self.phantom_address = phantom_address
        super().__init__(*args, **options)

    def peer_args(self, i: int) -> list[str]:
        return super().peer_args(i) + ["--peer", f"{PHANTOM}={self.phantom_address}"]


@dataclass
class Live:
    cfg: KVCluster
    load: ClientLoad
    context: zmq.Context  # type: ignore[type-arg]
    sockets: dict[str, zmq.Socket] = field(default_factory=dict)  # type: ignore[type-arg]
    pids: dict[int, int] = field(default_factory=dict)
    out_dir: Path = Path(".")
    phantom_inbox: zmq.Socket | None = None  # type: ignore[type-arg]
    """The ROUTER at the phantom member's address: what the peers send to PHANTOM."""

    def socket(self, door: str) -> zmq.Socket:  # type: ignore[type-arg]
        sock = self.sockets.get(door)
        if sock is None:
            address = {"raft": self.cfg.addresses, "phantom": self.cfg.addresses,
                       "client": self.cfg.client_addresses,
                       "control": self.cfg.control_addresses}[door][TARGET]
            sock = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            if door == "phantom":
                sock.setsockopt(zmq.IDENTITY, peer_identity(PHANTOM))
            sock.setsockopt(zmq.SNDTIMEO, 10_000)
            sock.setsockopt(zmq.SNDHWM, 100_000)
            sock.connect(address)
            self.sockets[door] = sock
        return sock

    def stats(self) -> dict[str, Any]:
        stats = self.cfg.stats(TARGET)
        assert stats is not None, f"peer {TARGET} stopped answering its control endpoint"
        return stats

    def assert_alive(self) -> None:
        for i, pid in self.pids.items():
            peer = self.cfg.peers[i]
            assert peer is not None and peer.pid == pid and peer.process.poll() is None, (
                f"peer {i} (pid {pid}) died")
            assert not (self.cfg.data_dir(i) / "peer-error.txt").exists(), (
                (self.cfg.data_dir(i) / "peer-error.txt").read_text())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    out_dir = tmp_path_factory.mktemp("fuzz")
    context = zmq.Context()
    inbox = context.socket(zmq.ROUTER)
    inbox.setsockopt(zmq.LINGER, 0)
    inbox.setsockopt(zmq.RCVHWM, 0)
    phantom_address = f"tcp://127.0.0.1:{free_tcp_ports(1)[0]}"
    inbox.bind(phantom_address)
    sockets: dict[str, zmq.Socket] = {"inbox": inbox}  # type: ignore[type-arg]
    cfg: PhantomMemberCluster | None = None
    load = None
    try:
        cfg = PhantomMemberCluster(N, base_dir=out_dir / "cluster", seed=23,
                                   phantom_address=phantom_address)
        cfg.wait_ready()
        load = ClientLoad(cfg, clients=3, keys=5, seed=5, prefix="load-")
        assert load.wait_acknowledged(20, timeout=20), "the client load did not get going"
        yield Live(cfg, load, context, sockets, out_dir=out_dir, phantom_inbox=inbox,
                   pids={i: p.pid for i, p in cfg.peers.items() if p is not None})
    finally:
        if load is not None:
            load.stop()
        for sock in sockets.values():
            sock.close(linger=0)
        context.term()
        if cfg is not None:
            cfg.cleanup(check=True)


# ============================================================================ Raft frames

uints = st.one_of(st.integers(0, 20), st.integers(0, MAX_UINT), st.sampled_from([MAX_UINT, 2**62]))
terms = st.one_of(
    st.integers(0, 3),  # stale for a cluster that has elected at least once
    st.integers(10**6, MAX_UINT),  # far future
    st.just(MAX_UINT),
)


@st.composite
def raft_messages(draw: st.DrawFn, term_strategy: st.SearchStrategy[int] = terms,
                  sender: int | None = None) -> Message:
    """A well-formed message of any kind, to or from any peer (stale and far-future terms
    included): the codec accepts it. With `sender`, from `sender` to TARGET."""
    frm, to = draw(st.permutations(range(MEMBERS)))[:2]
    if sender is not None:
        frm, to = sender, TARGET
    elif draw(st.booleans()):
        to = TARGET
        frm = draw(st.sampled_from([p for p in range(MEMBERS) if p != TARGET]))
    term = draw(term_strategy)
    kind = draw(st.sampled_from(list(MessageKind)))
    if kind is MessageKind.REQUEST_VOTE:
        return RequestVote(frm, to, term, draw(uints), draw(uints), pre_vote=draw(st.booleans()),
                           leadership_transfer=draw(st.booleans()))
    if kind is MessageKind.REQUEST_VOTE_RESPONSE:
        return RequestVoteResponse(frm, to, term, draw(st.booleans()), pre_vote=draw(st.booleans()))
    if kind is MessageKind.APPEND_ENTRIES:
        prev = draw(st.integers(0, 1000))
        prev_term = draw(st.integers(0, term))
        count = draw(st.integers(0, 4))
        entry_term = draw(st.integers(prev_term, term))
        entries = tuple(Entry(entry_term, prev + 1 + k, draw(st.binary(max_size=40)))
                        for k in range(count))
        return AppendEntries(frm, to, term, prev, prev_term, entries, draw(uints), seq=draw(uints))
    if kind is MessageKind.APPEND_ENTRIES_RESPONSE:
        return AppendEntriesResponse(frm, to, term, draw(st.booleans()), prev_log_index=draw(uints),
                                     match_index=draw(uints), conflict_index=draw(uints),
                                     conflict_term=draw(uints), seq=draw(uints))
    if kind is MessageKind.INSTALL_SNAPSHOT:
        data = draw(st.binary(max_size=60))
        return InstallSnapshot(frm, to, term, draw(uints), draw(uints),
                               draw(st.integers(0, MAX_UINT - len(data))), data, draw(st.booleans()),
                               seq=draw(uints))
    if kind is MessageKind.INSTALL_SNAPSHOT_RESPONSE:
        return InstallSnapshotResponse(frm, to, term, draw(uints), draw(uints),
                                       done=draw(st.booleans()), match_index=draw(uints))
    assert kind is MessageKind.TIMEOUT_NOW
    return TimeoutNow(frm, to, term)


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


packable_ints = st.integers(-(2**63), 2**64 - 1)
"""Every integer msgpack can carry."""
odd_values = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=True), st.text(max_size=10),
    st.binary(max_size=10), packable_ints, st.lists(packable_ints, max_size=3),
    st.dictionaries(st.text(max_size=3), packable_ints, max_size=2),
)
HUGE_HEADERS = [b"\xc6", b"\xdb", b"\xdd", b"\xdf", b"\xc9"]  # bin32, str32, array32, map32, ext32


@st.composite
def mutated(draw: st.DrawFn, frame: bytes) -> bytes:
    """`frame` with bytes flipped, inserted, deleted, or the tail cut off."""
    data = bytearray(frame)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


def huge_length(draw: st.DrawFn, prefix: bytes = b"") -> bytes:
    """A msgpack header claiming 2^31 or 2^32-1 bytes/elements, after `prefix`."""
    header = draw(st.sampled_from(HUGE_HEADERS))
    size = draw(st.sampled_from([2**31, 2**32 - 1, 2**31 - 1]))
    tail = draw(st.binary(max_size=16))
    return prefix + header + size.to_bytes(4, "big") + (b"\x01" if header == b"\xc9" else b"") + tail


@st.composite
def raft_frames(draw: st.DrawFn, cluster_id: str) -> tuple[str, list[bytes]]:
    """(category, ZeroMQ message parts) for the Raft door."""
    codec = RaftCodec(cluster_id, range(MEMBERS), max_frame_bytes=64 << 20)
    category = draw(st.sampled_from([
        "random_bytes", "mutated", "wrong_type", "huge_length", "unknown_kind", "valid_odd_term",
        "unknown_sender", "wrong_cluster", "multipart", "empty",
    ]))
    if category == "random_bytes":
        return category, [draw(st.binary(max_size=300))]
    if category == "empty":
        return category, [b""]
    message = draw(raft_messages())
    frame = codec.encode(message)
    fields = msgpack.unpackb(frame, raw=False)
    if category == "mutated":
        return category, [draw(mutated(frame))]
    if category == "wrong_type":
        fields[draw(st.integers(0, len(fields) - 1))] = draw(odd_values)
        return category, [pack(fields)]
    if category == "huge_length":
        if draw(st.booleans()):
            return category, [huge_length(draw)]
        cut = draw(st.integers(1, len(fields)))
        prefix = b"\xdd" + len(fields).to_bytes(4, "big") + b"".join(pack(f) for f in fields[:cut])
        return category, [huge_length(draw, prefix)]
    if category == "unknown_kind":
        fields[2] = draw(st.one_of(st.integers(8, 2**64 - 1), st.just(0)))
        return category, [pack(fields)]
    if category == "valid_odd_term":
        return category, [frame]
    if category == "unknown_sender":
        fields[3] = draw(st.one_of(st.integers(MEMBERS, 2**63 - 1), st.integers(-(2**63), -1)))
        return category, [pack(fields)]
    if category == "wrong_cluster":
        fields[1] = draw(st.one_of(st.text(max_size=20).filter(lambda t: t != cluster_id),
                                   odd_values.filter(lambda v: not isinstance(v, str))))
        return category, [pack(fields)]
    assert category == "multipart"
    parts = [frame] + [draw(st.binary(max_size=40)) for _ in range(draw(st.integers(1, 3)))]
    draw(st.randoms()).shuffle(parts)
    return category, parts


def expect_raft(codec: RaftCodec, parts: list[bytes]) -> str:
    """What the fuzzed peer's transport must count for this message (the oracle)."""
    if len(parts) != 1:
        return "decode_errors/malformed"
    try:
        message = codec.decode(parts[0])
    except DecodeError as exc:
        return f"decode_errors/{exc.kind.value}"
    if message.to_peer != TARGET:
        return "receive_drops/misaddressed"
    return "receive_drops/sender_mismatch"  # the fuzzing socket is no peer


def raft_counts(stats: dict[str, Any]) -> Counter[str]:
    transport = stats["transport"]
    counts: Counter[str] = Counter()
    for group in ("decode_errors", "receive_drops"):
        for kind, n in transport[group].items():
            counts[f"{group}/{kind}"] = n
    counts["delivered"] = transport["delivered"]
    return counts


def delta(after: Counter[str], before: Counter[str]) -> Counter[str]:
    return Counter({k: after[k] - before[k] for k in after if after[k] != before[k]})


def wait_counts(read: Callable[[], Counter[str]], before: Counter[str], expected: Counter[str],
                ignore: set[str] = frozenset(), timeout: float = 15.0) -> Counter[str]:  # type: ignore[assignment]
    """Poll the peer's counters until their growth equals `expected` (or `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = delta(read(), before)
        for key in ignore:
            seen.pop(key, None)
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def test_fuzz_raft_door(live: Live) -> None:
    codec = RaftCodec(live.cfg.cluster_id, range(MEMBERS), max_frame_bytes=64 << 20)
    sock = live.socket("raft")
    expected: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    before = raft_counts(live.stats())
    acked_before = live.load.acknowledged

    @settings(FUZZ, max_examples=_EXAMPLES or 1500)
    @given(raft_frames(live.cfg.cluster_id))
    def fuzz(case: tuple[str, list[bytes]]) -> None:
        category, parts = case
        expected[expect_raft(codec, parts)] += 1
        categories[category] += 1
        sock.send_multipart(parts)
        frames_fuzzed["raft"] += 1
        if categories.total() % 250 == 0:
            live.assert_alive()

    t0 = time.monotonic()
    fuzz()
    sent = time.monotonic() - t0
    # "delivered" must not move for our frames; the real peers' traffic moves it, so it is
    # compared separately: every frame of ours is accounted for by a drop counter.
    seen = wait_counts(lambda: raft_counts(live.stats()), before, expected, ignore={"delivered"})
    print(f"\nRaft door: {categories.total()} frames in {sent:.1f} s; by category "
          f"{dict(sorted(categories.items()))}\n  expected {dict(sorted(expected.items()))}")
    assert seen == expected, f"peer counted {dict(sorted(seen.items()))}"
    assert expected["receive_drops/sender_mismatch"] > 0  # well-formed frames were sent too
    live.assert_alive()
    assert live.load.acknowledged > acked_before, "the client load stalled during the fuzzing"


def test_stale_messages_from_a_member_are_processed(live: Live) -> None:
    """Well-formed messages with stale terms from a configured member reach Raft: the
    transport rejects none of them, the core counts each as `stale-term`, and answers those
    that call for an answer (AppendEntries, InstallSnapshot, pre-votes) with its term."""
    codec = RaftCodec(live.cfg.cluster_id, range(MEMBERS), max_frame_bytes=64 << 20)
    state = live.cfg._call(TARGET, "get_state")
    assert state is not None and state["term"] >= 1
    term = state["term"]
    sock = live.socket("phantom")
    inbox = live.phantom_inbox
    assert inbox is not None
    before = live.stats()
    sent: Counter[str] = Counter()
    answers: Counter[str] = Counter()

    def drain(wait_ms: int = 0) -> None:
        while inbox.poll(wait_ms):
            identity, frame = inbox.recv_multipart()
            wait_ms = 0
            message = codec.decode(frame)
            if message.from_peer == TARGET and isinstance(
                    message, (AppendEntriesResponse, RequestVoteResponse)):
                assert message.term >= term and not getattr(message, "vote_granted", False)
                answers[type(message).__name__] += 1

    @settings(FUZZ, max_examples=_EXAMPLES or 400)
    @given(raft_messages(st.integers(0, term - 1), sender=PHANTOM))
    def fuzz(message: Message) -> None:
        sock.send(codec.encode(message))
        sent[type(message).__name__] += 1
        if isinstance(message, (AppendEntries, InstallSnapshot)):
            sent["answer due: AppendEntriesResponse"] += 1
        elif isinstance(message, RequestVote) and message.pre_vote:
            sent["answer due: RequestVoteResponse"] += 1
        frames_fuzzed["raft (as a member)"] += 1
        drain()

    fuzz()
    due = Counter({k.removeprefix("answer due: "): v for k, v in sent.items()
                   if k.startswith("answer due: ")})
    deadline = time.monotonic() + 10
    while answers != due and time.monotonic() < deadline:
        drain(100)
    deadline = time.monotonic() + 10
    total = sum(v for k, v in sent.items() if not k.startswith("answer due"))
    while True:  # the last frames may still be on their way through the event loop
        after = live.stats()
        stale = after["dropped"].get("stale-term", 0) - before["dropped"].get("stale-term", 0)
        if stale >= total or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    rejected = delta(raft_counts(after), raft_counts(before))
    delivered = rejected.pop("delivered", 0)
    print(f"\nas member {PHANTOM} (term < {term}): sent {dict(sorted(sent.items()))}; "
          f"answers {dict(answers)}; core stale-term +{stale}; delivered +{delivered}")
    assert rejected == Counter(), f"the transport rejected well-formed member frames: {rejected}"
    assert delivered >= total
    assert stale >= total, f"the core counted {stale} stale messages of {total} sent"
    assert answers == due, f"answers {dict(answers)} != due {dict(due)}"
    live.assert_alive()


# ============================================================================ client / control


@dataclass
class Envelope:
    """The request-envelope verdict of `transport_zmq.rpc.RpcServer._serve`, recomputed."""

    malformed: bool
    request_id: int | None


def expect_rpc(parts: list[bytes]) -> Envelope:
    if len(parts) != 1:
        return Envelope(True, None)
    try:
        request = msgpack.unpackb(parts[0], raw=False, strict_map_key=False,
                                  max_bin_len=MAX_REQUEST_BYTES, max_str_len=MAX_REQUEST_BYTES)
    except Exception:  # noqa: BLE001 -- whatever msgpack refuses, the server refuses
        return Envelope(True, None)
    if not isinstance(request, dict):
        return Envelope(True, None)
    raw_id = request.get("id")
    request_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    if request_id is None or not isinstance(request.get("op"), str):
        return Envelope(True, request_id)
    return Envelope(False, request_id)


_ids = itertools.count(10**12)
FRESH = object()
"""Placeholder for a fresh request id (filled in when the frame is sent)."""

ids = st.integers(0, 9).flatmap(lambda n: st.just(FRESH) if n < 7 else odd_values)
"""Mostly a fresh id (so the reply can be matched), sometimes a wrong-typed one."""
fuzz_keys = st.one_of(st.text(max_size=12).map(lambda t: "fz" + t), odd_values,
                      st.just("k" * 1100))


def request_maps(ops: st.SearchStrategy[Any], fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Maps shaped like requests: an id (fresh or odd), an op, and some of `fields`, each
    present or not, plus sometimes an extra odd field."""
    optional = {name: st.one_of(strategy, odd_values) for name, strategy in fields.items()}
    return st.fixed_dictionaries({"id": ids, "op": ops}, optional=optional | {"extra": odd_values})


@st.composite
def rpc_frames(draw: st.DrawFn, requests: st.SearchStrategy[dict[str, Any]]) -> tuple[str, list[Any]]:
    """(category, parts) where a part is bytes or a request map still holding FRESH ids."""
    category = draw(st.sampled_from(["random_bytes", "request", "request", "mutated",
                                     "huge_length", "not_a_map", "multipart", "empty",
                                     "trailing_bytes"]))
    if category == "random_bytes":
        return category, [draw(st.binary(max_size=200))]
    if category == "empty":
        return category, [b""]
    if category == "huge_length":
        return category, [huge_length(draw, draw(st.sampled_from([b"", b"\x82\xa2id\x01\xa2op"])))]
    if category == "not_a_map":
        return category, [pack(draw(st.one_of(odd_values.filter(lambda v: not isinstance(v, dict)),
                                               st.lists(odd_values, max_size=3))))]
    request = draw(requests)
    if category == "request":
        return category, [request]
    if category == "mutated":
        return category, [("mutate", request, draw(st.randoms()))]
    if category == "trailing_bytes":
        return category, [("trail", request, draw(st.binary(min_size=1, max_size=6)))]
    assert category == "multipart"
    return category, [request] + [draw(st.binary(max_size=20)) for _ in range(draw(st.integers(1, 2)))]


def realize(part: Any) -> bytes:
    """Turn a drawn part into bytes, giving FRESH ids their unique values."""
    if isinstance(part, bytes):
        return part
    if isinstance(part, dict):
        return pack({k: (next(_ids) if v is FRESH else v) for k, v in part.items()})
    how, request, extra = part
    frame = realize(request)
    if how == "trail":
        return frame + extra
    data = bytearray(frame)
    for _ in range(extra.randint(1, 3)):
        at = extra.randrange(len(data))
        choice = extra.randrange(3)
        if choice == 0:
            data[at] ^= 1 << extra.randrange(8)
        elif choice == 1:
            del data[at:at + extra.randint(1, 4)]
        else:
            del data[at:]
        if not data:
            break
    return bytes(data)


@dataclass
class RpcFuzzRun:
    """What one door's fuzzing sent, and the replies it must get."""

    categories: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    awaiting: dict[int, list[str]] = field(default_factory=dict)
    """request id -> the replies still due ("malformed" or "answer")."""
    replies: Counter[str] = field(default_factory=Counter)
    unexpected: list[Any] = field(default_factory=list)

    def sent(self, parts: list[bytes]) -> None:
        verdict = expect_rpc(parts)
        self.malformed += verdict.malformed
        if verdict.request_id is not None:
            self.awaiting.setdefault(verdict.request_id, []).append(
                "malformed" if verdict.malformed else "answer")

    def receive(self, sock: zmq.Socket, timeout_ms: int = 0) -> None:  # type: ignore[type-arg]
        while sock.poll(timeout_ms):
            reply = msgpack.unpackb(sock.recv(), raw=False, strict_map_key=False)
            due = self.awaiting.get(reply.get("id")) if isinstance(reply, dict) else None
            if not due or "ok" not in reply or (not reply["ok"] and "error_kind" not in reply):
                self.unexpected.append(reply)
                continue
            kind = "ok" if reply["ok"] else reply["error_kind"]
            self.replies[kind] += 1
            want = "malformed" if kind == "malformed" and "malformed" in due else "answer"
            if want not in due:
                self.unexpected.append(reply)
                continue
            due.remove(want)
            if not due:
                del self.awaiting[reply["id"]]
            timeout_ms = 0

    def wait_replies(self, sock: zmq.Socket, timeout: float = 20.0) -> None:  # type: ignore[type-arg]
        deadline = time.monotonic() + timeout
        while self.awaiting and time.monotonic() < deadline:
            self.receive(sock, 100)


def fuzz_door(live: Live, door: str, requests: st.SearchStrategy[dict[str, Any]],
              examples: int) -> RpcFuzzRun:
    sock = live.socket(door)
    run = RpcFuzzRun()

    @settings(FUZZ, max_examples=_EXAMPLES or examples)
    @given(rpc_frames(requests))
    def fuzz(case: tuple[str, list[Any]]) -> None:
        category, drawn = case
        parts = [realize(p) for p in drawn]
        run.categories[category] += 1
        run.sent(parts)
        sock.send_multipart(parts)
        frames_fuzzed[door] += 1
        run.receive(sock)
        if run.categories.total() % 200 == 0:
            live.assert_alive()

    fuzz()
    run.wait_replies(sock)
    return run


KV_OPS = st.one_of(st.sampled_from(["get", "put", "append", "status", "drop_table", ""]),
                   st.text(max_size=8))
KV_REQUESTS = request_maps(KV_OPS, {
    "key": fuzz_keys,
    "value": st.one_of(st.text(max_size=20), st.just("v" * ((1 << 20) + 1))),
    "client_id": st.one_of(st.just("fuzz-client"), st.text(max_size=8)),
    "seq": st.one_of(st.integers(-5, 10**6), st.just(MAX_UINT)),
})


def test_fuzz_client_door(live: Live) -> None:
    before = live.stats()
    acked_before = live.load.acknowledged
    run = fuzz_door(live, "client", KV_REQUESTS, 800)
    print(f"\nclient door: {run.categories.total()} frames; by category "
          f"{dict(sorted(run.categories.items()))}; replies {dict(sorted(run.replies.items()))}")
    assert not run.awaiting, f"requests with an id got no reply: {list(run.awaiting.items())[:10]}"
    assert not run.unexpected, f"unexpected replies: {run.unexpected[:10]}"
    assert run.replies["internal"] == 0
    expected = Counter({"malformed": run.malformed,
                        "bad_requests": run.replies["bad_request"] + run.replies["too_large"]})
    seen = wait_counts(lambda: client_counts(live.stats()), client_counts(before), expected,
                       ignore={"requests"})
    assert seen == expected, f"peer counted {dict(seen)}, expected {dict(expected)}"
    live.assert_alive()
    assert live.load.acknowledged > acked_before, "the client load stalled during the fuzzing"


def client_counts(stats: dict[str, Any]) -> Counter[str]:
    clients = stats["clients"]
    return Counter({"malformed": clients["malformed"], "handler_errors": clients["handler_errors"],
                    "requests": clients["requests"], "bad_requests": stats["kv"]["bad_requests"]})


CONTROL_OPS = st.one_of(st.sampled_from(["ping", "get_state", "stats", "log_size",
                                         "snapshot_size", "start", "go", "applied", "kill"]),
                        st.text(max_size=8).filter(lambda op: op != "set_faults"))
CONTROL_REQUESTS = st.one_of(
    request_maps(CONTROL_OPS, {"since": packable_ints, "rules": odd_values}),
    # set_faults only with rules that cannot apply: not a map, an unknown rule, or a
    # disabled_links that is no list of pairs -- each must be refused, never obeyed.
    request_maps(st.just("set_faults"), {"rules": st.one_of(
        odd_values.filter(lambda v: not isinstance(v, dict)),
        st.fixed_dictionaries({"nonsense": odd_values}),
        st.fixed_dictionaries({"disabled_links": packable_ints}),
        st.fixed_dictionaries({"unreliable": st.one_of(st.none(), packable_ints, st.text())}),
    )}).filter(lambda r: "rules" in r),
)


def test_fuzz_control_door(live: Live) -> None:
    before = live.stats()["control"]
    acked_before = live.load.acknowledged
    run = fuzz_door(live, "control", CONTROL_REQUESTS, 800)
    print(f"\ncontrol door: {run.categories.total()} frames; by category "
          f"{dict(sorted(run.categories.items()))}; replies {dict(sorted(run.replies.items()))}")
    assert not run.awaiting, f"requests with an id got no reply: {list(run.awaiting.items())[:10]}"
    assert not run.unexpected, f"unexpected replies: {run.unexpected[:10]}"
    assert run.replies["internal"] == 0, "a control handler raised on bad input"
    expected = Counter({"malformed": run.malformed})
    seen = wait_counts(lambda: Counter({k: v for k, v in live.stats()["control"].items()
                                        if k in ("malformed", "handler_errors")}),
                       Counter({k: v for k, v in before.items() if k in ("malformed", "handler_errors")}),
                       expected)
    assert seen == expected, f"control endpoint counted {dict(seen)}, expected {dict(expected)}"
    live.assert_alive()
    assert live.load.acknowledged > acked_before, "the client load stalled during the fuzzing"


def test_cluster_whole_after_fuzzing(live: Live) -> None:
    """Last: no peer died, the load kept succeeding, and its history is linearizable."""
    live.assert_alive()
    acked = live.load.acknowledged
    assert live.load.wait_acknowledged(acked + 20, timeout=15)
    problems = live.load.stop()
    assert not problems, problems
    check_history(live.load.recorder, live.out_dir)
    print(f"\nframes fuzzed: {frames_fuzzed.total()} ({dict(frames_fuzzed)}); "
          f"client load: {live.load.ops} operations, {live.load.acknowledged} writes acknowledged")
