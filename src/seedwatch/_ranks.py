"""
Duplicate streams across distributed ranks, through the c10d Store of the job.

Each rank's main process publishes the streams its workers drew and learns who
else drew them, with O(1) store operations per report whatever the number of
ranks, and without lockstep: no collectives, no waiting on keys another rank
may never write. Per stream (source and fingerprint) the keys are:

- ``…/n``: an atomic counter of processes, on any rank, that drew it;
- ``…/r<rank>``: the same counter for one rank; ``n`` above it means others;
- ``…/m<i>``: the first :data:`SLOTS` members, as JSON, to name who they are.

A rank that finds others already there tells the named ones, once per stream
(``…/told<rank>``), through their *inbox* (``…/inbox/<rank>/…``), so the first
publishers learn of later ones on their next :meth:`RankLink.news`. Values are
JSON, never pickle; a malformed value is logged and ignored.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import structlog

from seedwatch._finding import Member

_log = structlog.get_logger("seedwatch")

#: How many members of a stream are stored by name; counts are exact beyond it.
SLOTS = 8
#: How long an inbox entry counted but never written (its writer died) blocks later ones.
HOLE_PATIENCE_S = 10.0


@dataclass(frozen=True)
class Distributed:
    """
    How a monitor reaches other ranks: ``monitor(ds, distributed=Distributed(...))``.

    Args:
        store: A ``torch.distributed.Store`` (TCPStore, FileStore, ...). ``None``
            uses the default process group's store.
        rank: This process's rank. ``None`` asks the process group, then ``$RANK``.
        namespace: Key prefix shared by the ranks of one run and distinct between
            runs and monitors. ``None`` combines ``$TORCHELASTIC_RUN_ID`` with the
            dataset's type and the monitor's creation order, which every rank of
            one program repeats.

    """

    store: Any = None
    rank: int | None = None
    namespace: str | None = None


@dataclass(frozen=True)
class Elsewhere:
    """What other ranks drew of one stream: how many processes, and some by name."""

    count: int
    members: tuple[Member, ...]


class RankLink:
    """A rank's connection to the others, through one store. Thread-safe."""

    def __init__(self, store: Any, rank: int, namespace: str) -> None:
        self.rank = rank
        self._store = store
        self._namespace = namespace
        self._lock = threading.Lock()
        self._inbox_read = 0
        self._hole_since: float | None = None

    def publish(self, source: str, fp: str, member: Member) -> Elsewhere:
        """Add this rank's member to a stream; return what other ranks drew of it."""
        base = self._stream_key(source, fp)
        with self._lock:
            total = self._store.add(f"{base}/n", 1)
            mine = self._store.add(f"{base}/r{self.rank}", 1)
            if total <= SLOTS:
                self._store.set(f"{base}/m{total}", json.dumps(member.as_dict()))
            if total == mine:
                return Elsewhere(0, ())
            elsewhere = self._read(base, total, mine)
            for rank in sorted({m.rank for m in elsewhere.members if m.rank is not None}):
                # Tell each named rank once per stream, so no inbox grows with the world size.
                if self._store.add(f"{base}/told{rank}", 1) == 1:
                    self._notify(rank, source, fp)
            return elsewhere

    def look(self, source: str, fp: str) -> Elsewhere:
        """Return what other ranks drew of a stream, now."""
        base = self._stream_key(source, fp)
        with self._lock:
            total = self._store.add(f"{base}/n", 0)
            mine = self._store.add(f"{base}/r{self.rank}", 0)
            return Elsewhere(0, ()) if total == mine else self._read(base, total, mine)

    def news(self) -> list[tuple[str, str]]:
        """Return the streams other ranks said they share with this one since the last call."""
        inbox = f"{self._namespace}/inbox/{self.rank}"
        found = []
        with self._lock:
            total = self._store.add(f"{inbox}/n", 0)
            while self._inbox_read < total:
                key = f"{inbox}/{self._inbox_read + 1}"
                if not self._store.check([key]):
                    if self._hole_since is None:
                        self._hole_since = time.monotonic()
                    if time.monotonic() - self._hole_since < HOLE_PATIENCE_S:
                        break  # being written; read it next time
                else:
                    stream = _decode_stream(self._store.get(key))
                    if stream is not None:
                        found.append(stream)
                self._inbox_read += 1
                self._hole_since = None
        return found

    def _stream_key(self, source: str, fp: str) -> str:
        return f"{self._namespace}/s/{source}/{fp}"

    def _read(self, base: str, total: int, mine: int) -> Elsewhere:
        slots = [f"{base}/m{i}" for i in range(1, min(total, SLOTS) + 1)]
        present = (
            slots if self._store.check(slots) else [k for k in slots if self._store.check([k])]
        )
        values = self._store.multi_get(present) if present else []
        members = [m for m in map(_decode_member, values) if m is not None and m.rank != self.rank]
        return Elsewhere(total - mine, tuple(members))

    def _notify(self, rank: int, source: str, fp: str) -> None:
        inbox = f"{self._namespace}/inbox/{rank}"
        index = self._store.add(f"{inbox}/n", 1)
        self._store.set(f"{inbox}/{index}", json.dumps([source, fp]))


