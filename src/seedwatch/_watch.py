"""
Watching: monitor every DataLoader the process builds, without changing the job's code.

A DataLoader stores its dataset with ``self.dataset = dataset``, and so does
every subclass (torchdata's ``StatefulDataLoader``, which never calls
``DataLoader.__init__``, included), through ``DataLoader.__setattr__``. While
watching, that one method stores a monitored dataset instead, and the
``__iter__`` of each loader class that defines one begins an epoch
(:class:`~seedwatch._loader.Epochs`), as iterating a loader given to
:func:`seedwatch.monitor` does. Loader classes are found when their first
instance is built, so watching imports no framework.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import itertools
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from torch.utils.data import DataLoader

from seedwatch import _logs
from seedwatch._api import check_distributed, is_dataset, monitor
from seedwatch._config import (
    DEFAULT_DRAWS,
    validated_draws,
    validated_history,
    validated_names,
    validated_strict,
)
from seedwatch._finding import Findings, Observed
from seedwatch._loader import Epochs
from seedwatch._monitor import Monitor
from seedwatch._proxy import isinstance_monitored, monitor_of, wrap
from seedwatch._ranks import Distributed


@dataclass(frozen=True)
class _Options:
    """What every watched dataset is monitored with: :func:`watch`'s arguments."""

    strict: bool | None
    draws: int
    expect_shared: frozenset[str]
    distributed: bool | Distributed | None
    history: str | None

    def given(self) -> dict[str, Any]:
        """Return the options as :func:`seedwatch.monitor` keywords."""
        return {
            "strict": self.strict,
            "draws": self.draws,
            "expect_shared": self.expect_shared,
            "distributed": self.distributed,
            "history": self.history,
        }


@dataclass(frozen=True)
class WatchedDataset:
    """
    A dataset that DataLoaders built while watching iterated over, and its findings.

    ``name`` is the dataset's type; ``where`` the file and line that built the
    first loader over it; ``loaders`` how many watched loaders were built over it.
    """

    name: str
    where: str
    loaders: int
    findings: Findings
    #: The monitor's ``strict`` option: ``None`` follows the process-wide default.
    strict: bool | None = None

    @property
    def label(self) -> str:
        """``TrainSet (train.py:42)``."""
        return f"{self.name} ({self.where})"


@dataclass
class _Entry:
    monitor: Monitor
    name: str
    origin: _Origin
    loaders: int = 1


@dataclass
class _Use:
    """A watched loader over a dataset: the monitor it reports to, and when it last began."""

    loader: weakref.ref[DataLoader[Any]]
    kind: type
    dataset: weakref.ref[Any]
    monitor: Monitor
    session: _Session
    #: The order of its last epoch's start among all watched loaders; 0: never iterated.
    began: int = 0


class Watching:
    """
    What :func:`watch` returns: the datasets watched so far, and a context manager.

    ``with seedwatch.watch():`` stops watching at the end of the block, unless
    watching had already started before it (then it carries on).
    """

    def __init__(self, session: _Session, *, started: bool) -> None:
        self._session = session
        self._started = started

    def datasets(self) -> tuple[WatchedDataset, ...]:
        """Return every dataset watched loaders were built over, with its findings so far."""
        return self._session.datasets()

    def findings(self) -> Findings:
        """
        Return the findings of every watched dataset, in one list.

        Its ``observed`` adds up the processes and keeps the most epochs,
        workers and ranks any one dataset saw.
        """
        return _combined([dataset.findings for dataset in self.datasets()])

    def __enter__(self) -> Watching:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._started:
            _end(self._session)


