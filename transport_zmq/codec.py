"""The Raft wire format: one msgpack array per message, validated field by field on decode.

Frame layout (msgpack arrays only, never maps; ``use_bin_type=True`` so ``bytes`` stay
``bytes`` and ``str`` stays ``str``)::

    [WIRE_VERSION, cluster_id, kind, from_peer, to_peer, term, <kind-specific fields>]

The fields after ``kind`` are the message dataclass's fields in declaration order (every
message starts with ``from_peer, to_peer, term``). They are derived from
`ruaft.core.types` when this module is imported, so a field added there is carried on the
wire without touching this file; a field of a type the codec does not know how to check
makes the import fail loudly (see `_field_check`). Since all peers of a cluster run the same
code, the layout is not negotiated; bump `WIRE_VERSION` when a change must be told apart.
`describe_layouts()` returns the current layout of every kind.

``AppendEntries.entries`` travels as ONE flat array ``[term, index, data, term, index, data,
...]`` rather than an array per entry: one msgpack container instead of n+1, and the three
columns are recovered with C-speed slicing (``flat[0::3]``) on decode.

Validation (decode) — a frame is accepted only if it could have been produced by a correct
peer of this cluster:

* the whole frame is at most ``max_frame_bytes`` (OVERSIZED), is exactly one complete msgpack
  object (TRUNCATED when it ends early, MALFORMED for anything else msgpack refuses, including
  maps, ext types and trailing bytes), an array of the exact length for its kind (MALFORMED);
* ``WIRE_VERSION`` matches (UNKNOWN_VERSION), ``cluster_id`` matches (WRONG_CLUSTER), ``kind``
  is a known `MessageKind` (UNKNOWN_KIND);
* every field has its exact Python type — ``bool`` must be a ``bool``, an integer must be an
  ``int`` and not a ``bool``, ``data`` must be ``bytes`` not ``str`` (WRONG_TYPE);
* every integer is in ``0 .. 2**63-1`` (OUT_OF_BOUNDS); ``from_peer`` and ``to_peer`` are
  members of ``peer_ids`` (UNKNOWN_PEER) and differ (OUT_OF_BOUNDS);
* AppendEntries entries are well-formed: consecutive indexes starting at
  ``prev_log_index + 1``, terms non-decreasing, not below ``prev_log_term`` and not above the
  message's ``term`` (each of which holds for every AppendEntries a correct leader sends,
  because a leader's log terms never decrease and never exceed its current term);
  InstallSnapshot's ``offset + len(data)`` stays in bounds (OUT_OF_BOUNDS).

`RaftCodec.decode` raises `DecodeError` and nothing else, whatever bytes it is given.

Threading: `RaftCodec.decode` is safe from any thread. `RaftCodec.encode` reuses one msgpack
``Packer`` (2.4x faster than ``msgpack.packb``), so one codec must not encode from two threads
at once; give each thread its own codec (they are cheap).
"""

from __future__ import annotations

import dataclasses
from collections import deque as _drain
from collections.abc import Callable, Collection
from itertools import repeat
from enum import Enum
from operator import attrgetter
from typing import Any, Final, NoReturn

import msgpack

from ruaft.core.types import (
    MESSAGE_TYPES,
    NO_PEER,
    Entry,
    Message,
    MessageKind,
)

__all__ = [
    "WIRE_VERSION",
    "MAX_UINT",
    "DEFAULT_MAX_FRAME_BYTES",
    "DecodeErrorKind",
    "DecodeError",
    "EncodeError",
    "RaftCodec",
    "describe_layouts",
]

WIRE_VERSION: Final = 1
"""First element of every frame."""

MAX_UINT: Final = 2**63 - 1
"""Largest term, index, offset or counter accepted on the wire (LMDB/Go/Rust int64 range)."""

DEFAULT_MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
"""A suggested frame cap: comfortably above the core's default 1 MiB append and snapshot-chunk
caps (the core always sends at least one entry, so a single entry larger than the cap would be
undeliverable — keep the cap well above the largest command)."""

