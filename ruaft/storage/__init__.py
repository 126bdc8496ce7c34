"""Durable Raft state: the `Storage` contract and its two implementations.

`MemoryStorage` (plain lists; simulator and unit tests) and `LmdbStorage` (one LMDB
environment per peer data directory). Importing this package does not import `lmdb`: only
`LmdbStorage`'s methods do.
"""

from ruaft.storage.base import CorruptStorageError, Storage, StorageError, StorageFullError
from ruaft.storage.lmdb_storage import LmdbStorage
from ruaft.storage.memory import MemoryStorage

__all__ = ["Storage", "StorageError", "StorageFullError", "CorruptStorageError", "MemoryStorage", "LmdbStorage"]
