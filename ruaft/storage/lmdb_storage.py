"""`LmdbStorage`: the `Storage` contract on one LMDB environment per peer data directory.

This is the only module of Ruaft that imports `lmdb`, and it does so lazily (inside functions),
so importing `ruaft.storage` costs nothing for users of `MemoryStorage`.

On-disk layout (directory `path`, LMDB files `data.mdb` + `lock.mdb`, plus `ruaft.lock`, an
flock(2) guard against two processes opening one directory), format version 1. Three named
databases:

``meta``
    ``format_version`` → u32 BE (FORMAT_VERSION); ``cluster_id`` → UTF-8 (absent: none);
    ``hard_state`` → sealed(term u64, vote i64, commit u64);
    ``snapshot`` → sealed(index u64, term u64, length u64, crc32 u32 of the data) (absent: none);
    ``entry_bytes`` → sealed(u64): Σ over log records of len(key) + len(value).
    "sealed(x)" is x followed by a big-endian CRC32 of (key + x).
``log``
    key: index as u64 big-endian (so LMDB's byte order is index order) →
    value: crc32 u32 BE | term u64 BE | data, the CRC covering key + term + data.
``snapshot``
    ``data`` → the snapshot bytes (checked against the length and CRC kept in ``meta``).

Durability: every `save()`/`compact()` is ONE LMDB write transaction; with ``sync=True`` the
commit fsyncs data and meta pages (``metasync=True``), so the write is durable when the call
returns. LMDB's copy-on-write B-tree never exposes a half-committed transaction, so a crash
(SIGKILL, power loss with sync=True) leaves the last committed state.

Creation is atomic: a new store is built in the scratch subdirectory ``.ruaft-init`` and its
``data.mdb`` renamed into place, so an existing ``data.mdb`` always holds at least the format
version. ``lock.mdb`` is preallocated before LMDB maps it, so a full disk is an error, not a
SIGBUS.

Open-time validation (O(log), reading every record once) refuses to start, raising
`CorruptStorageError` naming the directory and file, on: a truncated or non-LMDB
``data.mdb`` (checked by reading LMDB's meta pages ourselves *before* mapping the file: a
truncated file would otherwise crash the process with SIGBUS), a foreign format version, a
cluster id mismatch, a damaged meta record, index gaps, log records with a bad checksum,
entries not starting right after the snapshot, decreasing terms, a snapshot checksum
mismatch, an entry byte total that does not add up, and a commit index beyond the last index.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import struct
import zlib
from typing import TYPE_CHECKING, Callable, Sequence

from ruaft import failpoints
from ruaft.core.types import Entry, HardState, InitialState, Snapshot
from ruaft.storage.base import CorruptStorageError, StorageError, StorageFullError
from ruaft.storage.common import (
    HARD_STATE_BYTES,
    check_compact,
    check_entries_range,
    check_hard_state,
    plan_save,
)

if TYPE_CHECKING:
    import lmdb

FORMAT_VERSION = 1
"""The on-disk format this code writes and reads."""

DEFAULT_MAP_SIZE = 64 << 20
DATA_FILE = "data.mdb"
GUARD_FILE = "ruaft.lock"
INIT_DIR = ".ruaft-init"
"""Scratch subdirectory in which a new store is built before being renamed into place."""

META_DB = b"meta"
LOG_DB = b"log"
SNAPSHOT_DB = b"snapshot"
MAX_DBS = 3

K_FORMAT = b"format_version"
K_CLUSTER = b"cluster_id"
K_HARD_STATE = b"hard_state"
K_SNAPSHOT = b"snapshot"
K_ENTRY_BYTES = b"entry_bytes"
K_SNAPSHOT_DATA = b"data"

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HARD = struct.Struct(">QqQ")
_SNAP_META = struct.Struct(">QQQI")
_ENTRY_HEAD = struct.Struct(">IQ")  # crc32, term
_ENTRY_HEAD_SIZE = _ENTRY_HEAD.size  # 12

_LOCK_FILE_BYTES = 16 << 10
"""Preallocated size of `lock.mdb` (LMDB's reader table for 126 readers needs ~8 KiB)."""

_MAX_WRITE_ATTEMPTS = 24
_MAX_MAP_SIZE = (1 << 40) if struct.calcsize("P") >= 8 else (1 << 31)

# LMDB 0.9 data-file header (see mdb.c: MDB_page, MDB_meta, MDB_db), native layout. Used only
# to check, before LMDB maps the file, that the file is long enough for the pages its newest
# meta page says are in use.
_LMDB_MAGIC = 0xBEEFC0DE
_P_META = 0x08
_PAGE_HEADER = struct.Struct("@PHHI")  # mp_pgno, mp_pad, mp_flags, lower/upper
_MDB_DB = "IHHPPPPP"  # md_pad (page size, in the free DB), flags, depth, branch, leaf, ovf, entries, root
_MDB_META = struct.Struct("@IIPP" + _MDB_DB + _MDB_DB + "PP")  # magic .. mm_last_pg, mm_txnid


def encode_index(index: int) -> bytes:
    """Log key of entry `index`: 8 bytes big-endian."""
    return _U64.pack(index)


def encode_entry_value(entry: Entry) -> bytes:
    """Log value of `entry`: crc32 | term | data, the CRC covering index, term and data."""
    body = _U64.pack(entry.term) + entry.data
    crc = zlib.crc32(body, zlib.crc32(_U64.pack(entry.index)))
    return _U32.pack(crc) + body


def seal(key: bytes, payload: bytes) -> bytes:
    """A meta value: payload followed by CRC32(key + payload)."""
    return payload + _U32.pack(zlib.crc32(payload, zlib.crc32(key)))


class _Damage(Exception):
    """Internal: a validation failure, turned into CorruptStorageError with the file name."""


def _unseal(key: bytes, value: bytes | memoryview, payload_size: int) -> bytes:
    if len(value) != payload_size + 4:
        raise _Damage(f"meta record {key.decode()} has length {len(value)}, "
                      f"expected {payload_size + 4}")
    payload = bytes(value[:payload_size])
    (crc,) = _U32.unpack_from(value, payload_size)
    if zlib.crc32(payload, zlib.crc32(key)) != crc:
        raise _Damage(f"meta record {key.decode()} checksum mismatch")
    return payload


def _decode_entry(key: bytes | memoryview, value: bytes | memoryview) -> Entry:
    """Decode and verify one log record (raises _Damage)."""
    if len(key) != 8:
        raise _Damage(f"log key of length {len(key)} (expected 8)")
    (index,) = _U64.unpack(key)
    if len(value) < _ENTRY_HEAD_SIZE:
        raise _Damage(f"entry {index} record too short ({len(value)} bytes)")
    crc, term = _ENTRY_HEAD.unpack_from(value)
    mv = memoryview(value)
    if zlib.crc32(mv[4:], zlib.crc32(key)) != crc:
        raise _Damage(f"entry {index} checksum mismatch")
    return Entry(term=term, index=index, data=bytes(mv[_ENTRY_HEAD_SIZE:]))


def _is_disk_full(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    return code == errno.ENOSPC or "No space left" in str(exc)


class LmdbStorage:
    """Durable `Storage` in an LMDB environment (see the module docstring for the layout).

    Args:
        path: the peer's data directory (created with mode 0o700 if missing).
        cluster_id: if given, the store must belong to this cluster; a store without one
            (created before ids were assigned) is stamped with it.
        map_size: initial LMDB map size in bytes; grown (doubled, at least by twice the bytes
            being written) whenever a write hits `MapFullError`, so it is a starting point,
            not a limit.
        sync: fsync every commit (the default, required for Raft's safety). ``sync=False``
            survives process crashes but not power loss; only tests should use it.

    Raises:
        CorruptStorageError: the directory holds a damaged store, another format version,
            or another cluster's store.
        StorageError: the directory cannot be created/locked (e.g. already open), I/O error.

    Costs: `save()` O(new entries + entries discarded) B-tree operations, `compact()`
    O(discarded), `term()` one lookup, `raft_state_size()`/`snapshot_size()` O(1) (kept in
    memory, persisted in ``meta``). Opening reads and verifies the whole retained log once.
    Not thread-safe (one owner thread, as the contract allows).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cluster_id: str | None = None,
        map_size: int = DEFAULT_MAP_SIZE,
        sync: bool = True,
    ) -> None:
        import lmdb

        self._dir = os.path.abspath(os.fspath(path))
        self._data_file = os.path.join(self._dir, DATA_FILE)
        self._sync = sync
        self._env: lmdb.Environment | None = None
        self._guard_fd: int | None = None
        # In-memory mirror of what the last committed transaction left on disk.
        self._hard = HardState()
        self._snap_index = 0
        self._snap_term = 0
        self._snap_len = 0
        self._snap_crc = 0
        self._has_snapshot = False
        self._last_index = 0
        self._entry_bytes = 0
        self._cluster_id: str | None = None
        self._initial: InitialState | None = None  # validated at open; dropped on write

        if map_size <= 0:
            raise ValueError("map_size must be positive")
        try:
            os.makedirs(self._dir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise StorageError(f"{self._dir}: cannot create data directory: {e}") from e
        if not os.path.isdir(self._dir):
            raise StorageError(f"{self._dir}: not a directory")
        self._lock_directory()
        try:
            if not os.path.exists(self._data_file):
                self._create(map_size, cluster_id)
            stored_map_size = self._check_data_file()
            self._preallocate_lock_file(self._dir)
            try:
                self._env = lmdb.open(
                    self._dir,
                    map_size=max(map_size, stored_map_size),
                    subdir=True,
                    max_dbs=MAX_DBS,
                    sync=sync,
                    metasync=True,
                    lock=True,
                    create=False,
                    mode=0o600,
                    readahead=False,
                )
                # Free reader-table slots left by killed processes (they would pin old pages).
                self._env.reader_check()
            except lmdb.Error as e:
                raise self._open_error(e) from e
            self._meta_db = self._open_named_db(META_DB)
            self._log_db = self._open_named_db(LOG_DB)
            self._snap_db = self._open_named_db(SNAPSHOT_DB)
            self._load(cluster_id)
            if cluster_id is not None and self._cluster_id is None:
                raw_id = cluster_id.encode()
                self._write(
                    "recording the cluster id",
                    lambda txn: txn.put(K_CLUSTER, raw_id, db=self._meta_db),
                    len(raw_id),
                )
                self._cluster_id = cluster_id
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------------------- opening

    def _corrupt(self, problem: str) -> CorruptStorageError:
        return CorruptStorageError(f"{self._data_file}: {problem}")

    def _open_error(self, e: Exception) -> StorageError:
        import lmdb

        environmental = (lmdb.ReadersFullError, lmdb.LockError, lmdb.MemoryError,
                         lmdb.DiskError, lmdb.ReadonlyError)
        if isinstance(e, environmental) or getattr(e, "code", 0) in (errno.EACCES, errno.EPERM):
            return StorageError(f"{self._data_file}: cannot open LMDB environment: {e}")
        return self._corrupt(f"unreadable LMDB file: {e}")

    def _open_named_db(self, name: bytes) -> lmdb._Database:
        import lmdb

        try:
            return self._env_or_raise().open_db(name, create=False)
        except lmdb.NotFoundError:
            raise self._corrupt(
                f"not a Ruaft store: LMDB database {name.decode()!r} is missing"
            ) from None
        except lmdb.Error as e:
            raise self._open_error(e) from e

    def _lock_directory(self) -> None:
        """Take an exclusive flock on `ruaft.lock`: one process (and one object) per directory.

        LMDB itself must not be opened twice in one process, and two peers writing one
        directory would corrupt each other's view; the kernel drops the lock when its holder
        dies, so a crashed peer never blocks its restart.
        """
        guard = os.path.join(self._dir, GUARD_FILE)
        try:
            fd = os.open(guard, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StorageError(f"{guard}: cannot open lock file: {e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StorageError(
                    f"{self._dir}: storage directory is already in use (locked by another "
                    f"process or another open LmdbStorage)"
                ) from e
            raise StorageError(f"{guard}: cannot lock: {e}") from e
        self._guard_fd = fd

    @staticmethod
    def _preallocate_lock_file(env_dir: str) -> None:
        """Give LMDB's `lock.mdb` real disk blocks before LMDB maps it.

        LMDB sizes its lock file with ftruncate (a sparse file) and writes its reader table
        through a shared memory map; on a full disk the first write to such a page kills the
        process with SIGBUS instead of returning an error. With the blocks allocated here
        (LMDB keeps a lock file that is already large enough), a full disk shows up as a
        clean StorageError.
        """
        lock_path = os.path.join(env_dir, "lock.mdb")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, _LOCK_FILE_BYTES)
            finally:
                os.close(fd)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise StorageError(
                    f"{lock_path}: disk full (no space left on device) opening the store"
                ) from e
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # no fallocate: go without
                raise StorageError(f"{lock_path}: cannot prepare LMDB lock file: {e}") from e

    def _create(self, map_size: int, cluster_id: str | None) -> None:
        """Build a brand-new store in a scratch subdirectory, then rename its `data.mdb` into
        place, so that a `data.mdb` that exists was always completely initialized (a crash
        during creation leaves only the scratch directory, which the next open discards)."""
        import lmdb

        scratch = os.path.join(self._dir, INIT_DIR)
        try:
            shutil.rmtree(scratch, ignore_errors=True)
            os.mkdir(scratch, 0o700)
            self._preallocate_lock_file(scratch)
            env = lmdb.open(scratch, map_size=map_size, subdir=True, max_dbs=MAX_DBS,
                            sync=self._sync, metasync=True, lock=True, mode=0o600)
            try:
                with env.begin(write=True) as txn:
                    meta = env.open_db(META_DB, txn=txn)
                    env.open_db(LOG_DB, txn=txn)
                    env.open_db(SNAPSHOT_DB, txn=txn)
                    txn.put(K_FORMAT, _U32.pack(FORMAT_VERSION), db=meta)
                    if cluster_id is not None:
                        txn.put(K_CLUSTER, cluster_id.encode(), db=meta)
                    txn.put(K_HARD_STATE, seal(K_HARD_STATE, _HARD.pack(0, -1, 0)), db=meta)
                    txn.put(K_ENTRY_BYTES, seal(K_ENTRY_BYTES, _U64.pack(0)), db=meta)
            finally:
                env.close()
            os.rename(os.path.join(scratch, DATA_FILE), self._data_file)
            if self._sync:
                dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            shutil.rmtree(scratch, ignore_errors=True)
        except lmdb.Error as e:
            free = self._free_disk_bytes()
            if _is_disk_full(e) or (free is not None and free < (1 << 20)):
                raise StorageError(
                    f"{self._dir}: disk full (no space left on device: {free} bytes free) "
                    f"creating the store: {e}"
                ) from e
            raise StorageError(f"{self._dir}: cannot create the store: {e}") from e
        except OSError as e:
            raise StorageError(f"{self._dir}: cannot create the store: {e}") from e

    def _check_data_file(self) -> int:
        """Check `data.mdb` against its own LMDB meta pages before LMDB maps it.

        LMDB trusts the file: if it is shorter than the pages its meta page says are in use,
        touching those pages through the memory map kills the process with SIGBUS. Returns
        the map size recorded in the newest meta page (so a grown map is not shrunk again).
        """
        try:
            size = os.path.getsize(self._data_file)
            with open(self._data_file, "rb") as f:
                head = f.read(_PAGE_HEADER.size + _MDB_META.size)
                metas = []
                first = self._parse_meta(head)
                if first is not None:
                    metas.append(first)
                    page_sizes = [first[0]]
                else:  # page 0 damaged: look for the second meta page at plausible sizes
                    page_sizes = [512 << k for k in range(8)]
                for psize in page_sizes:
                    f.seek(psize)
                    second = self._parse_meta(f.read(_PAGE_HEADER.size + _MDB_META.size))
                    if second is not None and second[0] == psize:
                        metas.append(second)
                        break
        except OSError as e:
            raise StorageError(f"{self._data_file}: cannot read: {e}") from e
        if size == 0:
            raise self._corrupt("file is empty (truncated)")
        if not metas:
            if size < 2 * os.sysconf("SC_PAGE_SIZE"):
                raise self._corrupt(f"file truncated: only {size} bytes, no valid LMDB meta page")
            raise self._corrupt(f"not an LMDB data file or its header is damaged ({size} bytes)")
        psize = metas[0][0]
        needed = max(2 * psize, max((m[1] + 1) * psize for m in metas))
        if size < needed:
            raise self._corrupt(
                f"file truncated: {size} bytes, but LMDB's meta page records pages up to "
                f"{needed} bytes"
            )
        newest = max(metas, key=lambda m: m[3])
        return newest[2]

    @staticmethod
    def _parse_meta(buf: bytes) -> tuple[int, int, int, int] | None:
        """(page size, last page number, map size, txn id) of one LMDB meta page, or None."""
        if len(buf) < _PAGE_HEADER.size + _MDB_META.size:
            return None
        _pgno, _pad, flags, _bounds = _PAGE_HEADER.unpack_from(buf)
        fields = _MDB_META.unpack_from(buf, _PAGE_HEADER.size)
        magic, mapsize, psize = fields[0], fields[3], fields[4]
        last_pg, txnid = fields[-2], fields[-1]
        if magic != _LMDB_MAGIC or not flags & _P_META:
            return None
        if psize < 512 or psize > (1 << 16) or psize & (psize - 1):
            return None
        return psize, last_pg, mapsize, txnid

    def _load(self, cluster_id: str | None) -> None:
        """Read and validate everything once; fill the in-memory mirror and the cache."""
        import lmdb

        try:
            with self._env_or_raise().begin(buffers=True) as txn:
                meta = {bytes(k): bytes(v) for k, v in txn.cursor(self._meta_db)}
                self._load_meta(meta, cluster_id)
                snapshot = self._read_snapshot(txn) if self._has_snapshot else None
                entries, total = self._scan_log(txn)
        except _Damage as e:
            raise self._corrupt(str(e)) from None
        except lmdb.Error as e:
            raise self._open_error(e) from e
        last = entries[-1].index if entries else self._snap_index
        if total != self._entry_bytes:
            raise self._corrupt(
                f"entry byte total mismatch: meta records {self._entry_bytes}, log holds {total}"
            )
        if self._hard.commit > last:
            raise self._corrupt(
                f"hard state commit index {self._hard.commit} beyond last index {last}"
            )
        self._last_index = last
        self._initial = InitialState(self._hard, snapshot, tuple(entries))

    def _load_meta(self, meta: dict[bytes, bytes], cluster_id: str | None) -> None:
        raw = meta.get(K_FORMAT)
        if raw is None:
            raise _Damage("missing format version")
        if len(raw) != 4:
            raise _Damage(f"malformed format version record ({len(raw)} bytes)")
        (version,) = _U32.unpack(raw)
        if version > FORMAT_VERSION:
            raise _Damage(
                f"written by a newer format version {version} (this code reads version "
                f"{FORMAT_VERSION})"
            )
        if version != FORMAT_VERSION:
            raise _Damage(f"unsupported format version {version} (expected {FORMAT_VERSION})")

        raw_cluster = meta.get(K_CLUSTER)
        if raw_cluster is not None:
            try:
                self._cluster_id = raw_cluster.decode()
            except UnicodeDecodeError:
                raise _Damage("cluster id record is not valid UTF-8") from None
            if cluster_id is not None and cluster_id != self._cluster_id:
                raise _Damage(
                    f"store belongs to cluster {self._cluster_id!r}, not {cluster_id!r} "
                    "(wrong data directory?)"
                )

        raw = meta.get(K_HARD_STATE)
        if raw is None:
            raise _Damage("missing hard state")
        term, vote, commit = _HARD.unpack(_unseal(K_HARD_STATE, raw, _HARD.size))
        self._hard = HardState(term=term, vote=vote, commit=commit)

        raw = meta.get(K_ENTRY_BYTES)
        if raw is None:
            raise _Damage("missing entry byte total")
        (self._entry_bytes,) = _U64.unpack(_unseal(K_ENTRY_BYTES, raw, _U64.size))

        raw = meta.get(K_SNAPSHOT)
        if raw is not None:
            (self._snap_index, self._snap_term, self._snap_len, self._snap_crc) = (
                _SNAP_META.unpack(_unseal(K_SNAPSHOT, raw, _SNAP_META.size))
            )
            self._has_snapshot = True

    def _read_snapshot(self, txn: lmdb.Transaction) -> Snapshot:
        data = txn.get(K_SNAPSHOT_DATA, db=self._snap_db)
        if data is None:
            raise _Damage("snapshot data missing")
        if len(data) != self._snap_len or zlib.crc32(data) != self._snap_crc:
            raise _Damage(f"snapshot (index {self._snap_index}) checksum mismatch")
        return Snapshot(index=self._snap_index, term=self._snap_term, data=bytes(data))

    def _scan_log(self, txn: lmdb.Transaction) -> tuple[list[Entry], int]:
        """Decode and verify every log record; return the entries and their byte total."""
        entries: list[Entry] = []
        append = entries.append
        expected = self._snap_index + 1
        prev_term = self._snap_term
        total = 0
        # Locals and an inlined decode: this loop is the open-time cost (≈1 µs per entry).
        crc32 = zlib.crc32
        unpack_head = _ENTRY_HEAD.unpack_from
        unpack_key = _U64.unpack
        for key, value in txn.cursor(self._log_db):
            if len(key) != 8 or len(value) < _ENTRY_HEAD_SIZE:
                _decode_entry(key, value)  # raises the precise complaint
            (index,) = unpack_key(key)
            if index != expected:
                if not entries and index > expected:
                    raise _Damage(
                        f"log starts at index {index}, not right after the snapshot index "
                        f"{self._snap_index}"
                    )
                if index < expected and not entries:
                    raise _Damage(
                        f"log holds entry {index} at or below the snapshot index "
                        f"{self._snap_index}"
                    )
                raise _Damage(f"index gap in the log: entry {index} follows {expected - 1}")
            crc, term = unpack_head(value)
            if crc32(value[4:], crc32(key)) != crc:
                raise _Damage(f"entry {index} checksum mismatch")
            if term < prev_term:
                raise _Damage(
                    f"term decreases along the log: entry {index} has term {term} after "
                    f"term {prev_term}"
                )
            append(Entry(term, index, bytes(value[_ENTRY_HEAD_SIZE:])))
            total += len(key) + len(value)
            prev_term = term
            expected = index + 1
        return entries, total

    # ------------------------------------------------------------------------- plumbing

    def _env_or_raise(self) -> lmdb.Environment:
        if self._env is None:
            raise StorageError(f"{self._dir}: storage is closed")
        return self._env

    def _release(self) -> None:
        if self._env is not None:
            try:
                self._env.close()
            finally:
                self._env = None
        if self._guard_fd is not None:
            try:
                os.close(self._guard_fd)  # closing drops the flock
            finally:
                self._guard_fd = None

    def _read_error(self, e: Exception) -> StorageError:
        import lmdb

        if isinstance(e, _Damage):
            return self._corrupt(str(e))
        if isinstance(e, (lmdb.CorruptedError, lmdb.PageNotFoundError)):
            return self._corrupt(f"LMDB reports damage: {e}")
        return StorageError(f"{self._data_file}: read failed: {e}")

    def _write(self, what: str, body: Callable[[lmdb.Transaction], object], size_hint: int) -> None:
        """Run `body` in one write transaction and commit it, growing the map when full.

        On `MapFullError` the transaction is aborted (by the context manager), the map grown
        and `body` re-run from scratch, so `body` must only touch the transaction (callers
        update their in-memory mirror after this returns). Attempts are bounded.
        """
        import lmdb

        env = self._env_or_raise()
        for _attempt in range(_MAX_WRITE_ATTEMPTS):
            try:
                with env.begin(write=True) as txn:
                    body(txn)
                return
            except lmdb.MapFullError:
                self._grow_map(size_hint)
            except lmdb.MapResizedError:
                env.set_mapsize(0)  # adopt the size another process set, then retry
            except lmdb.Error as e:
                free = self._free_disk_bytes()
                # LMDB reports a short write of a full disk as EIO, not ENOSPC: judge by the
                # space left too.
                if _is_disk_full(e) or (free is not None and free < size_hint + (1 << 20)):
                    raise StorageFullError(
                        f"{self._data_file}: disk full (no space left on device: {free} bytes "
                        f"free) while {what}: {e}"
                    ) from e
                raise StorageError(f"{self._data_file}: write failed while {what}: {e}") from e
        raise StorageError(
            f"{self._data_file}: still out of map space after {_MAX_WRITE_ATTEMPTS} attempts "
            f"while {what} (map size {env.info()['map_size']} bytes)"
        )

    def _free_disk_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self._dir).free
        except OSError:
            return None

    def _grow_map(self, size_hint: int) -> None:
        """Grow the LMDB map: at least double it, and by at least twice the write's size."""
        env = self._env_or_raise()
        current = env.info()["map_size"]
        free = self._free_disk_bytes()
        if free is not None and free < size_hint:
            raise StorageFullError(
                f"{self._data_file}: disk full: a write of about {size_hint} bytes needs more "
                f"than the {free} bytes free on the device"
            )
        if current >= _MAX_MAP_SIZE:
            raise StorageFullError(
                f"{self._data_file}: LMDB map size {current} bytes reached the limit "
                f"{_MAX_MAP_SIZE}; cannot grow further"
            )
        target = max(2 * current, current + 2 * size_hint + (1 << 20))
        page = os.sysconf("SC_PAGE_SIZE")
        target = min(_MAX_MAP_SIZE, -(-target // page) * page)
        env.set_mapsize(target)

    def _stored_term(self, index: int) -> int:
        """Term of stored entry `index` (snap_index < index ≤ last_index), checksum-verified."""
        import lmdb

        env = self._env_or_raise()
        key = encode_index(index)
        try:
            with env.begin(buffers=True) as txn:
                value = txn.get(key, db=self._log_db)
                if value is None:
                    raise _Damage(f"entry {index} missing from the log")
                return _decode_entry(key, value).term
        except (_Damage, lmdb.Error) as e:
            raise self._read_error(e) from e

    # ------------------------------------------------------------------------- reads

    def initial_state(self) -> InitialState:
        """Hard state, snapshot (with data) and retained entries.

        Right after open this is the state validated there (no second read); after a write
        the store is re-read (and re-verified).
        """
        import lmdb

        env = self._env_or_raise()
        if self._initial is not None:
            return self._initial
        try:
            with env.begin(buffers=True) as txn:
                snapshot = self._read_snapshot(txn) if self._has_snapshot else None
                entries, _total = self._scan_log(txn)
        except (_Damage, lmdb.Error) as e:
            raise self._read_error(e) from e
        self._initial = InitialState(self._hard, snapshot, tuple(entries))
        return self._initial

    def first_index(self) -> int:
        self._env_or_raise()
        return self._snap_index + 1

    def last_index(self) -> int:
        self._env_or_raise()
        return self._last_index

    def term(self, index: int) -> int:
        self._env_or_raise()
        if index == self._snap_index:
            return self._snap_term
        if self._snap_index < index <= self._last_index:
            return self._stored_term(index)
        raise KeyError(
            f"no term for index {index}: retained range is "
            f"[{self._snap_index}, {self._last_index}]"
        )

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """See `Storage.entries`; `max_bytes` counts `common.entry_size` per entry."""
        import lmdb

        env = self._env_or_raise()
        check_entries_range(lo, hi, self._snap_index + 1, self._last_index)
        out: list[Entry] = []
        if lo == hi:
            return out
        total = 0
        expected = lo
        try:
            with env.begin(buffers=True) as txn:
                cursor = txn.cursor(self._log_db)
                if cursor.set_range(encode_index(lo)):
                    for key, value in cursor.iternext():
                        entry = _decode_entry(key, value)
                        if entry.index != expected:
                            raise _Damage(f"index gap in the log: entry {entry.index} follows "
                                          f"{expected - 1}")
                        total += len(key) + len(value)  # == entry_size(entry)
                        if max_bytes is not None and total > max_bytes and out:
                            return out  # budget spent (at least one entry returned)
                        out.append(entry)
                        expected += 1
                        if expected == hi:
                            return out
                raise _Damage(f"log ends at {expected - 1}, expected entries up to {hi - 1}")
        except (_Damage, lmdb.Error) as e:
            raise self._read_error(e) from e

    def snapshot(self) -> Snapshot | None:
        import lmdb

        env = self._env_or_raise()
        if not self._has_snapshot:
            return None
        if self._initial is not None:
            return self._initial.snapshot
        try:
            with env.begin() as txn:
                return self._read_snapshot(txn)
        except (_Damage, lmdb.Error) as e:
            raise self._read_error(e) from e

    def hard_state(self) -> HardState:
        self._env_or_raise()
        return self._hard

    def raft_state_size(self) -> int:
        """HARD_STATE_BYTES (28) + Σ over retained entries of (len(data) + 20): exactly the
        bytes of the hard-state record and of each log record's key and value."""
        self._env_or_raise()
        return HARD_STATE_BYTES + self._entry_bytes

    def snapshot_size(self) -> int:
        self._env_or_raise()
        return self._snap_len if self._has_snapshot else 0

    @property
    def path(self) -> str:
        """The data directory (absolute)."""
        return self._dir

    @property
    def cluster_id(self) -> str | None:
        """The cluster id recorded in the store (None if never given)."""
        return self._cluster_id

    # ------------------------------------------------------------------------- writes

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        """See `Storage.save`: one write transaction, durable on return (with sync=True).

        Raises ValueError (nothing written) on a contract breach, StorageError on I/O failure.
        """
        self._env_or_raise()
        plan = plan_save(
            snap_index=self._snap_index,
            snap_term=self._snap_term,
            last_index=self._last_index,
            term_at=self._stored_term,
            hard_state=self._hard,
            new_hard_state=hard_state,
            entries=entries,
            snapshot=snapshot,
        )
        if plan.snapshot is None and plan.truncate_from is None and hard_state is None:
            return  # nothing to persist
        # Encode outside the transaction (and once, however many times a full map makes us
        # retry it).
        records = [(encode_index(e.index), encode_entry_value(e)) for e in entries]
        added = sum(len(k) + len(v) for k, v in records)
        hint = added + (len(plan.snapshot.data) if plan.snapshot is not None else 0) + 4096
        new_total = [self._entry_bytes]

        def body(txn: lmdb.Transaction) -> None:
            total = self._entry_bytes
            cursor = txn.cursor(self._log_db)
            snap = plan.snapshot
            if snap is not None:
                if plan.keep_after_snapshot:
                    total -= self._delete_through(cursor, snap.index)
                else:
                    # Empty the log database without reading its records (frees its pages).
                    txn.drop(self._log_db, delete=False)
                    cursor = txn.cursor(self._log_db)
                    total = 0
                txn.put(K_SNAPSHOT_DATA, snap.data, db=self._snap_db)
                txn.put(
                    K_SNAPSHOT,
                    seal(K_SNAPSHOT, _SNAP_META.pack(snap.index, snap.term, len(snap.data),
                                                      zlib.crc32(snap.data))),
                    db=self._meta_db,
                )
            if plan.truncate_from is not None:
                total -= self._delete_from(cursor, plan.truncate_from)
                # Keys increase and exceed every remaining key: MDB_APPEND skips the search.
                _consumed, stored = cursor.putmulti(records, append=True)
                if stored != len(records):
                    raise StorageError(
                        f"{self._data_file}: appended {stored} of {len(records)} entries "
                        "(log keys out of order?)"
                    )
                total += added
            if hard_state is not None:
                hs = plan.hard_state
                txn.put(K_HARD_STATE, seal(K_HARD_STATE, _HARD.pack(hs.term, hs.vote, hs.commit)),
                        db=self._meta_db)
            txn.put(K_ENTRY_BYTES, seal(K_ENTRY_BYTES, _U64.pack(total)), db=self._meta_db)
            new_total[0] = total

        self._write("saving", body, hint)
        # Committed: bring the in-memory mirror up to date.
        self._initial = None
        if plan.snapshot is not None:
            self._has_snapshot = True
            self._snap_index, self._snap_term = plan.snap_index, plan.snap_term
            self._snap_len = len(plan.snapshot.data)
            self._snap_crc = zlib.crc32(plan.snapshot.data)
        self._last_index = plan.last_index
        self._hard = plan.hard_state
        self._entry_bytes = new_total[0]

    def compact(self, snapshot: Snapshot) -> None:
        """See `Storage.compact`: one write transaction storing `snapshot` and deleting the
        entries ≤ its index. Raises ValueError unless snapshot index ≤ last index, not older
        than the stored snapshot, with the log's term at that index."""
        self._env_or_raise()
        check_compact(
            snap_index=self._snap_index,
            snap_term=self._snap_term,
            last_index=self._last_index,
            term_at=self._stored_term,
            snapshot=snapshot,
        )
        crc = zlib.crc32(snapshot.data)
        new_total = [self._entry_bytes]

        def body(txn: lmdb.Transaction) -> None:
            removed = self._delete_through(txn.cursor(self._log_db), snapshot.index)
            total = self._entry_bytes - removed
            txn.put(K_SNAPSHOT_DATA, snapshot.data, db=self._snap_db)
            txn.put(
                K_SNAPSHOT,
                seal(K_SNAPSHOT, _SNAP_META.pack(snapshot.index, snapshot.term,
                                                  len(snapshot.data), crc)),
                db=self._meta_db,
            )
            txn.put(K_ENTRY_BYTES, seal(K_ENTRY_BYTES, _U64.pack(total)), db=self._meta_db)
            new_total[0] = total

        self._write("compacting", body, len(snapshot.data) + 4096)
        self._initial = None
        self._has_snapshot = True
        self._snap_index, self._snap_term = snapshot.index, snapshot.term
        self._snap_len, self._snap_crc = len(snapshot.data), crc
        self._entry_bytes = new_total[0]

    @staticmethod
    def _delete_through(cursor: lmdb.Cursor, index: int) -> int:
        """Delete log records with key ≤ index (a prefix); return their byte total."""
        limit = encode_index(index)
        removed = 0
        if not cursor.first():
            return 0
        while True:
            key = cursor.key()
            if not key or bytes(key) > limit:
                return removed
            removed += len(key) + len(cursor.value())
            cursor.delete()  # moves to the next record (or unpositions at the end)

    @staticmethod
    def _delete_from(cursor: lmdb.Cursor, index: int) -> int:
        """Delete log records with key ≥ index (a suffix); return their byte total."""
        removed = 0
        if not cursor.set_range(encode_index(index)):
            return 0
        if failpoints.armed: failpoints.maybe_trigger("log.truncate.before")  # a suffix exists
        while True:
            key = cursor.key()
            if not key:
                if failpoints.armed: failpoints.maybe_trigger("log.truncate.after")  # not committed
                return removed
            removed += len(key) + len(cursor.value())
            cursor.delete()

    def close(self) -> None:
        """Close the environment and release the directory lock. Idempotent; any other
        method called afterwards raises StorageError."""
        self._release()
        self._initial = None

    def __enter__(self) -> LmdbStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._env is None else f"last_index={self._last_index}"
        return f"LmdbStorage({self._dir!r}, {state})"
