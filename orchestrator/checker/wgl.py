"""The Wing & Gong / Lowe linearizability search, ported from Porcupine's ``checker.go``.

References:

* J. M. Wing and C. Gong, "Testing and verifying concurrent objects", JPDC 1993 --
  the backtracking search over a call/return list.
* G. Lowe, "Testing for linearizability", CCPE 2017 -- the memo of
  ``(linearized set, state)`` pairs that makes the search practical.
* A. Athalye, Porcupine (MIT licence), ``checker.go`` -- the structure followed here:
  a doubly linked list of entries with ``lift``/``unlift``, a bitset of linearized
  operations, a stack of ``(entry, state)`` for backtracking, and partial
  linearizations for diagnostics.

The list is kept in flat Python lists indexed by node number (node 0 is the head
sentinel) instead of node objects: the same algorithm, fewer attribute lookups.
The bitset of linearized operations is a Python ``int``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .history import UNKNOWN_OUTPUT, Operation
from .models import Model

__all__ = ["DEADLINE_CHECK_INTERVAL", "SearchOutcome", "Verdict", "search"]

#: The search loop reads the clock once every this many iterations (a power of two).
DEADLINE_CHECK_INTERVAL = 1024

_NIL = -1
_HEAD = 0


class Verdict(enum.Enum):
    """The outcome of a linearizability check (Porcupine's ``CheckResult``)."""

    OK = "OK"
    ILLEGAL = "ILLEGAL"
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """The result of searching one partition.

    ``linearization`` lists operation indices (into the searched sequence) in
    linearization order: a complete linearization when ``verdict`` is OK, otherwise
    the longest linearizable prefix the search found.  ``failed`` is, for ILLEGAL,
    the operation that could not be placed after that prefix: the pending operation
    with the earliest return, which every linearization must place next or after
    some concurrent operation -- and none of those choices works.  ``steps`` counts
    loop iterations (a measure of search effort).
    """

    verdict: Verdict
    linearization: tuple[int, ...]
    failed: int | None
    steps: int


def _build_list(operations: Sequence[Operation]) -> tuple[list[int], list[int], list[int], list[int]]:
    """Build the entry list: ``(next, prev, op_of, match)`` arrays over node numbers.

    Entries are sorted by time; at equal times calls come before returns, so that
    operations touching at an instant count as concurrent (Porcupine's ``byTime``).
    Node ``k`` (1-based) is the ``k``-th entry; ``match[call_node]`` is the node of
    its return and ``match`` is ``_NIL`` for return nodes (Porcupine's ``node.match``).
    """
    entries: list[tuple[float, int, int]] = []
    for index, op in enumerate(operations):
        entries.append((op.call, 0, index))
        entries.append((op.effective_return, 1, index))
    entries.sort()

    size = len(entries) + 1
    nxt = list(range(1, size + 1))
    nxt[-1] = _NIL
    prv = list(range(-1, size - 1))
    op_of = [-1] * size
    match = [_NIL] * size
    return_node = [0] * len(operations)
    for node, (_, kind, index) in enumerate(entries, start=1):
        op_of[node] = index
        if kind == 1:
            return_node[index] = node
    for node, (_, kind, index) in enumerate(entries, start=1):
        if kind == 0:
            match[node] = return_node[index]
    return nxt, prv, op_of, match


def search(model: Model, operations: Sequence[Operation], deadline: float | None = None) -> SearchOutcome:
    """Decide whether ``operations`` (one partition) is linearizable under ``model``.

    ``deadline`` is a :func:`time.monotonic` instant; once it has passed the search
    stops with UNKNOWN (checked on the first iteration and then every
    :data:`DEADLINE_CHECK_INTERVAL` iterations).  An ILLEGAL or OK verdict is always
    exact; UNKNOWN is never reported as OK.
    """
    count = len(operations)
    if count == 0:
        return SearchOutcome(Verdict.OK, (), None, 0)

    nxt, prv, op_of, match = _build_list(operations)
    inputs = [op.input for op in operations]
    outputs = [UNKNOWN_OUTPUT if op.unknown else op.output for op in operations]
    step_model = model.step
    clock = time.monotonic
    mask = DEADLINE_CHECK_INTERVAL - 1

    state = model.init()
    linearized = 0  # bitset: bit i set <=> operation i is in the current prefix
    # Lowe's memo: (linearized set, state) pairs already explored.  Reaching the same
    # pair along another path cannot lead anywhere new, so the branch is pruned.
    cache: set[tuple[int, object]] = set()
    calls: list[tuple[int, object]] = []  # backtracking stack of (call node, state before it)
    longest: tuple[int, ...] = ()
    longest_len = -1
    failed: int | None = None
    steps = 0

    entry = nxt[_HEAD]
    while nxt[_HEAD] != _NIL:
        if deadline is not None and steps & mask == 0 and clock() >= deadline:
            return SearchOutcome(Verdict.UNKNOWN, longest, None, steps)
        steps += 1

        ret = match[entry]
        if ret != _NIL:
            # A call entry: try to linearize its operation now.
            index = op_of[entry]
            legal, new_state = step_model(state, inputs[index], outputs[index])
            if legal:
                new_linearized = linearized | (1 << index)
                memo = (new_linearized, new_state)
                if memo not in cache:
                    cache.add(memo)
                    calls.append((entry, state))
                    state = new_state
                    linearized = new_linearized
                    # lift: unlink the call and its return from the list.
                    after = nxt[entry]
                    nxt[prv[entry]] = after
                    prv[after] = prv[entry]
                    after = nxt[ret]
                    nxt[prv[ret]] = after
                    if after != _NIL:
                        prv[after] = prv[ret]
                    entry = nxt[_HEAD]
                    continue
            entry = nxt[entry]
        else:
            # A return entry: every operation that could come first has been tried.
            if len(calls) > longest_len:
                # Porcupine records partial linearizations here.  The first prefix of
                # maximal length is kept; the op whose return blocks it is the one
                # that could not be placed (its step fails in the prefix's state).
                longest_len = len(calls)
                longest = tuple(op_of[node] for node, _ in calls)
                failed = op_of[entry]
            if not calls:
                return SearchOutcome(Verdict.ILLEGAL, longest, failed, steps)
            entry, state = calls.pop()
            linearized &= ~(1 << op_of[entry])
            # unlift: relink the return, then the call (reverse order of lift).
            ret = match[entry]
            nxt[prv[ret]] = ret
            if nxt[ret] != _NIL:
                prv[nxt[ret]] = ret
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            entry = nxt[entry]

    return SearchOutcome(Verdict.OK, tuple(op_of[node] for node, _ in calls), None, steps)
