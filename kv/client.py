"""The KV client: finds the leader, retries with the same (client_id, seq), and tells a
definite outcome from an indefinite one.

    client = KVClient(["tcp://127.0.0.1:7200", "tcp://127.0.0.1:7201", "tcp://127.0.0.1:7202"])
    client.put("k", "v")
    client.append("k", "w")
    assert client.get("k") == "vw"

Outcomes:
- success: the call returns (get returns the value; "" for a missing key);
- `DefiniteError` (`NoLeaderError`, `BadRequestError`): the operation did not happen;
- `IndefiniteError`: the deadline passed (or the `stop` event was set) after a write was sent
  at least once; it may or may not have happened. The history checker treats it as possibly
  applied. (A later call is a new request with a new sequence number.)

A client has at most one outstanding request; use one client per concurrent caller.

A keyed cluster (CURVE) admits only known client keys: pass this client's `key_pair` and the
servers' public keys, e.g. from the cluster file::

    spec = kv.clusterfile.load("ruaft-data")
    client = KVClient(spec.client_addresses(), key_pair=spec.user_key_pair("client"),
                      server_keys=spec.server_keys())

A server that does not accept the key never answers: the call ends as if no server were up.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

from transport_zmq.auth import CurveKeyPair
from transport_zmq.rpc import RpcClient, RpcError


class KVError(Exception):
    """Base of the client's errors."""


class DefiniteError(KVError):
    """The operation certainly did not take effect."""


class NoLeaderError(DefiniteError):
    """No server accepted the operation before the deadline; nothing was done."""


class BadRequestError(DefiniteError):
    """The server refused the request as malformed or too large."""


class IndefiniteError(KVError):
    """The outcome is unknown: the write may or may not have been applied."""


@dataclass(slots=True)
class ClientFaults:
    """Test-only: emulate the course's unreliable network on the client's side (labrpc drops
    10% of requests before the handler runs and 10% of replies after it ran)."""

    drop_request: float = 0.1
    drop_reply: float = 0.1
    seed: int | None = None


