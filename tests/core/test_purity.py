"""The core is pure (DESIGN.md §1): messages in, Ready out; no I/O, no clock, no threads, no
global randomness. This test parses every `ruaft/core/*.py` with `ast` and fails on:

* importing a module that does I/O, reads a clock, runs concurrently or spawns processes
  (os, io, time, datetime, threading, asyncio, socket, subprocess, zmq, lmdb, logging.handlers,
  ...), directly or with `from X import ...`, at any depth (`import os.path`);
* using the `random` module other than for the `random.Random` type: `random.random()`,
  `random.randint`, `from random import choice`, ... draw from the process-global generator
  and make runs unreplayable; randomness must come from the injected `random.Random`;
* calling builtins that do I/O (`open`, `print`, `input`, `breakpoint`) or import dynamically
  (`__import__`, `exec`, `eval`, `compile`);
* configuring logging output (`logging.basicConfig`, `logging.FileHandler`, ...).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE_DIR = Path(__file__).resolve().parents[2] / "ruaft" / "core"
CORE_FILES = sorted(CORE_DIR.glob("*.py"))

FORBIDDEN_MODULES = frozenset({
    # operating system, files, processes
    "os", "io", "sys", "pathlib", "shutil", "tempfile", "glob", "fcntl", "mmap", "signal",
    "subprocess", "multiprocessing", "resource", "pty", "tty", "termios",
    # clocks
    "time", "datetime", "calendar", "sched", "timeit",
    # concurrency
    "threading", "_thread", "asyncio", "concurrent", "queue", "selectors", "select",
    # network
    "socket", "ssl", "http", "urllib", "ftplib", "smtplib", "socketserver", "zmq",
    # storage
    "lmdb", "sqlite3", "dbm", "shelve", "pickle",
    # global or OS randomness
    "secrets", "uuid",
    # dynamic imports, logging output
    "importlib", "logging.handlers", "logging.config",
    # project layers above or beside the core (DESIGN.md §1: arrows point down only)
    "transport_zmq", "kv", "orchestrator", "ruaft.storage", "ruaft.node", "ruaft.testing",
    "ruaft.transport",
})

ALLOWED_RANDOM_ATTRIBUTES = frozenset({"Random"})
FORBIDDEN_BUILTINS = frozenset({"open", "print", "input", "breakpoint", "__import__", "exec",
                                "eval", "compile"})
FORBIDDEN_LOGGING_ATTRIBUTES = frozenset({"basicConfig", "FileHandler", "StreamHandler",
                                          "handlers", "config"})


def _is_forbidden_module(name: str) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in FORBIDDEN_MODULES for i in range(1, len(parts) + 1))


def impurities(source: str, filename: str = "<source>") -> list[str]:
    """Every impurity in `source`, as `file:line: description`."""
    tree = ast.parse(source, filename)
    problems: list[str] = []
    random_aliases: set[str] = set()
    logging_aliases: set[str] = set()

    def report(node: ast.AST, what: str) -> None:
        problems.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_forbidden_module(alias.name):
                    report(node, f"import of {alias.name}")
                if alias.name == "random":
                    random_aliases.add(alias.asname or "random")
                if alias.name == "logging":
                    logging_aliases.add(alias.asname or "logging")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and _is_forbidden_module(module):
                report(node, f"import from {module}")
            for alias in node.names:
                if node.level == 0 and _is_forbidden_module(f"{module}.{alias.name}"):
                    report(node, f"import of {module}.{alias.name}")
                if module == "random" and alias.name not in ALLOWED_RANDOM_ATTRIBUTES:
                    report(node, f"import of random.{alias.name} (global random state)")
                if module == "logging" and alias.name in FORBIDDEN_LOGGING_ATTRIBUTES:
                    report(node, f"import of logging.{alias.name} (log output is I/O)")

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in random_aliases and node.attr not in ALLOWED_RANDOM_ATTRIBUTES:
                report(node, f"use of {node.value.id}.{node.attr} (global random state)")
            if node.value.id in logging_aliases and node.attr in FORBIDDEN_LOGGING_ATTRIBUTES:
                report(node, f"use of {node.value.id}.{node.attr} (log output is I/O)")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in FORBIDDEN_BUILTINS:
                report(node, f"call of builtin {node.func.id}()")
    return problems


def test_core_files_found() -> None:
    names = {path.name for path in CORE_FILES}
    assert {"raft.py", "log.py", "types.py"} <= names, names


@pytest.mark.parametrize("path", CORE_FILES, ids=[p.name for p in CORE_FILES])
def test_core_module_is_pure(path: Path) -> None:
    problems = impurities(path.read_text(), str(path.relative_to(CORE_DIR.parents[1])))
    assert not problems, "the core must stay pure (DESIGN.md §1):\n" + "\n".join(problems)


# ------------------------------------------------------------------ the checker can fail


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import os\n", "import of os"),
        ("import os.path as p\n", "import of os.path"),
        ("from time import monotonic\n", "import from time"),
        ("import threading, json\n", "import of threading"),
        ("from asyncio import sleep\n", "import from asyncio"),
        ("import zmq\n", "import of zmq"),
        ("import lmdb\n", "import of lmdb"),
        ("import subprocess\n", "import of subprocess"),
        ("import socket\n", "import of socket"),
        ("from datetime import datetime\n", "import from datetime"),
        ("import logging.handlers\n", "import of logging.handlers"),
        ("from logging import FileHandler\n", "import of logging.FileHandler"),
        ("import logging\nlogging.basicConfig()\n", "use of logging.basicConfig"),
        ("import random\nx = random.random()\n", "use of random.random"),
        ("import random\ndef f():\n    return random.randint(1, 6)\n", "use of random.randint"),
        ("import random as r\nr.shuffle([])\n", "use of r.shuffle"),
        ("import random\npick = random.choice\n", "use of random.choice"),
        ("from random import randrange\n", "import of random.randrange"),
        ("print('hello')\n", "call of builtin print()"),
        ("data = open('f').read()\n", "call of builtin open()"),
        ("m = __import__('os')\n", "call of builtin __import__()"),
        ("from ruaft.storage import MemoryStorage\n", "import from ruaft.storage"),
        ("import kv.server\n", "import of kv"),
    ],
)
def test_checker_catches_impurity(source: str, expected: str) -> None:
    problems = impurities(source)
    assert any(expected in p for p in problems), problems


def test_checker_accepts_pure_source() -> None:
    source = (
        "from __future__ import annotations\n"
        "import random\n"
        "from random import Random\n"
        "from collections import Counter\n"
        "from dataclasses import dataclass\n"
        "import logging\n"
        "log = logging.getLogger(__name__)\n"
        "def f(rng: random.Random, other: Random) -> int:\n"
        "    return rng.randrange(10) + other.randint(1, 2)\n"
        "g = random.Random(4)\n"
    )
    assert impurities(source) == []
