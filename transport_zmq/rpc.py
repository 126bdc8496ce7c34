"""Request/reply over ZeroMQ ROUTER/DEALER with msgpack maps: control and client endpoints.

A request is one frame, a msgpack map with an integer `id` and a string `op`; the reply is
one frame, a map with the same `id`, `ok` (bool) and either the op's fields or `error` and
`error_kind`. The server may answer later than the request (`RpcServer.reply`), which is
how a KV server answers only once a command is applied.

Bad frames (not msgpack, not a map, no id/op, oversized) are counted, logged once per
sender, and answered with a definite `malformed` error when an id can be recovered; they
never raise into the server loop.

With keys (`curve`), an `RpcServer` is a CURVE server that admits only the listed client
public keys (transport_zmq.auth); an `RpcClient` given a key pair and the server's public
key is the matching CURVE client. A refused client gets no reply at all (the handshake
fails before any request is read); the authenticator counts and logs it.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Mapping, Sequence, Tuple

import msgpack
import zmq

from .auth import CurveKeyPair, CurveServer, secure_client

Handler = Callable[[bytes, Mapping[str, Any]], "dict[str, Any] | None"]
"""Called with (client identity, request); returns the reply fields, or None to answer
later with `RpcServer.reply`."""

BatchHandler = Callable[[Sequence[Tuple[bytes, Mapping[str, Any]]]], "Sequence[dict[str, Any] | None]"]
"""Called with the well-formed requests of one socket drain, in arrival order, as (client
identity, request) pairs; returns one reply (or None: answered later) per request, in the
same order. Lets a server amortise per-request work (one Raft proposal for many writes)."""

MAX_BATCH = 1024
"""At most this many requests go to a batch handler at once (bounds the latency of the
first request of a large burst)."""

MAX_REQUEST_BYTES = 16 << 20


class RpcError(Exception):
    """A definite error reply from the server (the request was refused)."""

    def __init__(self, kind: str, message: str, fields: Mapping[str, Any] | None = None):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.fields = dict(fields or {})
        """The whole error reply (e.g. a `leader_hint`)."""


class RpcServer:
    """A ROUTER bound at `address`, served by one thread calling `handler` per request, or,
    when `batch_handler` is given, calling it once per drain of the socket with every
    well-formed request received (at most `max_batch` at a time; malformed ones are answered
    here and never reach a handler).

    Threading: the handlers run on the server thread; `reply` may be called from any thread.
    `close()` stops the thread and closes the socket. With `curve`, the socket is a CURVE
    server named `name` in the authenticator's stats, made in the authenticator's context.
    """

    def __init__(
        self,
        address: str,
        handler: Handler,
        *,
        name: str = "rpc",
        logger: logging.Logger | None = None,
        context: zmq.Context | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        batch_handler: BatchHandler | None = None,
        max_batch: int = MAX_BATCH,
        curve: CurveServer | None = None,
    ):
        if curve is not None:
            if context is not None and context is not curve.authenticator.context:
                raise ValueError("curve: the socket must be made in the authenticator's context")
            context = curve.authenticator.context
        self._context = context or zmq.Context.instance()
        self._handler = handler
        self._batch_handler = batch_handler
        self._max_batch = max(1, max_batch)
        self._log = logger or logging.getLogger(f"ruaft.{name}")
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, max_request_bytes)
        self._socket.setsockopt(zmq.SNDHWM, 100_000)
        self._socket.setsockopt(zmq.RCVHWM, 100_000)
        if curve is not None:
            curve.authenticator.secure_server(self._socket, name, curve.key_pair, curve.allowed)
        self._socket.bind(address)
        self.address = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._outbox: queue.SimpleQueue[tuple[bytes, bytes]] = queue.SimpleQueue()
        self._wake_pending = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self.counters: dict[str, int] = {"requests": 0, "malformed": 0, "handler_errors": 0}
        self._logged_bad: set[bytes] = set()
        self._thread = threading.Thread(target=self._run, name=f"{name}-server", daemon=True)
        self._thread.start()

    def reply(self, identity: bytes, request_id: int, fields: Mapping[str, Any]) -> None:
        """Send a (deferred) reply; thread-safe. `fields` should include `ok`."""
        # The request id goes last: a handler's own fields can never overwrite it.
        frame = msgpack.packb({**fields, "id": request_id}, use_bin_type=True)
        self._outbox.put((identity, frame))
        # One wake-up per burst of replies, not one system call per reply: the flag is
        # cleared by the server thread before it drains the outbox.
        if not self._wake_pending:
            self._wake_pending = True
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass  # the pipe is full: the server is already awake

    def close(self) -> None:
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass
        if self._thread is not threading.current_thread():
            self._thread.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(100))
                if self._wake_r in events:
                    try:
                        os.read(self._wake_r, 65536)
                    except BlockingIOError:
                        pass
                self._flush_outbox()
                if self._socket in events:
                    self._drain()
                    self._flush_outbox()
        finally:
            self._socket.close(0)

    def _flush_outbox(self) -> None:
        self._wake_pending = False  # before draining: a reply queued after this wakes us again
        while True:
            try:
                identity, frame = self._outbox.get_nowait()
            except queue.Empty:
                return
            try:
                self._socket.send_multipart([identity, frame], zmq.NOBLOCK)
            except zmq.ZMQError:
                self.counters["send_dropped"] = self.counters.get("send_dropped", 0) + 1

    def _drain(self) -> None:
        if self._batch_handler is not None:
            self._drain_batches()
            return
        for _ in range(10_000):
            try:
                parts = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            request = self._decode(parts)
            if request is not None:
                self._serve(parts[0], request)

    def _drain_batches(self) -> None:
        assert self._batch_handler is not None
        received = 0
        while received < 10_000:
            batch: list[tuple[bytes, Mapping[str, Any]]] = []
            empty = False
            while len(batch) < self._max_batch:
                try:
                    parts = self._socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    empty = True
                    break
                received += 1
                request = self._decode(parts)
                if request is not None:
                    batch.append((parts[0], request))
            if batch:
                self._serve_batch(batch)
            if empty:
                return

    def _serve_batch(self, batch: list[tuple[bytes, Mapping[str, Any]]]) -> None:
        assert self._batch_handler is not None
        try:
            replies = self._batch_handler(batch)
            if len(replies) != len(batch):
                raise RuntimeError(f"batch handler returned {len(replies)} replies for "
                                   f"{len(batch)} requests")
        except Exception as exc:
            # Every request of the batch gets an `internal` error. Clients retry it like any
            # refusal, with the same session seq, so one that did take effect applies once.
            self.counters["handler_errors"] += 1
            self._log.exception("batch handler failed on %d requests", len(batch))
            internal: dict[str, Any] = {"ok": False, "error_kind": "internal",
                                        "error": repr(exc)[:200]}
            replies = [internal] * len(batch)
        for (identity, request), fields in zip(batch, replies):
            if fields is not None:
                self.reply(identity, request["id"], fields)

    def _decode(self, parts: list[bytes]) -> dict[str, Any] | None:
        """The request of one ROUTER message, or None if it was malformed (then counted,
        logged once per sender, and answered when its id could be recovered)."""
        identity = parts[0]
        self.counters["requests"] += 1
        request_id: int | None = None
        try:
            if len(parts) != 2:
                raise ValueError(f"expected 1 frame after the identity, got {len(parts) - 1}")
            request = msgpack.unpackb(parts[1], raw=False, strict_map_key=False,
                                      max_bin_len=MAX_REQUEST_BYTES, max_str_len=MAX_REQUEST_BYTES)
            if not isinstance(request, dict):
                raise ValueError("request is not a map")
            raw_id = request.get("id")
            if isinstance(raw_id, int) and not isinstance(raw_id, bool):
                request_id = raw_id
            op = request.get("op")
            if request_id is None or not isinstance(op, str):
                raise ValueError("request needs an integer 'id' and a string 'op'")
        except Exception as exc:  # any decoding problem is the sender's, never ours
            self.counters["malformed"] += 1
            if identity not in self._logged_bad and len(self._logged_bad) < 1000:
                self._logged_bad.add(identity)
                self._log.warning("malformed request from %r: %s", identity[:32], exc)
            if request_id is not None:
                self.reply(identity, request_id,
                           {"ok": False, "error_kind": "malformed", "error": str(exc)[:200]})
            return None
        return request

    def _serve(self, identity: bytes, request: dict[str, Any]) -> None:
        try:
            fields = self._handler(identity, request)
        except Exception as exc:
            self.counters["handler_errors"] += 1
            self._log.exception("handler failed on %r", request["op"])
            fields = {"ok": False, "error_kind": "internal", "error": repr(exc)[:200]}
        if fields is not None:
            self.reply(identity, request["id"], fields)


class RpcClient:
    """A DEALER connected to one `RpcServer`. Not thread-safe: one thread per client.

    `call` returns the reply map, raises `RpcError` on a definite error reply and
    `TimeoutError` when no reply came in time (the request may or may not have run).
    With `curve` (this client's key pair) and `server_key` (the server's public key), the
    connection is CURVE-authenticated and encrypted; a server that does not accept the key
    never answers (`TimeoutError`).
    """

    _ids = itertools.count(1)

    def __init__(self, address: str, *, context: zmq.Context | None = None,
                 identity: bytes | None = None, curve: CurveKeyPair | None = None,
                 server_key: bytes | None = None):
        if (curve is None) != (server_key is None):
            raise ValueError("a CURVE client needs both its key pair and the server's public key")
        self.address = address
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self._socket.setsockopt(zmq.IDENTITY, identity)
        if curve is not None and server_key is not None:
            secure_client(self._socket, curve, server_key)
        self._socket.connect(address)

    def send(self, op: str, **fields: Any) -> int:
        """Send a request without waiting; returns its id (see `receive`)."""
        request_id = next(self._ids)
        self._socket.send(msgpack.packb({"id": request_id, "op": op, **fields}, use_bin_type=True))
        return request_id

    def receive(self, request_id: int, timeout: float) -> dict[str, Any]:
        """Wait for the reply to `request_id`, discarding stale replies to older requests."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._socket.poll(int(remaining * 1000) + 1):
                raise TimeoutError(f"no reply from {self.address} within {timeout:.1f}s")
            reply = msgpack.unpackb(self._socket.recv(), raw=False, strict_map_key=False)
            if not isinstance(reply, dict) or reply.get("id") != request_id:
                continue
            if not reply.get("ok", False):
                raise RpcError(str(reply.get("error_kind", "error")), str(reply.get("error", "")),
                               reply)
            return reply

    def call(self, op: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        return self.receive(self.send(op, **fields), timeout)

    def close(self) -> None:
        self._socket.close(0)