class _Session:
    """
    One watch: its options and the datasets it monitored.

    A watch started inside another with other options (the job's own, under
    ``seedwatch run``) is its ``inner`` one: its loaders get its options, and
    are listed by every watch around it too.
    """

    def __init__(self, options: _Options, outer: _Session | None = None) -> None:
        self.options = options
        self.outer = outer
        self._entries: dict[int, _Entry] = {}
        self._lock = threading.Lock()

    def adopt(self, loader: DataLoader[Any], dataset: object) -> object:
        """
        Return what ``loader`` should store as its dataset: ``dataset``, monitored.

        Each loader starts with a monitor of its own; at its first ``iter()`` it
        may join another's (see :func:`_settle`). A dataset the job monitored
        itself keeps its own monitor. Anything that fails here is logged and the
        raw dataset stored: watching must never break the job.
        """
        try:
            if isinstance_monitored(dataset):
                monitored = dataset
            elif is_dataset(dataset):
                monitored = monitor(dataset, **self.options.given())
            else:
                return dataset
            watched = monitor_of(monitored)
            if watched is None:  # a monitored loader given as a loader's dataset
                return dataset
            if monitored is not dataset:
                watched.implicit = True
                _note_use(loader, dataset, watched, self)
            origin = _built_by(loader)
            self._note(watched, _dataset_name(monitored), origin)
            _epochs[loader] = Epochs(watched)
            _patch_iterators(type(loader))
        except Exception as exc:  # noqa: BLE001 - watching must never break the job
            _logs.warning(
                "seedwatch_watch_error", dataset=type(dataset).__qualname__, error=repr(exc)
            )
            return dataset
        return monitored

    def move_loader(self, old: Monitor, new: Monitor) -> None:
        """Count a loader under ``new`` instead of ``old``; forget ``old`` if it had no other."""
        session: _Session | None = self
        while session is not None:
            with session._lock:  # noqa: SLF001 - sessions of one chain
                entries = session._entries  # noqa: SLF001
                if id(old) in entries and entries[id(old)].monitor is old:
                    entries[id(old)].loaders -= 1
                    if not entries[id(old)].loaders:
                        del entries[id(old)]
                if id(new) in entries and entries[id(new)].monitor is new:
                    entries[id(new)].loaders += 1
            session = session.outer

    def datasets(self) -> tuple[WatchedDataset, ...]:
        with self._lock:
            entries = list(self._entries.values())
        wheres = _told_apart([entry.origin for entry in entries])
        listed = []
        for entry, where in zip(entries, wheres, strict=True):
            current = entry.monitor
            while current.replaced_by is not None:  # the job's own monitor() of it
                current = current.replaced_by
            listed.append(
                WatchedDataset(
                    entry.name, where, entry.loaders, current.findings(), current.config.strict
                )
            )
        return tuple(listed)

    def _note(self, watched: Monitor, name: str, origin: _Origin) -> None:
        with self._lock:
            entry = self._entries.get(id(watched))
            if entry is not None and entry.monitor is watched:
                entry.loaders += 1
                return
            entry = self._entries[id(watched)] = _Entry(watched, name, origin)
        outer = self.outer
        while outer is not None:  # the same entry, so every watch counts its loaders
            with outer._lock:  # noqa: SLF001 - sessions of one chain
                outer._entries.setdefault(id(watched), entry)  # noqa: SLF001
            outer = outer.outer


def _told_apart(origins: list[_Origin]) -> list[str]:
    """
    Return each origin's ``file:line``, with ``via`` the first caller that tells it apart.

    Two loaders built by one helper are named by the helper's line; the call
    into the helper is what differs (``common.py:16 via train.py:40``).
    """
    wheres = []
    for origin in origins:
        alike = [other for other in origins if other.where == origin.where and other != origin]
        depth = next(
            (
                index
                for index, call in enumerate(origin.calls)
                if any(index >= len(o.calls) or o.calls[index] != call for o in alike)
            ),
            None,
        )
        if not alike or not depth:
            wheres.append(origin.where)
            continue
        path, line = origin.calls[depth]
        wheres.append(f"{origin.where} via {_shown_path(path)}:{line}")
    return wheres


#: The watched loaders over each dataset, by the dataset's id (its weak reference tells a
#: reused id); see :func:`_settle`.
_uses: dict[int, list[_Use]] = {}
#: Orders the starts of watched loaders' epochs.
_starts = itertools.count(1)