class KVClient:
    """A synchronous KV client. Not thread-safe: one per thread.

    `servers[i]` is the client address of peer i (leader hints name peers by id).
    `timeout` bounds each call (None: retry until it succeeds, as the course's clients do);
    `attempt_timeout` is how long one server gets to answer before the next is tried.
    `stop`: when this event is set, a call in progress gives up at its next retry point
    (within about `attempt_timeout`) exactly as if its deadline had passed — so a caller
    can retry forever (`timeout=None`) and still end its calls on demand.
    `key_pair` and `server_keys` (`server_keys[i]`: peer i's public key): connect with CURVE;
    both or neither (ValueError otherwise).
    """

    def __init__(
        self,
        servers: Sequence[str],
        *,
        client_id: str | None = None,
        timeout: float | None = 10.0,
        attempt_timeout: float = 1.0,
        faults: ClientFaults | None = None,
        stop: threading.Event | None = None,
        key_pair: CurveKeyPair | None = None,
        server_keys: Sequence[bytes] | None = None,
    ):
        if not servers:
            raise ValueError("a KV client needs at least one server address")
        if (key_pair is None) != (server_keys is None):
            raise ValueError("a keyed client needs both key_pair and server_keys")
        if server_keys is not None and len(server_keys) != len(servers):
            raise ValueError(f"{len(server_keys)} server_keys for {len(servers)} servers")
        self.key_pair = key_pair
        self.server_keys = list(server_keys) if server_keys is not None else None
        self.servers = list(servers)
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.faults = faults
        self.stop = stop
        self._rng = random.Random(faults.seed if faults else None)
        self._seq = 0
        self._leader = 0
        self._reachable: list[int] = list(range(len(servers)))
        self._rpc: dict[int, RpcClient] = {}

    def set_reachable(self, servers: Sequence[int]) -> None:
        """Test-only: limit the client to these servers (a partition cutting it off). May be
        called from another thread while a call is in progress; the call adapts."""
        self._reachable = list(servers)

    def get(self, key: str) -> str:
        reply = self._call({"op": "get", "key": key}, is_write=False)
        return str(reply["value"])

    def put(self, key: str, value: str) -> None:
        self._write("put", key, value)

    def append(self, key: str, value: str) -> None:
        self._write("append", key, value)

    def status(self, server: int, timeout: float = 2.0) -> dict[str, Any]:
        """One server's status (role, term, indexes); raises TimeoutError if it is silent."""
        return self._client(server).call("status", timeout=timeout)

    def close(self) -> None:
        for rpc in self._rpc.values():
            rpc.close()
        self._rpc.clear()

    def __enter__(self) -> "KVClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------- internals

    def _write(self, op: str, key: str, value: str) -> None:
        self._seq += 1
        self._call({"op": op, "key": key, "value": value, "client_id": self.client_id,
                    "seq": self._seq}, is_write=True)

    def _client(self, server: int) -> RpcClient:
        rpc = self._rpc.get(server)
        if rpc is None:
            rpc = self._rpc[server] = RpcClient(
                self.servers[server], curve=self.key_pair,
                server_key=self.server_keys[server] if self.server_keys is not None else None)
        return rpc

    def _call(self, request: dict[str, Any], is_write: bool) -> dict[str, Any]:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        maybe_applied = False
        tried_in_round = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            stopped = self.stop is not None and self.stop.is_set()
            if stopped or (remaining is not None and remaining <= 0):
                why = "stopped" if stopped else "no answer in time"
                if is_write and maybe_applied:
                    raise IndefiniteError(f"{request['op']} {request['key']!r}: {why}; "
                                          "it may or may not have been applied")
                raise NoLeaderError(f"{request['op']} {request['key']!r}: {why}; nothing was done")
            reachable = self._reachable
            if not reachable:
                time.sleep(min(0.05, remaining or 0.05))
                continue
            if self._leader not in reachable:
                self._leader = reachable[0]
            server = self._leader
            attempt = self.attempt_timeout if remaining is None else min(self.attempt_timeout, remaining)
            try:
                reply = self._attempt(server, request, attempt)
            except TimeoutError:
                maybe_applied = True  # the server may have run it
                self._next_server(server)
                continue
            except RpcError as exc:
                if exc.kind in ("bad_request", "too_large", "malformed"):
                    raise BadRequestError(exc.message) from exc
                # Not the leader, or ("unavailable") stopping or out of disk space: nothing
                # was done, so try the hinted leader or the next peer.
                hint = None
                if exc.kind in ("wrong_leader", "unavailable"):
                    hint = self._hint(exc)
                if hint is not None and hint in reachable and hint != server:
                    self._leader = hint
                else:
                    self._next_server(server)
                    tried_in_round += 1
                    if tried_in_round >= len(reachable):
                        tried_in_round = 0
                        time.sleep(0.02)  # nobody is leader yet: an election is under way
                continue
            return reply

    def _hint(self, exc: RpcError) -> int | None:
        hint = exc.fields.get("leader_hint")
        return hint if isinstance(hint, int) and 0 <= hint < len(self.servers) else None

    def _next_server(self, server: int) -> None:
        reachable = self._reachable  # one read: set_reachable may replace it meanwhile
        if not reachable:
            return
        position = reachable.index(server) if server in reachable else -1
        self._leader = reachable[(position + 1) % len(reachable)]

    def _attempt(self, server: int, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        faults = self.faults
        if faults and self._rng.random() < faults.drop_request:
            time.sleep(self._rng.uniform(0, min(0.1, timeout)))
            raise TimeoutError("request dropped (test fault)")
        rpc = self._client(server)
        fields = {k: v for k, v in request.items() if k != "op"}
        try:
            reply = rpc.call(request["op"], timeout=timeout, **fields)
        except RpcError:
            raise
        if faults and self._rng.random() < faults.drop_reply:
            raise TimeoutError("reply dropped (test fault)")
        return reply


class AsyncKVClient:
    """The asyncio face of `KVClient`: each call runs the synchronous client in a worker
    thread, so an event loop is never blocked. One outstanding call at a time per client
    (calls are serialised by a lock); use several clients for concurrency."""

    def __init__(self, servers: Sequence[str], **options: Any):
        self._client = KVClient(servers, **options)
        self._lock = asyncio.Lock()

    @property
    def client_id(self) -> str:
        return self._client.client_id

    async def get(self, key: str) -> str:
        async with self._lock:
            return await asyncio.to_thread(self._client.get, key)

    async def put(self, key: str, value: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._client.put, key, value)

    async def append(self, key: str, value: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._client.append, key, value)

    async def close(self) -> None:
        async with self._lock:
            self._client.close()
