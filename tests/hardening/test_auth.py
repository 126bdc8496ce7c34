"""Authentication and isolation, against real peer processes and real sockets.

A keyed production cluster (3 peers, keys, no control endpoint) serves keyed clients, and
refuses — with no reply, a counter in the peer's `status` and a line in its ``peer.log`` —
a plain-text client, a client with an unknown key, and a rogue "peer" that speaks the Raft
protocol with a RequestVote of a much higher term (with a fresh key, a client's key, the
key of a peer of another keyed cluster, or peer 2's genuine key while claiming to be peer 1):
the cluster's term does not move. As a control
that the rogue's frames are real, the same frames sent with a genuine peer key DO move the
term (last test of the module). A 1-peer keyed playground refuses non-operators on its
control socket; a 1-peer un-keyed playground drops another cluster's Raft frames
(`wrong_cluster`).

Wall time on 2 busy cores: about 25-30 s for the module (three clusters start once each).
"""

from __future__ import annotations

import re
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest
import zmq

from kv.client import KVClient
from kv.clusterfile import ClusterSpec
from orchestrator.local import LocalCluster, add_keys, new_spec
from ruaft.core.types import RequestVote
from transport_zmq.auth import CurveKeyPair, generate_key_pair, secure_client
from transport_zmq.codec import RaftCodec
from transport_zmq.rpc import RpcClient
from transport_zmq.transport import peer_identity

pytestmark = pytest.mark.timeout(120)

DEADLINE = 10.0


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_cluster(tmp: Path, n: int, *, keyed: bool, control: bool) -> LocalCluster:
    spec = new_spec(n, tmp / "ruaft-data", control=control, maxraftstate=None)
    assert spec.path is not None
    spec.write(spec.path)
    if keyed:
        spec = add_keys(spec)
        spec.write(spec.path)
    cluster = LocalCluster(spec)
    for peer_id in cluster.ids:
        cluster.start(peer_id)
    return cluster


def stop_cluster(cluster: LocalCluster) -> None:
    for peer_id in cluster.ids:
        cluster.stop(peer_id)  # by the pid it recorded; SIGKILL after 10 s
    assert all(cluster.pid(p) is None for p in cluster.ids)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("prod"), 3, keyed=True, control=False)
    try:
        assert cluster.wait_leader(30.0) is not None, "the keyed cluster elected no leader"
        yield cluster
    finally:
        stop_cluster(cluster)


def status(cluster: LocalCluster, peer_id: int) -> dict[str, Any]:
    """Peer `peer_id`'s KV `status`, asked with the operator's key (retried: a peer busy
    catching up on a loaded machine may miss one 2-second attempt)."""
    reply: dict[str, Any] = wait_for(lambda: cluster.client_status(peer_id, timeout=2.0),
                                     f"peer {peer_id} to answer the operator's status request",
                                     timeout=20.0)
    return reply


def refusals(cluster: LocalCluster, peer_id: int, socket: str) -> dict[str, int]:
    auth = status(cluster, peer_id)["auth"]
    assert auth is not None, "a keyed peer reports its refusal counters"
    return auth.get(socket, {"accepted": 0, "refused_key": 0, "refused_handshake": 0})


def peer_log(cluster: LocalCluster, peer_id: int) -> str:
    return (cluster.spec.data_dir(peer_id) / "peer.log").read_text()


def wait_logged(cluster: LocalCluster, peer_id: int, pattern: str) -> None:
    wait_for(lambda: re.search(pattern, peer_log(cluster, peer_id)), f"log line /{pattern}/")


def keyed_client(spec: ClusterSpec, **options: Any) -> KVClient:
    return KVClient(spec.client_addresses(), key_pair=spec.user_key_pair("client"),
                    server_keys=spec.server_keys(), **options)


# ------------------------------------------------------------------ the keyed cluster works

def test_keyed_cluster_serves_keyed_clients_end_to_end(production: LocalCluster) -> None:
    spec = production.spec
    with keyed_client(spec, timeout=15.0) as client:
        client.put("k", "v")
        client.append("k", "w")
        assert client.get("k") == "vw"
    for peer_id in production.ids:
        # Both other peers got in (their DEALERs connect on their own schedule).
        counters = wait_for(lambda: (c := refusals(production, peer_id, "raft"))["accepted"] >= 2
                            and c, f"peer {peer_id} to admit both other peers")
        assert counters["refused_key"] == counters["refused_handshake"] == 0, counters


