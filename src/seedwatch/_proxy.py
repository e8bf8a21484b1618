"""
The monitored dataset: a wrapt proxy that reports its streams at each process's first fetch.

The proxy forwards, pickles and switches class; the monitoring work is its
:class:`~seedwatch._monitor.Monitor`'s. A proxy starts *armed*: its
``__getitem__``, ``__getitems__`` and ``__iter__`` report before fetching.
After the first fetch in a process it switches its class to a *settled*
variant, which adds nothing to wrapt's C-level forwarding, so the per-item cost
after that is the bare proxy's. A forked child re-arms every proxy it inherits,
and a spawned child unpickles armed ones.
"""

from __future__ import annotations

import os
import sys
import threading
import types
import weakref
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from multiprocessing.context import get_spawning_popen
from typing import Any, SupportsIndex

import wrapt
from torch.utils.data import get_worker_info

from seedwatch._config import MonitorConfig
from seedwatch._monitor import Monitor, Watch
from seedwatch._probe import prime
from seedwatch._sources import (
    EntryPointRef,
    Source,
    adopt_entry_points,
    adopt_sources,
    entry_point_refs,
    portable_sources,
)
from seedwatch._transport import Channel

#: Below this batch size, the per-item path through the proxy is the cheaper one.
_SMALL_BATCH = 16

_set_class = object.__dict__["__class__"].__set__
_proxies: dict[int, weakref.ref[MonitoredDataset]] = {}
#: Guards ``_proxies`` and each proxy's armed-to-settled switch.
_lock = threading.Lock()


class MonitoredDataset(wrapt.BaseObjectProxy):  # type: ignore[type-arg]
    """
    A dataset that behaves exactly like the one it wraps, and reports its streams.

    ``isinstance``, ``len``, attributes, indexing, iteration and ``repr`` are the
    wrapped dataset's; one deliberate difference: ``__getitems__`` exists even
    when the dataset has none (it fetches item by item, as the DataLoader would).
    Copies (``copy``, ``deepcopy``, pickle) keep reporting to the same monitor
    while they live in the process that made it.
    """

    _self_monitor: Monitor
    #: How many times this process iterated the dataset after its first fetch.
    _self_iterations: int = 0

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

    def __init__(self, wrapped: object, monitor: Monitor) -> None:
        super().__init__(wrapped)
        self._self_monitor = monitor
        _track(self)

    def __iter__(self) -> Iterator[Any]:
        if get_worker_info() is None:
            return iter(self.__wrapped__)
        # A persistent worker iterating again: a new epoch of the same process.
        iteration = self._self_iterations = self._self_iterations + 1
        watch = self._self_monitor.watch(self.__wrapped__, iteration=iteration)
        return _watched_iter(self.__wrapped__, watch)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __reduce_ex__(
        self, protocol: object
    ) -> tuple[Callable[..., MonitoredDataset], tuple[Any, ...]]:
        monitor = self._self_monitor
        config = monitor.config
        sources: tuple[Source, ...] = ()
        plugins: tuple[EntryPointRef, ...] = ()
        if get_spawning_popen() is None:
            channel = monitor.channel()
        else:
            # Going to a spawn/forkserver worker, which cannot see this process's
            # settings or collector: pin the strictness and hand over the address.
            config = replace(config, strict=config.strict_now())
            channel = monitor.channel(listen=True)
            sources, plugins = portable_sources(), entry_point_refs()
        return _restore, (self.__wrapped__, config, channel, sources, plugins)

    def __reduce__(self) -> tuple[Callable[..., MonitoredDataset], tuple[Any, ...]]:
        return self.__reduce_ex__(2)

    def __copy__(self) -> MonitoredDataset:
        import copy  # noqa: PLC0415 - only copies pay for it

        # A shallow copy of the dataset, as copy.copy(raw) makes (a validation twin).
        wrapped = copy.copy(self.__wrapped__)
        return _restore(wrapped, self._self_monitor.config, self._self_monitor.channel())

    def __deepcopy__(self, memo: dict[int, Any]) -> MonitoredDataset:
        import copy  # noqa: PLC0415 - only deep copies pay for it

        wrapped = copy.deepcopy(self.__wrapped__, memo)
        return _restore(wrapped, self._self_monitor.config, self._self_monitor.channel())


