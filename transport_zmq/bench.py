"""Micro-benchmarks of the wire: ``python -m transport_zmq.bench [--quick]``.

* codec: encode and decode rates for a heartbeat (an AppendEntries without entries) and for
  an AppendEntries carrying 64 entries of 100 bytes;
* transport: messages per second from a sender PROCESS to a receiving ZmqTransport over TCP
  on 127.0.0.1 (sender and receiver in separate processes, as in a cluster, so they do not
  share a GIL), for the same two messages.

Numbers depend heavily on the machine and its load; compare runs on the same machine only.
Codec rates are per CPU-second of this process (``time.process_time``), which stays meaningful
on a loaded machine; transport rates are given both per wall-clock second (what a cluster
sees) and per CPU-second of the receiving process (ZeroMQ's I/O thread included).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Callable

from ruaft.core.types import AppendEntries, Entry, Message, TimeoutNow

from .codec import RaftCodec
from .transport import ZmqTransport, free_tcp_ports

CLUSTER = "bench"


def heartbeat() -> AppendEntries:
    return AppendEntries(0, 1, 7, 1000, 7, (), 990, seq=12)


def append64() -> AppendEntries:
    entries = tuple(Entry(7, 1001 + i, bytes([i]) * 100) for i in range(64))
    return AppendEntries(0, 1, 7, 1000, 7, entries, 990, seq=12)


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per CPU-second of `fn`, best of 3 runs of about `seconds` / 3 each."""
    clock = time.process_time
    best = 0.0
    n = 1
    while True:  # calibrate
        start = clock()
        for _ in range(n):
            fn()
        elapsed = clock() - start
        if elapsed > 0.05:
            break
        n *= 4
    per_run = max(1, int(n * (seconds / 3) / elapsed))
    for _ in range(3):
        start = clock()
        for _ in range(per_run):
            fn()
        best = max(best, per_run / max(clock() - start, 1e-9))
    return best


def bench_codec(seconds: float) -> dict[str, float]:
    codec = RaftCodec(CLUSTER, [0, 1], 64 << 20)
    out = {}
    for name, msg in (("heartbeat", heartbeat()), ("append64x100B", append64())):
        frame = codec.encode(msg)
        assert codec.decode(frame) == msg
        out[f"encode {name} ({len(frame)} B) msgs/CPU-s"] = _rate(lambda: codec.encode(msg), seconds)
        out[f"decode {name} ({len(frame)} B) msgs/CPU-s"] = _rate(lambda: codec.decode(frame), seconds)
    return out


def _sender(addresses: dict[int, str], which: str, n: int, batch: int) -> None:
    msg = heartbeat() if which == "heartbeat" else append64()
    codec = RaftCodec(CLUSTER, addresses, 64 << 20)
    with ZmqTransport(0, addresses, codec=codec, hwm=1_000_000) as t:
        # Handshake: probe until the receiver answers, so nothing is sent before it listens.
        while True:
            t.send([TimeoutNow(0, 1, 0)])
            if any(isinstance(m, TimeoutNow) for m in t.poll(0.05)):
                break
        messages: list[Message] = [msg] * batch
        for _ in range(n // batch):
            t.send(messages)
        # End marker, repeated until acknowledged (a link is FIFO: it follows the data).
        while True:
            t.send([TimeoutNow(0, 1, 1)])
            if any(isinstance(m, TimeoutNow) and m.term == 1 for m in t.poll(0.2)):
                break


def bench_transport(which: str, n: int) -> tuple[float, float, int]:
    """(messages per wall-clock second, messages per receiver CPU-second, messages lost) for
    `n` messages from another process."""
    addresses = {i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(free_tcp_ports(2))}
    codec = RaftCodec(CLUSTER, addresses, 64 << 20)
    ctx = multiprocessing.get_context("spawn")
    with ZmqTransport(1, addresses, codec=codec, hwm=1_000_000) as t:
        proc = ctx.Process(target=_sender, args=(addresses, which, n, 1000), daemon=True)
        proc.start()
        try:
            # Timed from the answer to the sender's first probe (after which it starts
            # sending) to the end marker: encode, send, wire, receive and decode, end to end.
            received = 0
            start = end = cpu_start = cpu_end = 0.0
            while not end:
                for m in t.poll(1.0):
                    if isinstance(m, TimeoutNow):
                        t.send([TimeoutNow(1, 0, m.term)])
                        if m.term == 0 and not start:
                            start, cpu_start = time.perf_counter(), time.process_time()
                        elif m.term == 1:
                            end, cpu_end = time.perf_counter(), time.process_time()
                    else:
                        received += 1
                if not proc.is_alive() and not end:
                    raise RuntimeError("sender died")
            proc.join(5)
        finally:
            if proc.is_alive():
                proc.kill()
        return received / (end - start), received / max(cpu_end - cpu_start, 1e-9), n - received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    seconds = 0.6 if args.quick else 2.0
    for name, rate in bench_codec(seconds).items():
        print(f"codec     {name:40s} {rate:12,.0f}")
    for which, n in (("heartbeat", 100_000), ("append64x100B", 20_000)):
        if args.quick:
            n //= 4
        wall, cpu, lost = bench_transport(which, n)
        entries = 64 if which != "heartbeat" else 0
        print(f"transport {which + ' msgs/s, wall clock':40s} {wall:12,.0f}"
              f"   ({wall * entries:,.0f} entries/s, {lost} lost)")
        print(f"transport {which + ' msgs/receiver CPU-s':40s} {cpu:12,.0f}"
              f"   ({cpu * entries:,.0f} entries/s)")


if __name__ == "__main__":
    main()