def _note_use(loader: DataLoader[Any], dataset: object, made: Monitor, session: _Session) -> None:
    """Remember that ``loader`` iterates over ``dataset`` with ``made``, for :func:`_settle`."""
    key = id(dataset)

    def forget(_gone: weakref.ref[Any]) -> None:  # the dataset is gone: so are its loaders
        with _lock:
            alive = [u for u in _uses.get(key, []) if u.dataset() is not None]
            if alive:
                _uses[key] = alive
            else:
                _uses.pop(key, None)

    try:
        use = _Use(weakref.ref(loader), type(loader), weakref.ref(dataset, forget), made, session)
    except TypeError:  # a list, which no weak reference can follow: a monitor of its own
        return
    with _lock:
        alive = [u for u in _uses.get(key, []) if u.dataset() is dataset]
        _uses[key] = [*alive, use]


def _settle(loader: DataLoader[Any]) -> None:
    """
    Before ``loader`` begins an epoch, choose the monitor it reports to.

    A loader starts with a monitor of its own. At its first ``iter()`` it joins
    the monitor of the most recent loader over the same dataset that is gone (a
    new loader each epoch), so their epochs are compared. A loader over the
    dataset that is still alive is another role (a validation loader, Lightning's
    sanity check, which puts the generators back afterwards): it is judged apart.
    A loader resuming a saved state (torchdata) joins the last loader of its
    kind over the dataset to begin, the one whose state it most likely restores.
    """
    proxy = loader.__dict__.get("dataset")
    raw = getattr(proxy, "__wrapped__", None)
    with _lock:
        uses = [u for u in _uses.get(id(raw), []) if u.dataset() is raw]
        use = next((u for u in uses if u.loader() is loader), None)
        if use is None:
            return
        first_epoch = not use.began
        held = any(u.loader() is not None for u in uses if u is not use and u.began)
    if first_epoch and held:
        # A loader dropped by the job may still wait in a reference cycle (its worker
        # iterator's): collect now, once per loader, so "gone" does not depend on timing.
        gc.collect()
    with _lock:
        earlier = [u for u in uses if u is not use and u.began]
        target = None
        if getattr(loader, "next_iter_state", None) is not None:
            alike = [u for u in earlier if u.kind is use.kind]
            target = max(alike or earlier, key=lambda u: u.began, default=None)
        elif first_epoch:
            gone = [u for u in earlier if u.loader() is None]
            target = max(gone, key=lambda u: u.began, default=None)
        use.began = next(_starts)
        if target is None or target.monitor is use.monitor:
            return
        replaced, use.monitor = use.monitor, target.monitor
        loader.__dict__["dataset"] = wrap(raw, target.monitor)  # past DataLoader's own guard
        _epochs[loader] = Epochs(target.monitor)
        use.session.move_loader(replaced, target.monitor)


#: Guards the watches and the patches; re-entrant, since monitoring builds no loader.
_lock = threading.RLock()
#: The watches running, the innermost last; loaders built now get the innermost's options.
_sessions: list[_Session] = []
#: The class attributes replaced while watching: (class, name) -> the original.
_originals: dict[tuple[type, str], Any] = {}
#: The epochs of each watched loader.
_epochs: weakref.WeakKeyDictionary[DataLoader[Any], Epochs] = weakref.WeakKeyDictionary()
#: Per thread: whether a watched ``__iter__`` is running (a subclass calling super(), a
#: wrapper returning another loader's iterator): only the outermost begins an epoch.
_iterating = threading.local()