class _ItemwiseDataset(MonitoredDataset):
    """A settled proxy for small batches: ``None`` tells the DataLoader to fetch per item."""

    __getitems__: Any = None


class _BatchedDataset(MonitoredDataset):
    """A settled proxy over a dataset with ``__getitems__``, forwarded once per batch."""

    def __getitems__(self, indices: Any) -> Any:
        return self.__wrapped__.__getitems__(indices)


def _settled_class(wrapped: object) -> type[MonitoredDataset]:
    """Forward ``__getitems__`` once per batch where the DataLoader would call the dataset's."""
    try:
        # The DataLoader's own test: present and truthy. A __getattr__ that raises for it
        # is a dataset without one (as for hasattr), never an error of seedwatch's.
        batched = bool(getattr(wrapped, "__getitems__", None))
    except Exception:  # noqa: BLE001 - the dataset's __getattr__, not ours
        batched = False
    return _BatchedDataset if batched else MonitoredDataset


class _ArmedDataset(MonitoredDataset):
    """A proxy that has not fetched in this process yet."""

    def __getitem__(self, index: Any) -> Any:
        watch = _first_fetch(self)
        if watch is None:
            return self.__wrapped__[index]
        return _served(watch, lambda: self.__wrapped__[index])

    def __iter__(self) -> Iterator[Any]:
        watch = _first_fetch(self)
        if watch is None:
            return iter(self.__wrapped__)
        return _watched_iter(self.__wrapped__, watch)

    def __getitems__(self, indices: Any) -> Any:
        watch = _first_fetch(self)
        if watch is None:
            return self.__getitems__(indices)  # the settled class's, now
        return _served(watch, lambda: self.__getitems__(indices))


def _watched_iter(dataset: Any, watch: Watch) -> Iterator[Any]:
    """Iterate ``dataset``, finishing the watch right after the first item."""
    try:
        iterator = iter(dataset)
    except BaseException:
        watch.finish(served=False)
        raise
    if type(iterator) is types.GeneratorType:
        return _watched(iterator, watch)
    # An iterator object may have more to it (torchdata's state_dict()): keep it whole.
    return _WatchedIterator(iterator, watch)


def _first_fetch(proxy: MonitoredDataset) -> Watch | None:
    """Settle, and start watching this process's first fetch; ``None`` if another thread did."""
    with _lock:
        if type(proxy) is not _ArmedDataset:  # another thread reported first
            return None
        _set_class(proxy, _settled_class(proxy.__wrapped__))
    return proxy._self_monitor.watch(proxy.__wrapped__)  # noqa: SLF001 - wrapt's _self_ state


def _served(watch: Watch, fetch: Callable[[], Any]) -> Any:
    """Fetch the first item, then finish watching; the user's exception always wins."""
    try:
        result = fetch()
    except BaseException:
        watch.finish(served=False)
        raise
    watch.finish()
    return result


class _WatchedIterator(wrapt.BaseObjectProxy):  # type: ignore[type-arg]
    """An iterator object, forwarded whole, whose first item finishes the watch."""

    _self_watch: Watch | None

    def __init__(self, iterator: Iterator[Any], watch: Watch) -> None:
        super().__init__(iterator)
        self._self_watch = watch

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        watch, self._self_watch = self._self_watch, None
        if watch is None:
            return next(self.__wrapped__)
        try:
            item = next(self.__wrapped__)
        except StopIteration:
            watch.finish(served=False, strict_verdict=True)  # an empty shard still reports
            raise
        except BaseException:
            watch.finish(served=False)
            raise
        watch.finish(("", self.__wrapped__))
        return item

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return self.__wrapped__.__reduce_ex__(protocol)  # the iterator itself, unwatched

    def __copy__(self) -> Any:
        import copy  # noqa: PLC0415 - only copies pay for it

        return copy.copy(self.__wrapped__)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        import copy  # noqa: PLC0415 - only copies pay for it

        return copy.deepcopy(self.__wrapped__, memo)


