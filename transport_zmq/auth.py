"""CURVE authentication for a peer's listening sockets: only known public keys get in.

A keyed peer makes every listening socket (Raft ROUTER, KV client ROUTER, control ROUTER) a
ZeroMQ CURVE server (RFC 26: the handshake proves the client holds the secret key of the
public key it presents, and the connection is encrypted). Which public keys a socket accepts
is decided by one ZAP handler (RFC 27) per ZeroMQ context: `CurveAuthenticator`, a small
thread that answers libzmq's ZAP requests from per-socket allow lists and COUNTS and LOGS
every refusal. It also watches each secured socket's monitor for handshakes that fail before
ZAP is asked at all (a plain-text client meets a CURVE server: "mechanism mismatch"), so
those are counted and logged too.

Nothing here runs for an un-keyed peer: no thread, no monitor, no ZAP round trip.

Refusals are logged at most once per (socket, key or endpoint) every `LOG_INTERVAL` seconds,
so a client retrying in a loop cannot flood ``peer.log``; every one is counted.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import zmq
import zmq.auth
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

__all__ = ["CurveAuthenticator", "CurveKeyError", "CurveKeyPair", "CurveServer",
           "check_public_key", "generate_key_pair", "read_key_pair", "secure_client",
           "write_key_pair"]

ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
LOG_INTERVAL: Final = 10.0
"""Seconds between two log lines about the same refused key (or endpoint) on one socket."""
_MAX_LOG_MEMORY: Final = 1024
# A failed handshake is a refusal: a plain-text client (mechanism mismatch, or — when the
# client notices the mismatch first and hangs up — a handshake that breaks off: NO_DETAIL),
# or a CURVE handshake that does not decrypt (wrong server key, garbage). These events come
# only before a connection is admitted; a client leaving later is not one.
_HANDSHAKE_EVENTS: Final = int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_MONITOR_STOPPED: Final = int(zmq.EVENT_MONITOR_STOPPED)
_KEY_CHARS: Final = 40  # Z85 text of a 32-byte CURVE key


class CurveKeyError(ValueError):
    """A CURVE key or key file is missing, unreadable or malformed; the message says which."""


@dataclass(frozen=True, slots=True)
class CurveKeyPair:
    """A CURVE key pair, both halves as 40-character Z85 text (bytes), as pyzmq takes them."""

    public: bytes
    secret: bytes

    def __repr__(self) -> str:  # never print a secret key into a log or a traceback
        return f"CurveKeyPair(public={self.public.decode()!r}, secret=…)"


@dataclass(frozen=True, slots=True)
class CurveServer:
    """How one listening socket is secured: its own key pair, and which client public keys
    it accepts (each with a name used in logs, e.g. ``"peer-1"``), checked by `authenticator`
    (whose context the socket must be created in)."""

    authenticator: "CurveAuthenticator"
    key_pair: CurveKeyPair
    allowed: Mapping[bytes, str]


def check_public_key(key: object, what: str = "key") -> bytes:
    """`key` (str or bytes) as Z85 bytes if it is a valid 32-byte CURVE key; else CurveKeyError
    naming `what`."""
    if isinstance(key, str):
        key = key.encode("ascii", "replace")
    if not isinstance(key, bytes) or len(key) != _KEY_CHARS:
        raise CurveKeyError(f"{what} is not a CURVE key (want 40 Z85 characters)")
    try:
        if len(z85.decode(key)) != 32:
            raise ValueError
    except (ValueError, KeyError, IndexError, TypeError):
        raise CurveKeyError(f"{what} is not valid Z85 text") from None
    return key


def generate_key_pair() -> CurveKeyPair:
    public, secret = zmq.curve_keypair()
    return CurveKeyPair(public, secret)


def write_key_pair(path: Path, pair: CurveKeyPair, what: str) -> None:
    """Write `pair` as a ZeroMQ certificate (the format of `zmq.auth.load_certificate`),
    readable by the owner only from the moment it exists (written to a temp file created
    0600, then renamed over `path`)."""
    text = (f"#   ****  {what}: CURVE secret key. Keep it private.  ****\n"
            "metadata\ncurve\n"
            f'    public-key = "{pair.public.decode()}"\n'
            f'    secret-key = "{pair.secret.decode()}"\n')
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_key_pair(path: Path, what: str = "secret key file") -> CurveKeyPair:
    """Read a key pair written by `write_key_pair` (or any ZeroMQ certificate with a secret
    key). Raises CurveKeyError, naming the file, if it is missing, readable by group or others
    (as ssh does: a secret that others can read is no secret), or malformed."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise CurveKeyError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CurveKeyError(f"{what} {path} is accessible by others (mode {mode & 0o777:o}); "
                            f"run `chmod 600 {path}`")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CurveKeyError(f"cannot read {what} {path}: {exc}") from None
    if secret is None:
        raise CurveKeyError(f"{what} {path} holds no secret key")
    check_public_key(public, f"the public key in {path}")
    check_public_key(secret, f"the secret key in {path}")
    if zmq.curve_public(secret) != public:
        raise CurveKeyError(f"{what} {path}: the public key does not belong to the secret key")
    return CurveKeyPair(public, secret)


