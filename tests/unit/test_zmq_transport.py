"""ZmqTransport over real ZeroMQ sockets on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import msgpack  # type: ignore[import-untyped]
import pytest
import zmq

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
from transport_zmq import (
    DecodeErrorKind,
    RaftCodec,
    ZmqTransport,
    free_tcp_ports,
    peer_identity,
)

CLUSTER = "transport-test"
MAX_FRAME = 8 << 20


def make_addresses(n: int) -> dict[int, str]:
    return {i: f"tcp://127.0.0.1:{port}" for i, port in enumerate(free_tcp_ports(n))}


def make_codec(addresses: dict[int, str]) -> RaftCodec:
    return RaftCodec(CLUSTER, addresses, MAX_FRAME)


@pytest.fixture
def cluster() -> Iterator[list[ZmqTransport]]:
    addresses = make_addresses(3)
    transports: list[ZmqTransport] = []
    try:
        for i in addresses:
            transports.append(ZmqTransport(i, addresses, codec=make_codec(addresses)))
        yield transports
    finally:
        for t in transports:
            t.close()


@pytest.fixture
def zctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


def poll_until(
    t: ZmqTransport, done: Callable[[list[Message]], bool], timeout: float = 5.0
) -> list[Message]:
    """Poll `t` until `done(everything received so far)` or the timeout."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while not done(got) and time.monotonic() < deadline:
        got.extend(t.poll(0.05))
    return got


