"""One peer, any host: a 3-peer KV cluster whose peers live in three Linux network
namespaces, started one by one with `ruaft-peer --cluster FILE --id N` (issue 5, item 2).

Design
------
The test builds a small private LAN out of four network namespaces it creates itself (names
`ruaft-nt-<pid>-<rand>-{a,b,c,hub}`, so parallel or stale runs never collide)::

        ns "a" (peer 0)        ns "b" (peer 1)        ns "c" (peer 2)
        eth0 10.77.X.1/24      eth0 10.77.X.2/24      eth0 10.77.X.3/24
             |  veth                |  veth                |  veth
        -----+----------------------+----------------------+------  br0 10.77.X.254/24
                              ns "hub" (bridge + the clients)

* Each peer namespace has one veth whose other end is a port of a bridge in the fourth,
  "hub", namespace. Both ends of every veth are created directly inside the test's
  namespaces (`ip link add ... netns ...`), so the host's own network namespace is never
  touched: no interface, address or route is added there, and no packet of the test can
  leave the namespaces it made. `X` is random; the /24 exists only inside them.
* The hub also has an address on the bridge, 10.77.X.254, and plays the operator's machine:
  every client (`KVClient`) runs there, in a short helper process started with
  `ip netns exec <hub> python ...` that prints one JSON line. (A Python thread cannot enter
  another network namespace before 3.12, and ZeroMQ's I/O threads would not follow it
  anyway, so running the clients in a subprocess inside the hub is the simplest robust way.)
* The cluster file is a production one (`control_address: null`, no fault injector): every
  peer uses the same ports, 7000 (Raft) and 7100 (clients), at its own address, as on
  three real hosts. Peer 0 binds the wildcard `tcp://0.0.0.0:...` and advertises
  10.77.X.1; peers 1 and 2 bind their advertised address. The peers are started with
  `ip netns exec <ns> ruaft-peer --cluster FILE --id N` (the console script next to this
  interpreter, or `python -m kv.peer_cli` when it is not installed).
* The partition is made by the namespaces' routing, not by the peers' fault injector:
  `blackhole` /32 routes in every namespace, in the isolated peer's towards every other
  address and in every other namespace towards the isolated peer. A blackhole /32 beats the
  on-link /24, so the kernel discards the traffic in both directions (a connect fails at once
  with EINVAL; packets of established connections are dropped). Before trusting it the test
  proves it at the TCP level with raw `connect()` probes run inside the namespaces (cut
  pairs fail, uncut pairs still connect) and proves it again after healing (deleting the
  routes) that every pair connects.

What it checks: the cluster elects a leader and serves put/get from the hub; then the leader
is isolated, the two others elect a new leader and commit a write, the isolated peer is alive
(it answers a status request from inside its own namespace) but behind (its commit index is
below the write), and a client restricted to it gets no answer from the hub; after healing,
the isolated peer's `commit_index` and `applied_index` (the `status` op of its client port)
reach the majority's, and the value written during the partition is read back.

Cleanup, whatever happens (fixture finalizer): every peer is stopped by its pid (SIGTERM,
then SIGKILL; pids in a namespace are ordinary host pids), then any process still inside one
of the test's namespaces (`ip netns pids`) is SIGKILLed by pid, then the namespaces are
deleted, which destroys the veths and the bridge with them. Namespaces of an earlier run of
this test whose process is gone (named with its pid) are removed at the start.

Skips only where network namespaces are unavailable: not root, no `ip` binary (package
iproute2), or `ip netns add` / `ip netns exec` / veth / bridge creation refused by the kernel
or the container (permission denied, not supported).
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
PREFIX = "ruaft-nt-"
RAFT_PORT = 7000
CLIENT_PORT = 7100
TEST_BUDGET_S = 55.0
"""The whole test (setup excluded) must finish well within a minute."""

# Errors of `ip` that mean "network namespaces (or veth/bridge in them) are not available
# here", as opposed to a bug of this test.
UNAVAILABLE = re.compile(r"Operation not permitted|Permission denied|not supported|"
                         r"Unknown device type|Cannot open network namespace|"
                         r"mount --make-rshared|mount of /sys failed",
                         re.IGNORECASE)


class Unavailable(Exception):
    """Network namespaces cannot be used on this machine."""


def ip(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_pid(pid: int) -> None:
    """SIGKILL a pid just listed by `ip netns pids` (inside one of our namespaces)."""
    try:
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_child(process: subprocess.Popen[bytes], grace: float) -> bool:
    """SIGTERM (if grace > 0), then SIGKILL after `grace`; True once it is reaped. Popen's
    own methods never signal a child already reaped, so a recycled pid is never hit."""
    try:
        if grace > 0 and process.poll() is None:
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.wait(5)
        return True
    except (subprocess.TimeoutExpired, OSError):
        return False


def netns_pids(ns: str) -> list[int]:
    done = ip("netns", "pids", ns, check=False)
    return [int(token) for token in done.stdout.split() if token.isdigit()]


def delete_netns(ns: str) -> None:
    for pid in netns_pids(ns):
        kill_pid(pid)
    ip("netns", "del", ns, check=False)


def sweep_stale_namespaces() -> None:
    """Delete namespaces left by an earlier run of this test that was SIGKILLed (its pid,
    part of the name, is gone); never touches any other namespace."""
    done = ip("netns", "list", check=False)
    for line in done.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(PREFIX + r"(\d+)-[0-9a-f]+-(?:a|b|c|hub)", name)
        if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
            delete_netns(name)


# The client agent, one per namespace: one JSON request a line on stdin, one JSON reply a
# line on stdout ({"agent_error": ...} if the request itself blew up).
AGENT_SCRIPT = r'''
import errno, json, socket, sys, time, traceback
from kv.client import KVClient, KVError

def status_of(client, i, timeout=1.0):
    try:
        return client.status(i, timeout=timeout)
    except TimeoutError:
        return None

def handle(req):
    op = req["op"]
    servers = req.get("servers", [])
    if op == "probe":   # raw TCP connects: {"host:port": 0 or errno name}
        out = {}
        for host, port in req["targets"]:
            s = socket.socket()
            s.settimeout(req.get("timeout", 1.0))
            try:
                code = s.connect_ex((host, port))
            except OSError as exc:
                code = exc.errno or -1
            finally:
                s.close()
            out[f"{host}:{port}"] = 0 if code == 0 else errno.errorcode.get(code, str(code))
        return out
    if op == "raw_status":   # diagnosis: the raw reply to a status request, whatever its id
        import msgpack, zmq
        out = {}
        for i in req["ids"]:
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(servers[i])
            sock.send(msgpack.packb({"id": 1000 + i, "op": "status"}))
            reply = msgpack.unpackb(sock.recv(), raw=False) if sock.poll(1000) else None
            out[str(i)] = {"request_id": 1000 + i, "reply": reply}
            sock.close(0)
        return out
    client = KVClient(servers, timeout=req.get("timeout", 10.0), attempt_timeout=req.get("attempt", 1.0))
    if req.get("reachable") is not None:
        client.set_reachable(req["reachable"])
    try:
        if op == "status":
            return {str(i): status_of(client, i, req.get("timeout", 1.0)) for i in req["ids"]}
        if op == "wait_leader":   # until one of `ids` says leader (in a term > min_term)
            deadline = time.monotonic() + req["wait"]
            while True:
                rows = {i: status_of(client, i, 0.5) for i in req["ids"]}
                leaders = [i for i, r in rows.items()
                           if r and r["role"] == "leader" and r["term"] > req.get("min_term", -1)]
                if leaders or time.monotonic() > deadline:
                    return {"leader": leaders[0] if leaders else None,
                            "rows": {str(i): r for i, r in rows.items()}}
                time.sleep(0.2)
        if op == "wait_index":   # until peer `id` has commit and applied index >= target
            deadline = time.monotonic() + req["wait"]
            while True:
                row = status_of(client, req["id"], 0.5)
                if row and min(row["commit_index"], row["applied_index"]) >= req["target"]:
                    return {"ok": True, "row": row}
                if time.monotonic() > deadline:
                    return {"ok": False, "row": row}
                time.sleep(0.2)
        started = time.monotonic()
        try:
            if op == "put":
                client.put(req["key"], req["value"])
                result = {"ok": True}
            elif op == "append":
                client.append(req["key"], req["value"])
                result = {"ok": True}
            elif op == "get":
                result = {"ok": True, "value": client.get(req["key"])}
            else:
                raise ValueError(f"unknown op {op!r}")
        except KVError as exc:
            result = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        result["seconds"] = round(time.monotonic() - started, 3)
        return result
    finally:
        client.close()

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    try:
        reply = handle(json.loads(line))
    except BaseException:
        reply = {"agent_error": traceback.format_exc()}
    print(json.dumps(reply), flush=True)
'''


class Agent:
    """A client agent process inside one namespace, spoken to in JSON lines."""

    def __init__(self, process: subprocess.Popen[bytes]):
        self.process = process
        self._buffer = b""

    def request(self, request: dict[str, Any], timeout: float) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        return self.read_reply(time.monotonic() + timeout)

    def read_reply(self, deadline: float) -> Any:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the client agent did not answer in time")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise EOFError(f"the client agent exited ({self.process.poll()})")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)


@dataclass
class Lab:
    """The namespaces, the cluster file and the peer processes of one test."""

    tag: str
    subnet: str  # "10.77.X"
    tmp: Path
    namespaces: list[str] = field(default_factory=list)
    peers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    agents: dict[str, "Agent"] = field(default_factory=dict)
    cluster_file: Path | None = None
    blackholes: list[tuple[str, str]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------------------- topology

    def ns(self, name: str) -> str:
        return f"{PREFIX}{self.tag}-{name}"

    def addr(self, peer: int) -> str:
        return f"{self.subnet}.{peer + 1}"

    @property
    def hub_addr(self) -> str:
        return f"{self.subnet}.254"

    def peer_ns(self, peer: int) -> str:
        return self.ns("abc"[peer])

    def build(self) -> None:
        hub = self.ns("hub")
        # The first `ip netns add` and `ip netns exec` tell whether namespaces work here.
        for name in (hub, *(self.peer_ns(i) for i in range(3))):
            done = ip("netns", "add", name, check=False)
            if done.returncode != 0:
                self._unavailable(f"ip netns add {name}", done)
            self.namespaces.append(name)
        done = ip("netns", "exec", hub, "true", check=False)
        if done.returncode != 0:
            self._unavailable(f"ip netns exec {hub} true", done)
        done = ip("-n", hub, "link", "add", "br0", "type", "bridge", check=False)
        if done.returncode != 0:
            self._unavailable("a bridge in a namespace (ip link add br0 type bridge)", done)
        ip("-n", hub, "link", "set", "lo", "up")
        ip("-n", hub, "addr", "add", f"{self.hub_addr}/24", "dev", "br0")
        ip("-n", hub, "link", "set", "br0", "up")
        for i in range(3):
            ns, port = self.peer_ns(i), f"port{i}"
            done = ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port,
                      "netns", hub, check=False)
            if done.returncode != 0:
                self._unavailable("a veth pair between namespaces", done)
            ip("-n", hub, "link", "set", port, "master", "br0")
            ip("-n", hub, "link", "set", port, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    @staticmethod
    def _unavailable(what: str, done: subprocess.CompletedProcess[str]) -> None:
        message = (done.stderr or done.stdout).strip()
        if UNAVAILABLE.search(message):
            raise Unavailable(f"{what} failed: {message}")
        raise RuntimeError(f"{what} failed ({done.returncode}): {message}")

    # ------------------------------------------------------------------------------ cluster

    def write_cluster_file(self) -> Path:
        folder = self.tmp / "cluster"
        peers = []
        for i in range(3):
            bind_host = "0.0.0.0" if i == 0 else self.addr(i)
            peers.append({
                "id": i,
                "raft_address": f"tcp://{self.addr(i)}:{RAFT_PORT}",
                "raft_bind": f"tcp://{bind_host}:{RAFT_PORT}",
                "client_address": f"tcp://{self.addr(i)}:{CLIENT_PORT}",
                "client_bind": f"tcp://{bind_host}:{CLIENT_PORT}",
                "control_address": None,
                "data_dir": f"peer-{i}",
            })
        document = {"format": 1, "cluster_id": f"netns-{self.tag}", "maxraftstate": 1 << 20,
                    "tick_ms": 50, "peers": peers}
        folder.mkdir(parents=True)
        self.cluster_file = folder / "cluster.json"
        self.cluster_file.write_text(json.dumps(document, indent=2) + "\n")
        return self.cluster_file

    def start_peer(self, peer: int) -> None:
        assert self.cluster_file is not None
        script = Path(sys.executable).parent / "ruaft-peer"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "kv.peer_cli"]
        out_dir = self.cluster_file.parent / f"peer-{peer}"
        out_dir.mkdir(exist_ok=True)
        with open(out_dir / "output.txt", "ab") as out:
            self.peers[peer] = subprocess.Popen(
                ["ip", "netns", "exec", self.peer_ns(peer), *command,
                 "--cluster", str(self.cluster_file), "--id", str(peer)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.tmp, env=self._env(), start_new_session=True)
        self.note(f"started peer {peer} in {self.peer_ns(peer)} (pid {self.peers[peer].pid})")

    def _env(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        return dict(os.environ, PYTHONUNBUFFERED="1",
                    PYTHONPATH=str(REPO) + (os.pathsep + path if path else ""))

    def servers(self) -> list[str]:
        return [f"tcp://{self.addr(i)}:{CLIENT_PORT}" for i in range(3)]

    def start_agents(self) -> None:
        """One client agent per namespace (started together: Python's start-up is the slow
        part, so each namespace pays it once)."""
        for ns in self.namespaces:
            self.agents[ns] = Agent(subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-u", "-c", AGENT_SCRIPT],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                cwd=REPO, env=self._env(), start_new_session=True))
        for ns, agent in self.agents.items():
            ready = agent.read_reply(time.monotonic() + 30.0)
            assert ready == {"ready": True}, f"client agent in {ns} did not start: {ready}"

    def client(self, request: dict[str, Any], ns: str | None = None, timeout: float = 30.0) -> Any:
        """Run one client request inside namespace `ns` (the hub by default)."""
        if "servers" not in request:
            request = dict(request, servers=self.servers())
        ns = ns or self.ns("hub")
        reply = self.agents[ns].request(request, timeout)
        assert "agent_error" not in reply, (f"client {request} in {ns}:\n{reply['agent_error']}\n"
                                            f"{self.diagnostics()}")
        return reply

    def status_diagnosis(self, ids: list[int], ns: str | None = None) -> str:
        """Why `KVClient.status` got no answer: the raw replies to a status request."""
        raw = self.client({"op": "raw_status", "ids": ids}, ns)
        clobbered = {i: r["reply"]["id"] for i, r in raw.items()
                     if r["reply"] is not None and r["reply"].get("id") != r["request_id"]}
        if clobbered:
            return (f"KVClient.status gets no answer although the peers DO reply: the reply "
                    f"carries id {clobbered} (the peer's id) instead of the request id, so the "
                    f"client drops it as stale (kv/server.py: the status reply's 'id' field "
                    f"overwrites the RPC request id in RpcServer.reply). Raw replies: {raw}")
        return f"raw replies to a status request: {raw}"

    def probe(self, ns: str, targets: list[tuple[str, int]]) -> dict[str, Any]:
        """TCP connects from inside `ns`: 0 or the errno name, per "host:port"."""
        return self.client({"op": "probe", "targets": targets, "timeout": 1.0, "servers": []}, ns)

    # ---------------------------------------------------------------------------- partition

    def isolate(self, peer: int) -> None:
        """Cut `peer` off by routing: blackhole /32 routes on both ends of every path."""
        others = [self.addr(i) for i in range(3) if i != peer] + [self.hub_addr]
        for address in others:
            self._blackhole(self.peer_ns(peer), address)
        for ns in [self.peer_ns(i) for i in range(3) if i != peer] + [self.ns("hub")]:
            self._blackhole(ns, self.addr(peer))

    def _blackhole(self, ns: str, address: str) -> None:
        ip("-n", ns, "route", "add", "blackhole", f"{address}/32")
        self.blackholes.append((ns, address))

    def heal(self) -> None:
        while self.blackholes:
            ns, address = self.blackholes.pop()
            ip("-n", ns, "route", "del", "blackhole", f"{address}/32")

    # ------------------------------------------------------------------------------ helpers

    def note(self, line: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {line}")
        print(line)

    def assert_peers_alive(self) -> None:
        dead = {i: p.returncode for i, p in self.peers.items() if p.poll() is not None}
        assert not dead, f"peers exited: {dead}\n{self.diagnostics()}"

    def diagnostics(self) -> str:
        parts = ["--- test log", *self.log]
        if self.cluster_file is not None:
            for i in range(3):
                folder = self.cluster_file.parent / f"peer-{i}"
                for name in ("output.txt", "peer-error.txt", "peer.log"):
                    path = folder / name
                    if path.exists():
                        lines = path.read_text(errors="replace").splitlines()[-15:]
                        parts.append(f"--- peer {i} {name} (tail)")
                        parts.extend(lines)
        return "\n".join(parts)

    # ------------------------------------------------------------------------------ cleanup

    def cleanup(self) -> list[str]:
        """Stop every peer by pid, kill anything left in our namespaces, delete them.
        Returns what could not be cleaned (empty when all is gone)."""
        problems: list[str] = []
        for agent in self.agents.values():
            if not stop_child(agent.process, grace=0):
                problems.append(f"client agent pid {agent.process.pid} did not die")
            for pipe in (agent.process.stdin, agent.process.stdout):
                if pipe is not None:
                    pipe.close()
        for peer, process in self.peers.items():
            if not stop_child(process, grace=3.0):
                problems.append(f"peer {peer} (pid {process.pid}) did not die")
        for ns in self.namespaces:
            try:
                delete_netns(ns)
            except Exception as exc:  # keep going: delete the others
                problems.append(f"deleting {ns}: {exc!r}")
        listed = ip("netns", "list", check=False).stdout
        problems += [f"namespace {ns} still exists" for ns in self.namespaces
                     if re.search(rf"^{re.escape(ns)}(\s|$)", listed, re.MULTILINE)]
        return problems


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if sys.platform != "linux":
        pytest.skip("network namespaces need Linux")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add); run as root or in CI with root")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` binary: install iproute2 (apt-get install iproute2) to run this test")
    sweep_stale_namespaces()
    lab = Lab(tag=f"{os.getpid()}-{uuid.uuid4().hex[:6]}",
              subnet=f"10.77.{random.randint(1, 254)}", tmp=tmp_path)
    try:
        try:
            lab.build()
        except Unavailable as exc:
            pytest.skip(f"network namespaces are unavailable here: {exc}")
        yield lab
    finally:
        problems = lab.cleanup()
        assert not problems, f"cleanup incomplete: {problems}"


def is_cut(result: Any) -> bool:
    """A connect that failed because of the network, not because nobody listens."""
    return result in ("EINVAL", "ENETUNREACH", "EHOSTUNREACH", "EAGAIN", "ETIMEDOUT")


def test_three_namespaces_partition_by_routing(lab: Lab) -> None:
    start = time.monotonic()

    def remaining() -> float:
        left = TEST_BUDGET_S - (time.monotonic() - start)
        assert left > 1, f"test budget of {TEST_BUDGET_S} s exhausted\n{lab.diagnostics()}"
        return left

    lab.write_cluster_file()
    for i in range(3):
        lab.start_peer(i)
    lab.start_agents()

    # --- the cluster comes up across the namespaces and serves clients from the hub.
    up = lab.client({"op": "wait_leader", "ids": [0, 1, 2], "wait": min(20.0, remaining())})
    if up["leader"] is None:
        pytest.fail(f"no leader seen within 20 s: {up}\n{lab.status_diagnosis([0, 1, 2])}\n"
                    f"{lab.diagnostics()}")
    leader = up["leader"]
    # `ip netns exec` execs the command: the pid we hold is the peer's own (what we kill).
    for i, row in up["rows"].items():
        assert row is None or row["pid"] == lab.peers[int(i)].pid, (i, row, lab.peers[int(i)].pid)
    term = up["rows"][str(leader)]["term"]
    lab.note(f"leader {leader} in term {term} at {lab.addr(leader)}")
    put = lab.client({"op": "put", "key": "k1", "value": "before", "timeout": 10.0})
    assert put["ok"], f"{put}\n{lab.diagnostics()}"
    get = lab.client({"op": "get", "key": "k1", "timeout": 10.0})
    assert get == {"ok": True, "value": "before", "seconds": get["seconds"]}, get
    lab.assert_peers_alive()

    # --- partition: isolate the leader by routing, and prove the cut at the TCP level.
    isolated = leader
    majority = [i for i in range(3) if i != isolated]
    other = majority[0]
    lab.isolate(isolated)
    cut_paths = {
        "majority->isolated": lab.probe(lab.peer_ns(other), [(lab.addr(isolated), RAFT_PORT)]),
        "isolated->majority": lab.probe(lab.peer_ns(isolated),
                                        [(lab.addr(i), RAFT_PORT) for i in majority]),
        "hub->isolated": lab.probe(lab.ns("hub"), [(lab.addr(isolated), CLIENT_PORT)]),
    }
    kept_paths = lab.probe(lab.peer_ns(majority[0]), [(lab.addr(majority[1]), RAFT_PORT)])
    routes = ip("-n", lab.peer_ns(isolated), "route", "show").stdout.strip().replace("\n", "; ")
    lab.note(f"partition isolating peer {isolated}, its routes: {routes}")
    lab.note(f"TCP connects: cut {cut_paths}; kept {kept_paths}")
    assert all(is_cut(r) for probes in cut_paths.values() for r in probes.values()), cut_paths
    assert all(r == 0 for r in kept_paths.values()), kept_paths

    # The majority elects a leader in a higher term and commits a write.
    again = lab.client({"op": "wait_leader", "ids": majority, "min_term": term,
                        "wait": min(15.0, remaining())})
    assert again["leader"] in majority, f"majority elected no leader: {again}\n{lab.diagnostics()}"
    lab.note(f"majority leader {again['leader']} in term {again['rows'][str(again['leader'])]['term']}")
    put = lab.client({"op": "put", "key": "k2", "value": "during", "timeout": 10.0,
                      "reachable": majority})
    assert put["ok"], f"majority did not commit: {put}\n{lab.diagnostics()}"
    for n in range(5):  # a few more entries for the isolated peer to catch up on
        more = lab.client({"op": "append", "key": "k3", "value": f"{n};", "timeout": 10.0,
                           "reachable": majority})
        assert more["ok"], f"majority did not commit: {more}\n{lab.diagnostics()}"
    rows = lab.client({"op": "status", "ids": majority, "timeout": 2.0})
    target = max(row["commit_index"] for row in rows.values())
    lab.note(f"majority committed k2 and 5 appends to k3; commit index {target}")

    # The isolated peer is alive (it answers inside its own namespace) but behind; from the
    # hub, a client restricted to it gets no answer.
    local = lab.client({"op": "status", "ids": [isolated], "timeout": 2.0}, ns=lab.peer_ns(isolated))
    local_row = local[str(isolated)]
    assert local_row is not None, f"isolated peer does not answer locally\n{lab.diagnostics()}"
    assert local_row["commit_index"] < target, (local_row, target)
    lab.note(f"isolated peer {isolated} (seen from its own namespace): {local_row}")
    silent = lab.client({"op": "status", "ids": [isolated], "timeout": 2.0})
    assert silent[str(isolated)] is None, f"isolated peer answered across the partition: {silent}"
    cut_get = lab.client({"op": "get", "key": "k2", "timeout": 3.0, "reachable": [isolated]})
    assert not cut_get["ok"] and cut_get["error"] == "NoLeaderError", cut_get
    lab.note(f"client restricted to peer {isolated}: {cut_get['error']} after {cut_get['seconds']} s")
    lab.assert_peers_alive()

    # --- heal: delete the routes; every path connects again and the isolated peer catches up.
    lab.heal()
    healed = {
        "majority->isolated": lab.probe(lab.peer_ns(other), [(lab.addr(isolated), RAFT_PORT)]),
        "isolated->majority": lab.probe(lab.peer_ns(isolated),
                                        [(lab.addr(i), RAFT_PORT) for i in majority]),
        "hub->isolated": lab.probe(lab.ns("hub"), [(lab.addr(isolated), CLIENT_PORT)]),
    }
    lab.note(f"healed: {healed}")
    assert all(r == 0 for probes in healed.values() for r in probes.values()), healed
    caught = lab.client({"op": "wait_index", "id": isolated, "target": target,
                         "wait": min(20.0, remaining())})
    assert caught["ok"], (f"peer {isolated} did not catch up to {target}: {caught}\n"
                          f"{lab.diagnostics()}")
    lab.note(f"peer {isolated} caught up: {caught['row']}")
    final = lab.client({"op": "status", "ids": [0, 1, 2], "timeout": 2.0})
    assert all(final[str(i)] is not None for i in range(3)), final
    get = lab.client({"op": "get", "key": "k2", "timeout": 10.0})
    assert get["ok"] and get["value"] == "during", get
    get = lab.client({"op": "get", "key": "k3", "timeout": 10.0})
    assert get["ok"] and get["value"] == "0;1;2;3;4;", get
    lab.assert_peers_alive()
    for i in range(3):
        error = lab.cluster_file.parent / f"peer-{i}" / "peer-error.txt"  # type: ignore[union-attr]
        assert not error.exists(), f"peer {i}: {error.read_text()}"
    elapsed = time.monotonic() - start
    lab.note(f"done in {elapsed:.1f} s")
    assert elapsed < TEST_BUDGET_S
