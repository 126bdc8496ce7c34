"""Porcupine-style linearizability checker for Ruaft histories.

Histories are recorded by test clients (:class:`HistoryRecorder`) or read from files
(:func:`load_history`: JSON Lines or the EDN-like fixture format), paired into
:class:`Operation` values, split per key by the model (P-compositionality) and
searched with the Wing & Gong / Lowe algorithm as in Porcupine's ``checker.go``.

Quick use::

    from orchestrator.checker import MODELS, check_events, load_history

    result = check_events(MODELS["kv"], load_history("history.jsonl"), timeout=30)
    if result.verdict is Verdict.ILLEGAL:
        write_html("why.html", result, MODELS["kv"])

Command line: ``python -m orchestrator.checker HISTORY --model kv|cas-register
[--timeout S] [--html OUT]`` (exit 0 OK, 1 ILLEGAL, 2 UNKNOWN, 3 error).
"""

from .check import AUTO_SERIAL_SLICE, CheckResult, PartitionResult, check_events, check_operations
from .formats import dump_jsonl, event_to_json, load_history, parse_edn_value, parse_history
from .history import (
    UNKNOWN_OUTPUT,
    Event,
    EventType,
    HistoryError,
    OpInput,
    Operation,
    Time,
    events_to_operations,
    freeze,
)
from .models import MODELS, CasRegisterModel, KeyedModel, KvModel, Model
from .recorder import HistoryRecorder
from .visualize import render_html, write_html
from .wgl import SearchOutcome, Verdict, search

__all__ = [
    "AUTO_SERIAL_SLICE",
    "MODELS",
    "UNKNOWN_OUTPUT",
    "CasRegisterModel",
    "CheckResult",
    "Event",
    "EventType",
    "HistoryError",
    "HistoryRecorder",
    "KeyedModel",
    "KvModel",
    "Model",
    "OpInput",
    "Operation",
    "PartitionResult",
    "SearchOutcome",
    "Time",
    "Verdict",
    "check_events",
    "check_operations",
    "dump_jsonl",
    "event_to_json",
    "events_to_operations",
    "freeze",
    "load_history",
    "parse_edn_value",
    "parse_history",
    "render_html",
    "search",
    "write_html",
]