_HEADER: Final = 3  # version, cluster_id, kind: the message's fields start at this position


class DecodeErrorKind(Enum):
    """Why a frame was refused. The transport counts drops by these names."""

    MALFORMED = "malformed"
    """Not one msgpack array of the expected shape (also: maps, ext types, trailing bytes,
    invalid UTF-8, wrong array length, multi-part ZeroMQ messages)."""
    TRUNCATED = "truncated"
    """The bytes end before the msgpack object they start is complete."""
    OVERSIZED = "oversized"
    """Longer than ``max_frame_bytes``."""
    UNKNOWN_VERSION = "unknown_version"
    UNKNOWN_KIND = "unknown_kind"
    WRONG_TYPE = "wrong_type"
    OUT_OF_BOUNDS = "out_of_bounds"
    UNKNOWN_PEER = "unknown_peer"
    WRONG_CLUSTER = "wrong_cluster"


class DecodeError(Exception):
    """A frame was refused. `kind` says why (for counting); `detail` is for humans (logs)."""

    def __init__(self, kind: DecodeErrorKind, detail: str = "") -> None:
        super().__init__(f"{kind.value}: {detail}" if detail else kind.value)
        self.kind = kind
        self.detail = detail


class EncodeError(ValueError):
    """`RaftCodec.encode` was given something it cannot put on the wire: not a message, a field
    msgpack cannot pack, or a frame over ``max_frame_bytes``. This is a local bug or a
    misconfiguration (frame cap below the core's byte caps), never remote input."""


# --------------------------------------------------------------------------------------------
# Layouts, derived from the dataclasses once at import time.

_PEER = "peer"  # from_peer / to_peer: an int in peer_ids
_PEER_OR_NONE = "peer-or-none"  # any other PeerId field: in peer_ids or NO_PEER
_UINT = "uint"
_BOOL = "bool"
_BYTES = "bytes"
_ENTRIES = "entries"

# Field annotations are strings (``from __future__ import annotations`` in types.py).
_ANNOTATION_CHECKS: Final[dict[str, str]] = {
    "int": _UINT,
    "bool": _BOOL,
    "bytes": _BYTES,
    "PeerId": _PEER_OR_NONE,
    "tuple[Entry, ...]": _ENTRIES,
}


def _field_check(cls: type, f: dataclasses.Field[Any]) -> str:
    if f.name in ("from_peer", "to_peer"):
        return _PEER
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", repr(f.type))
    try:
        return _ANNOTATION_CHECKS[annotation]
    except KeyError:
        raise TypeError(
            f"transport_zmq.codec cannot carry {cls.__name__}.{f.name}: {annotation!r}; "
            "teach _ANNOTATION_CHECKS how to validate it"
        ) from None


def _fast_setters(cls: type, names: tuple[str, ...]) -> tuple[Callable[[Any, Any], None], ...] | None:
    """Slot setters that build an instance without running the frozen dataclass ``__init__``
    (which calls ``object.__setattr__`` once per field: 2.4 µs for an AppendEntries versus
    ~0.9 µs this way). Only used when ``__init__`` does nothing but assign: no
    ``__post_init__``, pure ``__slots__`` with exactly these fields. Otherwise None, and the
    constructor is used."""
    if hasattr(cls, "__post_init__") or "__slots__" not in cls.__dict__:
        return None
    if tuple(cls.__dict__["__slots__"]) != names:
        return None
    setters = []
    for name in names:
        descriptor = cls.__dict__.get(name)
        setter = getattr(descriptor, "__set__", None)
        if setter is None or type(descriptor).__name__ != "member_descriptor":
            return None
        setters.append(setter)
    return tuple(setters)


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    kind: MessageKind
    cls: type[Any]
    names: tuple[str, ...]  # dataclass fields, in wire order
    checks: tuple[str, ...]  # one of the _PEER... constants per field
    length: int  # array length of a frame of this kind
    uint_pos: tuple[int, ...]  # frame positions of plain integers
    bool_pos: tuple[int, ...]
    bytes_pos: tuple[int, ...]
    other_peer_pos: tuple[int, ...]  # PeerId fields other than from/to
    entries_pos: int  # -1 when the kind has no entries
    prev_index_pos: int  # with entries: where prev_log_index / prev_log_term are
    prev_term_pos: int
    offset_pos: int  # a chunk (InstallSnapshot): offset and data, -1 when absent
    data_pos: int
    getter: Callable[[Any], tuple[Any, ...]]  # message -> field values, one C call
    setters: tuple[Callable[[Any, Any], None], ...] | None