def test_production_start_is_owner_only_loopback_and_without_control(production: LocalCluster) -> None:
    spec = production.spec
    assert spec.path is not None
    assert stat.S_IMODE(spec.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(spec.path.stat().st_mode) == 0o600
    keys_dir = spec.path.parent / "keys"
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    for key_file in keys_dir.iterdir():
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600, key_file
    for peer in spec.peers:
        assert peer.control_address is None
        assert stat.S_IMODE(spec.data_dir(peer.id).stat().st_mode) == 0o700
        assert "control endpoint disabled" in peer_log(production, peer.id)
        pid = production.pid(peer.id)
        assert pid is not None
        listening = {c.laddr for c in psutil.Process(pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN}
        wanted = {int(a.rsplit(":", 1)[1]) for a in (peer.raft_bind, peer.client_bind)}
        # Exactly the Raft and client ports, on loopback: no control socket, no wildcard.
        assert {port for _, port in listening} == wanted, listening
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening


# ------------------------------------------------------------------ clients refused

def test_plain_text_client_gets_no_reply_and_is_counted_and_logged(production: LocalCluster) -> None:
    before = refusals(production, 0, "kv")["refused_handshake"]
    context = zmq.Context.instance()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        dealer.connect(production.spec.peers[0].client_address)
        dealer.send(msgpack.packb({"id": 1, "op": "status"}))
        assert dealer.poll(1500) == 0, "a plain-text client got a reply from a keyed peer"
    finally:
        dealer.close(0)
    wait_for(lambda: refusals(production, 0, "kv")["refused_handshake"] > before,
             "the plain-text connection to be counted")
    wait_logged(production, 0, r"refused a connection to the kv socket .*(did not use CURVE|"
                               r"handshake broke off)")


def test_client_with_unknown_key_gets_no_reply_and_is_counted_and_logged(production: LocalCluster) -> None:
    before = refusals(production, 0, "kv")["refused_key"]
    stranger = generate_key_pair()
    client = RpcClient(production.spec.client_addresses()[0], curve=stranger,
                       server_key=production.spec.peer_public_keys()[0])
    try:
        with pytest.raises(TimeoutError):
            client.call("status", timeout=1.5)
    finally:
        client.close()
    wait_for(lambda: refusals(production, 0, "kv")["refused_key"] > before,
             "the unknown key to be counted")
    wait_logged(production, 0, "refused CURVE key " + re.escape(stranger.public.decode())
                + " on the kv socket")


# ------------------------------------------------------------------ rogue peers refused

def send_vote_requests(address: str, pair: CurveKeyPair, server_key: bytes, cluster_id: str,
                       ids: list[int], claimed: int, target: int, term: int,
                       until: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Act as peer `claimed`: a DEALER with its socket identity, presenting `pair`, sending
    RequestVote(term) to `target` at `address` every 50 ms until `until()` (or `timeout`)."""
    codec = RaftCodec(cluster_id, ids, max_frame_bytes=64 << 20)
    frame = codec.encode(RequestVote(from_peer=claimed, to_peer=target, term=term,
                                     last_log_index=1 << 30, last_log_term=term,
                                     leadership_transfer=True))
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.IDENTITY, peer_identity(claimed))
    dealer.setsockopt(zmq.SNDHWM, 10)
    secure_client(dealer, pair, server_key)
    dealer.connect(address)
    deadline = time.monotonic() + timeout
    try:
        while not until() and time.monotonic() < deadline:
            try:
                dealer.send(frame, zmq.NOBLOCK)
            except zmq.Again:
                pass
            time.sleep(0.05)
    finally:
        dealer.close(0)


def terms(cluster: LocalCluster) -> dict[int, int]:
    return {p: status(cluster, p)["term"] for p in cluster.ids}


def other_clusters_peer_key(tmp: Path) -> tuple[str, CurveKeyPair]:
    """Peer 1 of another keyed cluster (made, not started): its cluster id and key pair."""
    spec = new_spec(3, tmp / "other", control=False)
    assert spec.path is not None
    spec.write(spec.path)
    spec = add_keys(spec)
    spec.write(spec.path)
    pair = spec.peer_key_pair(1)
    assert pair is not None
    return spec.cluster_id, pair


@pytest.mark.parametrize("rogue", ["fresh key", "a client's key", "another cluster's peer",
                                   "peer 2's key posing as peer 1"])
def test_rogue_peer_cannot_change_the_term(production: LocalCluster, rogue: str,
                                           tmp_path: Path) -> None:
    spec = production.spec
    cluster_id = spec.cluster_id
    counter = "refused_key"
    if rogue == "fresh key":
        pair = generate_key_pair()
    elif rogue == "a client's key":
        pair = spec.user_key_pair("client")  # known on the client port, not on the Raft port
    elif rogue == "another cluster's peer":
        cluster_id, pair = other_clusters_peer_key(tmp_path)
    else:
        pair = spec.peer_key_pair(2)  # admitted, but it is not peer 1's key
        counter = "refused_identity"
    assert pair is not None
    terms_before = terms(production)
    before = refusals(production, 0, "raft")[counter]
    send_vote_requests(spec.peers[0].raft_address, pair, spec.peer_public_keys()[0], cluster_id,
                       production.ids, claimed=1, target=0, term=max(terms_before.values()) + 100,
                       until=lambda: refusals(production, 0, "raft")[counter] > before)
    assert refusals(production, 0, "raft")[counter] > before, "the rogue was not refused"
    if counter == "refused_key":
        wait_logged(production, 0, "refused CURVE key " + re.escape(pair.public.decode())
                    + " on the raft socket")
    else:
        wait_logged(production, 0, "dropping frames from b'peer-1': its connection presented "
                                   "the key of peer-2")
    assert terms(production) == terms_before, "a refused rogue changed a peer's term"


def test_a_restarted_keyed_peer_rejoins_without_refusals(production: LocalCluster) -> None:
    """SIGKILL and restart a follower: it handshakes again with its key and catches up, and
    no peer counts it as an impostor. (On loopback the kill resets the old connections at
    once, so this does not exercise frames arriving on a handed-over older connection.)"""
    leader = production.wait_leader(10.0)
    assert leader is not None
    follower = next(p for p in production.ids if p != leader)
    before = {p: refusals(production, p, "raft")["refused_identity"] for p in production.ids}
    before[follower] = 0  # a restarted peer counts from zero
    production.stop(follower, signal.SIGKILL)
    with keyed_client(production.spec, timeout=15.0) as client:
        client.put("after-restart", "1")
        production.start(follower)
        client.put("after-restart", "2")
        index = status(production, leader)["commit_index"]
    wait_for(lambda: (s := production.client_status(follower)) is not None
             and s["applied_index"] >= index, "the restarted follower to catch up", 30.0)
    after = {p: refusals(production, p, "raft")["refused_identity"] for p in production.ids}
    assert after == before


def test_the_rogue_frames_move_the_term_with_a_genuine_peer_key(production: LocalCluster) -> None:
    """The control for the test above: the same RequestVote sent with peer 1's real key is
    accepted and the target adopts its term. (Disrupts the cluster: keep it last.)"""
    spec = production.spec
    pair = spec.peer_key_pair(1)
    assert pair is not None
    rogue_term = max(terms(production).values()) + 100
    send_vote_requests(spec.peers[0].raft_address, pair, spec.peer_public_keys()[0],
                       spec.cluster_id, production.ids, claimed=1, target=0, term=rogue_term,
                       until=lambda: status(production, 0)["term"] >= rogue_term)
    assert status(production, 0)["term"] >= rogue_term


# ------------------------------------------------------------------ the control socket

def test_control_socket_admits_operators_only(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path, 1, keyed=True, control=True)
    try:
        assert cluster.wait_leader(30.0) == 0  # the operator's key opens the control socket
        spec = cluster.spec
        address = spec.peers[0].control_address
        assert address is not None
        server_key = spec.peer_public_keys()[0]

        def control_refusals() -> dict[str, int]:
            reply = cluster.control(0, "stats")
            assert reply is not None
            return reply["auth"]["control"]

        before = control_refusals()
        client_pair = spec.user_key_pair("client")
        assert client_pair is not None
        for pair in (client_pair, generate_key_pair()):
            rpc = RpcClient(address, curve=pair, server_key=server_key)
            try:
                with pytest.raises(TimeoutError):
                    rpc.call("set_faults", timeout=1.0, rules={"unreliable": True})
            finally:
                rpc.close()
        plain = RpcClient(address)
        try:
            with pytest.raises(TimeoutError):
                plain.call("ping", timeout=1.0)
        finally:
            plain.close()
        wait_for(lambda: control_refusals()["refused_key"] >= before["refused_key"] + 2
                 and control_refusals()["refused_handshake"] > before["refused_handshake"],
                 "the control refusals to be counted")
        wait_logged(cluster, 0, "refused CURVE key " + re.escape(client_pair.public.decode())
                    + " on the control socket")
        wait_logged(cluster, 0, "refused a connection to the control socket")
    finally:
        stop_cluster(cluster)


# ------------------------------------------------------------------ without keys

def test_unkeyed_peer_drops_another_clusters_frames(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path, 1, keyed=False, control=True)
    try:
        assert cluster.wait_leader(30.0) == 0

        def wrong_cluster() -> int:
            reply = cluster.control(0, "stats")
            assert reply is not None
            return int(reply["transport"]["decode_errors"]["wrong_cluster"])

        term_before = terms(cluster)[0]
        before = wrong_cluster()
        codec = RaftCodec("another-cluster", [0, 1], max_frame_bytes=64 << 20)
        frame = codec.encode(RequestVote(from_peer=1, to_peer=0, term=term_before + 100,
                                         last_log_index=1 << 30, last_log_term=term_before + 100,
                                         leadership_transfer=True))
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.IDENTITY, peer_identity(1))
        try:
            dealer.connect(cluster.spec.peers[0].raft_address)
            dealer.send(frame)
            wait_for(lambda: wrong_cluster() > before, "the foreign frame to be counted")
        finally:
            dealer.close(0)
        assert terms(cluster)[0] == term_before
        wait_logged(cluster, 0, "dropping frame from .*another-cluster")
    finally:
        stop_cluster(cluster)

