"""The test network model (TESTS.md §4, after the course's ``labrpc``), applied per message.

A `FaultInjector` exists only in a peer the orchestrator started in test mode; a production
peer's transport has none and delivers everything it can. The orchestrator sends the SAME rule
set to every peer (`apply`), so a sender and a receiver agree on which links are up.

Mapping labrpc's RPC model onto one-way messages
------------------------------------------------
labrpc carries request/reply pairs; Raft-over-ZeroMQ sends one-way messages and a "reply" is
just a message routed back. A *request* is a message whose kind is in `REQUEST_KINDS`
(RequestVote, AppendEntries, InstallSnapshot, TimeoutNow); every other kind is a *reply*.
Decisions are taken by the SENDER (`decide`) for each message, per DIRECTED link from→to:

* disabled link: the message is dropped. labrpc's ``long_delays`` only changes how long the
  *caller* waits before its RPC fails (0–7 s instead of 0–100 ms); with one-way messages
  nobody waits on an RPC, so a drop is the whole effect and ``long_delays`` is carried in
  the rule set only so that `snapshot()` reports what the orchestrator asked for.
* ``unreliable``: every request is delayed uniformly 0–27 ms, then 10 % of requests are
  dropped (the handler never runs) and 10 % of replies are dropped (the handler did run).
* ``long_reordering``: 2/3 of the replies that survive are delayed by
  ``200 + randrange(1 + randrange(2000))`` ms — 200–2199 ms, skewed towards the low end
  (the same formula as labrpc).

The RECEIVER re-checks the link when a message arrives (`accept`): a message that was
delayed (or sitting in a socket) when its link went down is dropped, like labrpc's check of
``enabled`` when a reply comes back.

Counters (`stats`), kept as labrpc keeps them:

* ``rpcs``: every request sent, including those dropped (per kind in ``rpcs_by_kind``);
* ``bytes``: the bytes of every request (dropped or not) plus the bytes of every reply that
  was delivered. A reply counted at `decide` time that is then lost anyway — refused by the
  socket (`record_lost`) or dropped by the receiver's `accept` — is subtracted again, by the
  sender or by the receiver respectively, so the cluster-wide SUM of ``bytes`` over all peers
  is exact (a single peer's figure may lag by the replies other peers refused).
* ``dropped``: drops by reason; ``delayed``: messages given a delay.

Threading: every method may be called from any thread (one lock guards rules, rng and
counters); the transport calls `decide`/`accept` from its event loop while the orchestrator's
control thread calls `apply`.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ruaft.core.types import REQUEST_KINDS, MessageKind, PeerId

__all__ = [
    "FaultInjector",
    "UNRELIABLE_MAX_REQUEST_DELAY_S",
    "UNRELIABLE_REQUEST_DROP",
    "UNRELIABLE_REPLY_DROP",
    "LONG_REORDER_FRACTION",
    "DROP_LINK_DISABLED",
    "DROP_UNRELIABLE_REQUEST",
    "DROP_UNRELIABLE_REPLY",
    "DROP_RECEIVE_LINK_DISABLED",
    "DROP_LOST",
    "DROP_DISABLED_WHILE_DELAYED",
]

UNRELIABLE_MAX_REQUEST_DELAY_S: Final = 0.027
UNRELIABLE_REQUEST_DROP: Final = 0.10
UNRELIABLE_REPLY_DROP: Final = 0.10
LONG_REORDER_FRACTION: Final = 2 / 3
LONG_REORDER_MIN_MS: Final = 200
LONG_REORDER_SPREAD_MS: Final = 2000

_REQUESTS: Final = frozenset(int(k) for k in REQUEST_KINDS)
_KIND_NAMES: Final = {int(k): k.name for k in MessageKind}

# Drop reasons (keys of stats()["dropped"]).
DROP_LINK_DISABLED: Final = "link_disabled"
DROP_UNRELIABLE_REQUEST: Final = "unreliable_request"
DROP_UNRELIABLE_REPLY: Final = "unreliable_reply"
DROP_RECEIVE_LINK_DISABLED: Final = "receive_link_disabled"
DROP_LOST: Final = "lost_after_decision"
DROP_DISABLED_WHILE_DELAYED: Final = "link_disabled_while_delayed"


class FaultInjector:
    """Per-directed-link drop/delay rules plus RPC and byte counters. See the module docstring.

    `seed` seeds the private `random.Random` (None: seeded from the OS); the same seed and the
    same sequence of calls give the same decisions. Initially every link is enabled and the
    network reliable; `disabled_links` may start some links down (a restarted peer must stay
    disconnected until the tester reconnects it).
    """

    def __init__(
        self,
        seed: int | None = None,
        *,
        disabled_links: Iterable[tuple[PeerId, PeerId]] = (),
        unreliable: bool = False,
        long_reordering: bool = False,
        long_delays: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._seed = seed
        self._disabled: set[tuple[int, int]] = {(int(a), int(b)) for a, b in disabled_links}
        self._unreliable = unreliable
        self._long_reordering = long_reordering
        self._long_delays = long_delays
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._rpcs = 0
        self._replies = 0
        self._bytes = 0
        self._rpcs_by_kind: dict[int, int] = {}
        self._replies_by_kind: dict[int, int] = {}
        self._dropped: dict[str, int] = {}
        self._delayed = 0

    # ------------------------------------------------------------------------------ rules

    def set_link(self, a: PeerId, b: PeerId, enabled: bool) -> None:
        """Enable or disable the directed link a→b."""
        with self._lock:
            if enabled:
                self._disabled.discard((a, b))
            else:
                self._disabled.add((a, b))

    def link_enabled(self, a: PeerId, b: PeerId) -> bool:
        with self._lock:
            return (a, b) not in self._disabled

    def set_peer_connected(self, peer: PeerId, others: Iterable[PeerId], connected: bool) -> None:
        """Enable/disable every link between `peer` and each of `others`, both directions
        (the harness's ``connect(i)`` / ``disconnect(i)``)."""
        with self._lock:
            for o in others:
                if o == peer:
                    continue
                for link in ((peer, o), (o, peer)):
                    if connected:
                        self._disabled.discard(link)
                    else:
                        self._disabled.add(link)

    def set_unreliable(self, on: bool) -> None:
        with self._lock:
            self._unreliable = bool(on)

    def set_long_reordering(self, on: bool) -> None:
        with self._lock:
            self._long_reordering = bool(on)

    def set_long_delays(self, on: bool) -> None:
        """Recorded only: see the module docstring (a disabled link simply drops)."""
        with self._lock:
            self._long_delays = bool(on)

    def snapshot(self) -> dict[str, Any]:
        """The rule set as a plain (msgpack/JSON-able) dict, the format `apply` takes."""
        with self._lock:
            return {
                "disabled_links": sorted([a, b] for a, b in self._disabled),
                "unreliable": self._unreliable,
                "long_reordering": self._long_reordering,
                "long_delays": self._long_delays,
                "seed": self._seed,
            }

    def apply(self, rules: Mapping[str, Any]) -> None:
        """Replace the WHOLE rule set with `rules` (the dict the orchestrator sends):
        ``{"disabled_links": [[a, b], ...], "unreliable": bool, "long_reordering": bool,
        "long_delays": bool, "seed": int | None}``. A missing key takes its default (no
        disabled links, flags False except ``long_delays`` True); ``seed`` None keeps the
        current random stream, an int reseeds it. Counters are kept.

        Raises ValueError (nothing changed) if `rules` is not of that shape.
        """
        unknown = set(rules) - {"disabled_links", "unreliable", "long_reordering",
                                "long_delays", "seed"}
        if unknown:
            raise ValueError(f"unknown fault rule(s): {sorted(unknown)}")
        links: set[tuple[int, int]] = set()
        for link in rules.get("disabled_links", ()) or ():
            if (
                not isinstance(link, (list, tuple))
                or len(link) != 2
                or not all(type(p) is int for p in link)
            ):
                raise ValueError(f"a disabled link is a pair of peer ids, got {link!r}")
            links.add((link[0], link[1]))
        flags = {}
        for name, default in (("unreliable", False), ("long_reordering", False),
                              ("long_delays", True)):
            value = rules.get(name, default)
            if type(value) is not bool:
                raise ValueError(f"{name} must be a bool, got {value!r}")
            flags[name] = value
        seed = rules.get("seed")
        if seed is not None and type(seed) is not int:
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        with self._lock:
            self._disabled = links
            self._unreliable = flags["unreliable"]
            self._long_reordering = flags["long_reordering"]
            self._long_delays = flags["long_delays"]
            if seed is not None:
                self._seed = seed
                self._rng.seed(seed)

    # ------------------------------------------------------------------------------ decisions

    def decide(
        self, kind: int, from_peer: PeerId, to_peer: PeerId, size: int = 0
    ) -> tuple[bool, float]:
        """Sender side: ``(deliver, delay_s)`` for one message of `kind` on link
        from_peer→to_peer, `size` bytes on the wire (for the byte counter). Counts it."""
        is_request = kind in _REQUESTS
        with self._lock:
            if is_request:
                self._rpcs += 1
                self._rpcs_by_kind[kind] = self._rpcs_by_kind.get(kind, 0) + 1
                self._bytes += size
            else:
                self._replies += 1
                self._replies_by_kind[kind] = self._replies_by_kind.get(kind, 0) + 1
            if (from_peer, to_peer) in self._disabled:
                return self._drop(DROP_LINK_DISABLED)
            rng = self._rng
            delay = 0.0
            if is_request:
                if self._unreliable:
                    # Delay drawn before the drop, as labrpc sleeps before it rolls the dice.
                    delay = rng.uniform(0.0, UNRELIABLE_MAX_REQUEST_DELAY_S)
                    if rng.random() < UNRELIABLE_REQUEST_DROP:
                        return self._drop(DROP_UNRELIABLE_REQUEST)
            else:
                if self._unreliable and rng.random() < UNRELIABLE_REPLY_DROP:
                    return self._drop(DROP_UNRELIABLE_REPLY)
                if self._long_reordering and rng.random() < LONG_REORDER_FRACTION:
                    delay = (
                        LONG_REORDER_MIN_MS
                        + rng.randrange(1 + rng.randrange(LONG_REORDER_SPREAD_MS))
                    ) / 1000.0
                self._bytes += size  # a delivered reply
            if delay > 0.0:
                self._delayed += 1
            return True, delay

    def _drop(self, reason: str) -> tuple[bool, float]:
        self._dropped[reason] = self._dropped.get(reason, 0) + 1
        return False, 0.0

    def accept(self, kind: int, from_peer: PeerId, to_peer: PeerId, size: int = 0) -> bool:
        """Receiver side: may a message that arrived on from_peer→to_peer be delivered? False
        (counted) when the link is disabled now; a refused reply's bytes are taken back."""
        with self._lock:
            if (from_peer, to_peer) not in self._disabled:
                return True
            self._dropped[DROP_RECEIVE_LINK_DISABLED] = (
                self._dropped.get(DROP_RECEIVE_LINK_DISABLED, 0) + 1
            )
            if kind not in _REQUESTS:
                self._bytes -= size
            return False

    def record_lost(self, kind: int, size: int = 0, reason: str = DROP_LOST) -> None:
        """The transport did not hand over a message `decide` let through (socket full, no
        connection, or — `reason` DROP_DISABLED_WHILE_DELAYED — its link went down while it
        was delayed): count it under `reason`, and take a reply's bytes back (it was not
        delivered)."""
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + 1
            if kind not in _REQUESTS:
                self._bytes -= size

    # ------------------------------------------------------------------------------ counters

    def stats(self) -> dict[str, Any]:
        """Counters as a plain dict (kind names as keys); see the module docstring."""
        with self._lock:
            return {
                "rpcs": self._rpcs,
                "replies": self._replies,
                "bytes": self._bytes,
                "rpcs_by_kind": {_KIND_NAMES.get(k, str(k)): n
                                 for k, n in sorted(self._rpcs_by_kind.items())},
                "replies_by_kind": {_KIND_NAMES.get(k, str(k)): n
                                    for k, n in sorted(self._replies_by_kind.items())},
                "dropped": dict(sorted(self._dropped.items())),
                "delayed": self._delayed,
            }

    def reset_stats(self) -> None:
        """Zero every counter (rules and random stream untouched)."""
        with self._lock:
            self._reset_counters()
