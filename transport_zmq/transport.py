"""`ZmqTransport`: the production `ruaft.transport.Transport`, Raft messages over ZeroMQ.

Topology
--------
Each peer binds ONE ROUTER socket at ``addresses[me]`` and holds one DEALER per remote peer,
connected to that peer's ROUTER, with ``IDENTITY = b"peer-<me>"``. Every Raft message —
request or reply — goes out through the DEALER towards its ``to_peer`` and comes in through
the receiver's ROUTER. Replies are NOT sent back over the ROUTER connection the request came
in on: that would need the requester's DEALER to still be connected (a restarted or
partitioned peer may not be) and would give requests and replies different paths, queues and
failure modes. With one outbound path per directed link, each link has one FIFO queue, one
high-water mark and one connection state, which is also exactly the granularity of the fault
model (TESTS.md §4 is per directed link). The ROUTER never sends, so ROUTER_MANDATORY does not
apply; it only receives ``[identity, payload]``.

Socket options, and why
-----------------------
* ``LINGER=0`` everywhere: close never waits for unsent messages (Raft resends what matters).
* DEALER ``IMMEDIATE=1``: queue only on a completed connection. A send to a peer that is down
  fails at once with EAGAIN (dropped, counted) instead of piling up stale messages that would
  be delivered in a burst when it comes back; messages queued on a connection that breaks are
  discarded with it.
* bounded ``SNDHWM`` (DEALER) / ``RCVHWM`` (ROUTER) = `hwm` messages: memory stays bounded
  when a peer is slow or SIGSTOPped; beyond it, sends are dropped (``send`` never blocks).
* ZMTP heartbeats (``HEARTBEAT_IVL/TIMEOUT/TTL``): a peer that stops answering (SIGSTOP, host
  gone) is disconnected after the timeout, so IMMEDIATE starts failing fast instead of
  filling the HWM; on loopback a SIGKILLed peer is noticed at once via TCP RST anyway.
* ROUTER ``MAXMSGSIZE = codec.max_frame_bytes``: libzmq disconnects a peer that sends a larger
  message before it is buffered (such frames are not seen, hence not counted, here).
* ROUTER ``ROUTER_HANDOVER=1``: a restarted peer reconnects with the same identity while the
  dead connection may not be torn down yet; without handover libzmq refuses the new
  connection and the restarted peer is deaf-muted until the old one times out. With it, the
  NEWEST connection owns the identity; frames still arriving on an older one carry a
  generated identity and are dropped as ``sender_mismatch`` (see below), which is what a
  restart wants.
* Sender check: a frame is accepted only if its ``from_peer`` is the peer whose identity its
  connection presented (``peer_identity``), so a message cannot claim another sender.
* DEALER ``RECONNECT_IVL`` 50 ms (max 1 s with back-off): a restarted peer is reached quickly.
* TCP keepalive is left off: ZMTP heartbeats already detect dead connections, at the ZMTP
  level, on every transport.
* CURVE (only with `curve`): the ROUTER is a CURVE server that admits only the cluster's
  peer public keys (checked by the `CurveAuthenticator`, which counts and logs refusals);
  each DEALER is a CURVE client presenting this peer's key pair and expecting the target
  peer's public key, so it never talks to an impostor either. The key also pins the sender:
  the ZAP handler names each admitted connection after its key (``User-Id`` "peer-N"), and
  a frame whose socket identity is not that name (peer 2's key claiming to be peer 1) is
  dropped as ``sender_mismatch`` and counted as ``refused_identity`` on the "raft" socket.
  Without keys none of this is set up and the frames take exactly the un-keyed path.

Threading: `send`, `poll` and `close` must be called from one thread (the runtime's event
loop); ZeroMQ sockets are not thread-safe. `wakeup` and `stats` may be called from any thread.
Errors: the constructor raises ``zmq.ZMQError`` (e.g. address in use) or ValueError (bad
arguments), leaving nothing open; `send` never raises for a message it cannot deliver (it
drops and counts); `poll` never raises for bad input from the network; `poll` after `close`
raises RuntimeError, `send` after `close` drops.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import random
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import zmq

from ruaft.core.types import Message, PeerId

from .auth import CurveServer, secure_client
from .codec import DecodeError, DecodeErrorKind, EncodeError, RaftCodec
from .faults import DROP_DISABLED_WHILE_DELAYED, FaultInjector

__all__ = ["ZmqTransport", "free_tcp_ports", "peer_identity"]

_DEFAULT_LOGGER: Final = logging.getLogger("ruaft.transport")
_MAX_LOGGED_KEYS: Final = 1024  # bound on the "log once per (sender, problem)" memory
_MAX_DELAYED: Final = 100_000  # bound on messages held back by the fault injector
_NOBLOCK: Final = int(zmq.NOBLOCK)  # plain ints: pyzmq converts enum members on every call
_RCVMORE: Final = int(zmq.RCVMORE)

# Per-send-drop reasons (keys of stats()["send_drops"]).
_SEND_DROP_REASONS: Final = (
    "hwm",  # zmq.Again: high-water mark reached, or (IMMEDIATE) no connection to the peer
    "unknown_peer",  # to_peer not in addresses (or this peer itself)
    "wrong_sender",  # from_peer is not this peer: a local bug
    "encode",  # EncodeError: not a message / over max_frame_bytes
    "error",  # any other ZMQError
    "closed",  # send() after close()
    "delay_queue_full",  # the fault injector delayed more than _MAX_DELAYED messages
)
# Drops of decodable frames after decoding (keys of stats()["receive_drops"]).
_RECEIVE_DROP_REASONS: Final = (
    "misaddressed",  # to_peer is not this peer
    "sender_mismatch",  # from_peer disagrees with the sender's socket identity
)


def peer_identity(peer: PeerId) -> bytes:
    """The ZeroMQ identity of `peer`'s DEALER sockets."""
    return b"peer-%d" % peer


