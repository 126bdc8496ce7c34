"""Checking whole histories: partitioning, parallelism, time budget, results.

Porcupine's ``checkParallel`` runs one goroutine per partition.  Python threads
would not run searches in parallel, so partitions go to a
:class:`~concurrent.futures.ProcessPoolExecutor` instead -- but only those that
are not decided within a short in-process slice, since most partitions take
milliseconds and starting processes does not.  Serial and parallel checking give
identical verdicts.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.context import BaseContext

from .history import Event, HistoryError, Operation, events_to_operations
from .models import Model
from .wgl import SearchOutcome, Verdict, search

__all__ = [
    "AUTO_SERIAL_SLICE",
    "CheckResult",
    "PartitionResult",
    "check_events",
    "check_operations",
]

#: In automatic mode, seconds of in-process searching before undecided partitions
#: are handed to worker processes (starting those costs up to a tenth of a second).
AUTO_SERIAL_SLICE = 0.25

#: Extra seconds the parent waits past the deadline for workers to notice it.
_DEADLINE_GRACE = 1.0


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """The verdict on one partition (for keyed models: one key).

    ``linearization`` holds indices into ``operations``: a complete linearization
    for OK, the longest linearizable prefix found for ILLEGAL (and for UNKNOWN, as
    far as the search got).  ``failed`` is, for ILLEGAL, the index of the operation
    that could not be placed after that prefix; ``None`` otherwise.
    """

    label: str
    verdict: Verdict
    operations: tuple[Operation, ...]
    linearization: tuple[int, ...]
    failed: int | None
    steps: int
    elapsed: float

    @property
    def failed_operation(self) -> Operation | None:
        """The operation that could not be placed, for ILLEGAL partitions."""
        return None if self.failed is None else self.operations[self.failed]

    def prefix_operations(self) -> tuple[Operation, ...]:
        """The operations of :attr:`linearization`, in linearization order."""
        return tuple(self.operations[i] for i in self.linearization)

    def candidates(self) -> tuple[int, ...]:
        """For ILLEGAL: the operations that could come right after the prefix.

        These are the pending operations called no later than the failed operation
        returns -- the ones the search tried at that point.  Because the prefix is
        the longest the search reached, each of them is illegal in the state after
        the prefix (the failed operation among them).  Empty unless ILLEGAL.
        """
        if self.failed is None:
            return ()
        placed = set(self.linearization)
        horizon = self.operations[self.failed].effective_return
        return tuple(
            i for i, op in enumerate(self.operations) if i not in placed and op.call <= horizon
        )


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on a whole history.

    ``verdict`` is ILLEGAL if any partition is illegal, else UNKNOWN if any ran out
    of time, else OK.  ``partitions`` follow the model's partition order.
    """

    verdict: Verdict
    partitions: tuple[PartitionResult, ...]
    elapsed: float

    @property
    def ok(self) -> bool:
        """True exactly when the history was shown linearizable."""
        return self.verdict is Verdict.OK

    def with_verdict(self, verdict: Verdict) -> tuple[PartitionResult, ...]:
        """The partitions whose verdict is ``verdict``."""
        return tuple(p for p in self.partitions if p.verdict is verdict)

    @property
    def operation_count(self) -> int:
        """Number of operations checked (over all partitions)."""
        return sum(len(p.operations) for p in self.partitions)

    def summary(self) -> str:
        """One line: partition counts per verdict, naming the illegal and unknown ones."""
        parts = []
        for verdict in (Verdict.OK, Verdict.ILLEGAL, Verdict.UNKNOWN):
            group = self.with_verdict(verdict)
            text = f"{len(group)} {verdict.value.lower()}"
            if group and verdict is not Verdict.OK:
                names = ", ".join(p.label for p in group[:5])
                more = f", +{len(group) - 5} more" if len(group) > 5 else ""
                text += f" ({names}{more})"
            parts.append(text)
        total = len(self.partitions)
        noun = "partition" if total == 1 else "partitions"
        return (
            f"{total} {noun}: {', '.join(parts)}; "
            f"{self.operation_count} operations in {self.elapsed:.3f} s"
        )