def watch(
    *,
    strict: bool | None = None,
    draws: int = DEFAULT_DRAWS,
    expect_shared: Iterable[str] = (),
    distributed: bool | Distributed | None = None,
    history: str | os.PathLike[str] | None = None,
) -> Watching:
    """
    Monitor the dataset of every DataLoader built from now on, until :func:`unwatch`.

    Subclasses count (torchdata's ``StatefulDataLoader``, ``monai.data.DataLoader``,
    loaders a framework builds), and every ``iter()`` of a watched loader is an
    epoch, with or without workers, as for a loader given to :func:`seedwatch.monitor`.
    A dataset the job monitors itself keeps its own options; calling
    :func:`seedwatch.monitor` on a watched loader or dataset monitors it anew with
    the options given there. Loaders built before watching are not watched.

    Also a context manager: ``with seedwatch.watch(): ...`` watches inside the block.

    Args:
        strict: As for :func:`seedwatch.monitor` (``None`` follows ``SEEDWATCH_STRICT``
            or the pytest option).
        draws: As for :func:`seedwatch.monitor`.
        expect_shared: As for :func:`seedwatch.monitor`.
        distributed: As for :func:`seedwatch.monitor`; by default, ranks are compared
            once the job's default process group exists.
        history: As for :func:`seedwatch.monitor`.

    Returns:
        A :class:`Watching`: the watched datasets and their findings.

    Raises:
        TypeError: An option has the wrong type.
        ValueError: An option is out of range.

    """
    options = _validated(strict, draws, expect_shared, distributed, history)
    with _lock:
        outer = _sessions[-1] if _sessions else None
        if outer is not None and outer.options == options:
            return Watching(outer, started=False)
        session = _Session(options, outer)
        if outer is None:
            _patch(DataLoader, "__setattr__", _watched_setattr(DataLoader.__setattr__))
            _patch_iterators(DataLoader)
        _sessions.append(session)
        return Watching(session, started=True)


def unwatch() -> None:
    """
    Stop watching, every watch: loaders built from now on are left alone. Safe to call any time.

    Loaders already built keep their monitored datasets, whose workers still
    report; their ``iter()`` no longer begins a checked epoch without workers.
    """
    with _lock:
        _sessions.clear()
        for (owner, name), original in _originals.items():
            if getattr(owner.__dict__.get(name), "__seedwatch_patch__", False):
                setattr(owner, name, original)
        _originals.clear()


def _end(session: _Session) -> None:
    """End ``session`` (watches other threads started since go on); the last one ends watching."""
    with _lock:
        if session in _sessions:
            _sessions.remove(session)
        if not _sessions:
            unwatch()


def watching() -> Watching | None:
    """Return the innermost watch, or ``None`` when not watching."""
    with _lock:
        return Watching(_sessions[-1], started=False) if _sessions else None


def _watched_setattr(
    original: Callable[[DataLoader[Any], str, object], None],
) -> Callable[[DataLoader[Any], str, object], None]:
    @functools.wraps(original)
    def __setattr__(self: DataLoader[Any], name: str, value: object) -> None:  # noqa: N807
        session = _sessions[-1] if _sessions else None
        if (
            name == "dataset"
            and session is not None
            # Reassigning an initialized loader's dataset raises: let it.
            and not self.__dict__.get("_DataLoader__initialized", False)
        ):
            value = session.adopt(self, value)
        original(self, name, value)

    __setattr__.__seedwatch_patch__ = True  # type: ignore[attr-defined]
    return __setattr__


def _watched_iter(
    original: Callable[[DataLoader[Any]], Iterator[Any]],
) -> Callable[[DataLoader[Any]], Iterator[Any]]:
    @functools.wraps(original)
    def __iter__(self: DataLoader[Any]) -> Iterator[Any]:  # noqa: N807
        epochs = _epochs.get(self) if _sessions else None
        if epochs is None or getattr(_iterating, "active", False):
            return original(self)
        with contextlib.suppress(Exception):  # watching must never break the job
            _settle(self)
        epochs = _epochs.get(self, epochs)
        _iterating.active = True
        try:
            return epochs.begin(self, lambda: original(self))
        finally:
            _iterating.active = False

    __iter__.__seedwatch_patch__ = True  # type: ignore[attr-defined]
    return __iter__