def _watched(iterator: Generator[Any, Any, Any], watch: Watch) -> Generator[Any, Any, Any]:
    """
    Yield what the generator yields, finishing the watch right after its first item.

    Behaves as ``yield from iterator`` would: values sent and exceptions thrown reach
    the user's generator, and closing closes it. Only the first item is handed out
    by hand; from the second on, ``yield from`` delegates at C speed.
    """
    try:
        item = next(iterator)
    except StopIteration as stop:
        watch.finish(served=False, strict_verdict=True)  # an empty shard still reports
        return stop.value
    except BaseException:
        watch.finish(served=False)
        raise
    watch.finish(("", iterator))
    while True:
        try:
            sent = yield item
        except GeneratorExit:
            iterator.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the user's generator
            try:
                item = iterator.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        if sent is None:
            break
        try:
            item = iterator.send(sent)
        except StopIteration as stop:
            return stop.value
    del item  # the first item is not kept alive for the epoch
    return (yield from iterator)


def wrap(dataset: object, monitor: Monitor) -> MonitoredDataset:
    """
    Return an armed proxy of ``dataset``: it reports at its first fetch in each process.

    The entry-point sources are found now, once per process, so that no worker
    scans, and a first look is taken so that forked workers start warm.
    """
    entry_point_refs()
    prime(dataset, monitor.config.draws)
    return _ArmedDataset(dataset, monitor)


def monitor_of(obj: object) -> Monitor | None:
    """Return the monitor behind a monitored dataset, ``None`` for anything else."""
    return obj._self_monitor if isinstance(obj, MonitoredDataset) else None  # noqa: SLF001 - wrapt's _self_ state


def settle(proxy: MonitoredDataset) -> None:
    """Stop reporting at the first fetch in this process (a monitored loader reports instead)."""
    with _lock:
        _set_class(proxy, _settled_class(proxy.__wrapped__))


def isinstance_monitored(obj: object) -> bool:
    """Return whether ``obj`` is a seedwatch proxy (``isinstance`` sees the wrapped class)."""
    return issubclass(type(obj), (MonitoredDataset, MonitoredMarker))


class MonitoredMarker:
    """Base for other seedwatch proxies (loaders), so ``monitor()`` leaves them as they are."""


def _restore(
    wrapped: object,
    config: MonitorConfig,
    channel: Channel | None,
    sources: tuple[Source, ...] = (),
    plugins: tuple[EntryPointRef, ...] = (),
) -> MonitoredDataset:
    adopt_sources(sources)
    adopt_entry_points(plugins)
    monitor = Monitor(config, channel=channel)
    if get_worker_info() is None and channel is None:
        monitor.collector()  # registered now, so a fork from this process can reach it
    return _ArmedDataset(wrapped, monitor)


def _track(proxy: MonitoredDataset) -> None:
    key = id(proxy)

    def forget(_ref: object) -> None:
        with _lock:
            _proxies.pop(key, None)

    with _lock:
        _proxies[key] = weakref.ref(proxy, forget)


def _listen_before_fork() -> None:
    # No collector module loaded (a spawned worker forking): nobody to listen for.
    collectors = sys.modules.get("seedwatch._collector")
    if collectors is not None:
        collectors.listen_before_fork()


def _rearm_after_fork() -> None:
    global _lock  # noqa: PLW0603 - the parent's lock may be held by a thread that is gone
    _lock = threading.Lock()
    collectors = sys.modules.get("seedwatch._collector")
    if collectors is not None:
        collectors.reset_after_fork()
    for ref in list(_proxies.values()):
        proxy = ref()
        if proxy is not None and type(proxy) is not _ArmedDataset:
            _set_class(proxy, _ArmedDataset)


if hasattr(os, "register_at_fork"):  # POSIX: Windows has no fork
    os.register_at_fork(before=_listen_before_fork, after_in_child=_rearm_after_fork)