_handed_out_ports: set[int] = set()
_ports_lock = threading.Lock()
_port_rng = random.Random()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_tcp_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on 127.0.0.1 a moment ago, for servers started next.

    They are drawn at random from the 12 000 ports just *below* the kernel's ephemeral range
    (checked free by binding each; all held until all are found), so another process's
    bind(0) or outgoing connection cannot take one in the window before our server binds it,
    nor while a crashed server is down. Within this process a port is never handed out twice
    (until the range runs out), so clusters made one after another never collide.
    Raises OSError if not enough free ports are found.
    """
    low = _ephemeral_low()
    first = max(1024, low - 12_000)
    held: list[socket.socket] = []
    ports: list[int] = []
    with _ports_lock:
        if low - first - len(_handed_out_ports) < 4 * n:
            _handed_out_ports.clear()  # the range is used up: allow reuse, oldest long gone
        try:
            for _ in range(200 * n):
                if len(ports) == n:
                    break
                port = _port_rng.randrange(first, low)
                if port in _handed_out_ports or port in ports:
                    continue
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    sock.close()
                    continue
                held.append(sock)
                ports.append(port)
        finally:
            for sock in held:
                sock.close()
        if len(ports) < n:
            raise OSError(f"found only {len(ports)} of {n} free ports in {first}..{low - 1}")
        _handed_out_ports.update(ports)
    return ports


class _Wakeup:
    """A self-pipe that a `zmq.Poller` can wait on: an eventfd on Linux, else a socketpair.
    `set` may be called from any thread, also after `close` (then it does nothing: the fd
    number could already belong to someone else)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._pair: tuple[socket.socket, socket.socket] | None = None
        if hasattr(os, "eventfd"):
            self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - non-Linux
            r, w = socket.socketpair()
            r.setblocking(False)
            w.setblocking(False)
            self._pair = (r, w)
            self.fd = r.fileno()

    def set(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if self._pair is None:
                    os.eventfd_write(self.fd, 1)
                else:  # pragma: no cover - non-Linux
                    self._pair[1].send(b"\0")
            except (BlockingIOError, InterruptedError):
                pass  # already signalled (counter or buffer full): that is all we need

    def clear(self) -> None:
        try:
            if self._pair is None:
                os.eventfd_read(self.fd)
            else:  # pragma: no cover - non-Linux
                while self._pair[0].recv(4096):
                    pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._pair is None:
                os.close(self.fd)
            else:  # pragma: no cover - non-Linux
                for s in self._pair:
                    s.close()


class ZmqTransport:
    """Raft messages between peer processes over ZeroMQ ROUTER/DEALER (module docstring).

    `me` is this peer, `addresses` maps EVERY peer id (including `me`) to its ZeroMQ endpoint
    (``"tcp://127.0.0.1:PORT"``); this peer binds ``addresses[me]`` and connects to the
    others. `codec` must accept every peer of `addresses`. `faults`, present only in test mode,
    decides per message whether to drop or delay it (the transport does not own it: the
    orchestrator's control endpoint updates it). `context`: a shared ZeroMQ context (not
    terminated by `close`); by default the transport creates, owns and terminates its own.
    `hwm` bounds each socket queue, in messages. One `poll` returns at most `max_batch`
    frames' or about `max_batch_bytes` bytes' worth of messages (whichever comes first; the
    rest stays queued for the next poll), so a flood of large AppendEntries cannot make one
    batch unbounded in memory or in the time before the event loop gets control back.
    `logger` defaults to ``logging.getLogger("ruaft.transport")``.
    `curve` (with `peer_keys`, every peer's public key): authenticate and encrypt every link
    (module docstring); the sockets are then made in ``curve.authenticator.context``, and
    `context` must be None or that context.
    """

    def __init__(
        self,
        me: PeerId,
        addresses: Mapping[PeerId, str],
        *,
        codec: RaftCodec,
        faults: FaultInjector | None = None,
        context: zmq.Context[Any] | None = None,
        hwm: int = 10_000,
        logger: logging.Logger | None = None,
        heartbeat_ivl_ms: int = 1000,
        heartbeat_timeout_ms: int = 3000,
        reconnect_ivl_ms: int = 50,
        reconnect_ivl_max_ms: int = 1000,
        max_batch: int = 10_000,
        max_batch_bytes: int = 32 << 20,
        curve: CurveServer | None = None,
        peer_keys: Mapping[PeerId, bytes] | None = None,
    ) -> None:
        if me not in addresses:
            raise ValueError(f"addresses has no entry for this peer ({me})")
        if not set(addresses) <= codec.peer_ids:
            raise ValueError(
                f"codec.peer_ids {sorted(codec.peer_ids)} lacks peers of addresses "
                f"{sorted(set(addresses) - codec.peer_ids)}"
            )
        if hwm < 1 or max_batch < 1 or max_batch_bytes < 1:
            raise ValueError("hwm, max_batch and max_batch_bytes must be positive")
        if curve is not None:
            if peer_keys is None or not set(addresses) <= set(peer_keys):
                raise ValueError("curve needs peer_keys with a public key for every peer")
            if context is not None and context is not curve.authenticator.context:
                raise ValueError("curve: the sockets must be made in the authenticator's context")
            context = curve.authenticator.context
        self.me: Final = me
        self.addresses: Final[dict[PeerId, str]] = dict(addresses)
        self.codec: Final = codec
        self.faults: Final = faults
        self._log = logger if logger is not None else _DEFAULT_LOGGER
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._own_context = context is None
        self._context: zmq.Context[Any] = zmq.Context() if context is None else context
        self._closed = False

        self._frames_received = 0
        self._decoded = 0
        self._delivered = 0
        self._sent = 0
        self._decode_errors: dict[str, int] = {k.value: 0 for k in DecodeErrorKind}
        self._receive_drops: dict[str, int] = {r: 0 for r in _RECEIVE_DROP_REASONS}
        self._send_drops: dict[str, int] = {r: 0 for r in _SEND_DROP_REASONS}
        self._logged: set[tuple[object, str]] = set()
        # Messages the fault injector holds back: (due, tiebreak, to_peer, kind, frame).
        self._delayed: list[tuple[float, int, PeerId, int, bytes]] = []
        self._tiebreak = itertools.count()
        self._peer_of_identity = {peer_identity(p): p for p in addresses}
        self._curve = curve

        self._router: zmq.Socket[Any] | None = None
        self._dealers: dict[PeerId, zmq.Socket[Any]] = {}
        self._wakeup: _Wakeup | None = None
        try:
            heartbeat = {
                zmq.HEARTBEAT_IVL: heartbeat_ivl_ms,
                zmq.HEARTBEAT_TIMEOUT: heartbeat_timeout_ms,
                zmq.HEARTBEAT_TTL: heartbeat_timeout_ms,
            }
            router = self._context.socket(zmq.ROUTER)
            self._router = router
            router.setsockopt(zmq.LINGER, 0)
            router.setsockopt(zmq.RCVHWM, hwm)
            router.setsockopt(zmq.SNDHWM, hwm)
            router.setsockopt(zmq.MAXMSGSIZE, codec.max_frame_bytes)
            router.setsockopt(zmq.ROUTER_HANDOVER, 1)
            for opt, value in heartbeat.items():
                router.setsockopt(opt, value)
            if curve is not None:
                curve.authenticator.secure_server(router, "raft", curve.key_pair, curve.allowed)
            router.bind(self.addresses[me])

            for peer, address in sorted(self.addresses.items()):
                if peer == me:
                    continue
                dealer = self._context.socket(zmq.DEALER)
                self._dealers[peer] = dealer
                dealer.setsockopt(zmq.LINGER, 0)
                dealer.setsockopt(zmq.IDENTITY, peer_identity(me))
                dealer.setsockopt(zmq.IMMEDIATE, 1)
                dealer.setsockopt(zmq.SNDHWM, hwm)
                dealer.setsockopt(zmq.RCVHWM, 1)  # nothing is ever sent to a DEALER
                dealer.setsockopt(zmq.RECONNECT_IVL, reconnect_ivl_ms)
                dealer.setsockopt(zmq.RECONNECT_IVL_MAX, reconnect_ivl_max_ms)
                dealer.setsockopt(zmq.CONNECT_TIMEOUT, heartbeat_timeout_ms)
                for opt, value in heartbeat.items():
                    dealer.setsockopt(opt, value)
                if curve is not None:
                    assert peer_keys is not None
                    secure_client(dealer, curve.key_pair, peer_keys[peer])
                dealer.connect(address)

            self._wakeup = _Wakeup()
            self._poller = zmq.Poller()
            self._poller.register(router, zmq.POLLIN)
            self._poller.register(self._wakeup.fd, zmq.POLLIN)
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------------------------ send

    def send(self, messages: Sequence[Message]) -> None:
        """Encode and queue each message on the DEALER towards its ``to_peer``; never blocks.
        Dropped and counted (never raised): unknown or own ``to_peer``, ``from_peer`` not this
        peer, encode failure, queue full / peer not connected, fault-injector drops. Also sends
        the fault injector's delayed messages that are now due."""
        if self._closed:
            self._send_drops["closed"] += len(messages)
            return
        if self._delayed:
            self._flush_due(time.monotonic())
        dealers = self._dealers
        encode = self.codec.encode
        faults = self.faults
        me = self.me
        for msg in messages:
            to = msg.to_peer
            dealer = dealers.get(to)
            if dealer is None:
                self._send_drops["unknown_peer"] += 1
                self._log_once(to, "unknown_peer", "dropping %s to unknown peer %r",
                               type(msg).__name__, to)
                continue
            if msg.from_peer != me:
                self._send_drops["wrong_sender"] += 1
                self._log_once(msg.from_peer, "wrong_sender",
                               "dropping %s whose from_peer %r is not this peer (%d)",
                               type(msg).__name__, msg.from_peer, me)
                continue
            try:
                frame = encode(msg)
            except EncodeError as e:
                self._send_drops["encode"] += 1
                self._log_once(type(msg).__name__, "encode", "dropping unencodable message: %s", e)
                continue
            kind = msg.kind  # an IntEnum: hashes and compares as its int
            if faults is not None:
                deliver, delay = faults.decide(kind, me, to, len(frame))
                if not deliver:
                    continue
                if delay > 0.0:
                    if len(self._delayed) >= _MAX_DELAYED:
                        self._send_drops["delay_queue_full"] += 1
                        faults.record_lost(kind, len(frame))
                        continue
                    heapq.heappush(
                        self._delayed,
                        (time.monotonic() + delay, next(self._tiebreak), to, kind, frame),
                    )
                    continue
            self._send_frame(dealer, to, kind, frame)

    def _send_frame(self, dealer: zmq.Socket[Any], to: PeerId, kind: int, frame: bytes) -> None:
        try:
            dealer.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self._send_drops["hwm"] += 1
        except zmq.ZMQError as e:
            self._send_drops["error"] += 1
            self._log_once(to, "send_error", "send to peer %d failed: %s", to, e)
        else:
            self._sent += 1
            return
        if self.faults is not None:
            self.faults.record_lost(kind, len(frame))

    def _flush_due(self, now: float) -> None:
        """Send the delayed messages whose time has come, re-checking their link: one that
        went down meanwhile drops the message (labrpc checks ``enabled`` again too)."""
        heap = self._delayed
        faults = self.faults
        while heap and heap[0][0] <= now:
            _, _, to, kind, frame = heapq.heappop(heap)
            if faults is not None and not faults.link_enabled(self.me, to):
                faults.record_lost(kind, len(frame), DROP_DISABLED_WHILE_DELAYED)
                continue
            self._send_frame(self._dealers[to], to, kind, frame)

    # ------------------------------------------------------------------------------ receive

    def poll(self, timeout: float) -> list[Message]:
        """Wait up to `timeout` seconds (0: just look) until at least one valid message has
        arrived or `wakeup()` was called, then return every message that has arrived, at most
        `max_batch` frames' / `max_batch_bytes` bytes' worth. Frames that fail to decode, or
        that the fault injector's link check refuses, are counted and dropped, and do not end
        the wait. Delayed outgoing messages are sent when due while waiting. Raises
        RuntimeError after close."""
        if self._closed:
            raise RuntimeError("poll() on a closed ZmqTransport")
        assert self._wakeup is not None
        out: list[Message] = []
        deadline = time.monotonic() + max(0.0, timeout)
        poller = self._poller
        wake_fd = self._wakeup.fd
        while True:
            now = time.monotonic()
            if self._delayed:
                self._flush_due(now)
            self._drain(out)
            if out:
                return out
            wait = deadline - now
            if wait <= 0.0:
                return out
            if self._delayed:
                wait = min(wait, max(0.0, self._delayed[0][0] - now))
            # Round up: rounding down would spin on sub-millisecond remainders.
            events = poller.poll(math.ceil(wait * 1000.0))
            for what, _ in events:
                if what == wake_fd:
                    self._wakeup.clear()
                    if self._delayed:
                        self._flush_due(time.monotonic())
                    self._drain(out)
                    return out

    def _drain(self, out: list[Message]) -> None:
        """Receive up to `max_batch` frames without blocking; append the valid messages."""
        router = self._router
        assert router is not None
        recv = router.recv
        # Keyed: the identity frame is checked against the key that opened its connection.
        recv_identity = self._recv_keyed_identity if self._curve is not None else recv
        getsockopt = router.getsockopt
        decode = self.codec.decode
        faults = self.faults
        me = self.me
        peer_of_identity = self._peer_of_identity
        received = 0
        nbytes = 0
        max_bytes = self._max_batch_bytes
        before = len(out)
        for _ in range(self._max_batch):
            if nbytes >= max_bytes:
                break
            try:
                identity = recv_identity(_NOBLOCK)
            except zmq.Again:
                break
            # ZeroMQ delivers multi-part messages atomically and a ROUTER prepends the
            # sender's identity to every message, so a second part is always there. Asking
            # RCVMORE once (not once per part, as recv_multipart does) keeps the per-message
            # cost at two recv calls and one getsockopt.
            payload = recv(_NOBLOCK)
            received += 1
            nbytes += len(payload)
            if getsockopt(_RCVMORE):
                # A DEALER frame is [identity, payload]; anything longer (REQ envelopes,
                # multi-part sends) is not ours.
                parts = 1
                while getsockopt(_RCVMORE):
                    recv(_NOBLOCK)
                    parts += 1
                self._decode_errors[DecodeErrorKind.MALFORMED.value] += 1
                self._log_once(identity, DecodeErrorKind.MALFORMED.value,
                               "dropping %d-part message from %r (want 1 part)",
                               parts, identity[:32])
                continue
            try:
                msg = decode(payload)
            except DecodeError as e:
                self._decode_errors[e.kind.value] += 1
                self._log_once(identity, e.kind.value, "dropping frame from %r: %s",
                               identity[:32], e)
                continue
            self._decoded += 1
            if msg.to_peer != me:
                self._receive_drops["misaddressed"] += 1
                self._log_once(identity, "misaddressed", "dropping %s for peer %d from %r",
                               type(msg).__name__, msg.to_peer, identity[:32])
                continue
            if peer_of_identity.get(identity) != msg.from_peer:
                self._receive_drops["sender_mismatch"] += 1
                self._log_once(identity, "sender_mismatch",
                               "dropping %s claiming from_peer %d from socket %r",
                               type(msg).__name__, msg.from_peer, identity[:32])
                continue
            if faults is not None and not faults.accept(
                msg.kind, msg.from_peer, me, len(payload)
            ):
                continue
            out.append(msg)
        self._frames_received += received
        self._delivered += len(out) - before

    def _recv_keyed_identity(self, flags: int) -> bytes:
        """Receive an identity frame on the keyed ROUTER; if the connection's key belongs to
        another peer than the identity claims, return an identity no peer has (the frame is
        then dropped as ``sender_mismatch``), count and log it."""
        assert self._router is not None and self._curve is not None
        frame = self._router.recv(flags, copy=False)
        identity = frame.bytes
        try:
            user = str(frame.get("User-Id"))
        except zmq.ZMQError:
            user = None
        if user is not None and user.encode() == identity:
            return identity
        if identity not in self._peer_of_identity:
            # Not posing as a peer: e.g. an older connection of a restarted peer, renamed by
            # ROUTER_HANDOVER. Dropped below as sender_mismatch, as without keys.
            return identity
        self._curve.authenticator.count("raft", "refused_identity")
        self._log_once(identity, "key_mismatch",
                       "dropping frames from %r: its connection presented the key of %s",
                       identity[:32], user)
        return b"\0key-of-" + (user or "?").encode()

    def _log_once(self, sender: object, problem: str, fmt: str, *args: object) -> None:
        """Log a dropped message once per (sender, problem): a misbehaving peer must not flood
        the log. The memory of what was logged is bounded."""
        key = (sender, problem)
        if key in self._logged:
            return
        if len(self._logged) >= _MAX_LOGGED_KEYS:
            if ("*", "*") not in self._logged:
                self._logged.add(("*", "*"))
                self._log.warning("transport: too many distinct problems; no longer logging them")
            return
        self._logged.add(key)
        self._log.warning("transport %d: " + fmt + " (logged once)", self.me, *args)

    # ------------------------------------------------------------------------------ misc

    def wakeup(self) -> None:
        """Make the current or next `poll` return promptly. Thread-safe; no-op after close."""
        w = self._wakeup
        if w is not None:
            w.set()

    def stats(self) -> dict[str, Any]:
        """Counters as a plain dict (safe from any thread; each counter read atomically):
        ``frames_received`` (ROUTER messages), ``decoded``, ``delivered``, ``decode_errors``
        by `DecodeErrorKind` value, ``receive_drops`` (misaddressed, sender_mismatch),
        ``sent`` (handed to a socket), ``send_drops`` by reason, ``delayed_pending``, and
        ``faults`` (the injector's `FaultInjector.stats`, or None)."""
        return {
            "me": self.me,
            "frames_received": self._frames_received,
            "decoded": self._decoded,
            "delivered": self._delivered,
            "decode_errors": dict(self._decode_errors),
            "receive_drops": dict(self._receive_drops),
            "sent": self._sent,
            "send_drops": dict(self._send_drops),
            "delayed_pending": len(self._delayed),
            "faults": self.faults.stats() if self.faults is not None else None,
        }

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the sockets (LINGER=0: unsent messages are discarded) and the wakeup fd, and
        terminate the context if this transport created it. Idempotent. Call from the event
        loop thread (or once it has stopped)."""
        if self._closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.close()
        for dealer in self._dealers.values():
            dealer.close(linger=0)
        if self._router is not None:
            self._router.close(linger=0)
        self._delayed.clear()
        if self._own_context:
            self._context.term()

    def __enter__(self) -> ZmqTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.addresses.get(self.me, "?")
        return f"<ZmqTransport peer {self.me} {state}>"
