"""Reading and writing history files.

Two line-oriented formats, one event per line, told apart by the first non-blank
line:

* JSON Lines (``{"process": ...``)::

      {"process": 3, "type": "invoke", "f": "cas", "key": "k", "value": [1, 2], "time": 1712}

  ``type`` is ``invoke``/``ok``/``fail``/``info``; ``time`` (integer nanoseconds) is
  optional, but must be on every event or on none.  A cas invokes with
  ``[from, to]`` and its ``ok`` carries ``[from, to, true|false]``.

* The EDN-like format of the golden fixtures (``{:process ...``)::

      {:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}

  A subset of EDN: maps, keywords, strings, integers, floats, ``nil``, ``true``,
  ``false``, vectors and lists.  Keyword values become strings (``:append`` is
  ``"append"``).

Without timestamps, event order is the time order.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from .history import Event, EventType, HistoryError, freeze

__all__ = ["dump_jsonl", "event_to_json", "load_history", "parse_edn_value", "parse_history"]

_JSON_START = re.compile(r'\{\s*"')
_EDN_START = re.compile(r"\{\s*:")
_TYPES = {t.value: t for t in EventType}


# --------------------------------------------------------------------------- EDN


class _EdnReader:
    """A recursive-descent reader for the EDN subset used by Jepsen-style histories."""

    _DELIMITERS = frozenset(" \t\r\n,{}[]()\"")
    _ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/"}
    _NUMBER = re.compile(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?N?M?")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> HistoryError:
        return HistoryError(f"{message} at column {self.pos + 1}")

    def skip_space(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and (text[pos] in " \t\r\n," or text[pos] == ";"):
            if text[pos] == ";":  # comment to end of line
                end = text.find("\n", pos)
                pos = len(text) if end < 0 else end
            else:
                pos += 1
        self.pos = pos

    def read_document(self) -> Any:
        value = self.read()
        self.skip_space()
        if self.pos != len(self.text):
            raise self.fail("unexpected text after the value")
        return value

    def read(self) -> Any:
        self.skip_space()
        if self.pos >= len(self.text):
            raise self.fail("unexpected end of line")
        char = self.text[self.pos]
        if char == "{":
            return self.read_map()
        if char in "[(":
            return self.read_sequence("]" if char == "[" else ")")
        if char == '"':
            return self.read_string()
        if char == ":":
            self.pos += 1
            name = self.read_token()
            if not name:
                raise self.fail("empty keyword")
            return name
        token = self.read_token()
        if not token:
            raise self.fail(f"unexpected {char!r}")
        if token == "nil":
            return None
        if token in ("true", "false"):
            return token == "true"
        if self._NUMBER.fullmatch(token):
            digits = token.rstrip("NM")
            return float(digits) if any(c in digits for c in ".eE") else int(digits)
        raise self.fail(f"unsupported value {token!r}")

    def read_token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in self._DELIMITERS:
            self.pos += 1
        return self.text[start : self.pos]

    def read_string(self) -> str:
        self.pos += 1  # opening quote
        out: list[str] = []
        text = self.text
        while True:
            if self.pos >= len(text):
                raise self.fail("unterminated string")
            char = text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == "\\":
                escape = text[self.pos + 1 : self.pos + 2]
                if escape == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[self.pos + 2 : self.pos + 6]):
                    out.append(chr(int(text[self.pos + 2 : self.pos + 6], 16)))
                    self.pos += 6
                    continue
                if escape not in self._ESCAPES:
                    raise self.fail(f"bad string escape \\{escape}")
                out.append(self._ESCAPES[escape])
                self.pos += 2
                continue
            out.append(char)
            self.pos += 1

    def read_sequence(self, close: str) -> list[Any]:
        self.pos += 1
        items: list[Any] = []
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.fail(f"missing {close!r}")
            if self.text[self.pos] == close:
                self.pos += 1
                return items
            items.append(self.read())

    def read_map(self) -> dict[Any, Any]:
        self.pos += 1
        result: dict[Any, Any] = {}
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.fail("missing '}'")
            if self.text[self.pos] == "}":
                self.pos += 1
                return result
            key = self.read()
            self.skip_space()
            if self.pos < len(self.text) and self.text[self.pos] == "}":
                raise self.fail(f"map key {key!r} has no value")
            result[freeze(key)] = self.read()


def parse_edn_value(text: str) -> Any:
    """Parse one EDN value (the subset described in the module docstring).

    Raises :class:`HistoryError` (with a column) on malformed input.
    """
    return _EdnReader(text).read_document()


# ------------------------------------------------------------------------ events


def _event_from_mapping(record: Any, line: int) -> Event:
    """Validate one decoded line (JSON object or EDN map) and build its :class:`Event`."""
    if not isinstance(record, dict):
        raise HistoryError("expected an object/map per line", line=line)
    if "process" not in record:
        raise HistoryError("event has no process", line=line)
    process = record["process"]
    if isinstance(process, (bool, float)) or not isinstance(process, (int, str)):
        raise HistoryError(f"process must be an integer or string, got {process!r}", line=line)
    kind = record.get("type")
    if kind not in _TYPES:
        raise HistoryError(f"type must be invoke, ok, fail or info, got {kind!r}", line=line)
    f = record.get("f")
    if f is not None and not isinstance(f, str):
        raise HistoryError(f"f must be a string, got {f!r}", line=line)
    if f is None and kind == "invoke":
        raise HistoryError("invoke event has no f", line=line)
    time = record.get("time")
    if time is not None:
        if isinstance(time, bool) or not isinstance(time, (int, float)) or not math.isfinite(time):
            raise HistoryError(f"time must be a number, got {time!r}", line=line)
        if isinstance(time, float):
            time = int(time) if time.is_integer() else time
    return Event(
        process=process,
        type=_TYPES[kind],
        f=f,
        key=freeze(record.get("key")),
        value=freeze(record.get("value")),
        time=time,
        line=line,
    )


def _decode_json(text: str, line: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise HistoryError(f"invalid JSON: {error.msg} at column {error.colno}", line=line) from None


def _decode_edn(text: str, line: int) -> Any:
    try:
        return parse_edn_value(text)
    except HistoryError as error:
        raise HistoryError(f"invalid EDN: {error.message}", line=line) from None


def parse_history(lines: Iterable[str]) -> list[Event]:
    """Parse history lines (JSON Lines or EDN-like, auto-detected) into events.

    Blank lines are skipped.  The format is decided by the first non-blank line and
    then required of every line.  Raises :class:`HistoryError` naming the 1-based
    line on any malformed line.  Pairing is not checked here; see
    :func:`~orchestrator.checker.history.events_to_operations`.
    """
    decode = None
    events: list[Event] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        if decode is None:
            if _JSON_START.match(text):
                decode = _decode_json
            elif _EDN_START.match(text):
                decode = _decode_edn
            else:
                raise HistoryError(
                    'unrecognized history format (expected a JSON object {"process": ...} '
                    "or an EDN map {:process ...})",
                    line=number,
                )
        events.append(_event_from_mapping(decode(text, number), number))
    return events


def load_history(path: str | Path) -> list[Event]:
    """Read a history file (see :func:`parse_history`).

    Raises :class:`HistoryError` naming the file and line for malformed content,
    and ``OSError`` if the file cannot be read.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            return parse_history(handle)
    except HistoryError as error:
        raise error.with_path(str(path)) from None
    except UnicodeDecodeError as error:
        raise HistoryError(f"not UTF-8 text ({error.reason})", path=str(path)) from None


# ----------------------------------------------------------------------- writing


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def event_to_json(event: Event) -> str:
    """One JSON Lines record for ``event`` (tuples become arrays; no ``time`` if unset)."""
    record: dict[str, Any] = {"process": event.process, "type": event.type.value}
    if event.f is not None:
        record["f"] = event.f
    record["key"] = _jsonable(event.key)
    record["value"] = _jsonable(event.value)
    if event.time is not None:
        record["time"] = event.time
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": "))


def dump_jsonl(events: Iterable[Event], handle: IO[str]) -> None:
    """Write ``events`` to ``handle`` as JSON Lines, readable by :func:`load_history`."""
    for event in events:
        handle.write(event_to_json(event))
        handle.write("\n")
