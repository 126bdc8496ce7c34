"""The golden interaction language (etcd-io/raft's datadriven style) over `harness.Network`.

A script is a sequence of blocks::

    # comments and blank lines are kept as they are
    command arg key=value
    ----
    expected output, one or more lines, ended by a blank line or the end of the file

Commands (peer ids are 1..N):

  add-nodes N [seed=S] [CONFIG_FIELD=VALUE ...]   start N peers; Config fields by name
  set-state ID [term=T] [vote=V] [commit=C] [log=T1,T2,...] [snapshot=T/I]
                                               replace ID's disk and restart it (set-up only)
  campaign ID              tick ID until its election timeout fires (prints the tick count)
  propose ID DATA          a client command at ID
  tick ID [N]              N ticks of ID's clock (default 1)
  tick-all [N]             N rounds of one tick per live peer, in id order
  deliver [ID]             one round: deliver the queued messages (to ID), printing each
  drop [ID]                the network loses the queued messages (to ID)
  stabilize                deliver rounds until no message is queued
  partition 1,2 3          cut the links between groups (unlisted peers are alone)
  isolate ID               cut every link of ID
  heal                     restore every link
  crash ID / restart ID    stop ID (its disk stays) / start it again from its disk
  read-index ID CTX        a linearizable read request with context CTX
  compact ID INDEX         the application snapshots its state at INDEX; the log is compacted
  transfer ID TO           leadership transfer from ID to TO
  log ID                   ID's log, commit and applied indexes and application state
  status                   one line per peer

Output of a peer's reaction to an input: `ID is ROLE at term T, leader L` when its role or known
leader changes, `ID dropped N (reason)` for dropped messages, and `ID Ready:` followed by the
Ready's notable parts in the order the driver carries them out (Snapshot, Entries, HardState,
Send, ApplySnapshot, Apply, ReadState, FailedRead). A delivered message is `> FROM->TO ...`
with the receiver's reaction indented below it. Notation: `T/I` is term/index.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ruaft.core.types import NO_PEER, Config, Entry, HardState, Role, Snapshot
from tests.core.harness import (
    DiskRecord,
    Network,
    log_from_terms,
    render_entries,
    render_peer,
    render_snapshot,
)

SEPARATOR = "----"


@dataclass
class Case:
    """One command of a script with its expected output."""

    line: int
    command: str
    expected: str


Item = str | Case  # a verbatim line (comment or blank) or a case


def parse_script(text: str) -> list[Item]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    items: list[Item] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == "" or line.startswith("#"):
            items.append(line)
            i += 1
            continue
        command_line = i + 1
        if i + 1 >= len(lines) or lines[i + 1] != SEPARATOR:
            raise ValueError(f"line {command_line}: command {line!r} is not followed by {SEPARATOR}")
        i += 2
        expected: list[str] = []
        while i < len(lines) and lines[i] != "":
            expected.append(lines[i])
            i += 1
        items.append(Case(command_line, line, "\n".join(expected)))
    return items


def format_script(items: list[Item], outputs: dict[int, str]) -> str:
    """The script text with each case's output replaced by `outputs[line]` when present."""
    out: list[str] = []
    for item in items:
        if isinstance(item, Case):
            out += [item.command, SEPARATOR, outputs.get(item.line, item.expected)]
        else:
            out.append(item)
    return "\n".join(out) + "\n"


