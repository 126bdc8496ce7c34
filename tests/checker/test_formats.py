"""History files: JSON Lines and EDN parsing, pairing rules, and round trips."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from orchestrator.checker import (
    Event,
    EventType,
    HistoryError,
    OpInput,
    dump_jsonl,
    events_to_operations,
    load_history,
    parse_edn_value,
    parse_history,
)

JSONL_CAS = """
{"process": 0, "type": "invoke", "f": "write", "key": "r", "value": 1, "time": 100}
{"process": 0, "type": "ok", "f": "write", "key": "r", "value": 1, "time": 150}
{"process": 1, "type": "invoke", "f": "cas", "key": "r", "value": [1, 2], "time": 160}
{"process": 2, "type": "invoke", "f": "read", "key": "r", "value": null, "time": 170}
{"process": 1, "type": "ok", "f": "cas", "key": "r", "value": [1, 2, true], "time": 180}
{"process": 2, "type": "info", "f": "read", "key": "r", "value": null, "time": 190}
{"process": 3, "type": "invoke", "f": "write", "key": "r", "value": 9, "time": 200}
{"process": 3, "type": "fail", "f": "write", "key": "r", "value": 9, "time": 210}
{"process": 4, "type": "invoke", "f": "cas", "key": "r", "value": [2, 3], "time": 220}
"""


def test_jsonl_with_cas_info_fail_and_missing_return() -> None:
    events = parse_history(JSONL_CAS.splitlines())
    assert [e.line for e in events] == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert events[2] == Event(1, EventType.INVOKE, "cas", "r", (1, 2), 160)
    assert events[4].value == (1, 2, True)

    ops = events_to_operations(events)
    # The failed write is gone; invocation order is kept.
    assert [(o.client_id, o.input.f) for o in ops] == [(0, "write"), (1, "cas"), (2, "read"), (4, "cas")]
    write, cas, read, open_cas = ops
    assert (write.call, write.return_time, write.unknown) == (100, 150, False)
    assert cas.input == OpInput("cas", "r", (1, 2)) and cas.output == (1, 2, True)
    assert read.unknown and read.return_time == math.inf and read.output is None  # info
    assert open_cas.unknown and open_cas.return_time == math.inf  # no completion at all
    assert write.metadata == 2  # source line of the invoke


def test_jsonl_without_time_uses_line_order() -> None:
    lines = [
        '{"process": 0, "type": "invoke", "f": "get", "key": "k"}',
        '{"process": 1, "type": "invoke", "f": "put", "key": "k", "value": "v"}',
        '{"process": 0, "type": "ok", "f": "get", "key": "k", "value": null}',
        '{"process": 1, "type": "ok", "f": "put", "key": "k", "value": "v"}',
    ]
    get, put = events_to_operations(parse_history(lines))
    assert (get.call, get.return_time, get.output) == (0, 2, None)
    assert (put.call, put.return_time) == (1, 3)


def test_edn_fixture_lines() -> None:
    lines = [
        '{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}',
        '{:process 1, :type :invoke, :f :get, :key "0", :value nil}',
        '{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}',
        '{:process 1, :type :ok, :f :get, :key "0", :value "x 0 0 y"}',
    ]
    events = parse_history(lines)
    assert events[0] == Event(0, EventType.INVOKE, "append", "0", "x 0 0 y", None)
    assert events[1].value is None
    append, get = events_to_operations(events)
    assert (append.call, append.return_time) == (0, 2) and (get.call, get.return_time) == (1, 3)
    assert get.output == "x 0 0 y"


def test_edn_cas_info_and_missing_return() -> None:
    lines = [
        "{:process 0 :type :invoke :f :cas :key 7 :value [1 2]}",
        "{:process 0 :type :ok :f :cas :key 7 :value [1 2 false]}",
        "{:process 1 :type :invoke :f :write :key 7 :value 3}",
        "{:process 1 :type :info :f :write :key 7 :value 3}",
        "{:process 2 :type :invoke :f :read :key 7 :value nil}",
    ]
    cas, write, read = events_to_operations(parse_history(lines))
    assert cas.input == OpInput("cas", 7, (1, 2)) and cas.output == (1, 2, False)
    assert write.unknown and read.unknown


def test_edn_values() -> None:
    assert parse_edn_value('{:a "q\\"uote\\n", :b [1 -2 3.5], :c (nil true false), :d :kw}') == {
        "a": 'q"uote\n',
        "b": [1, -2, 3.5],
        "c": [None, True, False],
        "d": "kw",
    }
    for bad in ['{:a "open', "{:a}", "{:a 1", "[1 2", "{:a 1} extra", "{:a #{}}", '{:a "\\q"}']:
        with pytest.raises(HistoryError):
            parse_edn_value(bad)


@pytest.mark.parametrize(
    "lines, line, fragment",
    [
        (["", "garbage"], 2, "unrecognized history format"),
        (['{"process": 0, "type": "invoke", "f": "get"}', "{not json"], 2, "invalid JSON"),
        (['{"process": 0, "type": "begin", "f": "get"}'], 1, "type must be"),
        (['{"type": "invoke", "f": "get"}'], 1, "no process"),
        (['{"process": 0, "type": "invoke"}'], 1, "no f"),
        (['{"process": 0, "type": "invoke", "f": "get", "time": "soon"}'], 1, "time must be"),
        (["[1, 2]"], 1, "unrecognized"),
        (['{"process": 0, "type": "invoke", "f": "get"}', "[1]"], 2, "expected an object"),
        (['{:process 0, :type :invoke, :f :get}', '{:process 0, :type :ok, :f :get, :value "x}'], 2, "invalid EDN"),
    ],
)
def test_malformed_lines_are_located(lines: list[str], line: int, fragment: str) -> None:
    with pytest.raises(HistoryError) as caught:
        parse_history(lines)
    assert caught.value.line == line
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "events, line, fragment",
    [
        ([Event(0, EventType.OK, "get", "k", "", 1, line=4)], 4, "no open invocation"),
        (
            [Event(0, EventType.INVOKE, "get", "k", None, 1, line=1), Event(0, EventType.INVOKE, "get", "k", None, 2, line=2)],
            2,
            "invokes again",
        ),
        (
            [Event(0, EventType.INVOKE, "get", "k", None, 1, line=1), Event(0, EventType.OK, "put", "k", None, 2, line=2)],
            2,
            "does not match",
        ),
        (
            [Event(0, EventType.INVOKE, "get", "k", None, 5, line=1), Event(0, EventType.OK, "get", "k", "", 4, line=2)],
            2,
            "precedes its invocation",
        ),
        (
            [Event(0, EventType.INVOKE, "get", "k", None, 5, line=1), Event(0, EventType.OK, "get", "k", "", None, line=2)],
            2,
            "no time",
        ),
    ],
)
def test_pairing_errors(events: list[Event], line: int, fragment: str) -> None:
    with pytest.raises(HistoryError) as caught:
        events_to_operations(events)
    assert caught.value.line == line and fragment in str(caught.value)


def test_completion_may_omit_f_and_key() -> None:
    events = [Event(0, EventType.INVOKE, "get", "k", None), Event(0, EventType.OK, None, None, "v")]
    (op,) = events_to_operations(events)
    assert op.input == OpInput("get", "k") and op.output == "v"


def test_load_history_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"process": 0, "type": "invoke", "f": "get"}\n\n{"process": 0, "type": "ok",\n')
    with pytest.raises(HistoryError) as caught:
        load_history(path)
    assert str(caught.value).startswith(f"{path}:3: invalid JSON")
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(HistoryError, match="UTF-8"):
        load_history(binary)
    with pytest.raises(OSError):
        load_history(tmp_path / "missing.jsonl")


def test_jsonl_round_trip(tmp_path: Path) -> None:
    events = parse_history(JSONL_CAS.splitlines())
    buffer = io.StringIO()
    dump_jsonl(events, buffer)
    for text in buffer.getvalue().splitlines():
        assert json.loads(text)["type"] in {"invoke", "ok", "fail", "info"}
    again = parse_history(buffer.getvalue().splitlines())
    assert again == events  # line numbers are not compared
