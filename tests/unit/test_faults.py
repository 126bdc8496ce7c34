"""The fault injector (TESTS.md §4): decisions, rates, delays, counters, and its use by
ZmqTransport on real sockets (send-side and receive-side link checks, delayed delivery)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from ruaft.core.types import (
    REQUEST_KINDS,
    AppendEntries,
    AppendEntriesResponse,
    MessageKind,
    RequestVoteResponse,
    TimeoutNow,
)
from transport_zmq import FaultInjector, RaftCodec, ZmqTransport, free_tcp_ports
from transport_zmq.faults import (
    DROP_DISABLED_WHILE_DELAYED,
    DROP_LINK_DISABLED,
    DROP_RECEIVE_LINK_DISABLED,
    DROP_UNRELIABLE_REPLY,
    DROP_UNRELIABLE_REQUEST,
)

REQ = MessageKind.APPEND_ENTRIES
REP = MessageKind.APPEND_ENTRIES_RESPONSE
N = 10_000


def test_request_and_reply_kinds() -> None:
    assert {MessageKind.REQUEST_VOTE, MessageKind.APPEND_ENTRIES, MessageKind.INSTALL_SNAPSHOT,
            MessageKind.TIMEOUT_NOW} == set(REQUEST_KINDS)


def test_reliable_network_delivers_everything_at_once() -> None:
    f = FaultInjector(seed=1)
    for kind in MessageKind:
        assert f.decide(kind, 0, 1, 10) == (True, 0.0)
    s = f.stats()
    assert s["rpcs"] == 4 and s["replies"] == 3 and s["bytes"] == 70
    assert s["dropped"] == {} and s["delayed"] == 0


def test_disabled_links_are_directed() -> None:
    f = FaultInjector(seed=1)
    f.set_link(0, 1, False)
    assert f.decide(REQ, 0, 1, 100) == (False, 0.0)
    assert f.decide(REP, 0, 1, 100) == (False, 0.0)
    assert f.decide(REQ, 1, 0, 100) == (True, 0.0)  # the other direction still works
    assert f.decide(REQ, 0, 2, 100) == (True, 0.0)
    assert not f.link_enabled(0, 1) and f.link_enabled(1, 0)
    assert not f.accept(REP, 0, 1, 100) and f.accept(REQ, 1, 0, 100)
    f.set_link(0, 1, True)
    assert f.decide(REQ, 0, 1, 100) == (True, 0.0)
    s = f.stats()
    assert s["dropped"] == {DROP_LINK_DISABLED: 2, DROP_RECEIVE_LINK_DISABLED: 1}
    # Requests count as RPCs and bytes even when dropped; a dropped reply adds no bytes, and a
    # reply refused on receive takes its bytes back.
    assert s["rpcs"] == 4 and s["replies"] == 1
    assert s["bytes"] == 4 * 100 + 0 - 100


def test_connect_disconnect_peer_helpers_and_snapshot_apply() -> None:
    f = FaultInjector(seed=3)
    f.set_peer_connected(2, [0, 1, 2, 3], False)
    assert f.snapshot()["disabled_links"] == [[0, 2], [1, 2], [2, 0], [2, 1], [2, 3], [3, 2]]
    f.set_peer_connected(2, [0], True)
    assert [0, 2] not in f.snapshot()["disabled_links"]
    f.set_unreliable(True)
    f.set_long_reordering(True)
    f.set_long_delays(False)
    rules = f.snapshot()
    assert rules["unreliable"] and rules["long_reordering"] and not rules["long_delays"]

    g = FaultInjector()
    g.apply(rules)
    assert g.snapshot() == rules
    # apply() replaces the whole rule set; missing keys take their defaults.
    g.apply({"disabled_links": [[4, 0]]})
    assert g.snapshot() == {"disabled_links": [[4, 0]], "unreliable": False,
                            "long_reordering": False, "long_delays": True, "seed": 3}
    assert not g.link_enabled(4, 0) and g.link_enabled(2, 1)


@pytest.mark.parametrize("bad", [
    {"disabled_links": [[0]]},
    {"disabled_links": [[0, "1"]]},
    {"disabled_links": [0, 1]},
    {"unreliable": 1},
    {"long_reordering": "yes"},
    {"seed": 1.5},
    {"surprise": True},
])
def test_apply_refuses_bad_rules_and_changes_nothing(bad: dict[str, object]) -> None:
    f = FaultInjector(seed=1, disabled_links=[(0, 1)], unreliable=True)
    before = f.snapshot()
    with pytest.raises(ValueError):
        f.apply(bad)
    assert f.snapshot() == before


def test_seed_makes_decisions_reproducible() -> None:
    rules = {"unreliable": True, "long_reordering": True, "seed": 99}
    a, b = FaultInjector(), FaultInjector(seed=5)
    a.apply(rules)
    b.apply(rules)
    kinds = [REQ, REP] * 500
    assert [a.decide(k, 0, 1) for k in kinds] == [b.decide(k, 0, 1) for k in kinds]
    c = FaultInjector(seed=99, unreliable=True, long_reordering=True)
    d = FaultInjector(seed=99, unreliable=True, long_reordering=True)
    assert [c.decide(k, 0, 1) for k in kinds] == [d.decide(k, 0, 1) for k in kinds]


def test_unreliable_requests_delay_and_drop_rates() -> None:
    f = FaultInjector(seed=2024, unreliable=True)
    decisions = [f.decide(REQ, 0, 1, 10) for _ in range(N)]
    dropped = sum(1 for d, _ in decisions if not d)
    assert abs(dropped / N - 0.10) < 0.015  # σ = 0.003
    delays = [s for d, s in decisions if d]
    assert all(0.0 <= s <= 0.027 for s in delays)
    assert abs(statistics.mean(delays) - 0.0135) < 0.001  # uniform on 0–27 ms
    assert min(delays) < 0.001 and max(delays) > 0.026
    s = f.stats()
    assert s["rpcs"] == N and s["bytes"] == 10 * N  # dropped requests count too
    assert s["dropped"] == {DROP_UNRELIABLE_REQUEST: dropped}
    assert s["delayed"] == N - dropped


def test_unreliable_replies_drop_rate_and_no_delay() -> None:
    f = FaultInjector(seed=7, unreliable=True)
    decisions = [f.decide(REP, 1, 0, 10) for _ in range(N)]
    delivered = sum(1 for d, _ in decisions if d)
    assert abs((N - delivered) / N - 0.10) < 0.015
    assert all(s == 0.0 for _, s in decisions)  # replies are not delayed by unreliable
    s = f.stats()
    assert s["rpcs"] == 0 and s["replies"] == N
    assert s["bytes"] == 10 * delivered  # only delivered replies count
    assert s["dropped"] == {DROP_UNRELIABLE_REPLY: N - delivered}


def test_long_reordering_delays_two_thirds_of_replies_skewed_low() -> None:
    f = FaultInjector(seed=11, long_reordering=True)
    delays = [f.decide(REP, 1, 0)[1] for _ in range(N)]
    late = [d for d in delays if d > 0]
    assert abs(len(late) / N - 2 / 3) < 0.02
    assert all(0.2 <= d < 2.2 for d in late)
    # 200 + rand(1 + rand(2000)) ms: mean ≈ 700 ms, median well below the midpoint (1.2 s).
    assert 0.65 < statistics.mean(late) < 0.75
    assert statistics.median(late) < 0.6
    assert max(late) > 1.9
    # Requests are untouched by long_reordering.
    assert all(f.decide(REQ, 0, 1) == (True, 0.0) for _ in range(1000))


def test_unreliable_and_long_reordering_together() -> None:
    f = FaultInjector(seed=5, unreliable=True, long_reordering=True)
    decisions = [f.decide(REP, 1, 0) for _ in range(N)]
    delivered = [s for d, s in decisions if d]
    assert abs(len(delivered) / N - 0.9) < 0.015
    assert abs(sum(1 for s in delivered if s > 0) / len(delivered) - 2 / 3) < 0.02


def test_record_lost_takes_back_reply_bytes_only() -> None:
    f = FaultInjector(seed=1)
    f.decide(REQ, 0, 1, 100)
    f.decide(REP, 0, 1, 50)
    f.record_lost(REQ, 100)
    f.record_lost(REP, 50)
    s = f.stats()
    assert s["bytes"] == 100 and s["rpcs"] == 1
    f.reset_stats()
    assert f.stats()["rpcs"] == 0 and f.stats()["bytes"] == 0


def test_concurrent_apply_and_decide() -> None:
    f = FaultInjector(seed=1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def flip() -> None:
        try:
            i = 0
            while not stop.is_set():
                f.apply({"disabled_links": [[0, 1]] if i % 2 else [], "unreliable": bool(i % 3)})
                i += 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=flip)
    t.start()
    try:
        for _ in range(20_000):
            f.decide(REQ, 0, 1, 1)
            f.accept(REP, 0, 1, 1)
    finally:
        stop.set()
        t.join()
    assert not errors
    assert f.stats()["rpcs"] == 20_000


# ------------------------------------------------------------------------- with real sockets


@pytest.fixture
def pair() -> Iterator[tuple[ZmqTransport, ZmqTransport, FaultInjector, FaultInjector]]:
    """Two peers, each with its own injector (as separate processes would have)."""
    ports = free_tcp_ports(2)
    addresses = {i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(ports)}
    fa, fb = FaultInjector(seed=1), FaultInjector(seed=2)
    ts: list[ZmqTransport] = []
    try:
        for me, f in ((0, fa), (1, fb)):
            ts.append(ZmqTransport(me, addresses, codec=RaftCodec("faults", addresses, 1 << 20),
                                   faults=f))
        a, b = ts
        # Connect (DEALERs have IMMEDIATE=1), then forget the probes.
        for x, y in ((a, b), (b, a)):
            deadline = time.monotonic() + 5
            while True:
                x.send([TimeoutNow(x.me, y.me, 0)])
                if y.poll(0.02):
                    break
                assert time.monotonic() < deadline
        while a.poll(0.05) or b.poll(0.05):
            pass
        fa.reset_stats()
        fb.reset_stats()
        yield a, b, fa, fb
    finally:
        for t in ts:
            t.close()


def drain(t: ZmqTransport, duration: float) -> list[object]:
    got: list[object] = []
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        got.extend(t.poll(max(0.0, deadline - time.monotonic())))
    return got


def test_transport_send_side_disabled_link(pair: tuple[ZmqTransport, ZmqTransport,
                                                       FaultInjector, FaultInjector]) -> None:
    a, b, fa, fb = pair
    sent_before = a.stats()["sent"]
    fa.set_link(0, 1, False)
    a.send([AppendEntries(0, 1, 1, 0, 0, (), 0, seq=i) for i in range(10)])
    assert drain(b, 0.3) == []
    assert fa.stats()["dropped"] == {DROP_LINK_DISABLED: 10}
    assert fa.stats()["rpcs"] == 10
    assert a.stats()["sent"] == sent_before
    fa.set_link(0, 1, True)
    a.send([AppendEntries(0, 1, 1, 0, 0, (), 0, seq=99)])
    assert drain(b, 0.3) == [AppendEntries(0, 1, 1, 0, 0, (), 0, seq=99)]


def test_transport_receive_side_disabled_link(pair: tuple[ZmqTransport, ZmqTransport,
                                                          FaultInjector, FaultInjector]) -> None:
    """The sender's rules let the messages through (say, they left before the partition);
    the receiver's current rules drop them on arrival."""
    a, b, fa, fb = pair
    before = b.stats()
    fb.set_link(0, 1, False)
    a.send([AppendEntries(0, 1, 1, 0, 0, (), 0), AppendEntriesResponse(0, 1, 1, True)])
    assert drain(b, 0.3) == []
    assert fb.stats()["dropped"] == {DROP_RECEIVE_LINK_DISABLED: 2}
    assert b.stats()["decoded"] - before["decoded"] == 2
    assert b.stats()["delivered"] == before["delivered"]
    # The reply's bytes, counted by the sender as delivered, are taken back by the receiver:
    # summed over the cluster only the request's bytes remain.
    req_bytes = len(a.codec.encode(AppendEntries(0, 1, 1, 0, 0, (), 0)))
    assert fa.stats()["bytes"] + fb.stats()["bytes"] == req_bytes


