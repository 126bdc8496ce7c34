"""A thread-safe history recorder for test clients.

Usage from a client thread::

    recorder.invoke(process, "put", key, value)
    try:
        reply = client.put(key, value)
    except Timeout:
        recorder.info(process)          # may or may not have happened
    except Rejected:
        recorder.fail(process)          # definitely did not happen
    else:
        recorder.ok(process, reply)

Timestamps come from :func:`time.monotonic_ns`, taken under the recorder's lock so
that event order and time order agree.  ``write_jsonl`` produces a file the CLI
(``python -m orchestrator.checker``) reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from .check import CheckResult, check_events
from .formats import dump_jsonl
from .history import Event, EventType, Operation, events_to_operations, freeze
from .models import Model

__all__ = ["HistoryRecorder"]


class HistoryRecorder:
    """Records invoke/ok/fail/info events from many threads.

    Contract: a process has at most one open operation; :meth:`invoke` raises
    ``ValueError`` if it already has one, and the completion methods raise
    ``ValueError`` if it has none.  Completions take ``f`` and ``key`` from the open
    invocation.  Values are stored frozen (lists become tuples).
    """

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns) -> None:
        """``clock`` returns integer nanoseconds; it must never go backwards."""
        self._clock = clock
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._open: dict[Hashable, Event] = {}

    def invoke(self, process: Hashable, f: str, key: Hashable = None, value: Any = None) -> Event:
        """Record that ``process`` sends request ``f(key, value)``; returns the event."""
        with self._lock:
            if process in self._open:
                raise ValueError(f"process {process!r} already has an open {self._open[process].f}")
            event = Event(process, EventType.INVOKE, f, freeze(key), freeze(value), self._clock())
            self._open[process] = event
            self._events.append(event)
            return event

    def _complete(self, process: Hashable, kind: EventType, value: Any) -> Event:
        with self._lock:
            invoke = self._open.pop(process, None)
            if invoke is None:
                raise ValueError(f"process {process!r} has no open operation to mark {kind.value}")
            event = Event(process, kind, invoke.f, invoke.key, freeze(value), self._clock())
            self._events.append(event)
            return event

    def ok(self, process: Hashable, value: Any = None) -> Event:
        """The open operation of ``process`` completed with output ``value``.

        For a get/read, ``value`` is what was read; for a cas, ``[from, to, success]``.
        """
        return self._complete(process, EventType.OK, value)

    def fail(self, process: Hashable, value: Any = None) -> Event:
        """The open operation of ``process`` definitely did not take effect."""
        return self._complete(process, EventType.FAIL, value)

    def info(self, process: Hashable, value: Any = None) -> Event:
        """The fate of the open operation of ``process`` is unknown (e.g. a timeout)."""
        return self._complete(process, EventType.INFO, value)

    def open_processes(self) -> list[Hashable]:
        """Processes with an operation still in flight."""
        with self._lock:
            return list(self._open)

    def events(self) -> list[Event]:
        """A snapshot of all events recorded so far, in order."""
        with self._lock:
            return list(self._events)

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def operations(self) -> list[Operation]:
        """The recorded events paired into operations (open ones are indefinite)."""
        return events_to_operations(self.events())

    def check(self, model: Model, timeout: float | None = None) -> CheckResult:
        """Check the history recorded so far against ``model``."""
        return check_events(model, self.events(), timeout)

    def write_jsonl(self, path: str | Path) -> None:
        """Write the history recorded so far as JSON Lines to ``path``."""
        events = self.events()
        with Path(path).open("w", encoding="utf-8") as handle:
            dump_jsonl(events, handle)
