"""The kv and cas-register models, and the checker on hand-made histories."""

from __future__ import annotations

import math
import pickle

import pytest

from orchestrator.checker import (
    MODELS,
    UNKNOWN_OUTPUT,
    Model,
    CasRegisterModel,
    HistoryError,
    KvModel,
    OpInput,
    Operation,
    Verdict,
    check_operations,
)

KV = MODELS["kv"]
CAS = MODELS["cas-register"]


def op(client: int, f: str, key: str, value: object, call: int, ret: float, output: object = None) -> Operation:
    unknown = math.isinf(ret)
    return Operation(client, OpInput(f, key, value), call, output, ret, unknown)


def test_registry() -> None:
    assert isinstance(KV, KvModel) and isinstance(CAS, CasRegisterModel)
    assert {KV.name, CAS.name} == set(MODELS)
    assert pickle.loads(pickle.dumps(KV)) == KV  # workers receive models by pickle


def test_kv_steps() -> None:
    get, put, append = OpInput("get", "k"), OpInput("put", "k", "ab"), OpInput("append", "k", "c")
    assert KV.init() == ""
    assert KV.step("", put, None) == (True, "ab")
    assert KV.step("ab", append, None) == (True, "abc")
    assert KV.step("abc", get, "abc") == (True, "abc")
    assert KV.step("abc", get, "ab") == (False, "abc")
    assert KV.step("x", get, UNKNOWN_OUTPUT) == (True, "x")


def test_kv_missing_key_reads_as_null_or_empty() -> None:
    """JSON Lines histories read a missing key as null, the EDN fixtures as "": both are fine."""
    get = OpInput("get", "k")
    assert KV.step("", get, None)[0] and KV.step("", get, "")[0]
    assert not KV.step("v", get, None)[0]


def test_cas_register_steps() -> None:
    assert CAS.init() is None
    read, write = OpInput("read", "k"), OpInput("write", "k", 3)
    cas = OpInput("cas", "k", (3, 4))
    assert CAS.step(None, read, None) == (True, None)
    assert CAS.step(None, write, 3) == (True, 3)
    assert CAS.step(3, cas, (3, 4, True)) == (True, 4)
    assert CAS.step(3, cas, (3, 4, False)) == (False, 3)  # it held 3: cas must succeed
    assert CAS.step(5, cas, (3, 4, False)) == (True, 5)  # false: nothing changed
    assert CAS.step(5, cas, (3, 4, True)) == (False, 4)
    assert CAS.step(3, cas, UNKNOWN_OUTPUT) == (True, 4)
    assert CAS.step(5, cas, UNKNOWN_OUTPUT) == (True, 5)
    assert CAS.step(None, OpInput("cas", "k", (None, 1)), True) == (True, 1)


def test_descriptions() -> None:
    assert KV.describe_operation(OpInput("get", "k"), "v") == "get('k') -> 'v'"
    assert KV.describe_operation(OpInput("get", "k"), None) == "get('k') -> ''"
    assert KV.describe_operation(OpInput("get", "k"), UNKNOWN_OUTPUT) == "get('k') -> ?"
    assert KV.describe_operation(OpInput("append", "k", "x"), None) == "append('k', 'x')"
    assert KV.describe_state("ab") == "'ab'"
    assert CAS.describe_operation(OpInput("cas", "k", (1, 2)), (1, 2, False)) == "cas('k', 1 -> 2) -> failed"
    assert CAS.describe_operation(OpInput("cas", "k", (None, 2)), UNKNOWN_OUTPUT) == "cas('k', null -> 2) -> ?"
    assert CAS.describe_operation(OpInput("read", "k"), None) == "read('k') -> null"
    assert CAS.describe_state(None) == "null" and CAS.describe_state(7) == "7"


def test_register_example_from_porcupine() -> None:
    """Porcupine's TestRegisterModel cases, on the cas-register model."""
    ok = [op(0, "write", "r", 100, 0, 100), op(1, "read", "r", None, 25, 75, 100), op(2, "read", "r", None, 30, 60, None)]
    assert check_operations(CAS, ok).verdict is Verdict.OK
    bad = [op(0, "write", "r", 200, 0, 100), op(1, "read", "r", None, 10, 30, 200), op(2, "read", "r", None, 40, 90, None)]
    assert check_operations(CAS, bad).verdict is Verdict.ILLEGAL


def test_touching_operations_are_concurrent() -> None:
    """Equal call and return instants count as concurrent (Porcupine's zero-duration rule)."""
    ops = [op(0, "write", "r", 1, 0, 10), op(1, "read", "r", None, 10, 10, None)]
    assert check_operations(CAS, ops).verdict is Verdict.OK


def test_indefinite_operations_may_or_may_not_take_effect() -> None:
    # A timed-out write may have happened...
    happened = [op(0, "put", "k", "x", 0, math.inf), op(1, "get", "k", None, 5, 6, "x")]
    assert check_operations(KV, happened).verdict is Verdict.OK
    # ...or not (yet).
    not_yet = [op(0, "put", "k", "x", 0, math.inf), op(1, "get", "k", None, 5, 6, "")]
    assert check_operations(KV, not_yet).verdict is Verdict.OK
    # But once observed it cannot be undone.
    flip = not_yet[:1] + [op(1, "get", "k", None, 5, 6, "x"), op(1, "get", "k", None, 7, 8, "")]
    assert check_operations(KV, flip).verdict is Verdict.ILLEGAL
    # An indefinite cas takes effect only if the register holds "from".
    cas = [op(0, "write", "r", 1, 0, 1), op(1, "cas", "r", (2, 3), 2, math.inf), op(2, "read", "r", None, 4, 5, 3)]
    assert check_operations(CAS, cas).verdict is Verdict.ILLEGAL


def test_unknown_flag_overrides_recorded_return() -> None:
    """An op marked unknown returns at infinity whatever return_time says."""
    ops = [
        Operation(0, OpInput("put", "k", "x"), 0, None, 1, unknown=True),
        Operation(1, OpInput("get", "k"), 5, "", 6),
        Operation(1, OpInput("get", "k"), 7, "x", 8),
    ]
    assert check_operations(KV, ops).verdict is Verdict.OK


@pytest.mark.parametrize(
    "model, bad",
    [
        (KV, op(0, "incr", "k", 1, 0, 1)),
        (KV, op(0, "put", "k", 5, 0, 1)),
        (KV, op(0, "get", "k", None, 0, 1, 7)),
        (CAS, op(0, "cas", "k", (1,), 0, 1, True)),
        (CAS, op(0, "cas", "k", (1, 2), 0, 1, "yes")),
        (CAS, op(0, "write", "k", "1", 0, 1)),
        (CAS, op(0, "read", "k", None, 0, 1, True)),
    ],
)
def test_validation_rejects_malformed_operations(model: Model, bad: Operation) -> None:
    with pytest.raises(HistoryError):
        check_operations(model, [bad])


def test_operation_contract() -> None:
    with pytest.raises(ValueError):
        Operation(0, OpInput("get", "k"), 5, "", 4)
    assert Operation(0, OpInput("get", "k"), 5, None, 9, unknown=True).effective_return == math.inf
