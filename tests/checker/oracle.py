"""An exhaustive linearizability oracle and a random history generator, for tests.

The oracle shares nothing with the checker but the :class:`Operation` type: it has
its own sequential semantics for both models (over a whole key->value dict, with no
partitioning), and it enumerates every subset of indefinite operations that took
effect and every order of the chosen operations consistent with real time.  The
only pruning is abandoning an order as soon as its prefix is illegal.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

from orchestrator.checker import Event, EventType, Operation

Store = dict[Any, Any]
#: apply(store, op, check_output) -> legal?  (mutates store)
Semantics = Callable[[Store, Operation, bool], bool]


def kv_apply(store: Store, op: Operation, check_output: bool) -> bool:
    """Sequential kv: missing keys read as "" (null output means "" too)."""
    f, key, value = op.input.f, op.input.key, op.input.value
    current = store.get(key, "")
    if f == "get":
        if not check_output:
            return True
        read = "" if op.output is None else op.output
        return read == current
    if f == "put":
        store[key] = value
        return True
    if f == "append":
        store[key] = current + value
        return True
    raise AssertionError(f"unexpected f {f}")


def cas_apply(store: Store, op: Operation, check_output: bool) -> bool:
    """Sequential cas-register: missing keys hold None; cas reports success."""
    f, key, value = op.input.f, op.input.key, op.input.value
    current = store.get(key)
    if f == "read":
        return (not check_output) or op.output == current
    if f == "write":
        store[key] = value
        return True
    if f == "cas":
        expected, new = value
        holds = current == expected
        if check_output and op.output[2] != holds:
            return False
        if holds:
            store[key] = new
        return True
    raise AssertionError(f"unexpected f {f}")


SEMANTICS: dict[str, Semantics] = {"kv": kv_apply, "cas-register": cas_apply}


def _some_order_works(ops: Sequence[Operation], apply: Semantics) -> bool:
    """Depth-first over all real-time-respecting orders of ``ops``."""
    returns = [float("inf") if op.unknown else op.return_time for op in ops]

    def extend(remaining: frozenset[int], store: Store) -> bool:
        if not remaining:
            return True
        for i in remaining:
            # i may come next unless another remaining op returned strictly before i's call.
            if any(returns[j] < ops[i].call for j in remaining if j != i):
                continue
            trial = dict(store)
            if apply(trial, ops[i], not ops[i].unknown) and extend(remaining - {i}, trial):
                return True
        return False

    return extend(frozenset(range(len(ops))), {})


def oracle_linearizable(ops: Sequence[Operation], model_name: str) -> bool:
    """True iff some choice of effective indefinite ops has a legal real-time order."""
    apply = SEMANTICS[model_name]
    definite = [op for op in ops if not op.unknown]
    indefinite = [op for op in ops if op.unknown]
    for size in range(len(indefinite) + 1):
        for chosen in combinations(indefinite, size):
            if _some_order_works(definite + list(chosen), apply):
                return True
    return False


# ----------------------------------------------------------------- generator


def _random_input(rng: random.Random, model_name: str, keys: Sequence[str]) -> tuple[str, str, Any]:
    key = rng.choice(keys)
    if model_name == "kv":
        f = rng.choice(["get", "get", "put", "append", "append"])
        value = None if f == "get" else rng.choice(["x", "y"] if f == "append" else ["x", "y", ""])
        return f, key, value
    f = rng.choice(["read", "read", "write", "cas", "cas"])
    if f == "read":
        return f, key, None
    if f == "write":
        return f, key, rng.randrange(3)
    return f, key, (rng.choice([None, 0, 1, 2]), rng.randrange(3))


def _execute(store: Store, model_name: str, f: str, key: str, value: Any) -> Any:
    """Run one operation against a real store; returns the output a client sees."""
    if model_name == "kv":
        if f == "get":
            return store.get(key, "")
        store[key] = value if f == "put" else store.get(key, "") + value
        return value
    if f == "read":
        return store.get(key)
    if f == "write":
        store[key] = value
        return value
    expected, new = value
    holds = store.get(key) == expected
    if holds:
        store[key] = new
    return (expected, new, holds)


def _corrupt(rng: random.Random, model_name: str, f: str, output: Any) -> Any:
    if model_name == "kv":
        return rng.choice(["", "x", "y", "xy", "yx", None]) if f == "get" else output
    if f == "read":
        return rng.choice([None, 0, 1, 2])
    if f == "cas":
        return (output[0], output[1], not output[2])
    return output


def random_history(rng: random.Random, model_name: str, max_ops: int = 7) -> list[Event]:
    """A small concurrent history from simulated clients over a real store.

    Each operation takes effect (or not) at a random instant between its invoke and
    completion; completions are mostly truthful ``ok``, sometimes ``info``, ``fail``
    (for operations that never took effect, and occasionally a lying one), a
    corrupted output, or missing.  Timestamps tie now and then.
    """
    n_ops = rng.randint(1, max_ops)
    slots = rng.randint(1, 4)
    process_of = list(range(slots))  # a crashed client comes back under a new process id
    keys = ["a", "b"][: rng.randint(1, 2)]
    store: Store = {}
    events: list[Event] = []
    pending: dict[int, dict[str, Any]] = {}
    started = 0
    clock = 0
    while started < n_ops or pending:
        slot = rng.randrange(slots)
        process = process_of[slot]
        clock += rng.choice([0, 1, 1, 2])
        if process not in pending:
            if started >= n_ops:
                continue
            f, key, value = _random_input(rng, model_name, keys)
            pending[process] = {"f": f, "key": key, "value": value, "applied": False, "output": None}
            started += 1
            events.append(Event(process, EventType.INVOKE, f, key, value, clock))
            continue
        op = pending[process]
        if not op["applied"] and rng.random() < 0.5:
            op["output"] = _execute(store, model_name, op["f"], op["key"], op["value"])
            op["applied"] = True
            continue
        del pending[process]
        roll = rng.random()
        if roll < 0.05:
            # The client crashed: no completion is ever recorded, and (as in Jepsen)
            # it carries on as a fresh process.
            process_of[slot] = max(process_of) + 1
            continue
        if not op["applied"]:
            if roll < 0.25:
                events.append(Event(process, EventType.FAIL, op["f"], op["key"], None, clock))
                continue
            if roll < 0.35:
                events.append(Event(process, EventType.INFO, op["f"], op["key"], None, clock))
                continue
            op["output"] = _execute(store, model_name, op["f"], op["key"], op["value"])
        if roll < 0.15:
            events.append(Event(process, EventType.INFO, op["f"], op["key"], None, clock))
        elif roll < 0.18:
            events.append(Event(process, EventType.FAIL, op["f"], op["key"], None, clock))  # a lie
        else:
            output = op["output"]
            if rng.random() < 0.15:
                output = _corrupt(rng, model_name, op["f"], output)
            if model_name == "kv" and output == "" and rng.random() < 0.5:
                output = None  # JSON null for a missing key
            events.append(Event(process, EventType.OK, op["f"], op["key"], output, clock))
    return events