def _build_layouts() -> dict[int, _Layout]:
    layouts: dict[int, _Layout] = {}
    for kind, cls in MESSAGE_TYPES.items():
        fields = dataclasses.fields(cls)
        names = tuple(f.name for f in fields)
        if names[:3] != ("from_peer", "to_peer", "term"):
            raise TypeError(f"{cls.__name__} must start with from_peer, to_peer, term")
        checks = tuple(_field_check(cls, f) for f in fields)

        def positions(check: str, checks: tuple[str, ...] = checks) -> tuple[int, ...]:
            return tuple(_HEADER + i for i, c in enumerate(checks) if c == check)

        checks_by_name = dict(zip(names, checks))

        def position(name: str, names: tuple[str, ...] = names) -> int:
            return _HEADER + names.index(name) if name in names else -1

        entries = positions(_ENTRIES)
        if len(entries) > 1:
            raise TypeError(f"{cls.__name__}: at most one entries field is supported")
        if entries and not {"prev_log_index", "prev_log_term"} <= set(names):
            raise TypeError(f"{cls.__name__}: entries need prev_log_index and prev_log_term")
        layouts[int(kind)] = _Layout(
            kind=kind,
            cls=cls,
            names=names,
            checks=checks,
            length=_HEADER + len(names),
            uint_pos=positions(_UINT),
            bool_pos=positions(_BOOL),
            bytes_pos=positions(_BYTES),
            other_peer_pos=positions(_PEER_OR_NONE),
            entries_pos=entries[0] if entries else -1,
            prev_index_pos=position("prev_log_index"),
            prev_term_pos=position("prev_log_term"),
            offset_pos=position("offset") if checks_by_name.get("data") == _BYTES else -1,
            data_pos=position("data") if checks_by_name.get("offset") == _UINT else -1,
            getter=attrgetter(*names),  # >= 3 names, so it always returns a tuple
            setters=_fast_setters(cls, names),
        )
    return layouts


_LAYOUTS: Final = _build_layouts()

if tuple(f.name for f in dataclasses.fields(Entry)) != ("term", "index", "data"):
    raise TypeError("transport_zmq.codec encodes Entry as (term, index, data); update it")
_ENTRY_SETTERS: Final = _fast_setters(Entry, ("term", "index", "data"))
_new = object.__new__


def _make_entries(
    terms: list[Any], indexes: list[Any], datas: list[Any]
) -> tuple[Entry, ...]:
    """Entries from validated columns. Every loop runs in C (``map`` drained by a zero-length
    ``deque``): about half the cost of calling ``Entry(...)`` per entry."""
    if _ENTRY_SETTERS is None:
        return tuple(map(Entry, terms, indexes, datas))
    set_term, set_index, set_data = _ENTRY_SETTERS
    entries = list(map(_new, repeat(Entry, len(terms))))
    _drain(map(set_term, entries, terms), 0)
    _drain(map(set_index, entries, indexes), 0)
    _drain(map(set_data, entries, datas), 0)
    return tuple(entries)


def describe_layouts() -> dict[str, list[str]]:
    """The frame layout of every message kind, e.g. for documentation and debugging:
    ``{"APPEND_ENTRIES": ["version", "cluster_id", "kind=3", "from_peer", ...]}``."""
    return {
        layout.kind.name: ["version", "cluster_id", f"kind={int(layout.kind)}"]
        + [
            f"{name}: [term, index, data]*" if check == _ENTRIES else f"{name}: {check}"
            for name, check in zip(layout.names, layout.checks)
        ]
        for layout in _LAYOUTS.values()
    }


