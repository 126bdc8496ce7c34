"""The wire codec: round trips, and refusal of every kind of bad frame with the right reason."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruaft.core.types import (
    MESSAGE_TYPES,
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
from transport_zmq.codec import (
    MAX_UINT,
    WIRE_VERSION,
    DecodeError,
    DecodeErrorKind,
    EncodeError,
    RaftCodec,
    describe_layouts,
)

CLUSTER = "test-cluster"
PEERS = (0, 1, 2, 3, 4)
MAX_FRAME = 4 << 20

K = DecodeErrorKind


@pytest.fixture(scope="module")
def codec() -> RaftCodec:
    return RaftCodec(CLUSTER, PEERS, MAX_FRAME)


def entries(prev: int, terms: list[int], size: int = 10) -> tuple[Entry, ...]:
    return tuple(Entry(t, prev + 1 + i, bytes([i % 256]) * size) for i, t in enumerate(terms))


SAMPLES: list[Message] = [
    RequestVote(0, 1, 5, 10, 4),
    RequestVote(1, 0, 5, 10, 4, pre_vote=True, leadership_transfer=True),
    RequestVoteResponse(2, 3, 7, True),
    RequestVoteResponse(2, 3, 7, False, pre_vote=True),
    AppendEntries(0, 4, 3, 0, 0, (), 0),  # heartbeat, empty log
    AppendEntries(0, 4, 3, 9, 2, (), 7, seq=12),
    AppendEntries(0, 1, 3, 9, 2, entries(9, [2, 3, 3]), 7, seq=1),
    AppendEntries(0, 1, 9, 0, 0, entries(0, [1] * 500 + [9] * 500, size=0), 0),  # many, empty data
    AppendEntries(0, 1, 3, 9, 2, (Entry(3, 10, b""),), 7),  # a leader's no-op
    AppendEntriesResponse(1, 0, 3, True, prev_log_index=9, match_index=12, seq=4),
    AppendEntriesResponse(1, 0, 3, False, 9, 0, 5, 2, 4),
    InstallSnapshot(0, 2, 4, 100, 3, 0, b"chunk", False),
    InstallSnapshot(0, 2, 4, 100, 3, 1 << 20, bytes(range(256)) * 4_000, True, seq=3),
    InstallSnapshotResponse(2, 0, 4, 100, 1 << 20, done=True, match_index=100, seq=3),
    TimeoutNow(3, 4, 8),
    # Extremes of every integer range.
    AppendEntries(0, 1, MAX_UINT, MAX_UINT - 2, MAX_UINT, entries(MAX_UINT - 2, [MAX_UINT] * 2),
                  MAX_UINT, MAX_UINT),
    RequestVote(4, 0, 0, 0, 0),
]


def fields_of(frame: bytes) -> list[Any]:
    out = msgpack.unpackb(frame, raw=False)
    assert isinstance(out, list)
    return out


def pack(fields: Any) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


def reject(codec: RaftCodec, frame: Any) -> DecodeErrorKind:
    with pytest.raises(DecodeError) as info:
        codec.decode(frame)
    return info.value.kind


# -------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(codec: RaftCodec, msg: Message) -> None:
    frame = codec.encode(msg)
    out = codec.decode(frame)
    assert out == msg
    assert type(out) is type(msg)
    if isinstance(out, AppendEntries):
        assert type(out.entries) is tuple
        assert all(type(e) is Entry for e in out.entries)
    # The frame is a msgpack array (never a map) starting with the header.
    f = fields_of(frame)
    assert f[:6] == [WIRE_VERSION, CLUSTER, int(msg.kind), msg.from_peer, msg.to_peer, msg.term]


def test_every_kind_is_sampled() -> None:
    assert {m.kind for m in SAMPLES} == set(MessageKind)


def test_frame_layout_follows_dataclass_order(codec: RaftCodec) -> None:
    layouts = describe_layouts()
    for kind, cls in MESSAGE_TYPES.items():
        names = [f.name for f in dataclasses.fields(cls)]
        assert [s.split(":")[0] for s in layouts[kind.name][3:]] == names
        assert layouts[kind.name][:3] == ["version", "cluster_id", f"kind={int(kind)}"]
    msg = AppendEntries(0, 1, 3, 9, 2, entries(9, [2, 3]), 7, seq=5)
    ents = [x for e in msg.entries for x in (e.term, e.index, e.data)]
    assert fields_of(codec.encode(msg)) == [1, CLUSTER, 3, 0, 1, 3, 9, 2, ents, 7, 5]


def test_big_snapshot_chunk_up_to_the_frame_cap() -> None:
    codec = RaftCodec(CLUSTER, PEERS, 1 << 20)
    overhead = len(codec.encode(InstallSnapshot(0, 1, 1, 1, 1, 0, b"", True)))
    # The empty data took a 2-byte bin8 header; a bin32 header takes 5.
    data = random.Random(1).randbytes((1 << 20) - overhead - 3)
    msg = InstallSnapshot(0, 1, 1, 1, 1, 0, data, True)
    frame = codec.encode(msg)
    assert len(frame) == 1 << 20
    assert codec.decode(frame) == msg
    with pytest.raises(EncodeError):
        codec.encode(dataclasses.replace(msg, data=data + b"x"))


def test_encode_refuses_non_messages(codec: RaftCodec) -> None:
    for bad in (None, 3, "x", Entry(1, 1, b""), object()):
        with pytest.raises(EncodeError):
            codec.encode(bad)  # type: ignore[arg-type]


def test_decode_accepts_bytes_like(codec: RaftCodec) -> None:
    frame = codec.encode(SAMPLES[0])
    assert codec.decode(bytearray(frame)) == SAMPLES[0]  # type: ignore[arg-type]
    assert codec.decode(memoryview(frame)) == SAMPLES[0]  # type: ignore[arg-type]


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        RaftCodec(CLUSTER, [0, -1], MAX_FRAME)
    with pytest.raises(ValueError):
        RaftCodec(CLUSTER, [0, True], MAX_FRAME)
    with pytest.raises(ValueError):
        RaftCodec(CLUSTER, [0, 1], 10)
    with pytest.raises(TypeError):
        RaftCodec(b"x", [0, 1], MAX_FRAME)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- hypothesis

uints = st.one_of(st.integers(0, 1000), st.integers(0, MAX_UINT))
peer_pairs = st.lists(st.sampled_from(PEERS), min_size=2, max_size=2, unique=True)
blobs = st.binary(max_size=300)


@st.composite
def append_entries(draw: st.DrawFn) -> AppendEntries:
    frm, to = draw(peer_pairs)
    prev_term = draw(st.integers(0, 50))
    deltas = draw(st.lists(st.integers(0, 3), max_size=40))
    terms, t = [], prev_term
    for d in deltas:
        t += d
        terms.append(t)
    term = max([prev_term, *terms]) + draw(st.integers(0, 5))
    prev_index = draw(st.integers(0, MAX_UINT - len(terms)))
    ents = tuple(Entry(tt, prev_index + 1 + i, draw(blobs)) for i, tt in enumerate(terms))
    return AppendEntries(frm, to, term, prev_index, prev_term, ents, draw(uints), draw(uints))


@st.composite
def simple_message(draw: st.DrawFn) -> Message:
    cls = draw(st.sampled_from([c for c in MESSAGE_TYPES.values() if c is not AppendEntries]))
    frm, to = draw(peer_pairs)
    values: dict[str, Any] = {"from_peer": frm, "to_peer": to}
    for f in dataclasses.fields(cls)[2:]:
        if f.type == "bool":
            values[f.name] = draw(st.booleans())
        elif f.type == "bytes":
            values[f.name] = draw(blobs)
        else:
            values[f.name] = draw(st.integers(0, MAX_UINT // 2))
    out: Message = cls(**values)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(append_entries(), simple_message()))
def test_round_trip_property(msg: Message) -> None:
    codec = RaftCodec(CLUSTER, PEERS, MAX_FRAME)
    assert codec.decode(codec.encode(msg)) == msg


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    codec = RaftCodec(CLUSTER, PEERS, MAX_FRAME)
    try:
        codec.decode(data)
    except DecodeError:
        pass


# -------------------------------------------------------------------------------- refusals


def test_garbage(codec: RaftCodec) -> None:
    assert reject(codec, b"") is K.TRUNCATED
    assert reject(codec, b"\xc1") is K.MALFORMED  # the never-used msgpack byte
    assert reject(codec, b"hello, world") is K.MALFORMED  # 'h' is a fixint, then extra bytes
    assert reject(codec, b"\x05") is K.MALFORMED  # an int, not an array
    assert reject(codec, pack({"v": 1})) is K.MALFORMED  # maps are never valid
    assert reject(codec, pack([])) is K.MALFORMED
    assert reject(codec, pack([1, CLUSTER])) is K.MALFORMED  # shorter than the header
    assert reject(codec, b"\x91" * 5000 + b"\x00") is K.MALFORMED  # too deep for msgpack
    assert reject(codec, b"\xdd\xff\xff\xff\xff") is K.TRUNCATED  # claims 4G elements
    assert reject(codec, b"\xc6\xff\xff\xff\xff") is K.TRUNCATED  # claims a 4 GB bin
    assert reject(codec, b"\x93\x01\xa3\xff\xfe\xfd\x03") is K.MALFORMED  # invalid UTF-8 str
    assert reject(codec, pack([1, CLUSTER, msgpack.ExtType(1, b"x")])) is K.MALFORMED
    for bad in (None, "frame", 42, [1, 2]):
        assert reject(codec, bad) is K.MALFORMED


@pytest.mark.parametrize("msg", SAMPLES[:15], ids=lambda m: type(m).__name__)
def test_every_prefix_is_truncated(codec: RaftCodec, msg: Message) -> None:
    frame = codec.encode(msg)
    # Every cut of small frames; for the multi-megabyte chunk, the first and last 100 bytes
    # (headers, trailing fields) and 50 cuts inside the data.
    cuts: Any = range(len(frame))
    if len(frame) > 5000:
        cuts = [*range(100), *range(len(frame) - 100, len(frame)),
                *random.Random(7).sample(range(len(frame)), 50)]
    for cut in cuts:
        with pytest.raises(DecodeError) as info:
            codec.decode(frame[:cut])
        assert info.value.kind is K.TRUNCATED, cut


def test_trailing_bytes(codec: RaftCodec) -> None:
    frame = codec.encode(SAMPLES[0])
    assert reject(codec, frame + b"\x00") is K.MALFORMED
    assert reject(codec, frame + frame) is K.MALFORMED


def test_oversized() -> None:
    codec = RaftCodec(CLUSTER, PEERS, 1000)
    ok = codec.encode(InstallSnapshot(0, 1, 1, 1, 1, 0, b"x" * 900, True))
    assert len(ok) <= 1000
    big = RaftCodec(CLUSTER, PEERS, MAX_FRAME).encode(
        InstallSnapshot(0, 1, 1, 1, 1, 0, b"x" * 1000, True)
    )
    assert reject(codec, big) is K.OVERSIZED
    assert reject(codec, b"\x00" * 1001) is K.OVERSIZED


def mutate(codec: RaftCodec, msg: Message, pos: int, value: Any) -> DecodeErrorKind:
    f = fields_of(codec.encode(msg))
    f[pos] = value
    return reject(codec, pack(f))


def test_header_fields(codec: RaftCodec) -> None:
    msg = SAMPLES[0]
    assert mutate(codec, msg, 0, 2) is K.UNKNOWN_VERSION
    assert mutate(codec, msg, 0, 0) is K.UNKNOWN_VERSION
    assert mutate(codec, msg, 0, True) is K.UNKNOWN_VERSION
    assert mutate(codec, msg, 0, "1") is K.UNKNOWN_VERSION
    assert reject(codec, pack([2])) is K.UNKNOWN_VERSION  # another version, another shape
    assert mutate(codec, msg, 1, "other-cluster") is K.WRONG_CLUSTER
    assert mutate(codec, msg, 1, "") is K.WRONG_CLUSTER
    assert mutate(codec, msg, 1, CLUSTER.encode()) is K.WRONG_TYPE
    assert mutate(codec, msg, 1, None) is K.WRONG_TYPE
    for kind in (0, 8, 99, MAX_UINT, -1):
        assert mutate(codec, msg, 2, kind) is K.UNKNOWN_KIND
    not_int: tuple[Any, ...] = (True, "1", 1.0, None, b"\x01")
    for bad_kind in not_int:
        assert mutate(codec, msg, 2, bad_kind) is K.WRONG_TYPE


@pytest.mark.parametrize("msg", SAMPLES[:15], ids=lambda m: type(m).__name__)
def test_wrong_array_length(codec: RaftCodec, msg: Message) -> None:
    f = fields_of(codec.encode(msg))
    assert reject(codec, pack(f + [0])) is K.MALFORMED
    assert reject(codec, pack(f[:-1])) is K.MALFORMED


def field_cases() -> list[tuple[str, Message, int, str]]:
    """(id, message, frame position, declared type) for every field of every kind."""
    cases = []
    seen = set()
    for msg in SAMPLES:
        if type(msg) in seen:
            continue
        seen.add(type(msg))
        for i, f in enumerate(dataclasses.fields(msg)):
            cases.append((f"{type(msg).__name__}.{f.name}", msg, 3 + i, str(f.type)))
    return cases


@pytest.mark.parametrize("case", field_cases(), ids=lambda c: c[0])
def test_wrong_type_and_bounds_per_field(codec: RaftCodec, case: tuple[str, Message, int, str]) -> None:
    name, msg, pos, declared = case
    field = name.split(".")[1]
    bad: Any
    if declared == "bool":
        for bad in (0, 1, None, "true", b"\x01"):
            assert mutate(codec, msg, pos, bad) is K.WRONG_TYPE, bad
    elif declared == "bytes":
        for bad in ("text", 0, None, [1, 2], True):
            assert mutate(codec, msg, pos, bad) is K.WRONG_TYPE, bad
    elif declared.startswith("tuple"):
        for bad in (b"", "x", 0, None, {"a": 1}):
            expected = K.MALFORMED if isinstance(bad, dict) else K.WRONG_TYPE
            assert mutate(codec, msg, pos, bad) is expected, bad
    else:  # integers: a peer id or a uint
        for bad in (True, False, 1.0, "1", None, b"\x01", [1]):
            assert mutate(codec, msg, pos, bad) is K.WRONG_TYPE, bad
        if field in ("from_peer", "to_peer"):
            for bad in (-1, 5, 99, 2**63, 2**64 - 1, -(2**63)):
                assert mutate(codec, msg, pos, bad) is K.UNKNOWN_PEER, bad
        else:
            for bad in (-1, -(2**63), 2**63, 2**64 - 1):
                assert mutate(codec, msg, pos, bad) is K.OUT_OF_BOUNDS, bad


def test_peers(codec: RaftCodec) -> None:
    assert mutate(codec, TimeoutNow(3, 4, 8), 4, 3) is K.OUT_OF_BOUNDS  # to itself
    narrow = RaftCodec(CLUSTER, [0, 1], MAX_FRAME)
    assert reject(narrow, codec.encode(TimeoutNow(3, 1, 8))) is K.UNKNOWN_PEER
    assert reject(narrow, codec.encode(TimeoutNow(1, 3, 8))) is K.UNKNOWN_PEER


def ae_frame(codec: RaftCodec, flat: Any, prev: int = 9, prev_term: int = 2, term: int = 3) -> bytes:
    f = fields_of(codec.encode(AppendEntries(0, 1, term, prev, prev_term, (), 7)))
    f[8] = flat
    return pack(f)


def test_entries_validation(codec: RaftCodec) -> None:
    good = [2, 10, b"a", 3, 11, b"b"]
    msg = codec.decode(ae_frame(codec, good))
    assert isinstance(msg, AppendEntries)
    assert msg.entries == (Entry(2, 10, b"a"), Entry(3, 11, b"b"))

    def bad(flat: Any, **kw: int) -> DecodeErrorKind:
        return reject(codec, ae_frame(codec, flat, **kw))

    assert bad([2, 10, b"a", 3, 12, b"b"]) is K.OUT_OF_BOUNDS  # gap
    assert bad([2, 10, b"a", 3, 10, b"b"]) is K.OUT_OF_BOUNDS  # repeated index
    assert bad([2, 11, b"a"]) is K.OUT_OF_BOUNDS  # does not start at prev_log_index + 1
    assert bad([2, 9, b"a"]) is K.OUT_OF_BOUNDS
    assert bad([3, 10, b"a", 2, 11, b"b"]) is K.OUT_OF_BOUNDS  # terms decrease
    assert bad([4, 10, b"a"]) is K.OUT_OF_BOUNDS  # term above the leader's
    assert bad([1, 10, b"a"]) is K.OUT_OF_BOUNDS  # term below prev_log_term
    assert bad([2, 10, b"a", 3]) is K.MALFORMED  # not whole entries
    assert bad([2, 10]) is K.MALFORMED
    assert bad([2, 10, "a"]) is K.WRONG_TYPE  # str data
    assert bad([2, 10, None]) is K.WRONG_TYPE
    assert bad([True, 10, b"a"]) is K.WRONG_TYPE
    assert bad([2, 10.0, b"a"]) is K.WRONG_TYPE  # 10.0 == 10, but it is no int
    assert bad([2, True, b"a"], prev=0) is K.WRONG_TYPE  # True == 1
    assert bad([-1, 10, b"a"]) is K.OUT_OF_BOUNDS
    assert bad([[2, 10, b"a"]]) is K.MALFORMED  # nested triples are not the format
    assert bad([2, MAX_UINT + 1, b"a"], prev=MAX_UINT) is K.OUT_OF_BOUNDS


def test_snapshot_chunk_end_in_bounds(codec: RaftCodec) -> None:
    msg = InstallSnapshot(0, 1, 4, 100, 3, MAX_UINT - 2, b"abc", False)
    assert reject(codec, codec.encode(msg)) is K.OUT_OF_BOUNDS
    ok = InstallSnapshot(0, 1, 4, 100, 3, MAX_UINT - 3, b"abc", False)
    assert codec.decode(codec.encode(ok)) == ok


def test_fuzz_mutations_raise_only_decode_error(codec: RaftCodec) -> None:
    """10 000 random mutations of valid frames: each decodes to a valid message or raises
    DecodeError, nothing else. A decoded message must encode and decode back to itself."""
    rng = random.Random(20240611)
    frames = [codec.encode(m) for m in SAMPLES if len(codec.encode(m)) < 20_000]
    outcomes: dict[str, int] = {}
    for _ in range(10_000):
        frame = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(6)
            pos = rng.randrange(len(frame) + 1)
            if op == 0 and frame:  # flip a byte
                frame[min(pos, len(frame) - 1)] = rng.randrange(256)
            elif op == 1:  # insert random bytes
                frame[pos:pos] = rng.randbytes(rng.randint(1, 8))
            elif op == 2:  # delete a range
                del frame[pos : pos + rng.randint(1, 8)]
            elif op == 3:  # truncate
                del frame[pos:]
            elif op == 4:  # duplicate a slice
                frame[pos:pos] = frame[rng.randrange(len(frame) + 1) :][:16]
            else:  # an interesting byte (msgpack type boundaries)
                if frame:
                    frame[min(pos, len(frame) - 1)] = rng.choice(
                        [0x00, 0x7F, 0x80, 0x90, 0xA0, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xCF,
                         0xD3, 0xDC, 0xDD, 0xDE, 0xDF, 0xE0, 0xFF]
                    )
        try:
            msg = codec.decode(bytes(frame))
        except DecodeError as e:
            outcomes[e.kind.value] = outcomes.get(e.kind.value, 0) + 1
        else:
            outcomes["ok"] = outcomes.get("ok", 0) + 1
            assert type(msg) in MESSAGE_TYPES.values()
            assert codec.decode(codec.encode(msg)) == msg
    assert sum(outcomes.values()) == 10_000
    assert len(outcomes) >= 5, outcomes  # the mutations reached many different checks


def test_decode_error_carries_kind_and_detail(codec: RaftCodec) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode(pack([1, "elsewhere", 7, 0, 1, 1]))
    assert info.value.kind is K.WRONG_CLUSTER
    assert "elsewhere" in info.value.detail
    assert "wrong_cluster" in str(info.value)


def test_messages_from_the_samples_are_equal_to_constructed_ones(codec: RaftCodec) -> None:
    # Decoded messages are built without __init__ for speed: they must behave exactly like
    # constructed ones (equality, hashing, repr, immutability).
    for msg in SAMPLES:
        out = codec.decode(codec.encode(msg))
        assert out == msg and hash(out) == hash(msg) and repr(out) == repr(msg)
        with pytest.raises(dataclasses.FrozenInstanceError):
            out.term = 1  # type: ignore[misc]
    assert RequestVoteResponse(1, 2, 3, True) == codec.decode(
        codec.encode(RequestVoteResponse(1, 2, 3, True))
    )
    assert AppendEntriesResponse(1, 2, 3, True) != AppendEntriesResponse(1, 2, 3, False)
    assert InstallSnapshotResponse(1, 2, 3, 4, 5) == codec.decode(
        codec.encode(InstallSnapshotResponse(1, 2, 3, 4, 5))
    )
