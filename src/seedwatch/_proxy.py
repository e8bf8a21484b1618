"""
The monitored dataset: a wrapt proxy that fingerprints streams at each process's first fetch.

A proxy starts *armed*: its ``__getitem__``, ``__getitems__`` and ``__iter__``
take a report before fetching. After the first fetch in a process it switches
its class to the *settled* variant, which adds nothing to wrapt's C-level
forwarding, so the per-item cost after that is the bare proxy's. A forked child
re-arms every proxy it inherits, and a spawned child unpickles armed ones.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from multiprocessing.context import get_spawning_popen
from typing import Any

import structlog
import wrapt
from torch.utils.data import get_worker_info

from seedwatch._collector import Collector, collector_for, listen_before_fork, reset_after_fork
from seedwatch._errors import DuplicateStreamError
from seedwatch._report import Report, take_report
from seedwatch._settings import strict_by_default
from seedwatch._sources import Source, adopt_sources, portable_sources
from seedwatch._transport import Channel, send

_log = structlog.get_logger("seedwatch")

MIN_DRAWS = 2
MAX_DRAWS = 4096
#: Below this batch size, the per-item path through the proxy is the cheaper one.
_SMALL_BATCH = 16

_set_class = object.__dict__["__class__"].__set__
_proxies: dict[int, weakref.ref[MonitoredDataset]] = {}
#: Guards ``_proxies`` and each proxy's armed-to-settled switch.
_lock = threading.Lock()


@dataclass(frozen=True)
class MonitorConfig:
    """What a monitor was asked to do; plain data that travels to workers."""

    monitor_id: str
    strict: bool | None
    draws: int
    expect_shared: frozenset[str]

    def strict_now(self) -> bool:
        """Resolve ``strict=None`` against the process-wide default, now."""
        return strict_by_default() if self.strict is None else self.strict


class MonitoredDataset(wrapt.BaseObjectProxy):  # type: ignore[type-arg]
    """
    A dataset that behaves exactly like the one it wraps, and reports its streams.

    ``isinstance``, ``len``, attributes, indexing, iteration and ``repr`` are the
    wrapped dataset's; one deliberate difference: ``__getitems__`` exists even
    when the dataset has none (it fetches item by item, as the DataLoader would).
    Copies (``copy``, ``deepcopy``, pickle) keep reporting to the same monitor
    while they live in the process that made it.
    """

    _self_config: MonitorConfig
    _self_collector: Collector | None
    _self_channel: Channel | None

    #: The DataLoader reads ``__getitems__`` twice per batch. wrapt's attribute lookup
    #: costs ~130 ns even for a hit, and a miss raises twice (~1.6 µs); the generic
    #: lookup below finds the proxy's own attributes in ~40 ns and still falls back
    #: to wrapt's ``__getattr__`` for the dataset's.
    __getattribute__ = object.__getattribute__

    def __getitems__(self, indices: Any) -> list[Any]:
        """
        Fetch a batch the way the DataLoader's fetcher would, item by item.

        Offered even when the dataset has no ``__getitems__``: the DataLoader
        then pays the proxy once per batch (~130 ns) instead of once per item
        (~12 ns each), and calls the dataset's ``__getitem__`` exactly as it
        would have. For small batches the per-item path is cheaper, so a proxy
        that sees one switches to a class without this method, and the
        DataLoader goes back to fetching item by item.
        """
        if len(indices) < _SMALL_BATCH:
            _set_class(self, _ItemwiseDataset)
        dataset = self.__wrapped__
        return [dataset[index] for index in indices]

    def __init__(
        self,
        wrapped: object,
        config: MonitorConfig,
        collector: Collector | None = None,
        channel: Channel | None = None,
    ) -> None:
        super().__init__(wrapped)
        self._self_config = config
        self._self_collector = collector
        self._self_channel = channel
        _track(self)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.__wrapped__)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __reduce_ex__(
        self, protocol: object
    ) -> tuple[Callable[..., MonitoredDataset], tuple[Any, ...]]:
        config = self._self_config
        channel = self._self_channel
        sources: tuple[Source, ...] = ()
        if get_spawning_popen() is not None:
            # Going to a spawn/forkserver worker, which cannot see this process's
            # settings or collector: pin the strictness and hand over the address.
            config = replace(config, strict=config.strict_now())
            if self._self_collector is not None and self._self_collector.owned:
                channel = self._self_collector.listen()
            sources = portable_sources()
        return _restore, (self.__wrapped__, config, channel, sources)

    def __reduce__(self) -> tuple[Callable[..., MonitoredDataset], tuple[Any, ...]]:
        return self.__reduce_ex__(2)

    def __copy__(self) -> MonitoredDataset:
        return _restore(self.__wrapped__, self._self_config, self._self_channel)

    def __deepcopy__(self, memo: dict[int, Any]) -> MonitoredDataset:
        import copy  # noqa: PLC0415 - only deep copies pay for it

        wrapped = copy.deepcopy(self.__wrapped__, memo)
        return _restore(wrapped, self._self_config, self._self_channel)

    def _self_collector_here(self) -> Collector:
        """Return this process's collector for the monitor, adopting one if needed."""
        collector = self._self_collector
        if collector is None or not collector.owned:
            config = self._self_config
            collector = collector_for(config.monitor_id, config.expect_shared)
            self._self_collector = collector
        return collector

    def _self_first_fetch(self) -> None:
        """Report once per process, at the first fetch, whichever way the fetch comes."""
        with _lock:
            if type(self) is not _ArmedDataset:  # another thread reported first
                return
            _set_class(self, _settled_class(self.__wrapped__))
        self._self_report()

    def _self_report(self, report: Report | None = None) -> None:
        """
        Deliver a report (by default, of this process's streams now); raise if strict and duplicate.

        A monitored loader without workers passes its own per-epoch reports.
        """
        config = self._self_config
        strict = config.strict_now()
        try:
            if report is None:
                report = self._self_take()
            if get_worker_info() is None:
                error = self._self_collector_here().submit(report, strict=strict)
            else:
                error = self._self_send(report.to_plain(), strict=strict)
        except Exception as exc:  # noqa: BLE001 - monitoring must never break a fetch
            _log.warning("seedwatch_internal_error", error=repr(exc))
            return
        if error:
            raise DuplicateStreamError(error)

    def _self_take(self) -> Report:
        """Fingerprint every source this process sees, without delivering anything."""
        return take_report(self.__wrapped__, self._self_config.draws, unwrap=_unwrap)

    def _self_settle(self) -> None:
        """Stop reporting at the first fetch in this process (a loader reports instead)."""
        with _lock:
            _set_class(self, _settled_class(self.__wrapped__))

    def _self_send(self, report: dict[str, Any], *, strict: bool) -> str | None:
        channel = self._self_channel
        if channel is None and self._self_collector is not None:
            channel = self._self_collector.channel
        if channel is None:
            _log.warning("seedwatch_no_channel", reason="the dataset was not monitored before fork")
            return None
        reply = send(channel, {"report": report}, await_reply=strict)
        error = None if reply is None else reply.get("error")
        return error if isinstance(error, str) else None


