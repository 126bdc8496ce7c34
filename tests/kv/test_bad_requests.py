"""Bad input at the KV client port: every malformed request that carries an id gets a
definite error reply, garbage frames are counted and dropped, and the store keeps serving."""

from __future__ import annotations

import random
from typing import Any, Callable

import msgpack
import pytest

from orchestrator.kvcluster import KVCluster
from transport_zmq.rpc import RpcClient, RpcError

MakeKVCluster = Callable[..., KVCluster]

BAD_REQUESTS: list[dict[str, Any]] = [
    {"op": "put"},                                                   # no key, no value
    {"op": "put", "key": 7, "value": "v", "client_id": "c", "seq": 1},  # key not a string
    {"op": "put", "key": "k", "value": b"bytes", "client_id": "c", "seq": 1},
    {"op": "append", "key": "k", "value": "v", "client_id": "", "seq": 1},
    {"op": "append", "key": "k", "value": "v", "client_id": "c", "seq": 0},
    {"op": "append", "key": "k", "value": "v", "client_id": "c", "seq": True},
    {"op": "append", "key": "k", "value": "v", "client_id": "c", "seq": -5},
    {"op": "get", "key": None},
    {"op": "get", "key": "k" * 5000},                                # key too long
    {"op": "put", "key": "k", "value": "v" * (2 << 20), "client_id": "c", "seq": 1},  # too large
    {"op": "drop_table"},                                            # unknown op
]


def test_malformed_requests_get_definite_errors(make_kv_cluster: MakeKVCluster) -> None:
    cfg = make_kv_cluster(3)
    cfg.wait_ready()
    leader = cfg.check_one_leader()
    client = cfg.make_client(timeout=10)
    client.put("k", "before")
    rpc = RpcClient(cfg.client_addresses[leader])
    try:
        for request in BAD_REQUESTS:
            op = request.pop("op")
            with pytest.raises(RpcError) as refused:
                rpc.call(op, timeout=5, **request)
            assert refused.value.kind in ("bad_request", "too_large"), (op, request, refused.value)
        # Raw garbage: undecodable frames are dropped (no id to answer); multipart too.
        rng = random.Random(11)
        raw = rpc._socket  # the DEALER under the client
        for _ in range(500):
            raw.send(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64))))
        raw.send_multipart([b"a", b"b", b"c"])
        raw.send(msgpack.packb({"id": 5}))  # an id but no op: a definite 'malformed' reply
        with pytest.raises(RpcError) as refused:
            rpc.receive(5, timeout=5)
        assert refused.value.kind == "malformed"
    finally:
        rpc.close()
    client.append("k", "+after")
    assert client.get("k") == "before+after"
    stats = cfg.stats(leader)
    assert stats is not None
    assert stats["kv"]["bad_requests"] >= len(BAD_REQUESTS)  # every refusal was counted
