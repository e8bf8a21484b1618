"""
The monitored DataLoader: exact epoch boundaries, and epoch checks without workers.

The proxy wraps the user's loader, so attributes, ``len`` and ``isinstance`` are
the loader's, and iterates through a *shadow* loader: a copy of the loader's
state (same sampler, batch sampler, generator and collate function objects)
whose ``dataset`` is the monitored dataset. PyTorch forbids reassigning
``loader.dataset``, and changing the user's loader in place would surprise them.
"""

from __future__ import annotations

import contextlib
import itertools
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import wrapt
from torch.utils.data import DataLoader

from seedwatch import _logs
from seedwatch._errors import DuplicateStreamError
from seedwatch._monitor import Monitor
from seedwatch._proxy import MonitoredDataset, MonitoredMarker, monitor_of, settle
from seedwatch._report import Report

#: Numbers the loaders of this process whose epochs are checked (see :class:`Epochs`).
_loader_numbers = itertools.count()

#: Attributes the shadow keeps its own: every other attribute set on the proxy is mirrored.
_SHADOW_EXCLUDED = frozenset({"dataset", "_iterator"})


class MonitoredLoader(wrapt.BaseObjectProxy, MonitoredMarker):  # type: ignore[type-arg]
    """
    A DataLoader that iterates exactly like the one it wraps, over a monitored dataset.

    Every ``iter()`` is an epoch (see :class:`Epochs`), checked with or without
    workers.
    """

    _self_shadow: DataLoader[Any]
    _self_epochs: Epochs

    def __init__(self, loader: DataLoader[Any], dataset: MonitoredDataset) -> None:
        super().__init__(loader)
        monitor = monitor_of(dataset)
        if monitor is None:
            raise TypeError("a monitored loader needs a monitored dataset")
        shadow = object.__new__(type(loader))
        shadow.__dict__.update(loader.__dict__)
        shadow.__dict__["dataset"] = dataset
        shadow.__dict__["_iterator"] = None
        self._self_shadow = shadow
        self._self_epochs = Epochs(monitor)

    @property
    def dataset(self) -> MonitoredDataset:
        """The monitored dataset the loader iterates over."""
        return self._self_shadow.dataset  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        # The shadow is the loader that iterates: its methods see its own state
        # (torchdata's state_dict() and load_state_dict() resume what ran).
        if name.startswith("_self_") or name == "__wrapped__":
            raise AttributeError(name)
        return getattr(self._self_shadow, name)

    def __delattr__(self, name: str) -> None:
        if name.startswith("_self_"):
            super().__delattr__(name)
            return
        delattr(self.__wrapped__, name)
        if name not in _SHADOW_EXCLUDED:
            delattr(self._self_shadow, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_self_") or name == "__wrapped__":
            super().__setattr__(name, value)
            return
        setattr(self.__wrapped__, name, value)
        if name not in _SHADOW_EXCLUDED:
            setattr(self._self_shadow, name, value)

    def __iter__(self) -> Iterator[Any]:
        return self._self_epochs.begin(self._self_shadow)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError(
            "a monitored DataLoader cannot be pickled; pickle the loader, then monitor the copy"
        )

    def __copy__(self) -> MonitoredLoader:
        raise TypeError("a monitored DataLoader cannot be copied; copy the loader, then monitor it")

    def __deepcopy__(self, memo: dict[int, Any]) -> MonitoredLoader:
        return self.__copy__()


class Epochs:
    """
    One loader's epochs: every ``iter()`` of it begins one.

    With ``num_workers=0`` the main process's streams are fingerprinted at each
    epoch start and end, so a source that was drawn from and then put back
    (``torch.manual_seed(0)`` before every epoch) is reported even without
    workers, while one nobody touched is not. With workers, each worker reports
    at its first fetch; the epoch's end reads what they sent.
    """

    def __init__(self, monitor: Monitor) -> None:
        # Numbered, not named by id(): a loader built after another was freed may get its id.
        self._key = next(_loader_numbers)
        self._monitor = monitor
        self._count = 0
        self._end_state: dict[str, str] = {}

    def begin(
        self, loader: DataLoader[Any], start: Callable[[], Iterator[Any]] | None = None
    ) -> Iterator[Any]:
        """
        Begin an epoch of ``loader`` and return its iterator.

        ``start`` makes the loader's own iterator (default ``iter(loader)``); the
        loader's dataset must be monitored by this object's monitor.
        """
        start = start or (lambda: iter(loader))
        monitor = self._monitor
        if loader.num_workers > 0:
            return _EpochIterator(start(), lambda: self._end(loader), monitor)
        dataset: Any = loader.dataset
        epoch, self._count = self._count, self._count + 1
        settle(dataset)
        # A torchdata StatefulDataLoader given a saved state resumes it in this iter().
        resumed = getattr(loader, "next_iter_state", None) is not None
        # After iter(): the epoch's base seed is drawn and any reseeding inside the
        # loader (a subclass, a sampler) has happened; no sample is fetched yet.
        iterator = start()
        report = monitor.take(dataset, epoch=(self._key, epoch), resumed=resumed)
        # A source that has not moved since the last epoch ended continues its stream:
        # only a source that was drawn from and then put back is an epoch repeat. And
        # only one this epoch draws from is judged: the epoch's end says which.
        begun = replace(
            report,
            streams={
                name: stream.with_used(False)
                for name, stream in report.streams.items()
                if self._end_state.get(name) != stream.fingerprint
            },
        )
        monitor.deliver(begun)
        return _EpochIterator(iterator, lambda: self._end(loader, begun), monitor)

    def _end(self, loader: DataLoader[Any], begun: Report | None = None) -> None:
        """
        Read what the epoch's workers sent and what other ranks said; note the end state.

        Without workers, the streams that moved during the epoch were drawn from:
        they are judged now (in strict mode, raising from the loop's last step).
        """
        monitor = self._monitor
        monitor.sync()
        _raise_owed(monitor)
        if loader.num_workers == 0:
            streams = monitor.take(loader.dataset).streams
            self._end_state = {name: stream.fingerprint for name, stream in streams.items()}
            if begun is not None:
                drawn = {
                    name: stream.with_used(True)
                    for name, stream in begun.streams.items()
                    if self._end_state.get(name) != stream.fingerprint
                }
                if drawn:
                    monitor.deliver(replace(begun, streams=drawn))


class _EpochIterator(wrapt.BaseObjectProxy):  # type: ignore[type-arg]
    """
    The loader's own iterator, telling the loader once when the epoch ends or is abandoned.

    In strict mode it is also where a worker's duplicate reaches the user's loop
    when the worker could not raise it (see :meth:`Collector.take_owed`): at the
    next batch after the main process heard of it, at the latest at the epoch's end.
    """

    _self_on_end: Callable[[], None] | None
    _self_monitor: Monitor
    _self_owed: list[str]

    def __init__(
        self, iterator: Iterator[Any], on_end: Callable[[], None], monitor: Monitor
    ) -> None:
        super().__init__(iterator)
        self._self_on_end = on_end
        self._self_monitor = monitor
        self._self_owed = monitor.collector().owed

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self.__wrapped__)
        except StopIteration:
            self._self_end(strict=True)
            raise
        except DuplicateStreamError:
            self._self_monitor.collector().forgive_owed()  # a worker raised it itself
            raise
        if self._self_owed:
            _raise_owed(self._self_monitor)
        return item

    def __del__(self) -> None:
        # At interpreter exit even logging may be gone: nothing may escape.
        with contextlib.suppress(BaseException):
            self._self_end(strict=False)

    def _self_end(self, *, strict: bool) -> None:
        on_end, self._self_on_end = self._self_on_end, None
        if on_end is None:
            return
        try:
            on_end()
        except DuplicateStreamError:
            if strict:  # the epoch's verdict, raised from the user's loop
                raise
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not break the user's loop
            _logs.warning("seedwatch_internal_error", error=repr(exc))


def release_workers(exc: BaseException) -> None:
    """
    Let go of the workers of an epoch that an exception stopped, now.

    PyTorch re-raises a worker's error from a frame that also holds it, a reference
    cycle that keeps the epoch's iterator (and its workers) alive until the garbage
    collector runs; by then its queues are closed, and shutting down waits 5 s per
    worker. Clearing the traceback's frames breaks the cycle while the queues work.
    """
    traceback.clear_frames(exc.__traceback__)


def _raise_owed(monitor: Monitor) -> None:
    """Raise the strict errors of workers that could not raise them themselves."""
    owed = monitor.collector().take_owed()
    if owed is not None:
        raise DuplicateStreamError(owed)