# --------------------------------------------------------------------------------------------
# Classifying msgpack failures.


def _classify_unpack_failure(frame: bytes) -> DecodeErrorKind:
    """Why ``msgpack.unpackb`` refused `frame`: TRUNCATED if the bytes end inside the object
    they start, MALFORMED otherwise (a never-used type byte, nesting too deep, trailing bytes,
    or a complete object with a map, an ext or invalid UTF-8).

    ``unpackb``'s own errors cannot tell truncation apart reliably: with length bounds taken
    from the frame's size (see `RaftCodec._decode`), a cut inside a long entries array fails
    as "N exceeds max_array_len" rather than "incomplete input". ``Unpacker.skip()`` walks the
    structure in C by its headers alone — allocating nothing and enforcing no length bound —
    and ends with OutOfData exactly when the input is incomplete. Error path only.
    """
    unpacker = msgpack.Unpacker(max_buffer_size=max(len(frame), 1))
    unpacker.feed(frame)
    try:
        unpacker.skip()
    except msgpack.OutOfData:
        return DecodeErrorKind.TRUNCATED
    except Exception:  # FormatError (0xc1), StackError (too deep), ...
        return DecodeErrorKind.MALFORMED
    return DecodeErrorKind.MALFORMED


# --------------------------------------------------------------------------------------------


