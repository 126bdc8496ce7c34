"""Fixtures for the CLI tier: the INSTALLED console scripts, driven as subprocesses.

The scripts are found on PATH (`shutil.which`); the README's test command installs the
package first (`pip install -e '.[test]'`), and without them these tests skip with the
reason. Every test runs in its own `tmp_path` (also the working directory, so the default
`./ruaft-data` lands there), and every cluster a test brings up is taken down by the
fixture with `ruaft-cluster down`, after which no peer process of it may remain.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

SCRIPTS = ("ruaft-cluster", "ruaft-kv", "ruaft-peer")


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"$ {' '.join(self.args)}\nexit {self.returncode}\n--- stdout\n{self.stdout}"
                f"--- stderr\n{self.stderr}")


@dataclass
class Cli:
    """Runs the installed scripts in `cwd`; remembers every peer pid it has seen."""

    paths: dict[str, str]
    cwd: Path
    seen_pids: set[int] = field(default_factory=set)

    def run(self, script: str, *args: str, timeout: float = 60.0, expect: int | None = 0) -> Result:
        command = [self.paths[script], *args]
        env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
        completed = subprocess.run(command, cwd=self.cwd, capture_output=True, text=True,
                                   timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        result = Result([script, *args], completed.returncode, completed.stdout, completed.stderr)
        if expect is not None:
            assert result.returncode == expect, str(result)
        assert "Traceback" not in result.stderr, str(result)
        return result

    def cluster(self, *args: str, **options: Any) -> Result:
        return self.run("ruaft-cluster", *args, **options)

    def kv(self, *args: str, **options: Any) -> Result:
        return self.run("ruaft-kv", *args, **options)

    def status(self, data_dir: Path) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(self.cluster("status", "--json", "-d", str(data_dir)).stdout)
        self.seen_pids.update(r["pid"] for r in rows if r["pid"] is not None)
        return rows

    def wait_leader(self, data_dir: Path, timeout: float = 30.0,
                    among: set[int] | None = None) -> tuple[int, list[dict[str, Any]]]:
        """Poll `status --json` until a peer (in `among`) says it is the leader."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.status(data_dir)
            leaders = [r["id"] for r in rows if r["role"] == "leader" and (among is None or r["id"] in among)]
            if leaders:
                return leaders[0], rows
            assert time.monotonic() < deadline, f"no leader within {timeout} s: {rows}"
            time.sleep(0.3)


def our_peers(cluster_file: Path) -> list[psutil.Process]:
    """Live peer processes started from `cluster_file` (matched by their command line)."""
    wanted = str(cluster_file.resolve())
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = process.info["cmdline"] or []
            if "kv.peer_cli" in cmdline and wanted in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def assert_no_peers(cluster_file: Path, pids: set[int]) -> None:
    """No peer of that cluster runs, and none of `pids` is alive as a peer; any found is
    SIGKILLed (so a failing test leaves no orphan) and reported."""
    leftovers = {p.pid: p for p in our_peers(cluster_file)}
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE and "kv.peer_cli" in process.cmdline():
                leftovers[pid] = process
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for process in leftovers.values():
        try:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait(5)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            pass
    assert not leftovers, f"peer processes survived: {sorted(leftovers)}"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    paths = {name: shutil.which(name) for name in SCRIPTS}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        pytest.skip(f"console scripts {', '.join(missing)} are not installed "
                    "(run `python3 -m pip install -e '.[test]'` first, as the README says)")
    return Cli({k: v for k, v in paths.items() if v is not None}, tmp_path)


@pytest.fixture
def data_dir(cli: Cli, tmp_path: Path) -> Iterator[Path]:
    """A data dir for one cluster; at teardown `ruaft-cluster down` (if a cluster file is
    there) and the check that no peer of it remains."""
    path = tmp_path / "ruaft-data"
    cluster_file = path / "cluster.json"
    try:
        yield path
    finally:
        if cluster_file.exists():
            for pid_file in path.glob("peer-*/pid"):
                try:
                    cli.seen_pids.add(int(pid_file.read_text().strip()))
                except (OSError, ValueError):
                    pass
            cli.cluster("down", "-d", str(path), expect=None)
        assert_no_peers(cluster_file, cli.seen_pids)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def write_cluster_file(path: Path, n: int = 3) -> Path:
    """A cluster file as a user would write it, for peers that were never started
    (nothing listens on its ports)."""
    ports = free_ports(3 * n)
    peers = [{"id": i, "raft_address": f"tcp://127.0.0.1:{ports[i]}",
              "client_address": f"tcp://127.0.0.1:{ports[n + i]}",
              "control_address": f"tcp://127.0.0.1:{ports[2 * n + i]}", "data_dir": f"peer-{i}"}
             for i in range(n)]
    path.mkdir(parents=True, exist_ok=True)
    (path / "cluster.json").write_text(json.dumps({"format": 1, "cluster_id": "test", "peers": peers}))
    return path / "cluster.json"

