"""Failpoints: named places in the runtime and storage where a test can make a peer die.

Modelled on etcd's gofail. A call site reads

    if failpoints.armed: failpoints.maybe_trigger("log.truncate.before")

so a disabled failpoint costs one module-attribute read (the runtime's call sites go through
`maybe_trigger_on_message` and `maybe_trigger_on_save`, which pick the point's name). Failpoints are armed only on demand,
never in a normal start: from the environment variable ``RUAFT_FAILPOINTS``, read once when
this module is first imported (process start), or at run time through the test-mode control
endpoint's ``set_failpoint`` operation (`configure`).

Specification: ``name=action[;name=action ...]``, where action is

``kill``
    SIGKILL this process the first time the point is reached;
``kill@N``
    SIGKILL it the N-th time (1-based; earlier hits are counted and pass);
``off``
    disarm the point.

Before killing, the failpoint writes one line to standard error (unbuffered),
``ruaft failpoint <name>: SIGKILL pid <pid> (hit <n>)``, so a test can tell this death from
any other. The kill is `os.kill(os.getpid(), SIGKILL)`: no handler, no cleanup, no flush —
the process stops mid-operation exactly as at a power cut of the process (the kernel still
has whatever was written, like a crash of the process alone).

The points (see `POINTS`):

``snapshot.persist.before`` / ``snapshot.persist.after``
    around the durable write of a snapshot the peer took of its own state (log compaction);
``install_snapshot.chunk.received``
    an InstallSnapshot chunk has arrived from the leader and is about to be taken in;
``install_snapshot.persist.before`` / ``install_snapshot.persist.after``
    around the durable write of a snapshot received from the leader;
``log.truncate.before`` / ``log.truncate.after``
    inside the storage write transaction that deletes a conflicting log suffix (paper §5.3),
    before the first record is deleted / after the last one is, before the commit.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass

from ruaft.core.types import InstallSnapshot, Message, Ready

ENV_VAR = "RUAFT_FAILPOINTS"

POINTS = frozenset({
    "snapshot.persist.before",
    "snapshot.persist.after",
    "install_snapshot.chunk.received",
    "install_snapshot.persist.before",
    "install_snapshot.persist.after",
    "log.truncate.before",
    "log.truncate.after",
})

armed = False
"""True while at least one failpoint is armed: the guard every call site reads first."""


@dataclass(frozen=True, slots=True)
class Action:
    """What an armed failpoint does: SIGKILL the process at hit number `at` (1-based)."""

    at: int = 1


_actions: dict[str, Action] = {}
_hits: dict[str, int] = {}
_lock = threading.Lock()


def parse(spec: str) -> dict[str, Action | None]:
    """``name=action;...`` → {name: Action, or None for ``off``}. Raises ValueError naming
    the bad part (unknown point, unknown action, a count below 1)."""
    parsed: dict[str, Action | None] = {}
    for part in spec.replace(",", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, action = (s.strip() for s in part.partition("="))
        if not sep:
            raise ValueError(f"failpoint {part!r}: expected name=action")
        if name not in POINTS:
            raise ValueError(f"unknown failpoint {name!r} (known: {', '.join(sorted(POINTS))})")
        if action == "off":
            parsed[name] = None
        elif action == "kill":
            parsed[name] = Action()
        elif action.startswith("kill@") and action[5:].isdigit() and int(action[5:]) >= 1:
            parsed[name] = Action(at=int(action[5:]))
        else:
            raise ValueError(f"failpoint {name}: unknown action {action!r} (kill, kill@N, off)")
    return parsed


def configure(spec: str) -> None:
    """Arm (or, with ``off``, disarm) the failpoints in `spec` (see the module docstring);
    arming a point again restarts its hit count. Raises ValueError, changing nothing, on a
    bad spec."""
    global armed
    parsed = parse(spec)
    with _lock:
        for name, action in parsed.items():
            _hits.pop(name, None)
            if action is None:
                _actions.pop(name, None)
            else:
                _actions[name] = action
        armed = bool(_actions)


def active() -> dict[str, str]:
    """The armed failpoints and their actions, for status replies."""
    with _lock:
        return {name: f"kill@{a.at}" for name, a in sorted(_actions.items())}


def maybe_trigger(name: str) -> None:
    """Count a hit of failpoint `name` and, if it is armed for this hit, SIGKILL the process
    (never returns then). Does nothing for a disarmed point."""
    with _lock:
        action = _actions.get(name)
        if action is None:
            return
        hit = _hits[name] = _hits.get(name, 0) + 1
        if hit < action.at:
            return
    pid = os.getpid()
    try:
        os.write(2, f"ruaft failpoint {name}: SIGKILL pid {pid} (hit {hit})\n".encode())
    except OSError:
        pass  # no stderr: die anyway
    os.kill(pid, signal.SIGKILL)


def maybe_trigger_on_message(message: Message) -> None:
    """At a message the event loop is about to step the core with:
    ``install_snapshot.chunk.received`` for an InstallSnapshot chunk."""
    if isinstance(message, InstallSnapshot):
        maybe_trigger("install_snapshot.chunk.received")


def maybe_trigger_on_save(stage: str, rd: Ready) -> None:
    """Around (`stage` "before"/"after") the durable write of Ready `rd`:
    ``install_snapshot.persist.<stage>`` if it stores a snapshot received from the leader,
    ``snapshot.persist.<stage>`` if it stores one the peer took of its own state."""
    if rd.snapshot is not None:
        source = "install_snapshot" if rd.apply_snapshot is not None else "snapshot"
        maybe_trigger(f"{source}.persist.{stage}")


try:
    configure(os.environ.get(ENV_VAR, ""))
except ValueError as _exc:
    raise ValueError(f"{ENV_VAR}: {_exc}") from None