def _combine(verdicts: Iterable[Verdict]) -> Verdict:
    """ILLEGAL beats UNKNOWN beats OK (an unchecked partition is never a pass)."""
    found = set(verdicts)
    if Verdict.ILLEGAL in found:
        return Verdict.ILLEGAL
    if Verdict.UNKNOWN in found:
        return Verdict.UNKNOWN
    return Verdict.OK


def _timed_search(model: Model, operations: Sequence[Operation], deadline: float | None) -> tuple[SearchOutcome, float]:
    """Run :func:`search` and measure it (the unit of work sent to worker processes)."""
    started = time.monotonic()
    outcome = search(model, operations, deadline)
    return outcome, time.monotonic() - started


Found = dict[int, tuple[SearchOutcome, float]]


def _run_serial(
    model: Model,
    partitions: Sequence[Sequence[Operation]],
    deadline: float | None,
    todo: Iterable[int],
    found: Found,
) -> None:
    """Search the partitions ``todo`` in this process, in the given order."""
    for index in todo:
        outcome, elapsed = _timed_search(model, partitions[index], deadline)
        spent = found[index][1] if index in found else 0.0
        found[index] = (outcome, spent + elapsed)


def _smallest_first(partitions: Sequence[Sequence[Operation]], todo: Iterable[int]) -> list[int]:
    # Under a time budget, one hard partition then cannot starve the cheap ones
    # (which may well be the ones that prove a violation).
    return sorted(todo, key=lambda i: len(partitions[i]))


