"""The cluster file's keys: format 1 still loads (no authentication), a keyed file round-trips,
and every bad key, key file or mix gives a one-line ClusterFileError naming the problem.
No processes; well under a second."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kv.clusterfile import ClusterFileError, load
from orchestrator.local import add_keys, new_spec
from transport_zmq.auth import CurveKeyError, generate_key_pair, read_key_pair, write_key_pair


def keyed_folder(tmp_path: Path) -> Path:
    spec = new_spec(3, tmp_path / "c", base_port=20000, control=False)
    assert spec.path is not None
    spec.write(spec.path)
    add_keys(spec, clients=2).write(spec.path)
    return spec.path


def edit(path: Path, change: Any) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def one_line_error(path: Path) -> str:
    with pytest.raises(ClusterFileError) as info:
        spec = load(path)
        spec.peer_key_pair(0)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_format_1_file_loads_without_authentication(tmp_path: Path) -> None:
    spec = new_spec(3, tmp_path / "c", base_port=20000)
    assert spec.path is not None
    spec.write(spec.path)
    document = json.loads(spec.path.read_text())
    assert document["format"] == 1 and "auth" not in document
    assert all("public_key" not in p for p in document["peers"])
    loaded = load(spec.path)
    assert loaded.auth is None and not loaded.keyed
    assert loaded.server_keys() is None and loaded.peer_key_pair(0) is None
    assert loaded.user_key_pair("client") is None


def test_keyed_file_round_trips_and_its_key_files_are_owner_only(tmp_path: Path) -> None:
    path = keyed_folder(tmp_path)
    assert json.loads(path.read_text())["format"] == 2
    spec = load(path)
    assert spec.auth is not None and len(spec.auth.client_keys) == 2
    assert len(set(spec.server_keys() or [])) == 3
    for peer in spec.peers:
        pair = spec.peer_key_pair(peer.id)
        assert pair is not None and pair.public.decode() == peer.public_key
    assert spec.user_key_pair("client") is not None
    assert spec.user_key_pair("operator") is not None
    keys_dir = path.parent / "keys"
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in keys_dir.iterdir()} == {0o600}
    assert load(path).to_json() == spec.to_json()


@pytest.mark.parametrize("change, problem", [
    (lambda d: d["peers"][1].update(public_key="short"), "peers[1]: public_key is not a CURVE key"),
    (lambda d: d["peers"][1].update(public_key="~" * 40), "peers[1]: public_key is not valid Z85"),
    (lambda d: d["peers"][2].pop("public_key"), "peers[2]: missing field 'public_key'"),
    (lambda d: d["peers"][0].pop("secret_key_file"), "peers[0]: missing field 'secret_key_file'"),
    (lambda d: d["peers"][1].update(public_key=d["peers"][0]["public_key"]),
     "two peers have the same public_key"),
    (lambda d: d["auth"]["client_keys"].append(d["peers"][0]["public_key"]),
     "also a client or operator key"),
    (lambda d: d["auth"].update(client_keys=[], operator_keys=[]), "lists no client or operator key"),
    (lambda d: d["auth"].update(operator_keys="x"), "operator_keys must be a list"),
    (lambda d: d.update(format=1), "need \"format\": 2"),
    (lambda d: d.update(format=3), "unsupported format 3"),
    (lambda d: d.pop("auth"), "has a public_key but the file has no \"auth\""),
])
def test_bad_keys_give_a_one_line_error(tmp_path: Path, change: Any, problem: str) -> None:
    path = keyed_folder(tmp_path)
    edit(path, change)
    assert problem in one_line_error(path)


def test_unsafe_missing_or_foreign_secret_key_files_are_refused(tmp_path: Path) -> None:
    path = keyed_folder(tmp_path)
    secret = path.parent / "keys" / "peer-0.key_secret"
    os.chmod(secret, 0o644)
    assert "accessible by others" in one_line_error(path)
    os.chmod(secret, 0o600)
    write_key_pair(secret, generate_key_pair(), "not peer 0's")
    assert "does not match its public_key" in one_line_error(path)
    secret.unlink()
    assert "cannot read peer 0's secret key file" in one_line_error(path)
    stranger = tmp_path / "stranger.key_secret"
    write_key_pair(stranger, generate_key_pair(), "stranger")
    with pytest.raises(ClusterFileError, match="not one of this cluster's client keys"):
        load(path).user_key_pair("client", stranger)
    # An operator's key is also a client key, not the other way round.
    spec = load(path)
    assert spec.auth is not None and spec.auth.operator_key_file is not None
    assert spec.user_key_pair("client", spec.resolve(spec.auth.operator_key_file)) is not None
    assert spec.auth.client_key_file is not None
    with pytest.raises(ClusterFileError, match="not one of this cluster's operator keys"):
        spec.user_key_pair("operator", spec.resolve(spec.auth.client_key_file))


def test_key_files_are_zeromq_certificates(tmp_path: Path) -> None:
    pair = generate_key_pair()
    key_file = tmp_path / "k.key_secret"
    write_key_pair(key_file, pair, "test")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert read_key_pair(key_file) == pair
    assert "secret=…" in repr(pair) and pair.secret.decode() not in repr(pair)
    key_file.write_text("metadata\ncurve\n    public-key = \"abc\"\n")
    os.chmod(key_file, 0o600)
    with pytest.raises(CurveKeyError):
        read_key_pair(key_file)