def test_transport_delays_and_poll_wakes_for_due_messages(
    pair: tuple[ZmqTransport, ZmqTransport, FaultInjector, FaultInjector],
) -> None:
    """A delayed message is held by the sender and sent by its own poll() when due, even
    while that poll is waiting for something else."""
    a, b, fa, fb = pair
    fa.set_long_reordering(True)
    replies = [RequestVoteResponse(0, 1, 1, True) for _ in range(30)]
    start = time.monotonic()
    a.send(replies)
    pending = a.stats()["delayed_pending"]
    assert 10 <= pending <= 30  # 2/3 of the replies, held back
    immediate = drain(b, 0.2)  # the held-back ones wait for a.send()/a.poll()
    assert len(immediate) == 30 - pending

    # a waits in poll (nothing will arrive for it); its poll must flush b's replies on time.
    waiter = threading.Thread(target=lambda: a.poll(2.6))
    waiter.start()
    got: list[object] = []
    last_arrival = 0.0
    while len(got) < pending and time.monotonic() - start < 3.0:
        batch = b.poll(0.05)
        if batch:
            got.extend(batch)
            last_arrival = time.monotonic() - start
    waiter.join()
    assert len(got) == pending, a.stats()
    assert a.stats()["delayed_pending"] == 0
    assert 0.2 <= last_arrival < 2.2 + 0.5  # the longest delay is 2.199 s
    assert fa.stats()["delayed"] == pending