def _worker_context() -> BaseContext | None:
    """The multiprocessing context for worker processes, or ``None`` to stay serial.

    ``fork`` when this process runs no other thread: workers start in milliseconds
    and need nothing re-imported.  With threads alive, forking is unsafe (a lock
    held by another thread stays locked in the child), so ``spawn`` is used -- which
    re-imports ``__main__`` in each worker, as all ``spawn`` users must allow for (the
    ``if __name__ == "__main__":`` idiom); a ``__main__`` that cannot be re-imported
    (a script read from stdin) means no workers.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) is None:
        path = getattr(main, "__file__", None)
        if path is not None and not os.path.exists(path):
            return None
    return multiprocessing.get_context("spawn")


def _run_parallel(
    model: Model,
    partitions: Sequence[Sequence[Operation]],
    deadline: float | None,
    todo: Iterable[int],
    workers: int,
    found: Found,
) -> None:
    """Search the partitions ``todo`` in worker processes, largest first.

    Workers get the absolute deadline (``time.monotonic`` is system-wide on the
    platforms we run on) and stop themselves; the parent also stops waiting shortly
    after the deadline, leaving unfinished partitions UNKNOWN.  If worker processes
    cannot be used, the partitions are searched serially instead.
    """
    order = sorted(todo, key=lambda i: len(partitions[i]), reverse=True)
    context = _worker_context()
    if context is None or not _picklable(model, [partitions[i] for i in order]):
        _run_serial(model, partitions, deadline, _smallest_first(partitions, order), found)
        return
    # Forked workers inherit unwritten stdio buffers and would write them again.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    except (OSError, ValueError, NotImplementedError):
        _run_serial(model, partitions, deadline, _smallest_first(partitions, order), found)
        return
    broken = False
    settled = False  # every worker is idle: shutting down can wait for them
    try:
        futures: dict[Future[tuple[SearchOutcome, float]], int] = {
            pool.submit(_timed_search, model, partitions[i], deadline): i for i in order
        }
        budget = None if deadline is None else max(0.0, deadline - time.monotonic()) + _DEADLINE_GRACE
        done, running = wait(futures, timeout=budget)
        for future in done:
            index = futures[future]
            try:
                outcome, elapsed = future.result()
            except BrokenProcessPool:
                broken = True
                continue
            spent = found[index][1] if index in found else 0.0
            found[index] = (outcome, spent + elapsed)
        settled = not running
    finally:
        # Idle workers exit at once; busy ones (past the deadline, or interrupted)
        # stop by themselves and are not waited for.
        pool.shutdown(wait=settled, cancel_futures=True)
    if broken:
        retry = [i for i in order if i not in found or found[i][0].verdict is Verdict.UNKNOWN]
        _run_serial(model, partitions, deadline, _smallest_first(partitions, retry), found)


def _picklable(model: Model, partitions: Sequence[Sequence[Operation]]) -> bool:
    """Whether the work can be sent to other processes (a model class defined inside
    a function, say, cannot); if not, the caller searches in-process instead."""
    try:
        pickle.dumps((model, partitions), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _undecided(found: Found, todo: Iterable[int]) -> list[int]:
    return [i for i in todo if i not in found or found[i][0].verdict is Verdict.UNKNOWN]


def check_operations(
    model: Model,
    operations: Sequence[Operation],
    timeout: float | None = None,
    *,
    parallel: bool | None = None,
    workers: int | None = None,
) -> CheckResult:
    """Check that ``operations`` are linearizable with respect to ``model``.

    Contract:

    * ``timeout`` is a budget in seconds for the whole check (``None``: unlimited).
      A partition not decided within it is UNKNOWN -- never OK.  ``timeout=0``
      decides nothing but empty partitions.
    * ``parallel=False`` searches partitions in this process, smallest first.
      ``parallel=True`` searches them in up to ``workers`` (default: CPU count)
      worker processes.  ``parallel=None`` (default) adapts: partitions are first
      searched in this process for :data:`AUTO_SERIAL_SLICE` seconds, and only those
      still undecided then go to worker processes -- so cheap histories never pay
      for starting processes.  The verdicts do not depend on the choice.
    * Every operation is first checked with ``model.validate``; a ``ValueError`` from
      it becomes a :class:`HistoryError` naming the operation's source line when
      ``metadata`` holds one.
    """
    if timeout is not None and (math.isnan(timeout) or timeout < 0):
        raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout

    for op in operations:
        try:
            model.validate(op)
        except ValueError as error:
            line = op.metadata if isinstance(op.metadata, int) else None
            raise HistoryError(str(error), line=line) from error

    partitions = [model.drop_unobservable(p) for p in model.partition(list(operations)) if p]
    everything = range(len(partitions))
    worker_count = max(1, min(workers or _usable_cpus(), len(partitions)))

    found: Found = {}
    if parallel is True and partitions:
        _run_parallel(model, partitions, deadline, everything, worker_count, found)
    elif parallel is False or len(partitions) < 2 or worker_count < 2:
        _run_serial(model, partitions, deadline, _smallest_first(partitions, everything), found)
    else:
        slice_end = started + AUTO_SERIAL_SLICE
        if deadline is not None:
            slice_end = min(slice_end, deadline)
        _run_serial(model, partitions, slice_end, _smallest_first(partitions, everything), found)
        left = _undecided(found, everything)
        if deadline is not None and time.monotonic() >= deadline:
            pass  # the budget is spent: the undecided partitions stay UNKNOWN
        elif len(left) >= 2:
            _run_parallel(model, partitions, deadline, left, min(worker_count, len(left)), found)
        elif left:
            _run_serial(model, partitions, deadline, left, found)

    results = []
    for index, partition in enumerate(partitions):
        outcome, elapsed = found.get(index, (SearchOutcome(Verdict.UNKNOWN, (), None, 0), 0.0))
        results.append(
            PartitionResult(
                label=model.partition_label(partition),
                verdict=outcome.verdict,
                operations=tuple(partition),
                linearization=outcome.linearization,
                failed=outcome.failed,
                steps=outcome.steps,
                elapsed=elapsed,
            )
        )
    return CheckResult(
        verdict=_combine(r.verdict for r in results),
        partitions=tuple(results),
        elapsed=time.monotonic() - started,
    )


def check_events(
    model: Model,
    events: Iterable[Event],
    timeout: float | None = None,
    *,
    parallel: bool | None = None,
    workers: int | None = None,
) -> CheckResult:
    """Pair ``events`` with :func:`events_to_operations`, then :func:`check_operations`.

    Raises :class:`HistoryError` for histories that cannot be paired.
    """
    return check_operations(
        model, events_to_operations(events), timeout, parallel=parallel, workers=workers
    )
