"""History value types: recorded events, paired operations, and the pairing rules.

A *history* is what test clients record: a sequence of Jepsen-style :class:`Event`
records (``invoke`` when a request is sent, then ``ok``, ``fail`` or ``info`` when its
fate is known).  The checker works on :class:`Operation` values instead, one per
request, with a call time and a return time -- the shape Porcupine's ``Operation``
has.  :func:`events_to_operations` converts the former into the latter:

* ``ok``   -- a definite completion: the operation happened and its output is known.
* ``fail`` -- a definite non-completion: the operation did not happen, so it is
  dropped from the history entirely.
* ``info`` -- an indefinite completion (a timeout, a crashed connection): the
  operation may or may not have taken effect.  Like an ``invoke`` with no
  completion at all, it "returns at infinity": its return time is ``+inf`` and its
  output is not checked (models receive :data:`UNKNOWN_OUTPUT`).  This is how
  Porcupine's own Jepsen/etcd tests treat timed-out operations.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "UNKNOWN_OUTPUT",
    "Event",
    "EventType",
    "HistoryError",
    "OpInput",
    "Operation",
    "Time",
    "events_to_operations",
    "freeze",
]

#: Call and return times: integers (nanoseconds or event positions), or ``math.inf``
#: for the return of an indefinite operation.
Time = int | float


class _UnknownOutput(enum.Enum):
    """Type of :data:`UNKNOWN_OUTPUT` (an Enum so it pickles as a singleton)."""

    UNKNOWN = "unknown"

    def __repr__(self) -> str:
        return "UNKNOWN_OUTPUT"


#: The output a model's ``step`` receives for an indefinite operation.  A model must
#: accept *any* output for it (only the state transition matters).  A sentinel, not
#: ``None``, because ``None`` is a meaningful output (a read of a missing key).
UNKNOWN_OUTPUT = _UnknownOutput.UNKNOWN


class HistoryError(ValueError):
    """A history that cannot be parsed or paired, optionally located in a file.

    ``str(error)`` is a single line: ``path:line: message`` when the location is known.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        location = ""
        if self.path is not None:
            location = f"{self.path}:"
            if self.line is not None:
                location += f"{self.line}:"
        elif self.line is not None:
            location = f"line {self.line}:"
        return f"{location} {self.message}" if location else self.message

    def with_path(self, path: str) -> HistoryError:
        """Return a copy of this error that names ``path``."""
        return HistoryError(self.message, path=path, line=self.line)


class EventType(enum.Enum):
    """The kind of a history event, as in Jepsen histories."""

    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


