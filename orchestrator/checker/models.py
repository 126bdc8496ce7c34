"""Sequential specifications ("models") the checker tests histories against.

A model has Porcupine's shape: ``init`` gives the initial state, ``step`` applies one
operation and says whether its output is legal, ``partition`` splits a history into
independently checkable parts (P-compositionality), and the ``describe_*`` methods
render operations and states for humans.  Porcupine's ``Equal`` is replaced by
Python equality: states must be hashable and compare equal exactly when they are
the same state, because the checker caches ``(linearized set, state)`` pairs.

Models are immutable and picklable (module-level classes with no fields), since
partitions may be checked in worker processes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .history import UNKNOWN_OUTPUT, OpInput, Operation

__all__ = ["MODELS", "CasRegisterModel", "KeyedModel", "KvModel", "Model"]


class Model(ABC):
    """A sequential specification: the contract the checker relies on.

    * ``init()`` returns the initial state; ``step(state, input, output)`` returns
      ``(legal, new_state)`` and must not mutate ``state``.  States must be hashable,
      with ``==`` as state equality.
    * ``step`` receives :data:`~orchestrator.checker.history.UNKNOWN_OUTPUT` as the
      output of an indefinite operation and must then accept any output, returning
      the state the operation would produce if it took effect.
    * ``partition(history)`` returns sub-histories that are linearizable together iff
      each one is; the default keeps the history whole.
    """

    __slots__ = ()

    #: Registry name, used by the CLI's ``--model``.
    name: ClassVar[str] = "model"

    @abstractmethod
    def init(self) -> Hashable:
        """Return the initial state."""

    @abstractmethod
    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        """Apply one operation: return whether ``output`` is legal and the next state."""

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        """Split ``history`` into independently checkable parts (default: no split)."""
        return [list(history)]

    def partition_label(self, history: Sequence[Operation]) -> str:
        """A short human name for one partition returned by :meth:`partition`."""
        return "history"

    def drop_unobservable(self, history: Sequence[Operation]) -> list[Operation]:
        """Remove indefinite operations that provably need not be searched (default: none).

        Only exact removals are allowed: the rest must be linearizable iff the whole is.
        An indefinite operation's return is at infinity, so the search keeps re-trying it
        everywhere; one whose effect no read ever saw can always be placed last instead.
        """
        return list(history)

    def validate(self, operation: Operation) -> None:
        """Raise ``ValueError`` if the model cannot interpret ``operation``.

        Called once per operation before the search, so that malformed histories are
        reported as such instead of as linearizability violations.  Default: accept.
        """

    def describe_operation(self, input: Any, output: Any) -> str:
        """Render one operation (``output`` may be ``UNKNOWN_OUTPUT``)."""
        shown = "?" if output is UNKNOWN_OUTPUT else repr(output)
        return f"{input!r} -> {shown}"

    def describe_state(self, state: Any) -> str:
        """Render one state."""
        return repr(state)


def _key_order(key: Hashable) -> tuple[str, Any]:
    """Sort key that orders keys of one type naturally and never compares across types."""
    return (type(key).__name__, key if isinstance(key, (int, float, str)) else repr(key))


class KeyedModel(Model):
    """A model of independent registers, one per :attr:`OpInput.key`.

    Operations on different keys commute, so a history is linearizable iff each
    per-key sub-history is (Herlihy & Wing's locality; Porcupine's ``Partition``).
    """

    __slots__ = ()

    #: The ``f`` values the model understands.
    functions: ClassVar[frozenset[str]] = frozenset()

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        """One partition per key, ordered by key."""
        groups: dict[Hashable, list[Operation]] = defaultdict(list)
        for op in history:
            groups[op.input.key].append(op)
        return [groups[key] for key in sorted(groups, key=_key_order)]

    def partition_label(self, history: Sequence[Operation]) -> str:
        """``key '<key>'`` (all operations of a partition share their key)."""
        return f"key {history[0].input.key!r}" if history else "key (none)"

    def validate(self, operation: Operation) -> None:
        """Require an :class:`OpInput` whose ``f`` is one of :attr:`functions`."""
        op_input = operation.input
        if not isinstance(op_input, OpInput):
            raise ValueError(f"{self.name} operations need an OpInput, got {op_input!r}")
        if op_input.f not in self.functions:
            allowed = ", ".join(sorted(self.functions))
            raise ValueError(f"{self.name} model has no function {op_input.f!r} (expected {allowed})")


def _as_text(value: Any) -> str:
    """A kv value as stored: ``None`` (JSON ``null``, a missing key) reads as ``""``."""
    return "" if value is None else value


@dataclass(frozen=True, slots=True)
class KvModel(KeyedModel):
    """A string per key with ``get``, ``put`` and ``append`` (Porcupine's kv model).

    * ``get`` must return the current string.  A missing key holds ``""``; the EDN
      fixtures read it as ``""`` while JSON Lines histories record ``null`` -- both
      are accepted and treated as equal (``None`` reads as ``""``).
    * ``put`` replaces the string; ``append`` concatenates.  Their outputs are ignored.
    * Indefinite operations accept any output.
    """

    name: ClassVar[str] = "kv"
    functions: ClassVar[frozenset[str]] = frozenset({"get", "put", "append"})

    def init(self) -> str:
        """Every key starts empty."""
        return ""

    def step(self, state: str, input: OpInput, output: Any) -> tuple[bool, str]:
        """Apply get/put/append to one key's string."""
        f = input.f
        if f == "get":
            return (output is UNKNOWN_OUTPUT or _as_text(output) == state), state
        if f == "put":
            return True, _as_text(input.value)
        if f == "append":
            return True, state + _as_text(input.value)
        return False, state

    def drop_unobservable(self, history: Sequence[Operation]) -> list[Operation]:
        """Drop indefinite puts and appends whose value is in no read of the key.

        Exact: in any linearization, the state from such a write until the next put holds
        its value, so no read is placed there; removing the write changes only states no read
        observes, and it can always be linearized last (its return is at infinity and its
        output unchecked). Without this, a few such writes make appends on a busy key
        exponentially expensive: the memo cannot share states that differ by where the
        write's token was inserted. An empty value is never dropped (it is in every read).
        """
        reads = [_as_text(op.output) for op in history
                 if op.input.f == "get" and not op.unknown]
        return [
            op for op in history
            if not (op.unknown and op.input.f in ("put", "append")
                    and _as_text(op.input.value)
                    and not any(_as_text(op.input.value) in read for read in reads))
        ]

    def validate(self, operation: Operation) -> None:
        """Values written must be strings (or null); a definite get must read one."""
        KeyedModel.validate(self, operation)
        op_input = operation.input
        if op_input.f in ("put", "append"):
            if not isinstance(op_input.value, (str, type(None))):
                raise ValueError(f"kv {op_input.f} needs a string value, got {op_input.value!r}")
        elif not operation.unknown and not isinstance(operation.output, (str, type(None))):
            raise ValueError(f"kv get must read a string or null, got {operation.output!r}")

    def describe_operation(self, input: OpInput, output: Any) -> str:
        """``get('k') -> 'v'``, ``put('k', 'v')``, ``append('k', 'v')``."""
        if input.f == "get":
            shown = "?" if output is UNKNOWN_OUTPUT else repr(_as_text(output))
            return f"get({input.key!r}) -> {shown}"
        return f"{input.f}({input.key!r}, {_as_text(input.value)!r})"

    def describe_state(self, state: str) -> str:
        """The string, quoted."""
        return repr(state)


def _is_register_value(value: Any) -> bool:
    """Register values are integers (``bool`` excluded) or ``None`` for "missing"."""
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _cas_success(output: Any) -> bool:
    """A definite cas output: ``[from, to, success]`` from the history, or a bare bool."""
    if isinstance(output, bool):
        return output
    return bool(output[-1])


@dataclass(frozen=True, slots=True)
class CasRegisterModel(KeyedModel):
    """An integer register per key with ``read``, ``write`` and ``cas`` (Porcupine's etcd model).

    * A missing key holds ``None`` (JSON ``null``); ``read`` must return the value.
    * ``write`` sets the value; its output is ignored.
    * ``cas`` takes ``(from, to)`` and reports success: ``true`` means the register
      held ``from`` and now holds ``to``; ``false`` means it did not hold ``from`` and
      nothing changed.
    * Indefinite operations accept any output; an indefinite cas takes effect exactly
      when the register holds ``from``, as in Porcupine's etcd model.
    """

    name: ClassVar[str] = "cas-register"
    functions: ClassVar[frozenset[str]] = frozenset({"read", "write", "cas"})

    def init(self) -> int | None:
        """Every register starts missing."""
        return None

    def step(self, state: int | None, input: OpInput, output: Any) -> tuple[bool, int | None]:
        """Apply read/write/cas to one register."""
        f = input.f
        if f == "read":
            return (output is UNKNOWN_OUTPUT or output == state), state
        if f == "write":
            return True, input.value
        if f == "cas":
            expected, new = input.value
            holds = state == expected
            if output is UNKNOWN_OUTPUT:
                return True, (new if holds else state)
            if _cas_success(output):
                return holds, new
            return not holds, state
        return False, state

    def validate(self, operation: Operation) -> None:
        """Check value shapes: ints or null, cas ``[from, to]`` and a boolean outcome."""
        KeyedModel.validate(self, operation)
        op_input, output = operation.input, operation.output
        if op_input.f == "write":
            if not _is_register_value(op_input.value) or op_input.value is None:
                raise ValueError(f"write needs an integer value, got {op_input.value!r}")
        elif op_input.f == "cas":
            value = op_input.value
            if not (
                isinstance(value, tuple)
                and len(value) == 2
                and _is_register_value(value[0])
                and _is_register_value(value[1])
                and value[1] is not None
            ):
                raise ValueError(f"cas needs a [from, to] value (to an integer), got {value!r}")
            if not operation.unknown and not (
                isinstance(output, bool)
                or (isinstance(output, tuple) and len(output) == 3 and isinstance(output[2], bool))
            ):
                raise ValueError(f"cas must complete with [from, to, true|false], got {output!r}")
        elif not operation.unknown and not _is_register_value(output):
            raise ValueError(f"read must return an integer or null, got {output!r}")

    def describe_operation(self, input: OpInput, output: Any) -> str:
        """``read('k') -> 3``, ``write('k', 3)``, ``cas('k', 1 -> 2) -> ok|failed``."""
        key = repr(input.key)
        if input.f == "read":
            shown = "?" if output is UNKNOWN_OUTPUT else _show_register(output)
            return f"read({key}) -> {shown}"
        if input.f == "write":
            return f"write({key}, {_show_register(input.value)})"
        expected, new = input.value
        if output is UNKNOWN_OUTPUT:
            outcome = "?"
        else:
            outcome = "ok" if _cas_success(output) else "failed"
        return f"cas({key}, {_show_register(expected)} -> {_show_register(new)}) -> {outcome}"

    def describe_state(self, state: int | None) -> str:
        """The integer, or ``null`` for a missing register."""
        return _show_register(state)


def _show_register(value: Any) -> str:
    return "null" if value is None else repr(value)


#: Models by CLI name.
MODELS: dict[str, Model] = {"kv": KvModel(), "cas-register": CasRegisterModel()}