class FixedDelay(FaultInjector):
    """Delays every message by exactly `delay` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__(seed=0)
        self.delay = delay

    def decide(self, kind: int, from_peer: int, to_peer: int, size: int = 0) -> tuple[bool, float]:
        super().decide(kind, from_peer, to_peer, size)
        return True, self.delay


def test_poll_wakes_in_time_for_the_next_due_message() -> None:
    ports = free_tcp_ports(2)
    addresses = {i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(ports)}
    codec = RaftCodec("faults", addresses, 1 << 20)
    with ZmqTransport(0, addresses, codec=codec, faults=FixedDelay(0.3)) as a, \
            ZmqTransport(1, addresses, codec=codec) as b:
        # Connect first: a delayed probe still needs the connection when it is due.
        deadline = time.monotonic() + 5
        while not b.poll(0.02):
            a.send([TimeoutNow(0, 1, 0)])
            a.poll(0.35)
            assert time.monotonic() < deadline
        while b.poll(0.4):
            pass
        waiter = threading.Thread(target=lambda: a.poll(5.0))  # a long poll of its own
        start = time.monotonic()
        a.send([TimeoutNow(0, 1, 7)])
        waiter.start()
        try:
            assert b.poll(3.0) == [TimeoutNow(0, 1, 7)]
            elapsed = time.monotonic() - start
        finally:
            a.wakeup()
            waiter.join()
        assert 0.29 <= elapsed < 0.3 + 0.5, elapsed


def test_transport_unreliable_requests_arrive_late_or_not_at_all(
    pair: tuple[ZmqTransport, ZmqTransport, FaultInjector, FaultInjector],
) -> None:
    a, b, fa, fb = pair
    fa.set_unreliable(True)
    n = 500
    a.send([AppendEntries(0, 1, 1, 0, 0, (), 0, seq=i) for i in range(n)])
    got: list[object] = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and len(got) < n - fa.stats()["dropped"].get(
        DROP_UNRELIABLE_REQUEST, 0
    ):
        got.extend(b.poll(0.01))
        a.poll(0)  # let a flush its delayed requests
    dropped = fa.stats()["dropped"][DROP_UNRELIABLE_REQUEST]
    assert 20 <= dropped <= 90  # ≈ 10 % of 500
    assert len(got) == n - dropped
    assert fa.stats()["rpcs"] == n
    seqs = [m.seq for m in got if isinstance(m, AppendEntries)]
    assert seqs != sorted(seqs)  # random 0–27 ms delays reorder them


def test_delayed_message_dropped_when_link_goes_down() -> None:
    ports = free_tcp_ports(2)
    addresses = {i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(ports)}
    codec = RaftCodec("faults", addresses, 1 << 20)
    fa = FixedDelay(0.3)
    with ZmqTransport(0, addresses, codec=codec, faults=fa) as a, \
            ZmqTransport(1, addresses, codec=codec) as b:
        a.send([RequestVoteResponse(0, 1, 1, True) for _ in range(30)])
        assert a.stats()["delayed_pending"] == 30
        fa.set_link(0, 1, False)  # goes down while they wait
        deadline = time.monotonic() + 3
        while a.stats()["delayed_pending"] and time.monotonic() < deadline:
            a.poll(0.1)
        assert a.stats()["delayed_pending"] == 0
        assert drain(b, 0.2) == []
        assert fa.stats()["dropped"] == {DROP_DISABLED_WHILE_DELAYED: 30}
        # The replies' bytes were counted when they were let through, and taken back.
        assert fa.stats()["bytes"] == 0