def secure_client(socket: zmq.Socket[Any], pair: CurveKeyPair, server_key: bytes) -> None:
    """Make `socket` a CURVE client presenting `pair` to the server whose public key is
    `server_key`. Call before `connect`."""
    socket.setsockopt(zmq.CURVE_PUBLICKEY, pair.public)
    socket.setsockopt(zmq.CURVE_SECRETKEY, pair.secret)
    socket.setsockopt(zmq.CURVE_SERVERKEY, server_key)


def _new_counters() -> dict[str, int]:
    return {"accepted": 0, "refused_key": 0, "refused_handshake": 0, "refused_identity": 0}


class CurveAuthenticator:
    """The ZAP handler of one ZeroMQ `context`, with an allow list per socket name.

    `secure_server(socket, name, ...)` must be called before the socket binds. `context`:
    by default a new one, which the secured sockets must then be made in (`RpcServer` and
    `ZmqTransport` do so when given a `CurveServer`). Threading: `secure_server`, `stats`
    and `close` may be called from any thread; the handler runs on its own daemon thread.
    Raises zmq.ZMQError if the context already has a ZAP handler.
    """

    def __init__(self, context: zmq.Context[Any] | None = None,
                 logger: logging.Logger | None = None):
        self.context: zmq.Context[Any] = context if context is not None else zmq.Context()
        self._log = logger if logger is not None else logging.getLogger("ruaft.auth")
        self._lock = threading.Lock()
        self._allowed: dict[str, dict[bytes, str]] = {}
        self._counters: dict[str, dict[str, int]] = {}
        self._endpoints: dict[str, str] = {}
        self._new_monitors: list[tuple[str, zmq.Socket[Any]]] = []
        self._last_logged: dict[tuple[str, bytes], float] = {}
        self._stop = threading.Event()
        self._zap = self.context.socket(zmq.REP)
        self._zap.setsockopt(zmq.LINGER, 0)
        self._zap.bind(ZAP_ENDPOINT)
        # The thread's wake-up: a PAIR pair, so new monitors and close() reach the poller.
        self._wake_address = f"inproc://ruaft-auth-wake-{id(self)}"
        self._wake_recv = self.context.socket(zmq.PAIR)
        self._wake_recv.bind(self._wake_address)
        self._wake_send = self.context.socket(zmq.PAIR)
        self._wake_send.setsockopt(zmq.LINGER, 0)
        self._wake_send.connect(self._wake_address)
        self._thread = threading.Thread(target=self._run, name="curve-auth", daemon=True)
        self._thread.start()

    def secure_server(self, socket: zmq.Socket[Any], name: str, pair: CurveKeyPair,
                      allowed: Mapping[bytes, str]) -> None:
        """Make `socket` (of this authenticator's context, not yet bound) a CURVE server with
        key pair `pair` that accepts only the public keys in `allowed`. `name` names the socket
        in logs and `stats` ("raft", "kv", "control") and is its ZAP domain."""
        with self._lock:
            self._allowed[name] = {check_public_key(k, f"allowed key of {name}"): who
                                   for k, who in allowed.items()}
            self._counters.setdefault(name, _new_counters())
        socket.setsockopt(zmq.CURVE_SERVER, 1)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, pair.public)
        socket.setsockopt(zmq.CURVE_SECRETKEY, pair.secret)
        socket.setsockopt(zmq.ZAP_DOMAIN, name.encode())
        # Fail closed: if the ZAP handler were ever gone, libzmq refuses instead of admitting.
        socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        monitor = socket.get_monitor_socket(_HANDSHAKE_EVENTS | _MONITOR_STOPPED)
        with self._lock:
            self._new_monitors.append((name, monitor))
        self._wake()

    def stats(self) -> dict[str, dict[str, int]]:
        """Per socket name: ``accepted`` (handshakes with a known key), ``refused_key``
        (a CURVE client with a key this socket does not accept), ``refused_handshake``
        (no or a broken CURVE handshake, e.g. a plain-text client), ``refused_identity``
        (admitted key, but messages under another peer's identity; counted by the transport)."""
        with self._lock:
            return {name: dict(c) for name, c in self._counters.items()}

    def count(self, name: str, counter: str) -> None:
        """Count one refusal decided by the socket's owner (e.g. ``refused_identity``:
        a peer's key used under another peer's identity)."""
        with self._lock:
            counters = self._counters.setdefault(name, _new_counters())
            counters[counter] = counters.get(counter, 0) + 1

    def refused(self) -> int:
        """All refusals on all sockets."""
        with self._lock:
            return sum(n for c in self._counters.values() for k, n in c.items() if k != "accepted")

    def close(self) -> None:
        """Stop the handler thread (after this, CURVE handshakes on this context fail)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake()
        if self._thread is not threading.current_thread():
            self._thread.join(5)

    def _wake(self) -> None:
        with self._lock:
            try:
                self._wake_send.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass

    # ------------------------------------------------------------------------- the thread

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._zap, zmq.POLLIN)
        poller.register(self._wake_recv, zmq.POLLIN)
        monitors: dict[zmq.Socket[Any], str] = {}
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(1000):
                    if sock is self._zap:
                        self._answer_zap()
                    elif sock is self._wake_recv:
                        while self._wake_recv.poll(0):
                            self._wake_recv.recv()
                    else:
                        if self._maybe_monitor_event(monitors[sock], sock):
                            poller.unregister(sock)
                            del monitors[sock]
                            sock.close(0)
                with self._lock:
                    new, self._new_monitors = self._new_monitors, []
                for name, monitor in new:
                    monitors[monitor] = name
                    poller.register(monitor, zmq.POLLIN)
        except zmq.ContextTerminated:
            pass
        finally:
            for sock in monitors:
                sock.close(0)
            self._zap.close(0)
            self._wake_recv.close(0)
            with self._lock:
                self._wake_send.close(0)

    def _answer_zap(self) -> None:
        # RFC 27 request: version, request id, domain, address, identity, mechanism, creds…
        request = self._zap.recv_multipart()
        request_id = request[1] if len(request) > 1 else b""
        try:
            reply = self._decide(request)
        except Exception:  # never leave the REP socket (and every handshake) stuck
            self._log.exception("auth: could not judge a ZAP request; refusing it")
            reply = [b"1.0", request_id, b"500", b"internal error", b"", b""]
        self._zap.send_multipart(reply)

    def _decide(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply to `request`: 200 with the key's name for an admitted key, 400
        (counted, logged) for any other."""
        version, request_id = (request + [b"", b""])[:2]
        if len(request) < 6 or version != b"1.0":
            return [b"1.0", request_id, b"500", b"bad ZAP request", b"", b""]
        domain = request[2].decode("utf-8", "replace")
        address = request[3].decode("utf-8", "replace")
        mechanism = request[5]
        key = z85.encode(request[6]) if mechanism == b"CURVE" and len(request) > 6 else b""
        with self._lock:
            counters = self._counters.setdefault(domain, _new_counters())
            who = self._allowed.get(domain, {}).get(key) if key else None
            if who is not None:
                counters["accepted"] += 1
            else:
                counters["refused_key"] += 1
                total = counters["refused_key"]
        if who is not None:
            return [b"1.0", request_id, b"200", b"OK", who.encode(), b""]
        if self._should_log(domain, key or mechanism):
            self._log.warning(
                "auth: refused %s key %s on the %s socket from %s (not a key this socket "
                "accepts; %d refused there so far)", mechanism.decode("ascii", "replace"),
                key.decode() if key else "-", domain, address, total)
        return [b"1.0", request_id, b"400", b"unknown key", b"", b""]

    def _maybe_monitor_event(self, name: str, monitor: zmq.Socket[Any]) -> bool:
        """Count a failed handshake, if that is the event; True when the monitored socket
        has closed."""
        try:
            event = parse_monitor_message(monitor.recv_multipart())
        except (ValueError, IndexError, TypeError):  # pragma: no cover - libzmq sends these
            return False
        if event["event"] == _MONITOR_STOPPED:
            return True
        raw_endpoint = event["endpoint"]
        endpoint = (raw_endpoint.decode("utf-8", "replace") if isinstance(raw_endpoint, bytes)
                    else str(raw_endpoint))
        value = int(event["value"])
        if value == int(zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH):
            why = "the client did not use CURVE (plain-text or another mechanism)"
        elif event["event"] == int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
            why = (f"the handshake broke off ({os.strerror(value) if value < 4096 else value}; "
                   "e.g. a plain-text client hanging up)")
        else:
            why = f"a broken CURVE handshake (ZeroMQ protocol error {value:#x})"
        with self._lock:
            counters = self._counters.setdefault(name, _new_counters())
            counters["refused_handshake"] += 1
            total = counters["refused_handshake"]
        if self._should_log(name, b"handshake:" + str(value).encode()):
            self._log.warning("auth: refused a connection to the %s socket at %s: %s "
                              "(%d refused handshakes there so far)", name, endpoint, why, total)
        return False

    def _should_log(self, name: str, what: bytes) -> bool:
        now = time.monotonic()
        with self._lock:
            key = (name, what)
            last = self._last_logged.get(key)
            if last is not None and now - last < LOG_INTERVAL:
                return False
            if len(self._last_logged) >= _MAX_LOG_MEMORY:
                self._last_logged.clear()  # forget the oldest: at worst one extra line each
            self._last_logged[key] = now
            return True


def allowed_names(keys: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> dict[bytes, str]:
    """{public key: name} from {name: public key}, for `CurveServer.allowed`."""
    items = keys.items() if isinstance(keys, Mapping) else keys
    return {key: name for name, key in items}
