"""Child process of test_lmdb_crash.py: append to an LmdbStorage until killed.

Usage: python lmdb_appender.py DATA_DIR SEED

Opens the store (validating it), prints ``START <last_index>``, then loops: save() 1–20 new
entries (payload = `payload(index)`) with a hard state whose commit is the new last index, and
only after save() has returned prints the new last index on its own line (flushed). Now and
then it bumps the term, and when the log grows long it compacts it behind a snapshot whose data
is `snapshot_data(index)`, so the log stays short and compaction is crashed into as well.
The parent SIGKILLs it at a random moment.
"""

from __future__ import annotations

import random
import sys
import types
from pathlib import Path

if __name__ == "__main__" and "ruaft" not in sys.modules:
    # Start-up cost is paid 50 times per crash test: register a bare `ruaft` package so that
    # importing `ruaft.storage` skips `ruaft/__init__.py`, which pulls in the whole runtime
    # (asyncio, zmq, ...) that this child never uses.
    _pkg = types.ModuleType("ruaft")
    _pkg.__path__ = [str(Path(__file__).resolve().parents[2] / "ruaft")]
    sys.modules["ruaft"] = _pkg

from ruaft.core.types import Entry, HardState, Snapshot  # noqa: E402
from ruaft.storage import LmdbStorage  # noqa: E402

CLUSTER_ID = "crash-test"
KEEP_ENTRIES = 300
COMPACT_ABOVE = 1000


def payload(index: int) -> bytes:
    """Deterministic, index-specific payload of varying length (0–300 random-looking bytes)."""
    rng = random.Random(index)
    return b"%d:" % index + rng.randbytes(rng.randrange(0, 300))


def snapshot_data(index: int) -> bytes:
    return b"snapshot through %d" % index


def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    store = LmdbStorage(path, cluster_id=CLUSTER_ID, sync=True)
    last = store.last_index()
    term = max(store.hard_state().term, 1)
    out = sys.stdout
    out.write(f"START {last}\n")
    out.flush()
    while True:
        if rng.random() < 0.05:
            term += 1
        n = rng.randint(1, 20)
        batch = [Entry(term, i, payload(i)) for i in range(last + 1, last + n + 1)]
        last += n
        store.save(HardState(term, rng.randint(0, 4), last), batch)
        out.write(f"{last}\n")
        out.flush()
        if last - store.first_index() > COMPACT_ABOVE:
            upto = last - KEEP_ENTRIES
            store.compact(Snapshot(upto, store.term(upto), snapshot_data(upto)))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
