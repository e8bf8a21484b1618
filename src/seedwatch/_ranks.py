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
publishers learn of later ones on their next :meth:`RankLink.news`.

Anyone with the store can write these keys, so nothing read from them is
trusted. Values are JSON, never pickle (see :mod:`seedwatch._wire`), and are
decoded only when at most :data:`MAX_VALUE` bytes; a malformed one is logged and
ignored. A stream whose counters no rank could have written (not a decimal
count, above :data:`MAX_COUNT`, or this rank's above the total) is unknown:
neither a duplicate nor proof of none. Counters are counted up with
``compare_set``, never the store's ``add``: a TCPStore server drops the
connection of a client that adds to a value that is not an integer, and that
connection is the user's and the process group's too.

:class:`RankSync` is what a collector holds: it links lazily, and falls back
to working as on one machine when the store fails.
"""

from __future__ import annotations

import numbers
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from seedwatch import _logs
from seedwatch._finding import Member
from seedwatch._wire import (
    MalformedError,
    decode_member,
    decode_notice,
    encode_member,
    encode_notice,
)

_T = TypeVar("_T")

#: How many members of a stream are stored by name; counts are exact beyond it.
SLOTS = 8
#: How long an inbox entry counted but never written (its writer died) blocks later ones.
HOLE_PATIENCE_S = 10.0
#: The largest count taken as real: processes that drew one stream, over a whole run.
#: A million ranks of 64 workers for 60 epochs stay below it; a larger one was forged.
MAX_COUNT = 1 << 32
#: The most bytes of a store value that is decoded. A member takes about 100, a
#: notice at most about 6,200 (a source name is at most 1,024 characters, JSON-escaped).
MAX_VALUE = 8192
#: The most characters of a namespace: it prefixes every key seedwatch writes.
MAX_NAMESPACE = 256
#: The largest rank: what other ranks accept in a member (see :mod:`seedwatch._wire`).
MAX_RANK = (1 << 24) - 1
#: The most inbox notices one ``news()`` reads: the rest wait for the next call.
MAX_NOTICES = 256
#: How many times an add retries a compare-and-set that other ranks keep winning.
MAX_ATTEMPTS = 1000
#: A counter's text: the count, then the nonce of the write that set it.
_COUNTER = re.compile(rb"([0-9]{1,10})(?: [0-9a-f]{16})?")


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
        if self.rank is not None:
            if isinstance(self.rank, bool) or not isinstance(self.rank, numbers.Integral):
                raise TypeError(f"Distributed(rank=...) takes an int or None, got {self.rank!r}")
            if not 0 <= self.rank <= MAX_RANK:
                raise ValueError(
                    f"Distributed(rank=...) takes 0 to {MAX_RANK} or None, got {self.rank!r}"
                )
            # A numpy integer would reach json.dumps in every member this rank publishes.
            object.__setattr__(self, "rank", int(self.rank))
        if self.namespace is not None:
            if not isinstance(self.namespace, str):
                raise TypeError(
                    f"Distributed(namespace=...) takes a string or None, got {self.namespace!r}"
                )
            if not 0 < len(self.namespace) <= MAX_NAMESPACE:
                raise ValueError(
                    f"Distributed(namespace=...) takes 1 to {MAX_NAMESPACE} characters or None, "
                    f"got {len(self.namespace)}"
                )


@dataclass(frozen=True)
class Elsewhere:
    """What other ranks drew of one stream: how many processes, and some by name."""

    count: int
    members: tuple[Member, ...]


class RankLink:
    """
    A rank's connection to the others, through one store. Thread-safe.

    Every value read is checked before use (see the module docstring), so what
    another writer left in seedwatch's keys can make a stream unknown, never
    raise, and never reach the user's own connection to the store.
    """

    def __init__(self, store: Any, rank: int, namespace: str) -> None:
        self.rank = rank
        self._store = store
        self._namespace = namespace
        self._bad_values = _logs.Throttle()
        self._lock = threading.Lock()
        self._inbox_read = 0
        self._hole_since: float | None = None
        self._joined = False

    def publish(self, source: str, fp: str, member: Member) -> Elsewhere:
        """Add this rank's member to a stream; return what other ranks drew of it."""
        base = self._stream_key(source, fp)
        counted, own = f"{base}/n", f"{base}/r{self.rank}"
        with self._lock:
            if not self._joined:  # counted once among the ranks that publish
                self._joined = self._add(f"{self._namespace}/ranks") is not None
            if self._counts([counted, own]) is None:
                return _NOBODY
            total = self._add(counted)
            mine = None if total is None else self._add(own)
            if total is None or mine is None or not self._possible(base, total, mine):
                return _NOBODY
            if total <= SLOTS:
                self._store.set(f"{base}/m{total}", encode_member(member))
            if total == mine:
                return _NOBODY
            elsewhere = self._read(base, total, mine)
            for rank in sorted({m.rank for m in elsewhere.members if m.rank is not None}):
                self._tell(rank, base, source, fp)
            return elsewhere

    def ranks(self) -> int:
        """
        Return how many ranks have published streams so far, this one included.

        So a clean result can say how many ranks it was compared with; 0 when
        the count holds what no rank writes.
        """
        with self._lock:
            counts = self._counts([f"{self._namespace}/ranks"])
        return 0 if counts is None else counts[0]

    def look(self, source: str, fp: str) -> Elsewhere:
        """Return what other ranks drew of a stream, now."""
        base = self._stream_key(source, fp)
        with self._lock:
            counts = self._counts([f"{base}/n", f"{base}/r{self.rank}"])
            if counts is None or not self._possible(base, *counts):
                return _NOBODY
            total, mine = counts
            return _NOBODY if total == mine else self._read(base, total, mine)

    def news(self) -> list[tuple[str, str]]:
        """Return the streams other ranks said they share with this one since the last call."""
        inbox = f"{self._namespace}/inbox/{self.rank}"
        found = []
        with self._lock:
            counts = self._counts([f"{inbox}/n"])
            total = 0 if counts is None else counts[0]
            last = min(total, self._inbox_read + MAX_NOTICES)
            while self._inbox_read < last:
                key = f"{inbox}/{self._inbox_read + 1}"
                if not self._store.check([key]):
                    if self._hole_since is None:
                        self._hole_since = time.monotonic()
                    if time.monotonic() - self._hole_since < HOLE_PATIENCE_S:
                        break  # being written; read it next time
                else:
                    stream = self._decoded(decode_notice, self._store.get(key), "inbox")
                    if stream is not None:
                        found.append(stream)
                self._inbox_read += 1
                self._hole_since = None
        return found

    def _stream_key(self, source: str, fp: str) -> str:
        return f"{self._namespace}/s/{source}/{fp}"

    def _present(self, keys: list[str]) -> list[str]:
        """Return the keys that exist, in one round trip when all do."""
        return keys if self._store.check(keys) else [k for k in keys if self._store.check([k])]

    def _counts(self, keys: list[str]) -> list[int] | None:
        """
        Read counters without changing them (an absent one is 0).

        ``None`` when one holds what no rank writes: it must not be added to,
        since a TCPStore server drops the connection of a client that adds to a
        value that is not an integer.
        """
        present = self._present(keys)
        values = dict(zip(present, self._store.multi_get(present), strict=True)) if present else {}
        counts = []
        for key in keys:
            count = _counter(values[key]) if key in values else 0
            if count is None:
                self._bad_value("counter", key, values[key])
                return None
            counts.append(count)
        return counts

    def _add(self, key: str) -> int | None:
        """
        Add one to a counter; return the new count, or ``None`` if it holds what no rank writes.

        A compare-and-set of the counter's text rather than the store's ``add``:
        a TCPStore server drops the connection of a client that adds to a value
        that is not an integer, and another writer may swap one in at any time.
        ``compare_set`` never parses, so the user's connection (the process
        group's too) is never at risk. Each value written carries a nonce, so a
        concurrent writer's equal count is never taken for this one's success.
        """
        expected = b""  # absent: compare_set answers with the current value if not
        for _ in range(MAX_ATTEMPTS):
            count = 0 if expected == b"" else _counter(expected)
            if count is None or count >= MAX_COUNT:
                self._bad_value("counter", key, expected)
                return None
            desired = f"{count + 1} {secrets.token_hex(8)}".encode()
            current = self._store.compare_set(key, expected, desired)
            if current == desired:
                return count + 1
            expected = current
        self._bad_value(
            "counter", key, expected, error=f"still changing after {MAX_ATTEMPTS} tries"
        )
        return None

    def _possible(self, base: str, total: int, mine: int) -> bool:
        """Whether a stream's counts could be real: this rank adds to both, the total first."""
        if mine <= total:
            return True
        self._bad_value("counter", f"{base}/n", total)
        return False

    def _read(self, base: str, total: int, mine: int) -> Elsewhere:
        present = self._present([f"{base}/m{i}" for i in range(1, min(total, SLOTS) + 1)])
        values = self._store.multi_get(present) if present else []
        decoded = (self._decoded(decode_member, value, "member") for value in values)
        members = [m for m in decoded if m is not None and m.rank != self.rank]
        return Elsewhere(total - mine, tuple(members))

    def _tell(self, rank: int, base: str, source: str, fp: str) -> None:
        """Tell a rank of a stream it shares, once per stream whoever tells it."""
        told = f"{base}/told{rank}"
        counts = self._counts([told])
        if counts is None:
            # Forged: telling again costs the reader one look, staying silent a duplicate.
            self._notify(rank, source, fp)
        elif counts[0] == 0 and self._add(told) == 1:
            self._notify(rank, source, fp)

    def _decoded(self, decode: Callable[[object], _T], value: object, kind: str) -> _T | None:
        """Decode a value another rank (or anyone with store access) wrote; log, skip a bad one."""
        try:
            # Measured before decoding: a value of megabytes or nested 100,000 deep is no member.
            if isinstance(value, (bytes, str)) and len(value) > MAX_VALUE:
                raise MalformedError(f"{len(value)} bytes, more than {MAX_VALUE}")  # noqa: TRY301
            return decode(value)
        except (MalformedError, RecursionError) as exc:
            self._bad_value(kind, None, value, error=str(exc) or type(exc).__name__)
            return None

    def _bad_value(
        self, kind: str, key: str | None, value: object, error: str = "impossible"
    ) -> None:
        """Log a value no rank could have written: one line per kind and period."""
        self._bad_values.warning(
            "seedwatch_bad_store_value",
            group=kind,
            kind=kind,
            key=key,
            error=error,
            value=repr(value)[:200],
        )

    def _notify(self, rank: int, source: str, fp: str) -> None:
        counted = f"{self._namespace}/inbox/{rank}/n"
        index = None if self._counts([counted]) is None else self._add(counted)
        if index is not None:
            self._store.set(f"{self._namespace}/inbox/{rank}/{index}", encode_notice(source, fp))


#: Nobody else drew the stream, or nobody can be trusted to have: its counts are forged.
_NOBODY = Elsewhere(0, ())


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
            _logs.warning(
                "seedwatch_not_distributed",
                reason="no store or rank: init a process group or pass Distributed(store, rank)",
            )
        return None
    run = os.environ.get("TORCHELASTIC_RUN_ID", "run")
    namespace = explicit.namespace or f"seedwatch/{run}/{label}"
    return RankLink(store, rank, namespace)


def current_rank() -> int | None:
    """Return this process's rank (the process group's, else torchrun's ``RANK``), or ``None``."""
    return _rank(_process_group_initialized())


def _process_group_initialized() -> bool:
    import torch.distributed as dist  # noqa: PLC0415

    return bool(dist.is_available() and dist.is_initialized())


def _rank(initialized: bool) -> int | None:
    if initialized:
        import torch.distributed as dist  # noqa: PLC0415

        return int(dist.get_rank())
    value = os.environ.get("RANK")
    # isascii: str.isdigit() also takes digits that int() refuses, such as "²".
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def _counter(value: object) -> int | None:
    """Return a stored count, or ``None`` for a value no rank could have written."""
    raw = value.encode() if isinstance(value, str) else value
    if not isinstance(raw, bytes) or not _COUNTER.fullmatch(raw):
        return None  # also what TCPStore's add would parse loosely: "-5", " 7", "12abc"
    count = int(raw.split(b" ")[0])
    return count if count <= MAX_COUNT else None


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
        #: Streams this rank published: a notice about any other one is no news to it.
        self._published: set[tuple[str, str]] = set()

    def rank(self) -> int | None:
        """Return this process's rank, linking first if needed; ``None`` when not distributed."""
        link = self._current()
        return None if link is None else link.rank

    def share(self, streams: Iterable[tuple[str, str, Member]]) -> list[tuple[str, str, Elsewhere]]:
        """
        Publish this rank's members of a report's streams; return those other ranks drew too.

        Another rank publishes its report's streams in the same order. Once one of
        them is found there, the other rank may have published the earlier ones
        since this rank did: they are looked at again, so the report is judged
        whole, not by the inbox news that a job ending at once never reads.
        """
        heard = []
        alone: list[tuple[str, str]] = []
        for source, fp, member in streams:
            link = self._current()
            if link is None:
                break
            with self._lock:
                self._published.add((source, fp))
            elsewhere = self._ask(partial(link.publish, source, fp, member))
            if elsewhere is None:
                continue
            if not elsewhere.count:
                alone.append((source, fp))
                continue
            for early_source, early_fp in alone:  # in report order, so judged in that order
                again = self._ask(partial(link.look, early_source, early_fp))
                if again is not None and again.count:
                    heard.append((early_source, early_fp, again))
            alone.clear()
            heard.append((source, fp, elsewhere))
        with self._lock:
            self._shared.update((source, fp) for source, fp, _ in heard)
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
            # Anyone can write an inbox: only streams this rank drew can be shared with it.
            told = [stream for stream in told if stream in self._published]
            self._shared.update(told)
            streams = sorted(self._shared) if refresh else told
        heard = []
        for source, fp in streams:
            elsewhere = self._ask(partial(link.look, source, fp))
            if elsewhere is None:
                break
            heard.append((source, fp, elsewhere))
        return heard

    def ranks(self) -> int:
        """Return how many ranks have published streams (0 when not distributed)."""
        with self._lock:
            link = self._link
        return 0 if link is None else self._ask(link.ranks) or 0

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
                _logs.warning(
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