def _patch_iterators(loader_class: type) -> None:
    """
    Wrap ``__iter__`` of ``loader_class`` and of each loader class it inherits from.

    Not a generator function's: it runs its body, ``super().__iter__()`` included,
    only at the first ``next()``, so the epoch begins there, in the class below.
    """
    with _lock:
        if not _sessions:
            return
        for owner in loader_class.__mro__:
            original = owner.__dict__.get("__iter__")
            if (
                original is not None
                and issubclass(owner, DataLoader)
                and (owner, "__iter__") not in _originals
                and not inspect.isgeneratorfunction(original)
            ):
                _patch(owner, "__iter__", _watched_iter(original))


def _patch(owner: type, name: str, replacement: object) -> None:
    _originals[(owner, name)] = owner.__dict__[name]
    setattr(owner, name, replacement)


def _dataset_name(monitored: object) -> str:
    """Return the type name of the dataset behind a monitored proxy."""
    return type(getattr(monitored, "__wrapped__", monitored)).__qualname__


@dataclass(frozen=True)
class _Origin:
    """Where a loader was built: the line that built it, and the calls that led there."""

    where: str
    calls: tuple[tuple[str, int], ...]


def _built_by(loader: DataLoader[Any]) -> _Origin:
    """
    Return the code that built ``loader``: its line, and every call above it.

    The loader's own ``__init__`` and ``__setattr__`` (a subclass's too, and
    wrappers of them: Lightning wraps ``DataLoader.__init__``) are inside the
    building, not where it was built. They are told by their code objects:
    reading a frame's locals would keep them alive (a frame's ``f_locals`` is a
    snapshot that lasts as long as the frame, before Python 3.13).
    """
    own = _own_code(type(loader))
    frame = sys._getframe(1)  # noqa: SLF001 - the one way to name the caller cheaply
    here = str(Path(__file__).parent)
    calls: list[tuple[str, int]] = []
    while frame is not None:
        code = frame.f_code
        if code not in own and not code.co_filename.startswith(here):
            calls.append((code.co_filename, frame.f_lineno))
        frame = frame.f_back  # type: ignore[assignment]
    if not calls:
        return _Origin("unknown", ())
    path, line = calls[0]
    return _Origin(f"{_shown_path(path)}:{line}", tuple(calls))


def _own_code(loader_class: type) -> frozenset[object]:
    """Return the code of a loader class's ``__init__`` and ``__setattr__``, wrappers and all."""
    codes = set()
    for owner in loader_class.__mro__:
        for name in ("__init__", "__setattr__"):
            function = owner.__dict__.get(name)
            while function is not None:
                code = getattr(function, "__code__", None)
                if code is not None:
                    codes.add(code)
                function = getattr(function, "__wrapped__", None)
    return frozenset(codes)


def _shown_path(path: str) -> str:
    """Return ``path`` relative to the working directory when under it, else as it is."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive, on Windows
        return path
    return path if relative.startswith("..") else relative


def _validated(
    strict: object,
    draws: object,
    expect_shared: Iterable[object],
    distributed: object,
    history: object,
) -> _Options:
    """Check watch()'s options as monitor() would, now rather than at the first loader."""
    path = validated_history(history)
    return _Options(
        strict=validated_strict(strict),
        draws=validated_draws(draws),
        expect_shared=frozenset(validated_names(expect_shared)),
        distributed=check_distributed(distributed),
        history=None if path is None else str(path),
    )


def _combined(each: list[Findings]) -> Findings:
    """Return several datasets' findings as one list (see :meth:`Watching.findings`)."""
    observed = [found.observed for found in each]
    return Findings(
        [finding for found in each for finding in found],
        Observed(
            processes=sum(o.processes for o in observed),
            generations=max((o.generations for o in observed), default=0),
            most_workers=max((o.most_workers for o in observed), default=0),
            ranks=max((o.ranks for o in observed), default=0),
            resumed=any(o.resumed for o in observed),
        ),
        [finding for found in each for finding in found.latent],
    )
