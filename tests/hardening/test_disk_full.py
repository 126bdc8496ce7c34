"""A full disk: the peer stops accepting writes with a clear error, the others keep the
cluster available, nothing is corrupted, and the peer recovers when space returns.

`test_full_leader_hands_leadership_off` runs three runtimes in one process over the
in-memory network. The cluster tests run a 3-peer KV cluster of real processes in which ONE
peer's data dir lives on a small tmpfs this test mounts (root only; skipped with the reason
otherwise), fill that tmpfs while clients write, and check the promises from outside.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from orchestrator.kvcluster import KVCluster
from ruaft import Raft, RuntimeConfig
from ruaft.core.types import Config
from ruaft.storage import LmdbStorage
from ruaft.testing.network import InMemoryNetwork
from tests.hardening.client_load import ClientLoad
from tests.hardening.kv_durability import replay_store
from tests.kv.generic import check_history
from tests.unit.test_runtime import PEERS, FillingStorage
from transport_zmq.rpc import RpcClient, RpcError

SLOW_ELECTIONS = RuntimeConfig(
    tick_seconds=0.01, core=Config(heartbeat_ticks=10, election_ticks=300, election_jitter_ticks=100))
"""Election timeouts of 3-4 s: a new leader well within one of them can only come from the
stalled leader's hand-off."""


def test_full_leader_hands_leadership_off() -> None:
    """A leader whose disk fills cannot heartbeat (its event loop waits for space); it asks
    its most up-to-date follower to campaign at once instead of leaving the cluster to wait
    for an election timeout, and that follower commits new writes while the old leader is
    still stalled."""
    net = InMemoryNetwork(seed=5)
    storages = {p: FillingStorage() for p in PEERS}
    rafts = {p: Raft(PEERS, p, storages[p], lambda m: None, config=SLOW_ELECTIONS,
                     transport=net.endpoint(p)) for p in PEERS}
    try:
        deadline = time.monotonic() + 15
        leaders: list[int] = []
        while time.monotonic() < deadline:
            leaders = [p for p in PEERS if rafts[p].get_state()[1]]
            if leaders:
                break
            time.sleep(0.01)
        assert len(leaders) == 1, f"no leader elected: {leaders}"
        old = leaders[0]
        first = rafts[old].start("before")
        assert first is not None and rafts[old].wait_applied(first[0], timeout=5)

        storages[old].full.set()
        filled_at = time.monotonic()
        assert rafts[old].start("cannot persist") is not None
        new = None
        while new is None and time.monotonic() - filled_at < 2.0:
            new = next((p for p in PEERS if p != old and rafts[p].get_state()[1]), None)
            time.sleep(0.005)
        took = time.monotonic() - filled_at
        assert new is not None, "no follower took over within 2 s (election timeouts are 3-4 s)"
        assert rafts[old].storage_problem is not None and "full" in rafts[old].storage_problem
        after = rafts[new].start("after hand-off")
        assert after is not None
        others = [p for p in PEERS if p != old]
        for p in others:
            assert rafts[p].wait_applied(after[0], timeout=5), f"peer {p} did not apply"
        print(f"new leader {new} {took * 1000:.0f} ms after the leader's disk filled")

        storages[old].full.clear()  # space returns: the old leader catches up as a follower
        assert rafts[old].wait_applied(after[0], timeout=10)
        assert rafts[old].storage_problem is None
        assert not rafts[old].get_state()[1]
    finally:
        for raft in rafts.values():
            raft.kill()


# ============================================================================ real cluster

FULL_PEER = 2
"""The peer whose data dir is on the tmpfs."""
TMPFS_BYTES = 16 << 20