def connect(setting: bool | Distributed | None, label: str) -> RankLink | None:
    """
    Return this rank's link, or ``None`` to work as on one machine.

    ``None`` (automatic) links only when a default process group is initialized;
    ``True`` or a :class:`Distributed` insist, and say why when they cannot.
    """
    if setting is False:
        return None
    explicit = setting if isinstance(setting, Distributed) else Distributed()
    store, rank = explicit.store, explicit.rank
    initialized = _process_group_initialized()
    if store is None and initialized:
        from torch.distributed import distributed_c10d  # noqa: PLC0415

        # The default group's own store: there is no public accessor for it.
        store = distributed_c10d._get_default_store()
    if rank is None:
        rank = _rank(initialized)
    if store is None or rank is None:
        if setting is not None:
            _log.warning(
                "seedwatch_not_distributed",
                reason="no store or rank: init a process group or pass Distributed(store, rank)",
            )
        return None
    run = os.environ.get("TORCHELASTIC_RUN_ID", "run")
    namespace = explicit.namespace or f"seedwatch/{run}/{label}"
    return RankLink(store, rank, namespace)


def _process_group_initialized() -> bool:
    import torch.distributed as dist  # noqa: PLC0415

    return bool(dist.is_available() and dist.is_initialized())


def _rank(initialized: bool) -> int | None:
    if initialized:
        import torch.distributed as dist  # noqa: PLC0415

        return int(dist.get_rank())
    value = os.environ.get("RANK")
    return int(value) if value is not None and value.isdigit() else None


def _decode_member(value: object) -> Member | None:
    data = _json(value, "member")
    fields = [data.get(name) for name in _MEMBER_FIELDS] if isinstance(data, dict) else []
    if len(fields) != len(_MEMBER_FIELDS) or not all(map(_optional_int, fields)):
        _malformed("member", value)
        return None
    generation, worker, pid, rank, seed = fields
    if generation is None or pid is None or rank is None:
        _malformed("member", value)
        return None
    return Member(generation, worker, pid, rank, seed)


def _decode_stream(value: object) -> tuple[str, str] | None:
    data = _json(value, "inbox")
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(v, str) for v in data)):
        _malformed("inbox", value)
        return None
    return data[0], data[1]


_MEMBER_FIELDS = ("generation", "worker", "pid", "rank", "seed")


def _json(value: object, kind: str) -> object:
    try:
        return json.loads(value)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        _malformed(kind, value)
        return None


def _optional_int(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _malformed(kind: str, value: object) -> None:
    """Log a value another rank (or anyone with store access) wrote wrong; read it as absent."""
    _log.warning("seedwatch_bad_store_value", kind=kind, value=repr(value)[:200])