def wait_connected(a: ZmqTransport, b: ZmqTransport, timeout: float = 5.0) -> None:
    """DEALERs have IMMEDIATE=1: sends fail until the connection is up. Probe until one of
    a's messages reaches b, then drain b."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a.send([TimeoutNow(a.me, b.me, 0)])
        if b.poll(0.02):
            while b.poll(0.02):
                pass
            return
    raise AssertionError(f"{a} never reached {b}")


def connect_all(ts: Sequence[ZmqTransport]) -> None:
    for a in ts:
        for b in ts:
            if a is not b:
                wait_connected(a, b)


def all_kinds(frm: int, to: int) -> list[Message]:
    return [
        RequestVote(frm, to, 3, 10, 2, pre_vote=True),
        RequestVoteResponse(frm, to, 3, True),
        AppendEntries(frm, to, 3, 9, 2, (Entry(2, 10, b"x"), Entry(3, 11, b"y" * 1000)), 8, seq=1),
        AppendEntriesResponse(frm, to, 3, True, 9, 11, seq=1),
        InstallSnapshot(frm, to, 3, 50, 2, 0, b"snap" * 100, False),
        InstallSnapshotResponse(frm, to, 3, 50, 400),
        TimeoutNow(frm, to, 3),
    ]


def test_messages_flow_between_every_pair_both_ways(cluster: list[ZmqTransport]) -> None:
    connect_all(cluster)
    base = {t.me: t.stats()["send_drops"]["hwm"] for t in cluster}  # probes before connecting
    for a in cluster:
        for b in cluster:
            if a is not b:
                a.send(all_kinds(a.me, b.me))
    for b in cluster:
        expected = [m for a in cluster if a is not b for m in all_kinds(a.me, b.me)]
        got = poll_until(b, lambda g: len(g) >= len(expected))
        assert sorted(got, key=repr) == sorted(expected, key=repr)
        # One DEALER→ROUTER connection per directed link: each link is FIFO.
        for a in cluster:
            if a is not b:
                assert [m for m in got if m.from_peer == a.me] == all_kinds(a.me, b.me)
    for t in cluster:
        s = t.stats()
        assert s["send_drops"]["hwm"] == base[t.me]
        assert sum(s["decode_errors"].values()) == 0
        assert s["faults"] is None


def test_burst_of_20000_append_entries(cluster: list[ZmqTransport]) -> None:
    a, b = cluster[0], cluster[1]
    wait_connected(a, b)
    hwm_before = a.stats()["send_drops"]["hwm"]
    n = 20_000
    entry = (Entry(1, 1, b"c" * 32),)
    batches = [
        [AppendEntries(0, 1, 1, 0, 0, entry, 0, seq=i + j) for j in range(100)]
        for i in range(0, n, 100)
    ]
    received: list[Message] = []

    def receive() -> None:  # b is used by this thread only while it runs
        deadline = time.monotonic() + 20
        while len(received) < n and time.monotonic() < deadline:
            received.extend(b.poll(0.1))

    rx = threading.Thread(target=receive)
    start = time.monotonic()
    rx.start()
    for batch in batches:
        a.send(batch)
    sent_at = time.monotonic()
    rx.join()
    elapsed = time.monotonic() - start
    print(f"\n20000 AppendEntries: sent in {sent_at - start:.3f} s, all received in "
          f"{elapsed:.3f} s = {n / elapsed:,.0f} msgs/s")
    assert a.stats()["send_drops"]["hwm"] == hwm_before
    assert [m.seq for m in received if isinstance(m, AppendEntries)] == list(range(n))


def test_wakeup_interrupts_a_long_poll(cluster: list[ZmqTransport]) -> None:
    t = cluster[0]
    timer = threading.Timer(0.1, t.wakeup)
    start = time.monotonic()
    timer.start()
    try:
        assert t.poll(10.0) == []
    finally:
        timer.cancel()
    assert time.monotonic() - start < 2.0  # generous: the wake-up came after 0.1 s

    # A wakeup() before poll() makes that poll return promptly, once.
    t.wakeup()
    start = time.monotonic()
    assert t.poll(10.0) == []
    assert time.monotonic() - start < 1.0
    start = time.monotonic()
    assert t.poll(0.2) == []
    assert time.monotonic() - start >= 0.19  # the wake-up was consumed


def test_poll_waits_for_its_timeout_and_zero_does_not_wait(cluster: list[ZmqTransport]) -> None:
    t = cluster[0]
    start = time.monotonic()
    assert t.poll(0.0) == []
    assert time.monotonic() - start < 0.1
    start = time.monotonic()
    assert t.poll(0.15) == []
    assert 0.14 <= time.monotonic() - start < 1.5


def test_poll_returns_as_soon_as_a_message_arrives(cluster: list[ZmqTransport]) -> None:
    a, b = cluster[0], cluster[1]
    wait_connected(a, b)
    start = time.monotonic()

    def send_later() -> None:
        time.sleep(0.1)
        a.send([TimeoutNow(0, 1, 4)])

    sender = threading.Thread(target=send_later)
    sender.start()
    got = b.poll(10.0)
    sender.join()
    assert got == [TimeoutNow(0, 1, 4)]
    assert time.monotonic() - start < 2.0


def raw_dealer(ctx: zmq.Context[zmq.Socket[bytes]], address: str, identity: bytes) -> zmq.Socket[bytes]:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.IDENTITY, identity)
    s.connect(address)
    return s


def test_garbage_is_counted_logged_once_and_dropped_while_real_messages_flow(
    cluster: list[ZmqTransport], zctx: zmq.Context[zmq.Socket[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = cluster[0], cluster[1]
    wait_connected(a, b)
    codec = make_codec(b.addresses)
    evil = raw_dealer(zctx, b.addresses[1], b"mallory")
    # Claims peer 2's identity (ROUTER_HANDOVER gives it to the newest connection; peer 2's
    # own transport sends nothing in this test).
    spoof = raw_dealer(zctx, b.addresses[1], peer_identity(2))
    try:
        good = codec.encode(TimeoutNow(0, 1, 5))
        # A raw DEALER connects asynchronously; no IMMEDIATE, so these queue until it does.
        garbage: list[list[bytes]] = [
            [b"garbage"],
            [b"\xc1"],
            [good[:-1]],  # truncated
            [b"part one", b"part two"],  # multi-part
            [b"", good],  # a REQ-style envelope
            [msgpack.packb([1, "other-cluster", 7, 0, 1, 5])],
            [msgpack.packb([9, CLUSTER, 7, 0, 1, 5])],
            [msgpack.packb([1, CLUSTER, 42, 0, 1, 5])],
            [msgpack.packb([1, CLUSTER, 7, 0, 1, True])],
            [msgpack.packb([1, CLUSTER, 7, 0, 1, -5])],
            [msgpack.packb([1, CLUSTER, 7, 0, 9, 5])],
            [good],  # valid, but "mallory" is not peer 0's socket
        ]
        for _ in range(3):  # repeated: must be logged once per (sender, problem)
            for parts in garbage:
                evil.send_multipart(parts)
        spoof.send(codec.encode(TimeoutNow(2, 0, 5)))  # valid, but addressed to peer 0
        spoof.send(codec.encode(TimeoutNow(2, 1, 5)))  # valid and consistent: delivered
        base = b.stats()
        with caplog.at_level(logging.WARNING, logger="ruaft.transport"):
            a.send([TimeoutNow(0, 1, 6)])
            got: list[Message] = []
            deadline = time.monotonic() + 5
            while b.stats()["frames_received"] - base["frames_received"] < 3 * len(garbage) + 3:
                got.extend(b.poll(0.05))
                assert time.monotonic() < deadline, (base, b.stats())
        assert sorted(got, key=repr) == [TimeoutNow(0, 1, 6), TimeoutNow(2, 1, 5)]
        s = b.stats()
        errors = s["decode_errors"]
        assert errors[DecodeErrorKind.MALFORMED.value] == 3 * 4
        assert errors[DecodeErrorKind.TRUNCATED.value] == 3
        assert errors[DecodeErrorKind.WRONG_CLUSTER.value] == 3
        assert errors[DecodeErrorKind.UNKNOWN_VERSION.value] == 3
        assert errors[DecodeErrorKind.UNKNOWN_KIND.value] == 3
        assert errors[DecodeErrorKind.WRONG_TYPE.value] == 3
        assert errors[DecodeErrorKind.OUT_OF_BOUNDS.value] == 3
        assert errors[DecodeErrorKind.UNKNOWN_PEER.value] == 3
        assert s["receive_drops"] == {"misaddressed": 1, "sender_mismatch": 3}
        assert s["delivered"] - base["delivered"] == 2
        # Logged once per (sender identity, problem): 8 decode-error kinds + sender_mismatch
        # from mallory, misaddressed from the spoofer.
        records = [r for r in caplog.records if r.name == "ruaft.transport"]
        assert len(records) == 10, [r.getMessage() for r in records]
    finally:
        evil.close()
        spoof.close()


def test_oversized_frames_are_refused_at_the_socket(
    zctx: zmq.Context[zmq.Socket[bytes]],
) -> None:
    addresses = make_addresses(2)
    small = RaftCodec(CLUSTER, addresses, 4096)
    with ZmqTransport(0, addresses, codec=small) as a, ZmqTransport(1, addresses, codec=small) as b:
        wait_connected(a, b)
        base = b.stats()["frames_received"]
        evil = raw_dealer(zctx, addresses[1], b"mallory")
        try:
            evil.send(b"\x00" * 100_000)  # over MAXMSGSIZE: libzmq drops the connection
            a.send([TimeoutNow(0, 1, 1)])
            assert poll_until(b, lambda g: len(g) >= 1) == [TimeoutNow(0, 1, 1)]
            time.sleep(0.1)
            assert b.poll(0.1) == []
            assert b.stats()["frames_received"] - base == 1
        finally:
            evil.close()
        # Our own sender refuses to encode an oversized message: dropped and counted.
        a.send([InstallSnapshot(0, 1, 1, 1, 1, 0, b"x" * 5000, True)])
        assert a.stats()["send_drops"]["encode"] == 1


def test_send_to_dead_peer_never_blocks_and_counts_drops() -> None:
    addresses = make_addresses(3)  # peers 1 and 2 are never started
    with ZmqTransport(0, addresses, codec=make_codec(addresses), hwm=100) as a:
        msgs = [AppendEntries(0, 1, 1, 0, 0, (), 0, seq=i) for i in range(5000)]
        start = time.monotonic()
        a.send(msgs)
        a.send([TimeoutNow(0, 2, 1)] * 1000)
        elapsed = time.monotonic() - start
        assert elapsed < 2.0, elapsed
        s = a.stats()
        assert s["send_drops"]["hwm"] == 6000  # IMMEDIATE=1: no connection, nothing queued
        assert s["sent"] == 0


def test_unknown_peer_self_and_wrong_sender_are_dropped(cluster: list[ZmqTransport]) -> None:
    a = cluster[0]
    a.send([TimeoutNow(0, 7, 1), TimeoutNow(0, 0, 1), TimeoutNow(1, 2, 1)])
    drops = a.stats()["send_drops"]
    assert drops["unknown_peer"] == 2
    assert drops["wrong_sender"] == 1


def test_restarted_peer_is_reached_again(cluster: list[ZmqTransport]) -> None:
    """A peer that dies and comes back on the same address (same identity) is reconnected;
    while it is down, sends are dropped at once."""
    a, b = cluster[0], cluster[1]
    wait_connected(a, b)
    addresses = b.addresses
    b.close()
    deadline = time.monotonic() + 5
    while a.stats()["send_drops"]["hwm"] == 0:  # the disconnect is noticed
        a.send([TimeoutNow(0, 1, 1)])
        time.sleep(0.01)
        assert time.monotonic() < deadline
    b2 = ZmqTransport(1, addresses, codec=make_codec(addresses))
    cluster[1] = b2  # the fixture closes it
    wait_connected(a, b2)
    wait_connected(b2, a)
    b2.send([RequestVoteResponse(1, 0, 2, True)])
    assert poll_until(a, lambda g: len(g) >= 1) == [RequestVoteResponse(1, 0, 2, True)]


def test_big_snapshot_chunk_over_the_wire(cluster: list[ZmqTransport]) -> None:
    a, b = cluster[0], cluster[2]
    wait_connected(a, b)
    chunk = bytes(range(256)) * (4 << 12)  # 4 MiB
    msg = InstallSnapshot(0, 2, 7, 1000, 6, 0, chunk, True, seq=9)
    a.send([msg])
    assert poll_until(b, lambda g: len(g) >= 1) == [msg]


def test_close_is_idempotent_and_final() -> None:
    addresses = make_addresses(2)
    t = ZmqTransport(0, addresses, codec=make_codec(addresses))
    t.close()
    t.close()
    assert t.closed
    t.wakeup()  # harmless after close
    t.send([TimeoutNow(0, 1, 1)])
    assert t.stats()["send_drops"]["closed"] == 1
    with pytest.raises(RuntimeError):
        t.poll(0.0)
    # The address is free again.
    again = ZmqTransport(0, addresses, codec=make_codec(addresses))
    again.close()


def test_wakeup_from_many_threads_while_closing() -> None:
    addresses = make_addresses(2)
    t = ZmqTransport(0, addresses, codec=make_codec(addresses))
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            t.wakeup()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for th in threads:
        th.start()
    try:
        for _ in range(20):
            t.poll(0.01)
        t.close()
    finally:
        stop.set()
        for th in threads:
            th.join()


def test_shared_context_is_not_terminated(zctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    addresses = make_addresses(2)
    t = ZmqTransport(0, addresses, codec=make_codec(addresses), context=zctx)
    t.close()
    assert not zctx.closed
    s = zctx.socket(zmq.PAIR)  # still usable
    s.close()


def test_constructor_errors_leave_nothing_open(zctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    addresses = make_addresses(2)
    with pytest.raises(ValueError):
        ZmqTransport(5, addresses, codec=make_codec(addresses))
    with pytest.raises(ValueError):
        ZmqTransport(0, addresses, codec=RaftCodec(CLUSTER, [0], MAX_FRAME))
    with ZmqTransport(0, addresses, codec=make_codec(addresses), context=zctx):
        with pytest.raises(zmq.ZMQError):  # address in use
            ZmqTransport(0, addresses, codec=make_codec(addresses), context=zctx)
    # Nothing leaked: the failed transport closed its sockets, so the context terminates
    # (term() would block forever on a socket left open).
    terminator = threading.Thread(target=zctx.term, daemon=True)
    terminator.start()
    terminator.join(5.0)
    assert not terminator.is_alive()


def test_one_poll_returns_a_bounded_batch() -> None:
    addresses = make_addresses(2)
    codec = make_codec(addresses)
    with ZmqTransport(0, addresses, codec=codec) as a, \
            ZmqTransport(1, addresses, codec=codec, max_batch=10, max_batch_bytes=5000) as b:
        wait_connected(a, b)
        a.send([AppendEntries(0, 1, 1, 0, 0, (), 0, seq=i) for i in range(25)])
        time.sleep(0.2)  # all queued at b
        sizes = [len(b.poll(1.0)) for _ in range(3)]
        assert sizes == [10, 10, 5]
        a.send([InstallSnapshot(0, 1, 1, 1, 1, 0, b"x" * 2000, False)] * 5)
        time.sleep(0.2)
        sizes = [len(b.poll(1.0)) for _ in range(2)]
        assert sizes == [3, 2]  # the batch stops once 5000 bytes were read


def test_free_tcp_ports_are_distinct_and_bindable() -> None:
    ports = free_tcp_ports(20)
    assert len(set(ports)) == 20
    assert all(1024 <= p < 65536 for p in ports)
