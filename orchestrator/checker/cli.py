"""Command line: ``python -m orchestrator.checker HISTORY [--model M] [--timeout S] [--html OUT]``.

Prints the verdict (``OK``, ``ILLEGAL`` or ``UNKNOWN``) on the first line and a
per-partition summary on the next, then one line per illegal key.  Exit status:
0 OK, 1 ILLEGAL, 2 UNKNOWN, 3 usage or input error (reported as one line on
stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import NoReturn

from .check import CheckResult, PartitionResult, check_events
from .formats import load_history
from .history import UNKNOWN_OUTPUT, HistoryError
from .models import MODELS, Model
from .visualize import write_html
from .wgl import Verdict

__all__ = ["EXIT_CODES", "EXIT_ERROR", "main"]

#: Exit status per verdict.
EXIT_CODES = {Verdict.OK: 0, Verdict.ILLEGAL: 1, Verdict.UNKNOWN: 2}
#: Exit status for bad arguments and unreadable or malformed histories.
EXIT_ERROR = 3


class _UsageError(Exception):
    """Raised instead of argparse's exit(2), which would collide with UNKNOWN."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number of seconds: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="python -m orchestrator.checker",
        description="Check a recorded history for linearizability (WGL search, Porcupine-style).",
        epilog="Exit status: 0 OK, 1 ILLEGAL, 2 UNKNOWN (timed out), 3 error.",
    )
    parser.add_argument("history", help="history file: JSON Lines or EDN-like, one event per line")
    parser.add_argument(
        "--model", choices=sorted(MODELS), default="kv", help="sequential model to check against (default: kv)"
    )
    parser.add_argument(
        "--timeout", type=_timeout, default=None, metavar="S", help="time budget in seconds (default: unlimited)"
    )
    parser.add_argument("--html", metavar="OUT", help="write an HTML timeline of the result to OUT")
    return parser


def _illegal_line(model: Model, partition: PartitionResult) -> str:
    failed = partition.failed_operation
    if failed is None:
        return f"  {partition.label}: illegal"
    description = model.describe_operation(failed.input, UNKNOWN_OUTPUT if failed.unknown else failed.output)
    where = f" (line {failed.metadata})" if isinstance(failed.metadata, int) else ""
    return (
        f"  {partition.label}: cannot place {description}{where} "
        f"after a linearizable prefix of {len(partition.linearization)}/{len(partition.operations)} operations"
    )


def _report(model: Model, result: CheckResult) -> None:
    print(result.verdict.value)
    print(result.summary())
    for partition in result.with_verdict(Verdict.ILLEGAL):
        print(_illegal_line(model, partition))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except _UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    model = MODELS[args.model]
    try:
        events = load_history(args.history)
        result = check_events(model, events, args.timeout)
    except HistoryError as error:
        if error.path is None:
            error = error.with_path(args.history)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:
        print(f"error: {args.history}: cannot read: {error.strerror or error}", file=sys.stderr)
        return EXIT_ERROR

    _report(model, result)
    if args.html:
        try:
            write_html(args.html, result, model, title=f"Linearizability of {args.history}")
        except OSError as error:
            print(f"error: {args.html}: cannot write: {error.strerror or error}", file=sys.stderr)
            return EXIT_ERROR
    return EXIT_CODES[result.verdict]