class RaftCodec:
    """Encodes Raft messages to frames and decodes (and validates) frames to messages.

    `cluster_id` is written into every frame and required on decode, so peers of two clusters
    sharing hosts never talk to each other. `peer_ids` are the peers a frame may name as
    sender or receiver. `max_frame_bytes` caps both directions (set the transport's socket
    MAXMSGSIZE from it).
    """

    __slots__ = ("cluster_id", "peer_ids", "max_frame_bytes", "_packer", "_pack", "_peer_or_none")

    def __init__(self, cluster_id: str, peer_ids: Collection[int], max_frame_bytes: int) -> None:
        if not isinstance(cluster_id, str):
            raise TypeError("cluster_id must be a str")
        if max_frame_bytes < 64:
            raise ValueError("max_frame_bytes is too small for any frame")
        for p in peer_ids:
            if type(p) is not int or not 0 <= p <= MAX_UINT:
                raise ValueError(f"peer ids must be non-negative ints, got {p!r}")
        self.cluster_id: Final = cluster_id
        self.peer_ids: Final[frozenset[int]] = frozenset(peer_ids)
        self.max_frame_bytes: Final = max_frame_bytes
        self._peer_or_none = self.peer_ids | {NO_PEER}
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)
        self._pack = self._packer.pack

    # ------------------------------------------------------------------------------ encode

    def encode(self, msg: Message) -> bytes:
        """The frame for `msg`. Trusts the message's field values (they come from our own
        core; the receiver validates). Raises `EncodeError` if `msg` is not a message, a value
        cannot be packed, or the frame would exceed ``max_frame_bytes``. Not thread-safe."""
        try:
            layout = _LAYOUTS[msg.kind]
            if type(msg) is not layout.cls:
                raise KeyError(msg.kind)
        except (AttributeError, KeyError, TypeError):
            raise EncodeError(f"not a Raft message: {type(msg).__name__}") from None
        values = layout.getter(msg)
        if layout.entries_pos >= 0:
            flat: list[Any] = []
            extend = flat.extend
            for e in values[layout.entries_pos - _HEADER]:
                extend((e.term, e.index, e.data))
            values = (
                values[: layout.entries_pos - _HEADER]
                + (flat,)
                + values[layout.entries_pos - _HEADER + 1 :]
            )
        try:
            frame: bytes = self._pack((WIRE_VERSION, self.cluster_id, layout.kind.value) + values)
        except (TypeError, ValueError, OverflowError) as e:
            # The Packer is reset between calls (autoreset) but a failure mid-way can leave a
            # partial buffer behind: start from a clean one.
            self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)
            self._pack = self._packer.pack
            raise EncodeError(f"cannot pack {type(msg).__name__}: {e}") from None
        if len(frame) > self.max_frame_bytes:
            raise EncodeError(
                f"{type(msg).__name__} frame of {len(frame)} bytes exceeds "
                f"max_frame_bytes={self.max_frame_bytes}"
            )
        return frame

    # ------------------------------------------------------------------------------ decode

    def decode(self, frame: bytes) -> Message:
        """The message in `frame`, validated as described in the module docstring.

        Raises `DecodeError` (and only `DecodeError`, whatever `frame` holds) when the frame
        is refused; `DecodeError.kind` says why. Thread-safe.
        """
        try:
            return self._decode(frame)
        except DecodeError:
            raise
        except Exception as e:  # a bug in validation must not let remote input crash a peer
            raise DecodeError(DecodeErrorKind.MALFORMED, f"{type(e).__name__}: {e}") from None

    def _decode(self, frame: bytes) -> Message:
        n = len(frame)
        if n > self.max_frame_bytes:
            raise DecodeError(DecodeErrorKind.OVERSIZED, f"{n} > {self.max_frame_bytes} bytes")
        try:
            # Every length bound is the frame's own size: no string, binary or array can be
            # longer than the bytes that carry it, and msgpack preallocates arrays from their
            # header count, so a tiny frame must not be able to claim a huge one. Maps and ext
            # types never appear in a valid frame.
            f = msgpack.unpackb(
                frame,
                use_list=True,
                raw=False,
                max_bin_len=n,
                max_str_len=n,
                max_array_len=n,
                max_map_len=0,
                max_ext_len=0,
            )
        except Exception as e:  # ExtraData, FormatError, StackError, ValueError, ...
            kind = _classify_unpack_failure(frame)
            raise DecodeError(kind, f"msgpack: {type(e).__name__}: {e}") from None
        if type(f) is not list or not f:
            raise DecodeError(DecodeErrorKind.MALFORMED, "not a non-empty array")
        version = f[0]
        if version != WIRE_VERSION or type(version) is not int:
            # Checked before the shape: another version may lay frames out differently.
            raise DecodeError(DecodeErrorKind.UNKNOWN_VERSION, f"version {version!r:.40}")
        if len(f) < _HEADER:
            raise DecodeError(DecodeErrorKind.MALFORMED, "array shorter than the header")
        cluster_id, kind = f[1], f[2]
        if cluster_id != self.cluster_id:
            if type(cluster_id) is not str:
                raise DecodeError(DecodeErrorKind.WRONG_TYPE, "cluster_id is not a str")
            raise DecodeError(DecodeErrorKind.WRONG_CLUSTER, f"cluster {cluster_id!r:.40}")
        if type(kind) is not int:
            raise DecodeError(DecodeErrorKind.WRONG_TYPE, f"kind {kind!r:.40} is not an int")
        layout = _LAYOUTS.get(kind)
        if layout is None:
            raise DecodeError(DecodeErrorKind.UNKNOWN_KIND, f"kind {kind}")
        if len(f) != layout.length:
            raise DecodeError(
                DecodeErrorKind.MALFORMED,
                f"{layout.kind.name} has {len(f)} elements, expected {layout.length}",
            )

        # Fast path: one pass of cheap checks; any failure goes to _diagnose, which re-checks
        # field by field (in wire order) to name the precise error.
        peers = self.peer_ids
        frm, to = f[3], f[4]
        if (
            type(frm) is not int
            or type(to) is not int
            or frm not in peers
            or to not in peers
            or frm == to
        ):
            self._diagnose(layout, f)
        for i in layout.uint_pos:
            v = f[i]
            if type(v) is not int or v < 0 or v > MAX_UINT:
                self._diagnose(layout, f)
        for i in layout.bool_pos:
            if type(f[i]) is not bool:
                self._diagnose(layout, f)
        for i in layout.bytes_pos:
            if type(f[i]) is not bytes:
                self._diagnose(layout, f)
        for i in layout.other_peer_pos:
            v = f[i]
            if type(v) is not int or v not in self._peer_or_none:
                self._diagnose(layout, f)

        values = f[_HEADER:]
        if layout.entries_pos >= 0:
            values[layout.entries_pos - _HEADER] = self._entries(layout, f)
        elif layout.offset_pos >= 0 and layout.data_pos >= 0:
            if f[layout.offset_pos] + len(f[layout.data_pos]) > MAX_UINT:
                raise DecodeError(DecodeErrorKind.OUT_OF_BOUNDS, "offset + len(data) too large")

        setters = layout.setters
        if setters is None:
            return layout.cls(*values)
        msg: Message = _new(layout.cls)
        for setter, value in zip(setters, values):
            setter(msg, value)
        return msg

    def _entries(self, layout: _Layout, f: list[Any]) -> tuple[Entry, ...]:
        flat = f[layout.entries_pos]
        if type(flat) is not list:
            raise DecodeError(DecodeErrorKind.WRONG_TYPE, "entries is not an array")
        if not flat:
            return ()
        if len(flat) % 3:
            raise DecodeError(DecodeErrorKind.MALFORMED, "entries array length not a multiple of 3")
        prev_index = f[layout.prev_index_pos]
        prev_term = f[layout.prev_term_pos]
        term = f[_HEADER + 2]
        terms, indexes, datas = flat[0::3], flat[1::3], flat[2::3]
        count = len(terms)
        # One C-level pass per column instead of a Python loop per entry.
        if {*map(type, terms), *map(type, indexes)} != {int}:
            raise DecodeError(DecodeErrorKind.WRONG_TYPE, "entry term/index is not an int")
        if {*map(type, datas)} != {bytes}:
            raise DecodeError(DecodeErrorKind.WRONG_TYPE, "entry data is not bytes")
        if prev_index + count > MAX_UINT:
            raise DecodeError(DecodeErrorKind.OUT_OF_BOUNDS, "entry index too large")
        if indexes != list(range(prev_index + 1, prev_index + 1 + count)):
            raise DecodeError(
                DecodeErrorKind.OUT_OF_BOUNDS,
                f"entry indexes are not consecutive from prev_log_index+1={prev_index + 1}",
            )
        if terms[0] < prev_term or terms[-1] > term or (count > 1 and terms != sorted(terms)):
            raise DecodeError(
                DecodeErrorKind.OUT_OF_BOUNDS,
                "entry terms must be non-decreasing, >= prev_log_term and <= term",
            )
        return _make_entries(terms, indexes, datas)

    def _diagnose(self, layout: _Layout, f: list[Any]) -> NoReturn:
        """Raise the precise DecodeError for the first bad field of `f` (wire order)."""
        for pos, (name, check) in enumerate(zip(layout.names, layout.checks), _HEADER):
            v = f[pos]
            where = f"{layout.kind.name}.{name}={v!r:.40}"
            if check in (_PEER, _PEER_OR_NONE, _UINT):
                if type(v) is not int:
                    raise DecodeError(DecodeErrorKind.WRONG_TYPE, where + " is not an int")
                if check == _PEER and v not in self.peer_ids:
                    raise DecodeError(DecodeErrorKind.UNKNOWN_PEER, where)
                if check == _PEER_OR_NONE and v not in self._peer_or_none:
                    raise DecodeError(DecodeErrorKind.UNKNOWN_PEER, where)
                if check == _UINT and not 0 <= v <= MAX_UINT:
                    raise DecodeError(DecodeErrorKind.OUT_OF_BOUNDS, where)
            elif check == _BOOL:
                if type(v) is not bool:
                    raise DecodeError(DecodeErrorKind.WRONG_TYPE, where + " is not a bool")
            elif check == _BYTES:
                if type(v) is not bytes:
                    raise DecodeError(DecodeErrorKind.WRONG_TYPE, where + " is not bytes")
        if f[3] == f[4]:
            raise DecodeError(DecodeErrorKind.OUT_OF_BOUNDS, "from_peer == to_peer")
        raise DecodeError(DecodeErrorKind.MALFORMED, "invalid field")  # unreachable backstop
