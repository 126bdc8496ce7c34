"""A KV peer refuses to start on a damaged or foreign data dir, saying which file and why,
and exits non-zero (it never serves from a store it cannot trust)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ruaft.core.types import Entry, HardState
from ruaft.storage import LmdbStorage
from transport_zmq.transport import free_tcp_ports


def make_store(data_dir: Path, cluster_id: str) -> Path:
    store = LmdbStorage(data_dir / "raft", cluster_id=cluster_id)
    store.save(HardState(1, 0, 3), [Entry(1, i, b"payload-%d" % i) for i in range(1, 4)])
    store.close()
    return data_dir / "raft" / "data.mdb"


def start_peer(data_dir: Path, cluster_id: str) -> subprocess.CompletedProcess[str]:
    raft_port, client_port = free_tcp_ports(2)
    return subprocess.run(
        [sys.executable, "-m", "kv", "--id", "0", "--peer", f"0=tcp://127.0.0.1:{raft_port}",
         "--client-listen", f"tcp://127.0.0.1:{client_port}", "--data-dir", str(data_dir),
         "--cluster-id", cluster_id],
        capture_output=True, text=True, timeout=60,
    )


def test_peer_refuses_another_clusters_data_dir(tmp_path: Path) -> None:
    make_store(tmp_path, "cluster-a")
    result = start_peer(tmp_path, "cluster-b")
    assert result.returncode != 0
    message = (tmp_path / "peer-error.txt").read_text()
    assert "cluster-a" in message and "cluster-b" in message and str(tmp_path) in message
    assert "cluster" in result.stderr


@pytest.mark.parametrize("damage", ["truncated", "flipped-byte"])
def test_peer_refuses_a_damaged_store(tmp_path: Path, damage: str) -> None:
    data_file = make_store(tmp_path, "c")
    raw = bytearray(data_file.read_bytes())
    if damage == "truncated":
        data_file.write_bytes(bytes(raw[: len(raw) // 3]))
    else:
        position = raw.find(b"payload-2")
        assert position > 0
        raw[position + 3] ^= 0xFF
        data_file.write_bytes(bytes(raw))
    result = start_peer(tmp_path, "c")
    assert result.returncode != 0
    message = (tmp_path / "peer-error.txt").read_text()
    assert "data.mdb" in message, message
    assert os.path.basename(tmp_path) in message
