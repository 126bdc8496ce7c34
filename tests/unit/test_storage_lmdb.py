"""LmdbStorage specifics: open-time validation of damaged stores, map growth, locking, close."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import lmdb
import pytest

from ruaft.core.types import Entry, HardState, Snapshot
from ruaft.storage import CorruptStorageError, LmdbStorage, StorageError
from ruaft.storage import lmdb_storage as ls


def fill(path: Path, n: int = 50, *, cluster_id: str | None = "c1", payload: Callable[[int], bytes]
         = lambda i: b"payload-%d" % i, compact_at: int = 0) -> None:
    """Create a store at `path` with entries 1..n (term 1 up to n//2, then 2), then close it."""
    with LmdbStorage(path, cluster_id=cluster_id, sync=False) as s:
        s.save(HardState(2, 1, 0), [Entry(1 if i <= n // 2 else 2, i, payload(i))
                                    for i in range(1, n + 1)])
        if compact_at:
            s.compact(Snapshot(compact_at, s.term(compact_at), b"snapshot-data"))


def raw_env(path: Path) -> lmdb.Environment:
    return lmdb.open(str(path), max_dbs=ls.MAX_DBS, create=False)


def tamper(path: Path, fn: Callable[[lmdb.Transaction, lmdb.Environment], object]) -> None:
    """Change the store behind LmdbStorage's back, in one LMDB transaction."""
    env = raw_env(path)
    try:
        with env.begin(write=True) as txn:
            fn(txn, env)
    finally:
        env.close()


def open_corrupt(path: Path, *needles: str, cluster_id: str | None = "c1") -> str:
    with pytest.raises(CorruptStorageError) as info:
        LmdbStorage(path, cluster_id=cluster_id)
    msg = str(info.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, msg
    # The failed open released the directory: a valid open would not be blocked by it.
    return msg


# ------------------------------------------------------------------------------ creation


def test_new_directory_is_created_private_and_stamped(tmp_path: Path) -> None:
    d = tmp_path / "a" / "peer0"
    with LmdbStorage(d, cluster_id="cluster-x") as s:
        assert s.cluster_id == "cluster-x"
        assert s.initial_state().entries == ()
    assert (d.stat().st_mode & 0o777) == 0o700
    assert (d / "data.mdb").exists()
    assert not (d / ls.INIT_DIR).exists()
    env = raw_env(d)
    with env.begin() as txn:
        meta = env.open_db(ls.META_DB, txn=txn, create=False)
        assert txn.get(ls.K_FORMAT, db=meta) == struct.pack(">I", ls.FORMAT_VERSION)
        assert txn.get(ls.K_CLUSTER, db=meta) == b"cluster-x"
    env.close()


def test_leftover_scratch_directory_is_ignored(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    (d / ls.INIT_DIR).mkdir(parents=True)
    (d / ls.INIT_DIR / "data.mdb").write_bytes(b"half-built")
    with LmdbStorage(d) as s:
        s.save(HardState(1, 0, 0), [Entry(1, 1, b"x")])
    assert not (d / ls.INIT_DIR).exists()


def test_cluster_id_recorded_when_missing_then_enforced(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d, cluster_id=None)
    with LmdbStorage(d) as s:  # no id on either side: fine
        assert s.cluster_id is None
    with LmdbStorage(d, cluster_id="alpha") as s:  # recorded now
        assert s.cluster_id == "alpha"
    with LmdbStorage(d) as s:  # no id given: accepted, the stored one reported
        assert s.cluster_id == "alpha"
    open_corrupt(d, "data.mdb", "'alpha'", "'beta'", cluster_id="beta")


def test_directory_lock(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    s = LmdbStorage(d)
    with pytest.raises(StorageError) as info:
        LmdbStorage(d)
    assert not isinstance(info.value, CorruptStorageError)
    assert "in use" in str(info.value)
    s.close()
    LmdbStorage(d).close()


def test_methods_after_close_raise(tmp_path: Path) -> None:
    s = LmdbStorage(tmp_path / "peer", sync=False)
    s.save(HardState(1, 0, 0), [Entry(1, 1, b"x")])
    s.close()
    s.close()  # idempotent
    calls: list[Callable[[], object]] = [
        s.initial_state, s.first_index, s.last_index, lambda: s.term(1),
        lambda: s.entries(1, 2), s.snapshot, s.hard_state, s.raft_state_size, s.snapshot_size,
        lambda: s.save(None, [Entry(1, 2, b"y")]), lambda: s.compact(Snapshot(1, 1, b"")),
    ]
    for call in calls:
        with pytest.raises(StorageError, match="closed"):
            call()


# ------------------------------------------------------------------------------ damage


def test_truncated_data_file(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d, 3000, payload=lambda i: os.urandom(200))
    data = d / "data.mdb"
    size = data.stat().st_size
    for new_size in (size // 2, size - 4096, 8192):
        os.truncate(data, new_size)
        open_corrupt(d, "data.mdb", "truncated")


@pytest.mark.parametrize("new_size", [0, 100, 4096])
def test_data_file_truncated_to_almost_nothing(tmp_path: Path, new_size: int) -> None:
    d = tmp_path / "peer"
    fill(d, 10)
    os.truncate(d / "data.mdb", new_size)
    open_corrupt(d, "data.mdb")


def test_garbage_data_file(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d, 10)
    (d / "data.mdb").write_bytes(os.urandom(64 << 10))
    open_corrupt(d, "data.mdb", "not an LMDB data file")


def test_foreign_lmdb_environment(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    d.mkdir()
    env = lmdb.open(str(d))  # an LMDB store, but not a Ruaft one
    with env.begin(write=True) as txn:
        txn.put(b"hello", b"world")
    env.close()
    open_corrupt(d, "data.mdb", "not a Ruaft store")


def test_flipped_byte_in_an_entry(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    marker = b"<<unique-payload-of-entry-42>>"
    fill(d, 100, payload=lambda i: marker if i == 42 else b"entry %d" % i)
    raw = bytearray((d / "data.mdb").read_bytes())
    # LMDB is copy-on-write: stale copies of the page may exist too. Damage every copy, so the
    # live one certainly is.
    hits = 0
    pos = raw.find(marker)
    while pos >= 0:
        raw[pos + 5] ^= 0x01
        hits += 1
        pos = raw.find(marker, pos + 1)
    assert hits >= 1
    (d / "data.mdb").write_bytes(bytes(raw))
    open_corrupt(d, "data.mdb", "entry 42 checksum mismatch")


def test_future_format_version(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d)

    def bump(txn: lmdb.Transaction, env: lmdb.Environment) -> None:
        txn.put(ls.K_FORMAT, struct.pack(">I", ls.FORMAT_VERSION + 1),
                db=env.open_db(ls.META_DB, txn=txn))

    tamper(d, bump)
    open_corrupt(d, "data.mdb", f"written by a newer format version {ls.FORMAT_VERSION + 1}")


def test_missing_format_version(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d)
    tamper(d, lambda txn, env: txn.delete(ls.K_FORMAT, db=env.open_db(ls.META_DB, txn=txn)))
    open_corrupt(d, "missing format version")


def test_index_gap(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d, 20)
    tamper(d, lambda txn, env: txn.delete(ls.encode_index(7), db=env.open_db(ls.LOG_DB, txn=txn)))
    open_corrupt(d, "data.mdb", "index gap", "entry 8 follows 6")


def test_log_not_starting_after_snapshot(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d, 20, compact_at=5)
    tamper(d, lambda txn, env: txn.delete(ls.encode_index(6), db=env.open_db(ls.LOG_DB, txn=txn)))
    open_corrupt(d, "log starts at index 7", "snapshot index 5")


def test_entry_below_snapshot_index(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d, 20, compact_at=5)
    stray = Entry(1, 3, b"stray")
    tamper(d, lambda txn, env: txn.put(ls.encode_index(3), ls.encode_entry_value(stray),
                                       db=env.open_db(ls.LOG_DB, txn=txn)))
    open_corrupt(d, "entry 3 at or below the snapshot index 5")


def test_decreasing_terms(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d, 20)  # entries 11..20 have term 2
    bad = Entry(1, 15, b"payload-15")  # valid checksum, wrong term
    tamper(d, lambda txn, env: txn.put(ls.encode_index(15), ls.encode_entry_value(bad),
                                       db=env.open_db(ls.LOG_DB, txn=txn)))
    open_corrupt(d, "term decreases", "entry 15")


def test_entry_moved_to_another_index(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d, 20)

    def move(txn: lmdb.Transaction, env: lmdb.Environment) -> None:
        log = env.open_db(ls.LOG_DB, txn=txn)
        moved = txn.get(ls.encode_index(8), db=log)
        assert moved is not None
        txn.put(ls.encode_index(9), moved, db=log)

    tamper(d, move)  # the checksum covers the index
    open_corrupt(d, "entry 9 checksum mismatch")


def test_snapshot_checksum_mismatch(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d, 20, compact_at=10)
    tamper(d, lambda txn, env: txn.put(ls.K_SNAPSHOT_DATA, b"snapshot-dat4",
                                       db=env.open_db(ls.SNAPSHOT_DB, txn=txn)))
    open_corrupt(d, "snapshot", "checksum mismatch")


def test_commit_beyond_last_index(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d, 20)
    record = ls.seal(ls.K_HARD_STATE, struct.pack(">QqQ", 2, 1, 21))
    tamper(d, lambda txn, env: txn.put(ls.K_HARD_STATE, record,
                                       db=env.open_db(ls.META_DB, txn=txn)))
    open_corrupt(d, "commit index 21 beyond last index 20")


def test_damaged_hard_state_record(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d, 5)
    record = struct.pack(">QqQ", 3, 1, 0) + b"\0\0\0\0"  # bad seal
    tamper(d, lambda txn, env: txn.put(ls.K_HARD_STATE, record,
                                       db=env.open_db(ls.META_DB, txn=txn)))
    open_corrupt(d, "hard_state checksum mismatch")


def test_entry_byte_total_mismatch(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    fill(d, 5)
    record = ls.seal(ls.K_ENTRY_BYTES, struct.pack(">Q", 1))
    tamper(d, lambda txn, env: txn.put(ls.K_ENTRY_BYTES, record,
                                       db=env.open_db(ls.META_DB, txn=txn)))
    open_corrupt(d, "entry byte total mismatch")


def test_damage_found_after_open_is_reported_as_corruption(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    s = LmdbStorage(d, sync=False)
    s.save(None, [Entry(1, i, b"x") for i in range(1, 6)])
    # A second handle in the same process is refused by py-lmdb, so damage the record through
    # the storage's own environment, as a stray write would.
    env = s._env
    assert env is not None
    with env.begin(write=True) as txn:
        txn.put(ls.encode_index(3), b"\0" * 20, db=s._log_db)
    with pytest.raises(CorruptStorageError, match="entry 3 checksum mismatch"):
        s.entries(1, 6)
    with pytest.raises(CorruptStorageError, match="entry 3 checksum mismatch"):
        s.term(3)
    s.close()


# ------------------------------------------------------------------------------ map growth


def test_map_grows_from_a_tiny_initial_size(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    tiny = 64 << 10
    with LmdbStorage(d, map_size=tiny, sync=False) as s:
        idx = 0
        for _ in range(40):  # 40 × 50 × 1 KiB = 2 MiB of entries
            batch = [Entry(1, idx + k, os.urandom(1024)) for k in range(1, 51)]
            s.save(HardState(1, 0, idx), batch)
            idx += 50
        s.save(None, [Entry(1, idx + 1, b"B" * (3 << 20))])  # one 3 MiB entry
        big_snapshot = Snapshot(idx + 1, 1, os.urandom(4 << 20))
        s.save(HardState(1, 0, idx + 1), [], big_snapshot)
        s.save(None, [Entry(2, idx + 2, b"after")])
        assert s._env is not None and s._env.info()["map_size"] > 8 * tiny
        state = s.initial_state()
    with LmdbStorage(d, map_size=tiny) as s:
        assert s.initial_state() == state
        assert s.snapshot() == big_snapshot


def test_disk_full_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "peer"
    with LmdbStorage(d, map_size=64 << 10, sync=False) as s:
        s.save(HardState(1, 0, 0), [Entry(1, 1, b"x")])

        class NoSpace:
            free = 0

        monkeypatch.setattr(ls.shutil, "disk_usage", lambda path: NoSpace())
        with pytest.raises(StorageError, match="disk full"):
            s.save(None, [Entry(1, i, b"y" * 4096) for i in range(2, 200)])
        # Nothing of the failed write is visible, and the store still works.
        assert s.last_index() == 1
        monkeypatch.undo()
        s.save(None, [Entry(1, 2, b"z")])
        assert s.entries(1, 3) == [Entry(1, 1, b"x"), Entry(1, 2, b"z")]


# ------------------------------------------------------------------------------ speed


def test_open_of_a_long_log_is_fast(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    n = 100_000
    with LmdbStorage(d, sync=False) as s:
        for lo in range(1, n + 1, 5000):
            s.save(None, [Entry(1, i, b"c" * 64) for i in range(lo, lo + 5000)])
    start = time.perf_counter()
    with LmdbStorage(d) as s:
        state = s.initial_state()
    elapsed = time.perf_counter() - start
    assert len(state.entries) == n
    assert elapsed < 2.0, f"open + validate of {n} entries took {elapsed:.2f}s"


def test_write_errors_surface_as_storage_error_not_a_crash(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE) makes LMDB's writes fail like a full disk does; the
    store must raise StorageError and keep its last committed state, never crash."""
    script = f"""
import os, resource, signal, sys
from ruaft.core.types import Entry, HardState
from ruaft.storage import LmdbStorage, StorageError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
s = LmdbStorage({str(tmp_path / 'peer')!r}, map_size=64 << 10)
last = 0
try:
    while True:
        s.save(HardState(1, 0, 0), [Entry(1, last + k, os.urandom(1000)) for k in range(1, 51)])
        last += 50
except StorageError as e:
    print(last, e)
    s.close()
    sys.exit(0)
"""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(root)))
    assert proc.returncode == 0, proc.stderr.decode()
    last_str, message = proc.stdout.decode().split(" ", 1)
    assert "data.mdb" in message and ("write failed" in message or "disk full" in message)
    with LmdbStorage(tmp_path / "peer") as s:
        assert s.last_index() == int(last_str) > 0
