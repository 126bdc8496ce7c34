"""The Raft runtime: one event-loop thread owns the core; an apply thread feeds the application.

This is the original Ruaft's public face — create, `start`, `get_state`, `kill` — over the
pure core. Its threads replace the original's daemons:

* the **event loop** polls the transport, steps the core with every message that arrived
  (so one Ready covers them all: group commit), ticks it on the monotonic clock, persists
  each Ready in one durable storage write, and only then sends the Ready's messages;
* the **apply thread** hands committed commands and installed snapshots to
  `apply_command`, strictly in order; a slow application never stalls elections or
  replication;
* snapshot requests: when the persisted Raft state passes `RuntimeConfig.max_raft_state`,
  the apply thread calls `request_snapshot(applied_index)` after everything applied so far,
  and the application answers with `snapshot(index, data)`.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import msgpack

from ruaft import failpoints
from ruaft.core.raft import RaftCore
from ruaft.core.types import (
    AppendEntries, Config, Entry, InstallSnapshot, PeerId, Ready, Role, TimeoutNow,
)
from ruaft.logsetup import PeerLogger
from ruaft.storage.base import Storage, StorageFullError
from ruaft.transport import Transport


class RaftError(Exception):
    """Base of the runtime's errors."""


class NotLeaderError(RaftError):
    """This peer is not the leader (or lost leadership before the request completed)."""


class RaftStoppedError(RaftError):
    """The runtime was killed or died of an error; it takes no more requests."""


@dataclass(frozen=True, slots=True)
class CommandApplied:
    """A committed command, delivered to `apply_command` in log order. `command` is None for
    a leader's no-op entry."""

    index: int
    term: int
    command: Any


@dataclass(frozen=True, slots=True)
class SnapshotApplied:
    """A snapshot the application must restore its state from (at start-up, or installed from
    the leader). Commands after `index` follow."""

    index: int
    term: int
    data: bytes


ApplyMsg = Union[CommandApplied, SnapshotApplied]


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Runtime tuning in wall-clock terms: the tick, the heartbeat interval, the randomized
    election timeout range, and the snapshot threshold.

    The defaults — 150 ms heartbeats (at most ~7 per second per follower) and election
    timeouts drawn from [250, 450) ms in 10 ms steps — elect a leader well within a second
    and keep the range wide enough that two peers rarely time out together (paper §5.2).
    `core`, when given, is used as is (its tick counts then mean `tick_seconds` each).
    """

    tick_seconds: float = 0.01
    heartbeat_seconds: float = 0.15
    election_timeout_seconds: tuple[float, float] = (0.25, 0.45)
    core: Config | None = None
    max_raft_state: int | None = None
    """Ask the application for a snapshot once `raft_state_size()` exceeds this (bytes)."""
    seed: int | None = None
    """Seeds the election-timeout randomness (None: from the OS)."""

    def core_config(self) -> Config:
        """The core's config, in ticks of `tick_seconds`."""
        if self.core is not None:
            return self.core
        low, high = self.election_timeout_seconds
        if not 0 < self.tick_seconds <= self.heartbeat_seconds < low < high:
            raise ValueError("need 0 < tick <= heartbeat < election timeout low < high")
        return Config(
            heartbeat_ticks=max(1, round(self.heartbeat_seconds / self.tick_seconds)),
            election_ticks=round(low / self.tick_seconds),
            election_jitter_ticks=max(1, round((high - low) / self.tick_seconds)),
        )


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """A consistent snapshot of one peer's Raft state, for status pages and tests."""

    me: PeerId
    term: int
    role: Role
    leader_id: PeerId
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    state_bytes: int
    snapshot_bytes: int
    dropped: dict[str, int]


def encode_command(command: Any) -> bytes:
    """Commands travel and persist as msgpack; raises TypeError if not serialisable."""
    try:
        return msgpack.packb(command, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"command is not msgpack-serialisable: {exc}") from exc


