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
JSON, never pickle (see :mod:`seedwatch._wire`); a malformed value is logged
and ignored.

:class:`RankSync` is what a collector holds: it links lazily, and falls back
to working as on one machine when the store fails.
"""

from __future__ import annotations

import numbers
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import structlog

from seedwatch._finding import Member
from seedwatch._wire import (
    MalformedError,
    decode_member,
    decode_notice,
    encode_member,
    encode_notice,
)

_log = structlog.get_logger("seedwatch")
_T = TypeVar("_T")

#: How many members of a stream are stored by name; counts are exact beyond it.
SLOTS = 8
#: How long an inbox entry counted but never written (its writer died) blocks later ones.
HOLE_PATIENCE_S = 10.0


#: What seedwatch calls on a store.
_STORE_METHODS = ("add", "set", "get", "check", "multi_get")


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

    def __post_init__(self) -> None:
        missing = [m for m in _STORE_METHODS if not callable(getattr(self.store, m, None))]
        if self.store is not None and missing:
            raise TypeError(
                "Distributed(store=...) takes a torch.distributed.Store (TCPStore, FileStore, "
                f"...), got {type(self.store).__qualname__} without {', '.join(missing)}"
            )
        if self.rank is not None and (
            isinstance(self.rank, bool) or not isinstance(self.rank, numbers.Integral)
        ):
            raise TypeError(f"Distributed(rank=...) takes an int or None, got {self.rank!r}")
        if self.namespace is not None and not isinstance(self.namespace, str):
            raise TypeError(
                f"Distributed(namespace=...) takes a string or None, got {self.namespace!r}"
            )


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
                self._store.set(f"{base}/m{total}", encode_member(member))
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
                    stream = _decoded(decode_notice, self._store.get(key), "inbox")
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
        decoded = (_decoded(decode_member, value, "member") for value in values)
        members = [m for m in decoded if m is not None and m.rank != self.rank]
        return Elsewhere(total - mine, tuple(members))

    def _notify(self, rank: int, source: str, fp: str) -> None:
        inbox = f"{self._namespace}/inbox/{rank}"
        index = self._store.add(f"{inbox}/n", 1)
        self._store.set(f"{inbox}/{index}", encode_notice(source, fp))


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
        store = distributed_c10d._get_default_store()  # noqa: SLF001
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


def _decoded(decode: Callable[[object], _T], value: object, kind: str) -> _T | None:
    """Decode a value another rank (or anyone with store access) wrote; log and skip a bad one."""
    try:
        return decode(value)
    except MalformedError as exc:
        _log.warning(
            "seedwatch_bad_store_value", kind=kind, error=str(exc), value=repr(value)[:200]
        )
        return None


class RankSync:
    """
    A collector's link to other ranks: made on first need, dropped for good if the store fails.

    Thread-safe. Every store operation goes through :meth:`_ask`, so a broken
    store is logged once and the monitor carries on as on one machine.
    """

    def __init__(self, setting: bool | Distributed | None, label: str) -> None:
        self._setting = setting
        self._label = label
        self._lock = threading.Lock()
        self._link: RankLink | None = None
        self._settled = setting is False
        self._failed = False
        #: Streams other ranks drew too, re-read by ``news(refresh=True)`` to name everyone.
        self._shared: set[tuple[str, str]] = set()

    def rank(self) -> int | None:
        """Return this process's rank, linking first if needed; ``None`` when not distributed."""
        link = self._current()
        return None if link is None else link.rank

    def share(self, streams: Iterable[tuple[str, str, Member]]) -> list[tuple[str, str, Elsewhere]]:
        """Publish this rank's members of streams; return those other ranks drew too."""
        heard = []
        for source, fp, member in streams:
            link = self._current()
            if link is None:
                break
            elsewhere = self._ask(partial(link.publish, source, fp, member))
            if elsewhere is not None and elsewhere.count:
                with self._lock:
                    self._shared.add((source, fp))
                heard.append((source, fp, elsewhere))
        return heard

    def news(self, *, refresh: bool = False) -> list[tuple[str, str, Elsewhere]]:
        """
        Return what other ranks drew of the streams they told this rank about since last time.

        With ``refresh``, also re-read every stream known to be shared, so its
        members are current (one look per shared stream).
        """
        with self._lock:
            link = self._link
        if link is None:
            return []
        told = self._ask(link.news) or []
        with self._lock:
            self._shared.update(told)
            streams = sorted(self._shared) if refresh else told
        heard = []
        for source, fp in streams:
            elsewhere = self._ask(partial(link.look, source, fp))
            if elsewhere is None:
                break
            heard.append((source, fp, elsewhere))
        return heard

    def _current(self) -> RankLink | None:
        with self._lock:
            if self._settled:
                return self._link
        link = self._ask(partial(connect, self._setting, self._label))
        with self._lock:
            if not self._settled:
                self._link = link
                # Automatic mode keeps asking: the process group may come up after the
                # first report (a dataset touched before init_process_group).
                self._settled = link is not None or self._setting is not None or self._failed
            return self._link

    def _ask(self, operation: Callable[[], _T]) -> _T | None:
        """Run a store operation; on failure, log once and carry on as on one machine."""
        try:
            return operation()
        except Exception as exc:  # noqa: BLE001 - a broken store must not stop training
            with self._lock:
                first = not self._failed
                self._link, self._failed, self._settled = None, True, True
            if first:
                _log.warning(
                    "seedwatch_store_error", error=repr(exc), action="ranks no longer checked"
                )
            return None


_labels: dict[str, int] = {}
_labels_lock = threading.Lock()


def monitor_label(dataset: object) -> str:
    """Name a monitor the same way on every rank: dataset type and creation order."""
    kind = type(dataset).__qualname__
    with _labels_lock:
        count = _labels[kind] = _labels.get(kind, -1) + 1
    return f"{kind}:{count}"