class Interpreter:
    """Runs the commands of one script against a fresh `Network`."""

    def __init__(self) -> None:
        self.net: Network | None = None
        self.handlers: dict[str, Callable[[list[str], dict[str, str]], None]] = {
            "add-nodes": self.add_nodes,
            "set-state": self.set_state,
            "campaign": self.campaign,
            "propose": self.propose,
            "tick": self.tick,
            "tick-all": self.tick_all,
            "deliver": self.deliver,
            "drop": self.drop,
            "stabilize": self.stabilize,
            "partition": self.partition,
            "isolate": self.isolate,
            "heal": self.heal,
            "crash": self.crash,
            "restart": self.restart,
            "read-index": self.read_index,
            "compact": self.compact,
            "transfer": self.transfer,
            "log": self.log,
            "status": self.status,
        }

    # ------------------------------------------------------------------ plumbing

    def run(self, command: str) -> str:
        words = shlex.split(command)
        name, args = words[0], words[1:]
        positional = [a for a in args if "=" not in a]
        options = dict(a.split("=", 1) for a in args if "=" in a)
        handler = self.handlers.get(name)
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        self.lines: list[str] = []
        if self.net is not None:
            self.net.trace = self.lines
        try:
            handler(positional, options)
        except (ValueError, KeyError, IndexError) as exc:
            # A malformed or refused command; safety violations (AssertionError) and broken
            # core invariants (RaftInvariantError) are not caught: they fail the test.
            self.lines.append(f"error: {type(exc).__name__}: {exc}")
        finally:
            if self.net is not None:
                self.net.trace = None
        return "\n".join(self.lines) if self.lines else "ok"

    @property
    def network(self) -> Network:
        if self.net is None:
            raise ValueError("add-nodes first")
        return self.net

    def say(self, line: str) -> None:
        self.lines.append(line)

    # ------------------------------------------------------------------ commands

    def add_nodes(self, args: list[str], opts: dict[str, str]) -> None:
        count = int(args[0])
        seed = int(opts.pop("seed", "0"))
        fields = {f.name: f.type for f in dataclasses.fields(Config)}
        values: dict[str, object] = {}
        for key, raw in opts.items():
            if key not in fields:
                raise ValueError(f"unknown Config field {key!r}")
            values[key] = raw == "true" if raw in ("true", "false") else int(raw)
        self.net = Network(count, seed=seed, config=Config(**values))  # type: ignore[arg-type]

    def set_state(self, args: list[str], opts: dict[str, str]) -> None:
        peer = int(args[0])
        snapshot = None
        if "snapshot" in opts:
            term, index = (int(x) for x in opts["snapshot"].split("/"))
            snapshot = Snapshot(index, term, b"")
        start = snapshot.index + 1 if snapshot else 1
        terms = [int(t) for t in opts["log"].split(",")] if opts.get("log") else []
        disk = DiskRecord(
            HardState(int(opts.get("term", "0")), int(opts.get("vote", str(NO_PEER))),
                      int(opts.get("commit", "0"))),
            snapshot,
            list(log_from_terms(terms, start=start)),
        )
        self.network.trace = None  # the restart's replay is set-up, not behaviour under test
        self.network.set_disk(peer, disk)
        self.network.trace = self.lines

    def campaign(self, args: list[str], opts: dict[str, str]) -> None:
        ticks = self.network.campaign(int(args[0]))
        self.lines.insert(0, f"{args[0]} election timeout after {ticks} ticks")

    def propose(self, args: list[str], opts: dict[str, str]) -> None:
        peer, data = int(args[0]), args[1].encode()
        mark = len(self.lines)
        result = self.network.propose(peer, data)
        head = "refused" if result is None else f"proposed at {result[1]}/{result[0]}"
        self.lines.insert(mark, f"{peer} {head}")

    def tick(self, args: list[str], opts: dict[str, str]) -> None:
        self.network.tick(int(args[0]), int(args[1]) if len(args) > 1 else 1)

    def tick_all(self, args: list[str], opts: dict[str, str]) -> None:
        self.network.tick_all(int(args[0]) if args else 1)

    def deliver(self, args: list[str], opts: dict[str, str]) -> None:
        self.network.deliver(int(args[0]) if args else None)

    def drop(self, args: list[str], opts: dict[str, str]) -> None:
        self.network.drop(int(args[0]) if args else None)

    def stabilize(self, args: list[str], opts: dict[str, str]) -> None:
        self.network.stabilize()

    def partition(self, args: list[str], opts: dict[str, str]) -> None:
        self.network.partition(*([int(p) for p in group.split(",")] for group in args))

    def isolate(self, args: list[str], opts: dict[str, str]) -> None:
        self.network.isolate(int(args[0]))

    def heal(self, args: list[str], opts: dict[str, str]) -> None:
        self.network.heal()

    def crash(self, args: list[str], opts: dict[str, str]) -> None:
        self.network.crash(int(args[0]))

    def restart(self, args: list[str], opts: dict[str, str]) -> None:
        self.network.restart(int(args[0]))

    def read_index(self, args: list[str], opts: dict[str, str]) -> None:
        peer, ctx = int(args[0]), int(args[1])
        mark = len(self.lines)
        accepted = self.network.read_index(peer, ctx)
        self.lines.insert(mark, f"{peer} {'accepted' if accepted else 'refused'} read {ctx}")

    def compact(self, args: list[str], opts: dict[str, str]) -> None:
        self.network.compact(int(args[0]), int(args[1]))

    def transfer(self, args: list[str], opts: dict[str, str]) -> None:
        peer, target = int(args[0]), int(args[1])
        mark = len(self.lines)
        accepted = self.network.transfer(peer, target)
        self.lines.insert(mark, f"{peer} {'accepted' if accepted else 'refused'} transfer to {target}")

    def log(self, args: list[str], opts: dict[str, str]) -> None:
        peer = int(args[0])
        node = self.network.nodes[peer]
        if node.core is None:
            disk = node.disk
            self.say(f"{peer} is down; on disk:")
            if disk.snapshot:
                self.say(f"snapshot {render_snapshot(disk.snapshot)}")
            self.say(f"entries [{render_entries(disk.entries)}]")
            self.say(f"HardState term={disk.hard_state.term} vote={render_peer(disk.hard_state.vote)} "
                     f"commit={disk.hard_state.commit}")
            return
        core = node.core
        log = core.log
        if log.snapshot is not None:
            self.say(f"snapshot {render_snapshot(log.snapshot)}")
        entries: list[Entry] = log.slice(log.first_index, log.last_index + 1)
        self.say(f"entries [{render_entries(entries)}]")
        self.say(f"commit={core.commit_index} applied={core.applied_index} "
                 f"state={','.join(node.sm.values())!r}")

    def status(self, args: list[str], opts: dict[str, str]) -> None:
        net = self.network
        for peer in net.ids:
            node = net.nodes[peer]
            if node.core is None:
                self.say(f"{peer} down")
                continue
            core = node.core
            line = (f"{peer} {core.role.value} term={core.term} vote={render_peer(core.vote)} "
                    f"leader={render_peer(core.leader_id)} last={core.last_index} "
                    f"commit={core.commit_index} applied={core.applied_index}")
            if core.role is Role.LEADER:
                matches = ",".join(f"{p}:{core.match_index(p)}" for p in net.ids if p != peer)
                line += f" match={matches}"
            self.say(line)


def run_script(path: Path) -> tuple[list[Item], dict[int, str]]:
    """Run every case of the script; returns the parsed items and each case's actual output."""
    items = parse_script(path.read_text())
    interpreter = Interpreter()
    outputs: dict[int, str] = {}
    for item in items:
        if isinstance(item, Case):
            outputs[item.line] = interpreter.run(item.command)
    return items, outputs