def decode_command(data: bytes) -> Any:
    """Inverse of `encode_command`; the no-op entry (empty data) decodes to None."""
    if not data:
        return None
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


STORAGE_RETRY_SECONDS = 0.5
"""How often a peer whose disk is full retries its pending write."""

_LEADER_REPLICATION = (AppendEntries, InstallSnapshot)

_STOP = object()
_SNAPSHOT_REQUEST = object()


class Raft:
    """One Raft peer. Thread-safe; see the module docstring for its threads.

    Ownership: the runtime takes `storage` and `transport` and closes both in `kill()`.
    `apply_command` and `request_snapshot` run on the apply thread, never concurrently with
    each other; they may call `start`, `snapshot`, `get_state` (but must not call `kill`
    and wait for it).
    """

    def __init__(
        self,
        peers: Sequence[PeerId],
        me: PeerId,
        storage: Storage,
        apply_command: Callable[[ApplyMsg], None],
        request_snapshot: Callable[[int], None] | None = None,
        config: RuntimeConfig | None = None,
        *,
        transport: Transport,
        logger: logging.Logger | None = None,
    ):
        self.config = config or RuntimeConfig()
        self.me = me
        self._storage = storage
        self._transport = transport
        self._apply_command = apply_command
        self._request_snapshot = request_snapshot
        self._log = PeerLogger(logger or logging.getLogger("ruaft"), self._log_context)
        rng = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self._core = RaftCore(
            me, peers, rng=rng, initial=storage.initial_state(), config=self.config.core_config()
        )
        initial_hard_state = storage.hard_state()
        self._durable_term_vote = (initial_hard_state.term, initial_hard_state.vote)
        self._state_bytes = storage.raft_state_size()
        self._snapshot_bytes = storage.snapshot_size()
        self._last_role = self._core.role
        self._last_term = self._core.term

        self.storage_problem: str | None = None
        """Set while the disk is full and writes wait for space (see `_save`)."""
        self._stopping = threading.Event()
        self._errors: list[BaseException] = []
        self._reads: dict[int, concurrent.futures.Future[int]] = {}
        self._read_ids = itertools.count(1)
        self._snapshot_requested = False
        self._apply_queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._applied_index = 0
        self._apply_cond = threading.Condition()

        self._loop_thread = threading.Thread(
            target=self._guard, args=(self._run_loop,), name=f"raft-{me}-loop", daemon=True
        )
        self._apply_thread = threading.Thread(
            target=self._guard, args=(self._run_apply,), name=f"raft-{me}-apply", daemon=True
        )
        self._log.info("starting with %d peers, last index %d, commit %d, snapshot %d",
                       len(peers), self._core.last_index, self._core.commit_index,
                       self._core.snapshot_index)
        self._apply_thread.start()
        self._loop_thread.start()

    # ================================================================ public API

    def start(self, command: Any) -> tuple[int, int] | None:
        """Propose `command` (any msgpack-serialisable value) for the log.

        Returns (index, term) where it will be committed if this peer stays leader, or None
        if this peer is not the leader. There is no promise it commits: watch `apply_command`
        for `index` and compare the term. Raises TypeError for an unserialisable command and
        RaftStoppedError after `kill()`.
        """
        data = encode_command(command)
        with self._lock:
            self._check_running()
            result = self._core.propose(data)
        if result is not None:
            self._transport.wakeup()
        return result

    def start_many(self, commands: Sequence[Any]) -> tuple[int, int] | None:
        """Propose several commands as one batch at consecutive indexes; returns the (index,
        term) of the first, or None if not leader."""
        datas = [encode_command(c) for c in commands]
        with self._lock:
            self._check_running()
            first = self._core.propose_many(datas)
            term = self._core.term
        if first is None:
            return None
        self._transport.wakeup()
        return first, term

    def get_state(self) -> tuple[int, bool]:
        """(current term, whether this peer believes it is the leader)."""
        with self._lock:
            return self._core.term, self._core.role is Role.LEADER

    def status(self) -> RaftStatus:
        with self._lock:
            core = self._core
            return RaftStatus(
                me=self.me, term=core.term, role=core.role, leader_id=core.leader_id,
                commit_index=core.commit_index, applied_index=self._applied_index,
                last_index=core.last_index, snapshot_index=core.snapshot_index,
                state_bytes=self._state_bytes, snapshot_bytes=self._snapshot_bytes,
                dropped=dict(core.dropped),
            )

    def snapshot(self, index: int, data: bytes) -> None:
        """The application's snapshot of its state through applied index `index`.

        Raft discards the log up to `index` and persists `data` as its snapshot (paper §7).
        Must be called only for an index already delivered to `apply_command`; a snapshot at
        or below the current one is ignored.
        """
        with self._lock:
            self._check_running()
            self._snapshot_requested = False
            if index > self._core.applied_index:
                raise ValueError(f"snapshot at {index} beyond applied {self._core.applied_index}")
            self._core.compact(index, data)
        self._transport.wakeup()

    def request_read(self) -> concurrent.futures.Future[int]:
        """Ask for a linearizable read point (ReadIndex, thesis §6.4).

        The future resolves to an index: once the application has applied it, a read of its
        state is linearizable. It fails with NotLeaderError if this peer is not (or stops
        being) the leader, RaftStoppedError on kill.
        """
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        with self._lock:
            self._check_running()
            context = next(self._read_ids)
            if not self._core.read_index(context):
                future.set_exception(NotLeaderError(f"peer {self.me} is not the leader"))
                return future
            self._reads[context] = future
        self._transport.wakeup()
        return future

    def read_index(self, timeout: float | None = None) -> int:
        """Blocking `request_read`; raises TimeoutError after `timeout` seconds."""
        return self.request_read().result(timeout)

    async def read_index_async(self) -> int:
        """`request_read` for asyncio code."""
        import asyncio  # here, not at the top: importing asyncio is ~0.1 s of a peer's start-up

        return await asyncio.wrap_future(self.request_read())

    def wait_applied(self, index: int, timeout: float | None = None) -> bool:
        """Block until `apply_command` has returned for `index` (or a later one)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._apply_cond:
            while self._applied_index < index and not self._stopping.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._apply_cond.wait(remaining)
            return self._applied_index >= index

    @property
    def error(self) -> BaseException | None:
        """The first error that stopped this peer, if any (kill() re-raises it)."""
        return self._errors[0] if self._errors else None

    def transfer_leadership(self, target: PeerId) -> bool:
        """Ask the leader to hand leadership to `target` (thesis §3.10)."""
        with self._lock:
            self._check_running()
            ok = self._core.transfer_leadership(target)
        self._transport.wakeup()
        return ok

    def hand_off_leadership(self, timeout: float = 3.0) -> bool:
        """Before a graceful stop: if this peer leads, transfer leadership to the follower with
        the most of the log (thesis §3.10) and wait until this peer no longer leads, so clients
        see no election timeout. Returns True when this peer does not lead on return."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._check_running()
            core = self._core
            if core.role is not Role.LEADER:
                return True
            followers = [p for p in core.peers if p != self.me]
            if not followers:
                return False
            target = max(followers, key=core.match_index)
            core.transfer_leadership(target)
        self._transport.wakeup()
        self._log.info("handing leadership to peer %d", target)
        while time.monotonic() < deadline:
            if not self.get_state()[1]:
                return True
            time.sleep(0.005)
        return False

    def kill(self) -> None:
        """Stop every thread, wait for them, close transport and storage; then re-raise the
        first error recorded inside (invariant violation, storage failure, callback
        exception), as the original's kill() panics. Idempotent."""
        self._stopping.set()
        self._transport.wakeup()
        self._apply_queue.put(_STOP)
        current = threading.current_thread()
        for thread in (self._loop_thread, self._apply_thread):
            if thread is not current and thread.is_alive():
                thread.join()
        with self._apply_cond:
            self._apply_cond.notify_all()
        with self._lock:
            reads, self._reads = self._reads, {}
        for future in reads.values():
            if not future.done():
                future.set_exception(RaftStoppedError("raft was killed"))
        self._transport.close()
        self._storage.close()
        if self._errors:
            error = self._errors[0]
            for extra in self._errors[1:]:
                error.add_note(f"also: {extra!r}")
            raise error

    # ================================================================ threads

    def _check_running(self) -> None:
        if self._stopping.is_set():
            raise RaftStoppedError(f"peer {self.me} is stopped") from self.error

    def _log_context(self) -> str:
        core = self._core
        return f"peer={self.me} term={core.term} role={core.role.value}"

    def _guard(self, body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as exc:  # recorded for kill(); the peer stops
            self._log.exception("stopping on error: %r", exc)
            self._errors.append(exc)
            self._stopping.set()
            self._apply_queue.put(_STOP)
            self._transport.wakeup()
            with self._apply_cond:
                self._apply_cond.notify_all()

    def _run_loop(self) -> None:
        tick_seconds = self.config.tick_seconds
        next_tick = time.monotonic() + tick_seconds
        while not self._stopping.is_set():
            timeout = max(0.0, next_tick - time.monotonic())
            with self._lock:
                pending = self._core.has_ready()
            messages = self._transport.poll(0.0 if pending else timeout)
            with self._lock:
                for message in messages:
                    if failpoints.armed: failpoints.maybe_trigger_on_message(message)
                    self._core.step(message)
                if time.monotonic() >= next_tick:
                    self._core.tick()
                    next_tick = time.monotonic() + tick_seconds
                rd = self._core.ready() if self._core.has_ready() else None
                self._note_role_change()
            if rd is not None:
                self._handle_ready(rd)

    def _handle_ready(self, rd: Ready) -> None:
        # Persist before sending: the Ready contract (ruaft.core.types.Ready), with its one
        # exception: a leader's replication messages go out while its own write runs.
        messages = rd.messages
        if rd.must_persist():
            if self._term_and_vote_durable(rd):
                early = [m for m in messages if isinstance(m, _LEADER_REPLICATION)]
                if early:
                    self._transport.send(early)
                    messages = tuple(m for m in messages if not isinstance(m, _LEADER_REPLICATION))
            if failpoints.armed: failpoints.maybe_trigger_on_save("before", rd)
            if not self._save(rd):
                return  # stopped while waiting for disk space: nothing more may be sent
            if failpoints.armed: failpoints.maybe_trigger_on_save("after", rd)
            if rd.hard_state is not None:
                self._durable_term_vote = (rd.hard_state.term, rd.hard_state.vote)
            self._state_bytes = self._storage.raft_state_size()
            if rd.snapshot is not None:
                self._snapshot_bytes = self._storage.snapshot_size()
        if messages:
            self._transport.send(messages)
        if rd.apply_snapshot is not None:
            s = rd.apply_snapshot
            self._apply_queue.put(SnapshotApplied(s.index, s.term, s.data))
        if rd.committed_entries:
            # One hand-off per Ready, not per entry; decoded on the apply thread, off the loop.
            self._apply_queue.put(rd.committed_entries)
        with self._lock:
            self._core.advance(rd)
            confirmed = [(self._reads.pop(r.context, None), r.index) for r in rd.read_states]
            failed = [self._reads.pop(context, None) for context in rd.failed_reads]
            self._maybe_request_snapshot()
        # Futures are resolved outside the lock: their callbacks are the application's code
        # and may take the application's locks (which in turn call into this object).
        for future, index in confirmed:
            if future is not None and not future.done():
                future.set_result(index)
        for future in failed:
            if future is not None and not future.done():
                future.set_exception(NotLeaderError(f"peer {self.me} lost leadership"))

    def _term_and_vote_durable(self, rd: Ready) -> bool:
        """Whether this Ready leaves term and vote as they already are on disk. Then a
        leader's AppendEntries and InstallSnapshot depend on nothing the write adds: they
        carry the leader's log, which each follower persists before acknowledging, and the
        leader counts its own copy only after `advance` (thesis §10.2.1)."""
        hard = rd.hard_state
        return hard is None or (hard.term, hard.vote) == self._durable_term_vote

    def _save(self, rd: Ready) -> bool:
        """Persist `rd`; while the disk is full, keep retrying (nothing was written, and
        nothing that depends on the write is sent), so the peer pauses instead of dying and
        resumes by itself when space returns. Other storage errors stop the peer. Returns
        False if the runtime was stopped before the write succeeded."""
        while True:
            try:
                self._storage.save(rd.hard_state, rd.entries, rd.snapshot)
            except StorageFullError as exc:
                first = self.storage_problem is None
                self.storage_problem = str(exc)
                if first:
                    self._log.error("cannot persist, pausing until space returns: %s", exc)
                    self._maybe_hand_off_stalled_leadership()
                if self._stopping.wait(STORAGE_RETRY_SECONDS):
                    return False
                continue
            if self.storage_problem is not None:
                self._log.info("storage writable again; resuming")
                self.storage_problem = None
            return True

    def _maybe_hand_off_stalled_leadership(self) -> None:
        """Called on the event loop when a leader's write first finds the disk full. While it
        waits for space the loop sends no heartbeats, so the cluster would otherwise wait an
        election timeout for a new leader. Instead, ask the follower with the most of the log
        to campaign now (TimeoutNow, thesis §3.10), and stop taking proposals (the core's
        transfer state). TimeoutNow only starts an election early, which is always safe: the
        vote rules decide who wins. It goes out directly because the pending Ready cannot be
        finished; a follower that lacks entries simply loses that election, and the usual
        timeout follows."""
        with self._lock:
            core = self._core
            if core.role is not Role.LEADER or self._durable_term_vote[0] != core.term:
                return
            followers = [p for p in core.peers if p != self.me]
            if not followers:
                return
            target = max(followers, key=core.match_index)
            core.transfer_leadership(target)
            message = TimeoutNow(self.me, target, core.term)
        self._log.warning("disk full: asking peer %d to take over leadership", target)
        self._transport.send([message])

    def _maybe_request_snapshot(self) -> None:
        limit = self.config.max_raft_state
        if (
            limit is not None
            and self._request_snapshot is not None
            and not self._snapshot_requested
            and self._state_bytes > limit
        ):
            self._snapshot_requested = True
            # Queued behind the commands applied so far, so the application snapshots a
            # state that includes them.
            self._apply_queue.put(_SNAPSHOT_REQUEST)

    def _note_role_change(self) -> None:
        core = self._core
        if core.role is not self._last_role or core.term != self._last_term:
            self._log.info("now %s in term %d (leader %d)", core.role.value, core.term,
                           core.leader_id)
            self._last_role, self._last_term = core.role, core.term

    def _run_apply(self) -> None:
        while True:
            item = self._apply_queue.get()
            if item is _STOP or self._stopping.is_set():
                return
            if isinstance(item, tuple):  # a Ready's committed entries
                if not self._apply_entries(item):
                    return
                continue
            if item is _SNAPSHOT_REQUEST:
                assert self._request_snapshot is not None
                self._request_snapshot(self._applied_index)
                continue
            assert isinstance(item, SnapshotApplied)
            self._apply_command(item)
            with self._apply_cond:
                self._applied_index = item.index
                self._apply_cond.notify_all()

    def _apply_entries(self, entries: Sequence[Entry]) -> bool:
        """Deliver committed entries in order; waiters are woken once for the lot. Returns
        False if the runtime stopped meanwhile (the rest are not delivered)."""
        apply_command = self._apply_command
        try:
            for entry in entries:
                if self._stopping.is_set():
                    return False
                apply_command(CommandApplied(entry.index, entry.term, decode_command(entry.data)))
                # A plain store: readers see it at once (`status`), waiters when notified.
                self._applied_index = entry.index
        finally:
            with self._apply_cond:
                self._apply_cond.notify_all()
        return True