@contextmanager
def mounted_tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `path` (created) for the block; always unmounted.
    Skips the test when not root or when mounting fails (e.g. no CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the full-disk test needs root")
    path.mkdir(parents=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                            str(path)], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path}: {mount.stderr.strip() or mount.returncode}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path) -> Path:
    """Write a filler file until the device has no space left; returns its path."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 64 << 10, 4 << 10, 512):
            block = bytes(chunk)
            while True:
                try:
                    if f.write(block) == 0:
                        break
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return filler


def write_refusal(address: str, seq: int) -> RpcError | None:
    """Send one write straight to a peer's client port; the definite error it answers
    (None if it accepted the write). The probe key is outside the recorded load's keys."""
    rpc = RpcClient(address)
    try:
        rpc.call("put", timeout=5, key="probe", value=str(seq), client_id="disk-probe", seq=seq)
    except RpcError as exc:
        return exc
    finally:
        rpc.close()
    return None


def wait_disk_full_refusal(address: str, first_seq: int, timeout: float = 20.0) -> tuple[RpcError, int]:
    """Probe the peer's client port with writes (seq `first_seq`, then +1 each probe) until
    it answers the definite `unavailable` refusal of a full disk, for at most `timeout`;
    returns the refusal and the last seq used. Fails the test if it never refuses."""
    deadline = time.monotonic() + timeout
    seq = first_seq
    while True:
        refusal = write_refusal(address, seq)
        if refusal is not None and refusal.kind == "unavailable":
            return refusal, seq
        assert time.monotonic() < deadline, f"{address} on a full disk did not refuse writes: {refusal}"
        seq += 1
        time.sleep(0.05)


def state(cfg: KVCluster, i: int) -> dict | None:
    return cfg._call(i, "get_state")