class _ItemwiseDataset(MonitoredDataset):
    """A settled proxy for small batches: ``None`` tells the DataLoader to fetch per item."""

    __getitems__: Any = None


class _BatchedDataset(MonitoredDataset):
    """A settled proxy over a dataset with ``__getitems__``, forwarded once per batch."""

    def __getitems__(self, indices: Any) -> Any:
        return self.__wrapped__.__getitems__(indices)


def _settled_class(wrapped: object) -> type[MonitoredDataset]:
    return MonitoredDataset if getattr(wrapped, "__getitems__", None) is None else _BatchedDataset


class _ArmedDataset(MonitoredDataset):
    """A proxy that has not fetched in this process yet."""

    def __getitem__(self, index: Any) -> Any:
        self._self_first_fetch()
        return self.__wrapped__[index]

    def __iter__(self) -> Iterator[Any]:
        self._self_first_fetch()
        return iter(self.__wrapped__)

    def __getitems__(self, indices: Any) -> Any:
        self._self_first_fetch()
        return self.__getitems__(indices)  # the settled class's, now


def isinstance_monitored(obj: object) -> bool:
    """Return whether ``obj`` is a seedwatch proxy (``isinstance`` sees the wrapped class)."""
    return issubclass(type(obj), (MonitoredDataset, _MonitoredMarker))


class _MonitoredMarker:
    """Base for other seedwatch proxies (loaders), so ``monitor()`` leaves them as they are."""


def _restore(
    wrapped: object,
    config: MonitorConfig,
    channel: Channel | None,
    sources: tuple[Source, ...] = (),
) -> MonitoredDataset:
    adopt_sources(sources)
    collector = None
    if get_worker_info() is None and channel is None:
        collector = collector_for(config.monitor_id, config.expect_shared)
    return _ArmedDataset(wrapped, config, collector, channel)


def _unwrap(obj: object) -> object | None:
    return obj.__wrapped__ if isinstance(obj, MonitoredDataset) else None


def _track(proxy: MonitoredDataset) -> None:
    key = id(proxy)

    def forget(_ref: object) -> None:
        with _lock:
            _proxies.pop(key, None)

    with _lock:
        _proxies[key] = weakref.ref(proxy, forget)


def _rearm_after_fork() -> None:
    global _lock  # noqa: PLW0603 - the parent's lock may be held by a thread that is gone
    _lock = threading.Lock()
    reset_after_fork()
    for ref in list(_proxies.values()):
        proxy = ref()
        if proxy is not None and type(proxy) is not _ArmedDataset:
            _set_class(proxy, _ArmedDataset)


os.register_at_fork(before=listen_before_fork, after_in_child=_rearm_after_fork)
