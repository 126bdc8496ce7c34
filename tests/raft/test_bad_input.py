"""Bad input: a live cluster keeps electing and committing while every peer's Raft ROUTER and
control endpoint are fed random and malformed frames from sockets that are not peers.

Every frame sent to a Raft socket must be dropped and counted by the receiving transport --
as a decode error, or (a frame that decodes) as a receive drop, since no fuzzing socket
carries a peer's identity -- and none may reach Raft: the per-peer sum of the two counters
must grow by exactly the number of frames sent there. Every malformed control request must
be counted in `control.malformed`, exactly. Nothing may crash a peer (`cleanup` fails the
test on a peer that died or reported an error).

The fuzzing sockets never take a peer's identity (b"peer-N"): the ROUTERs hand a connection
over to a new socket claiming an identity already in use, which would cut a real peer off.
Nor do they send a control request that would act (`start`, `set_faults` with valid rules,
`go`): only requests that are refused.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any, Callable

import msgpack
import zmq

from orchestrator.cluster import ELECTION_TIMEOUT, Cluster
from ruaft.core.types import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from transport_zmq.codec import MAX_UINT, WIRE_VERSION, RaftCodec

MakeCluster = Callable[..., Cluster]

TOTAL_FRAMES = 10_000
SEND_BUDGET_S = 60.0
BATCH = 400
CONTROL_SHARE = 0.25
"""Fraction of the frames that go to control endpoints (the rest to Raft ROUTERs)."""

Frame = list[bytes]  # the parts of one ZeroMQ message


def rand_int(rng: random.Random) -> int:
    return rng.getrandbits(63)


# ============================================================================ Raft frames


class RaftFuzzer:
    """Builds bad frames for peer `to`'s Raft ROUTER, by category."""

    def __init__(self, cluster_id: str, n: int, rng: random.Random):
        self.cluster_id = cluster_id
        self.n = n
        self.rng = rng
        self.codec = RaftCodec(cluster_id, range(n), max_frame_bytes=64 << 20)
        self.categories: list[tuple[str, Callable[[int], Frame]]] = [
            ("garbage", self.garbage),
            ("truncated", self.truncated),
            ("wrong_type", self.wrong_type),
            ("huge_length", self.huge_length),
            ("unknown_kind", self.unknown_kind),
            ("multipart", self.multipart),
            ("bad_field", self.bad_field),
            ("bit_flip", self.bit_flip),
            ("valid_not_a_peer", self.valid_frame),
        ]

    def frame(self, to: int) -> tuple[str, Frame]:
        name, make = self.rng.choice(self.categories)
        return name, make(to)

    def sender(self, to: int) -> int:
        return self.rng.choice([p for p in range(self.n) if p != to])

    def message(self, to: int) -> Message:
        """A well-formed message to `to`, of a random kind, with plausible fields."""
        r = self.rng
        frm = self.sender(to)
        term = r.choice([1, 2, 7, 1000, MAX_UINT])
        kind = r.randrange(7)
        if kind == 0:
            return RequestVote(frm, to, term, r.randrange(100), r.randrange(term + 1),
                               pre_vote=r.random() < 0.5, leadership_transfer=r.random() < 0.2)
        if kind == 1:
            return RequestVoteResponse(frm, to, term, r.random() < 0.5, pre_vote=r.random() < 0.5)
        if kind == 2:
            prev = r.randrange(50)
            count = r.randrange(5)
            entries = tuple(Entry(term, prev + 1 + k, r.randbytes(r.randrange(40)))
                            for k in range(count))
            return AppendEntries(frm, to, term, prev, min(term, r.randrange(5)), entries,
                                 r.randrange(60), seq=r.randrange(100))
        if kind == 3:
            return AppendEntriesResponse(frm, to, term, r.random() < 0.5,
                                         prev_log_index=r.randrange(50),
                                         match_index=r.randrange(50),
                                         conflict_index=r.randrange(50),
                                         conflict_term=r.randrange(5), seq=r.randrange(100))
        if kind == 4:
            return InstallSnapshot(frm, to, term, r.randrange(100), r.randrange(term + 1),
                                   r.randrange(1000), r.randbytes(r.randrange(100)),
                                   r.random() < 0.5, seq=r.randrange(100))
        if kind == 5:
            return InstallSnapshotResponse(frm, to, term, r.randrange(100), r.randrange(1000),
                                           done=r.random() < 0.5, match_index=r.randrange(100))
        return TimeoutNow(frm, to, term)

    def valid(self, to: int) -> bytes:
        return self.codec.encode(self.message(to))

    def fields(self, to: int) -> list[Any]:
        fields: list[Any] = msgpack.unpackb(self.valid(to), raw=False)
        return fields

    @staticmethod
    def pack(fields: Any) -> bytes:
        packed: bytes = msgpack.packb(fields, use_bin_type=True)
        return packed

    # ------------------------------------------------------------------ categories

    def garbage(self, to: int) -> Frame:
        r = self.rng
        return [r.randbytes(r.choice([0, 1, 2, 5, 17, 100, 1000, r.randrange(5000)]))]

    def truncated(self, to: int) -> Frame:
        frame = self.valid(to)
        return [frame[: self.rng.randrange(len(frame))]]

    def wrong_type(self, to: int) -> Frame:
        r = self.rng
        fields = self.fields(to)
        pos = r.randrange(len(fields))
        fields[pos] = r.choice([
            "a string", 1.5, None, [1, 2, 3], {"k": "v"}, b"bytes", True, False,
            -1, -(2**63), 2**64 - 1, [], {},
        ])
        return [self.pack(fields)]

    def huge_length(self, to: int) -> Frame:
        """Headers that declare far more than the frame holds: arrays, maps, strings and
        binaries of ~4 G elements or bytes, alone or after a valid-looking prefix."""
        r = self.rng
        huge = r.choice([
            b"\xdd\xff\xff\xff\xff",  # array32
            b"\xdf\xff\xff\xff\xff",  # map32
            b"\xdb\xff\xff\xff\xff",  # str32
            b"\xc6\xff\xff\xff\xff",  # bin32
            b"\xc9\xff\xff\xff\xff\x01",  # ext32
            b"\xdc\xff\xff",  # array16
            b"\xda\xff\xff",  # str16
        ])
        tail = r.randbytes(r.randrange(20))
        if r.random() < 0.5:
            return [huge + tail]
        # A valid-looking AppendEntries header whose entries (or whole frame) claim ~4 G.
        fields = self.fields(to)
        cut = r.randrange(1, len(fields))
        prefix = b"".join(self.pack(f) for f in fields[:cut])
        header = b"\xdd" + len(fields).to_bytes(4, "big") if r.random() < 0.5 else b"\xdd\xff\xff\xff\xff"
        return [header + prefix + huge + tail]

    def unknown_kind(self, to: int) -> Frame:
        fields = self.fields(to)
        fields[2] = self.rng.choice([0, 8, 9, 42, 127, 255, 2**31, 2**63 - 1, 2**64 - 1])
        return [self.pack(fields)]

    def multipart(self, to: int) -> Frame:
        r = self.rng
        parts = [self.valid(to) for _ in range(r.randrange(2, 5))]
        if r.random() < 0.3:
            parts.insert(r.randrange(len(parts) + 1), b"")
        return parts

    def bad_field(self, to: int) -> Frame:
        """Frames shaped like valid ones with one field out of bounds or inconsistent."""
        r = self.rng
        fields = self.fields(to)
        choice = r.randrange(12)
        if choice == 0:
            fields[0] = r.choice([0, 2, WIRE_VERSION + 1, 255])  # version
        elif choice == 1:
            fields[1] = r.choice(["", "other-cluster", self.cluster_id + "x"])  # cluster id
        elif choice == 2:
            fields[3] = r.choice([self.n, self.n + 7, 2**40, -1])  # from_peer unknown
        elif choice == 3:
            fields[4] = r.choice([self.n, 99, -1])  # to_peer unknown
        elif choice == 4:
            fields[3] = fields[4]  # from == to
        elif choice == 5:
            fields[5] = r.choice([-1, -(2**63), 2**63, 2**64 - 1])  # term out of bounds
        elif choice == 6:
            fields.append(r.choice([0, "extra", None]))  # one field too many
        elif choice == 7:
            fields.pop()  # one field too few
        elif choice == 8:
            return [self.pack(fields) + r.randbytes(r.randrange(1, 8))]  # trailing bytes
        else:
            return [self.bad_entries(to)]
        return [self.pack(fields)]

    def bad_entries(self, to: int) -> bytes:
        """AppendEntries whose entries break the codec's consistency rules."""
        r = self.rng
        term, prev, prev_term = 5, 10, 3
        good = [4, 11, b"a", 5, 12, b"b"]
        flat = r.choice([
            [4, 13, b"a"],  # not prev+1
            [4, 11, b"a", 4, 13, b"b"],  # not consecutive
            [6, 11, b"a"],  # entry term above the message's term
            [2, 11, b"a"],  # entry term below prev_log_term
            [5, 11, b"a", 4, 12, b"b"],  # terms decreasing
            [4, 11],  # not a multiple of 3
            [4, 11, "text"],  # data not bytes
            [4.0, 11, b"a"],  # term not an int
            [4, MAX_UINT + 1, b"a"],  # index out of range
            good[:3] + [None, None, None],
            "not an array",
        ])
        return self.pack([WIRE_VERSION, self.cluster_id, 3, self.sender(to), to, term, prev,
                          prev_term, flat, 0, 0])

    def bit_flip(self, to: int) -> Frame:
        frame = bytearray(self.valid(to))
        for _ in range(self.rng.randrange(1, 4)):
            frame[self.rng.randrange(len(frame))] ^= 1 << self.rng.randrange(8)
        return [bytes(frame)]

    def valid_frame(self, to: int) -> Frame:
        """A well-formed frame from a socket that is not the peer it names (or addressed to
        another peer): decodes, and must be dropped as sender_mismatch / misaddressed."""
        if self.rng.random() < 0.2:
            others = [p for p in range(self.n) if p != to]
            return [self.codec.encode(self.message(self.rng.choice(others)))]
        return [self.valid(to)]