def wait_leader(cfg: KVCluster, among: set[int], timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i in among:
            reply = state(cfg, i)
            if reply and reply["is_leader"]:
                return i
        time.sleep(0.02)
    raise AssertionError(f"no leader among {sorted(among)} within {timeout} s")


def make_follower(cfg: KVCluster, target: int) -> None:
    """Leave `target` a follower: if it leads, cut it off until another peer leads."""
    leader = cfg.check_one_leader()
    if leader == target:
        cfg.disconnect(target)
        wait_leader(cfg, set(range(cfg.n)) - {target})
        cfg.connect(target)


def make_leader(cfg: KVCluster, target: int) -> None:
    """Make `target` the leader: with the third peer cut off, commit a write (leader and
    target only); then cut the leader off and bring the third back. The third peer's log
    is behind, so only `target` can win the election."""
    steer = cfg.make_client(timeout=20)
    for attempt in range(3):
        leader = cfg.check_one_leader()
        if leader == target:
            return
        (third,) = set(range(cfg.n)) - {leader, target}
        cfg.disconnect(third)
        steer.put("steer", str(attempt))
        cfg.disconnect(leader)
        cfg.connect(third)
        wait_leader(cfg, {target, third})
        cfg.connect(leader)
    assert cfg.check_one_leader() == target, f"could not make peer {target} the leader"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("role", ["follower", "leader"])
def test_full_disk_on_one_peer(tmp_path: Path, role: str) -> None:
    """One peer's disk fills while clients write: it refuses writes with a definite
    disk-full error, the other two keep acknowledging writes, and when the filler is deleted
    it resumes, catches up, and its store holds every acknowledged write; the history is
    linearizable. As leader, the full peer hands leadership off at once. As follower, it is
    also SIGKILLed while full: its store opens cleanly and it restarts on the full disk."""
    base = tmp_path / "cluster"
    with mounted_tmpfs(base / f"peer-{FULL_PEER}", TMPFS_BYTES) as mount:
        cfg = KVCluster(3, base_dir=base, seed=17)
        load: ClientLoad | None = None
        problems: list[str] = []
        try:
            cfg.wait_ready()
            (make_leader if role == "leader" else make_follower)(cfg, FULL_PEER)
            load = ClientLoad(cfg, clients=3, keys=5, seed=3)
            assert load.wait_acknowledged(30, timeout=15), "the load did not get going"

            filler = fill(mount)
            filled_at = time.monotonic()
            acked_at_fill = load.acknowledged
            if role == "leader":
                new_leader = wait_leader(cfg, {0, 1}, timeout=5)
                print(f"peer {new_leader} leads {time.monotonic() - filled_at:.2f} s after the "
                      "leader's disk filled")
            refusal, probe = wait_disk_full_refusal(cfg.client_addresses[FULL_PEER], 1)
            assert "disk full" in refusal.message, refusal.message
            print(f"full peer refused a write {time.monotonic() - filled_at:.2f} s after the "
                  f"fill: {refusal.message[:160]}")

            # The other two keep the cluster available.
            assert load.wait_acknowledged(load.acknowledged + 50, timeout=20), (
                f"writes stalled while peer {FULL_PEER}'s disk was full")
            leader = wait_leader(cfg, {0, 1})
            refusal = write_refusal(cfg.client_addresses[FULL_PEER], probe + 1)
            assert refusal is not None and refusal.kind == "unavailable", "space came back early?"
            stats = cfg.stats(FULL_PEER)
            assert stats is not None and stats["kv"]["storage_full"] >= 1
            during = load.acknowledged - acked_at_fill
            print(f"{during} writes acknowledged while full; leader is now {leader}")

            if role == "follower":
                # SIGKILLed while paused on the full disk: the store still opens and
                # validates, and the peer restarts on the full disk and pauses again.
                cfg.crash1(FULL_PEER)
                LmdbStorage(mount / "raft", cluster_id=cfg.cluster_id).close()
                cfg.start1(FULL_PEER)
                cfg.wait_ready()
                cfg.connect(FULL_PEER)
                # The peer restarted on the full disk pauses again and refuses.
                refusal, probe = wait_disk_full_refusal(cfg.client_addresses[FULL_PEER], probe + 2)
                assert load.wait_acknowledged(load.acknowledged + 20, timeout=20)
                print("restarted on the full disk: paused again, cluster still serving")

            filler.unlink()
            emptied_at = time.monotonic()
            probe += 2
            while time.monotonic() - emptied_at < 15:
                probe += 1
                refusal = write_refusal(cfg.client_addresses[FULL_PEER], probe)
                if refusal is None or refusal.kind != "unavailable":
                    break
                time.sleep(0.05)
            assert refusal is None or refusal.kind != "unavailable", "the peer did not resume"
            print(f"resumed {time.monotonic() - emptied_at:.2f} s after the filler was deleted")
            assert load.wait_acknowledged(load.acknowledged + 30, timeout=15)
            log = (mount / "peer.log").read_text(errors="replace")
            assert "cannot persist, pausing until space returns" in log
            assert "storage writable again; resuming" in log
            if role == "leader":
                assert "disk full: asking peer" in log
        finally:
            if load is not None:
                problems = load.stop()
        assert not problems, problems

        # Final reads, recorded; then the full peer must have caught up with the commit index.
        final = cfg.make_client(timeout=20)
        values = {}
        for key in load.keys:
            load.recorder.invoke("final", "get", key, None)
            values[key] = final.get(key)
            load.recorder.ok("final", values[key])
        leader = wait_leader(cfg, {0, 1, 2})
        commit = state(cfg, leader)["commit_index"]  # type: ignore[index]
        deadline = time.monotonic() + 15
        while (state(cfg, FULL_PEER) or {}).get("applied_index", -1) < commit:
            assert time.monotonic() < deadline, f"peer {FULL_PEER} did not catch up to {commit}"
            time.sleep(0.05)
        cfg.cleanup(check=True)  # fails on a peer that died or reported an error

        replayed = replay_store(base / f"peer-{FULL_PEER}" / "raft", cfg.cluster_id, commit).data
        for key in load.keys:
            assert replayed.get(key, "") == values[key], (
                f"peer {FULL_PEER}'s store disagrees on {key!r}")
        check_history(load.recorder, tmp_path)