def freeze(value: Any) -> Any:
    """Return ``value`` with lists turned into tuples (recursively), so it is hashable.

    JSON and EDN vectors become tuples; dicts become tuples of sorted ``(key, value)``
    pairs.  Scalars are returned unchanged.
    """
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    return value


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded history event.

    ``f`` and ``key`` may be ``None`` on a completion event; they are then taken from
    the process's open invocation.  ``time`` is a monotonic timestamp in nanoseconds,
    or ``None`` when the history has no timestamps (event order is then used).
    ``line`` is the 1-based source line when the event was parsed from a file.
    """

    process: Hashable
    type: EventType
    f: str | None
    key: Hashable = None
    value: Any = None
    time: Time | None = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class OpInput:
    """The model-facing input of an operation: function name, key and argument."""

    f: str
    key: Hashable
    value: Any = None


@dataclass(frozen=True, slots=True)
class Operation:
    """A single client request with its real-time interval (Porcupine's ``Operation``).

    Contract:

    * ``call <= return_time``.
    * ``unknown=True`` marks an indefinite operation: the checker treats its return
      time as ``+inf`` and passes :data:`UNKNOWN_OUTPUT` to the model instead of
      ``output``, whatever the two fields hold.
    * ``metadata`` is opaque caller data carried through the check untouched;
      :func:`events_to_operations` stores the invoke event's source line there.
    """

    client_id: Hashable
    input: Any
    call: Time
    output: Any
    return_time: Time
    unknown: bool = False
    metadata: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.return_time < self.call:
            raise ValueError(
                f"operation returns at {self.return_time} before its call at {self.call}"
            )

    @property
    def effective_return(self) -> Time:
        """The return time the checker uses: ``+inf`` for indefinite operations."""
        return math.inf if self.unknown else self.return_time


def _event_times(events: Sequence[Event]) -> list[Time]:
    """Times to order ``events`` by: their timestamps if all have one, else positions."""
    stamped = [e.time is not None for e in events]
    if all(stamped):
        return [e.time for e in events]  # type: ignore[misc]
    if any(stamped):
        first = next(e for e in events if e.time is None)
        raise HistoryError(
            "event has no time, but other events do (give every event a time, or none)",
            line=first.line,
        )
    return list(range(len(events)))


def events_to_operations(events: Iterable[Event]) -> list[Operation]:
    """Pair invocations with their completions, Jepsen style.

    Contract: each process has at most one open invocation; a completion closes it
    and must name the same ``f``/``key`` if it names any.  ``ok`` yields a definite
    operation, ``fail`` drops the invocation, ``info`` and a missing completion yield
    an indefinite operation (``unknown=True``, ``return_time=inf``, ``output=None``).
    Times are the events' ``time`` fields when every event has one, else positions
    in ``events``.  Operations come back in invocation order, with values frozen
    (lists become tuples).

    Raises :class:`HistoryError` (with the offending event's line, when known) on a
    completion without an invocation, a second invocation by a busy process, a
    mismatched completion, or a completion timestamped before its invocation.
    """
    events = list(events)
    times = _event_times(events)
    slots: list[Operation | None] = []
    open_calls: dict[Hashable, tuple[int, Event, Time]] = {}

    for event, time in zip(events, times):
        if event.type is EventType.INVOKE:
            if event.f is None:
                raise HistoryError("invoke event has no f", line=event.line)
            if event.process in open_calls:
                _, pending, _ = open_calls[event.process]
                where = f" (line {pending.line})" if pending.line is not None else ""
                raise HistoryError(
                    f"process {event.process!r} invokes again while its {pending.f} "
                    f"invoked earlier{where} is still open",
                    line=event.line,
                )
            open_calls[event.process] = (len(slots), event, time)
            slots.append(None)
            continue

        if event.process not in open_calls:
            raise HistoryError(
                f"{event.type.value} event for process {event.process!r}, "
                "which has no open invocation",
                line=event.line,
            )
        slot, invoke, call = open_calls.pop(event.process)
        if event.f is not None and event.f != invoke.f:
            raise HistoryError(
                f"completion f {event.f!r} does not match the invocation's {invoke.f!r}",
                line=event.line,
            )
        if event.key is not None and event.key != invoke.key:
            raise HistoryError(
                f"completion key {event.key!r} does not match the invocation's {invoke.key!r}",
                line=event.line,
            )
        if time < call:
            raise HistoryError(
                f"completion at time {time} precedes its invocation at {call}",
                line=event.line,
            )
        op_input = OpInput(invoke.f, freeze(invoke.key), freeze(invoke.value))  # type: ignore[arg-type]
        if event.type is EventType.OK:
            slots[slot] = Operation(
                invoke.process, op_input, call, freeze(event.value), time, False, invoke.line
            )
        elif event.type is EventType.INFO:
            slots[slot] = Operation(invoke.process, op_input, call, None, math.inf, True, invoke.line)
        # EventType.FAIL: the operation definitely did not happen; its slot stays empty.

    # Invocations that never completed are indefinite, exactly like ``info``.
    for slot, invoke, call in open_calls.values():
        op_input = OpInput(invoke.f, freeze(invoke.key), freeze(invoke.value))  # type: ignore[arg-type]
        slots[slot] = Operation(invoke.process, op_input, call, None, math.inf, True, invoke.line)

    return [op for op in slots if op is not None]