# ============================================================================ control frames


class ControlFuzzer:
    """Bad control requests. `frame()` returns (category, parts, malformed) where `malformed`
    says whether the endpoint must count the request in `control.malformed` (refused
    requests with a good envelope -- unknown op, bad arguments -- are answered instead)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.next_id = 1 << 40  # far from the harness's request ids

    def request_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def frame(self) -> tuple[str, Frame, bool]:
        r = self.rng
        pack = RaftFuzzer.pack
        choice = r.randrange(11)
        if choice == 0:
            return "garbage", [b"\xc1" + r.randbytes(r.randrange(200))], True  # 0xc1: never valid
        if choice == 1:
            frame = pack({"id": self.request_id(), "op": "get_state"})
            return "truncated", [frame[: r.randrange(len(frame))]], True
        if choice == 2:
            return "not_a_map", [pack(r.choice([[1, "get_state"], 7, "get_state", None, b"x"]))], True
        if choice == 3:
            bad = r.choice([{"op": "get_state"}, {"id": "1", "op": "get_state"},
                            {"id": True, "op": "get_state"}, {"id": 1.5, "op": "stats"},
                            {"id": None}, {}])
            return "bad_id", [pack(bad)], True
        if choice == 4:
            op = r.choice([None, 5, b"get_state", ["stats"], {"op": "stats"}])
            return "bad_op", [pack({"id": self.request_id(), "op": op})], True
        if choice == 5:
            huge = r.choice([b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
                             b"\xc6\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff"])
            return "huge_length", [huge + r.randbytes(r.randrange(30))], True
        if choice == 6:
            parts = [pack({"id": self.request_id(), "op": "get_state"})
                     for _ in range(r.randrange(2, 4))]
            return "multipart", parts, True
        if choice == 7:
            frame = pack({"id": self.request_id(), "op": "get_state"})
            return "trailing_bytes", [frame + r.randbytes(r.randrange(1, 10))], True
        if choice == 8:
            op = r.choice(["no_such_op", "", "START", "kill", "x" * 300])
            return "unknown_op", [pack({"id": self.request_id(), "op": op})], False
        if choice == 9:
            since = r.choice([-1, -(2**63), "0", None, 1.5, [0]])
            return "bad_argument", [pack({"id": self.request_id(), "op": "applied",
                                          "since": since})], False
        # Rules that do not validate: refused, nothing changes.
        rules = r.choice(["all", [], {"disabled_links": "x"}, {"unreliable": "yes"},
                          {"nonsense": 1}, {"disabled_links": [[0]]}, None, 7])
        return "bad_rules", [pack({"id": self.request_id(), "op": "set_faults", "rules": rules})], False


# ============================================================================ the test


def drops(stats: dict[str, Any]) -> int:
    """Frames a transport refused: decode errors plus receive drops of decoded frames."""
    transport = stats["transport"]
    return sum(transport["decode_errors"].values()) + sum(transport["receive_drops"].values())


def dealer(context: zmq.Context, address: str) -> zmq.Socket:  # type: ignore[type-arg]
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 10_000)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.connect(address)
    return sock


def test_bad_input(make_cluster: MakeCluster, rng: random.Random) -> None:
    servers = 3
    cfg = make_cluster(servers)
    cfg.one(rand_int(rng), servers, True)

    before = {}
    for i in range(servers):
        stats = cfg.stats(i)
        assert stats is not None, f"peer {i} did not report stats"
        assert drops(stats) == 0, f"peer {i} dropped frames of real peers: {stats['transport']}"
        before[i] = stats

    raft_fuzz = RaftFuzzer(cfg.cluster_id, servers, rng)
    control_fuzz = ControlFuzzer(rng)
    context = zmq.Context()
    raft_socks = {i: dealer(context, cfg.addresses[i]) for i in range(servers)}
    control_socks = {i: dealer(context, cfg.control_addresses[i]) for i in range(servers)}
    raft_sent: Counter[int] = Counter()
    control_sent: Counter[int] = Counter()
    control_malformed: Counter[int] = Counter()
    by_category: Counter[str] = Counter()
    committed = 0
    elections = 0
    try:
        t0 = time.monotonic()
        batch = 0
        sent = 0
        while sent < TOTAL_FRAMES and time.monotonic() - t0 < SEND_BUDGET_S:
            for _ in range(min(BATCH, TOTAL_FRAMES - sent)):
                target = rng.randrange(servers)
                if rng.random() < CONTROL_SHARE:
                    category, parts, malformed = control_fuzz.frame()
                    control_socks[target].send_multipart(parts)
                    control_sent[target] += 1
                    control_malformed[target] += malformed
                    by_category["control:" + category] += 1
                else:
                    category, parts = raft_fuzz.frame(target)
                    raft_socks[target].send_multipart(parts)
                    raft_sent[target] += 1
                    by_category["raft:" + category] += 1
                sent += 1
            batch += 1

            # Meanwhile the cluster keeps committing, and every few batches elects anew.
            cfg.one(rand_int(rng), servers, True)
            committed += 1
            if batch % 5 == 0:
                leader = cfg.check_one_leader()
                cfg.disconnect(leader)
                cfg.one(rand_int(rng), servers - 1, True)
                cfg.connect(leader)
                committed += 1
                elections += 1
            for sock in control_socks.values():  # discard the refusals' replies
                while sock.poll(0):
                    sock.recv_multipart()

        assert sent == TOTAL_FRAMES or time.monotonic() - t0 >= SEND_BUDGET_S
        print(f"sent {sent} bad frames in {time.monotonic() - t0:.1f}s "
              f"({sum(raft_sent.values())} Raft, {sum(control_sent.values())} control); "
              f"{committed} agreements and {elections} forced elections meanwhile")
        print("by category:", dict(sorted(by_category.items())))

        # Every frame is accounted for: poll until the counters have caught up, then demand
        # exact equality (nothing delivered to Raft, nothing unaccounted).
        expected_raft = {i: raft_sent[i] for i in range(servers)}
        expected_malformed = {i: control_malformed[i] for i in range(servers)}
        deadline = time.monotonic() + 10 * ELECTION_TIMEOUT
        while True:
            after = {i: cfg.stats(i) for i in range(servers)}
            assert all(s is not None for s in after.values()), "a fuzzed peer stopped answering"
            raft_seen = {i: drops(after[i]) - drops(before[i]) for i in range(servers)}  # type: ignore[arg-type]
            malformed_seen = {i: after[i]["control"]["malformed"]  # type: ignore[index]
                              - before[i]["control"]["malformed"] for i in range(servers)}
            if (raft_seen == expected_raft and malformed_seen == expected_malformed) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for i in range(servers):
            transport = after[i]["transport"]  # type: ignore[index]
            print(f"peer {i}: decode_errors {transport['decode_errors']}, "
                  f"receive_drops {transport['receive_drops']}, "
                  f"control {after[i]['control']}")  # type: ignore[index]
        assert raft_seen == expected_raft, (
            f"Raft frames refused and counted {raft_seen} != frames sent {expected_raft}")
        assert malformed_seen == expected_malformed, (
            f"control.malformed {malformed_seen} != malformed requests sent {expected_malformed}")
        for i in range(servers):
            requests = after[i]["control"]["requests"] - before[i]["control"]["requests"]  # type: ignore[index]
            assert requests >= control_sent[i], f"peer {i} saw {requests} control requests"
    finally:
        for sock in (*raft_socks.values(), *control_socks.values()):
            sock.close(linger=0)
        context.term()

    # The cluster is still whole: everyone agrees on a new command.
    cfg.one(rand_int(rng), servers, True)
