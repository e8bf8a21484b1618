"""
Custom sources: generators seedwatch cannot find on its own.

A library-global generator, a CUDA generator, a C extension's state: register
it once, by name, and every report includes it. Libraries can register through
the ``seedwatch.sources`` entry-point group.

The entry points are found once, in the main process, when a dataset is
monitored: scanning every installed distribution costs milliseconds, which a
worker's first fetch must not pay. Forked workers inherit what was found;
spawned ones receive, with the pickled dataset, what to import (each entry
point's ``module:attr``), never a scan.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

import numpy as np

from seedwatch import _logs
from seedwatch._generators import GLOBAL_SOURCES, is_generator, upcoming_draws

ENTRY_POINT_GROUP = "seedwatch.sources"


Draws = bytes | Sequence[int] | np.ndarray


@dataclass(frozen=True)
class Source:
    """
    A named random source, read in every process at its first fetch.

    Give exactly one of:

    - ``generator``: a zero-argument callable returning a generator seedwatch can
      read (``np.random.Generator``, ``RandomState``, ``random.Random``, CPU
      ``torch.Generator``), or ``None`` when there is none yet. It is called in
      each process, so it finds the process's own object (a library global).
    - ``draws``: a callable taking ``n`` and returning the next ``n`` values the
      source would produce, *without consuming them* (read a copy of its state),
      as bytes, a sequence of ints or a numpy array.
    """

    name: str
    generator: Callable[[], object] | None = None
    draws: Callable[[int], Draws] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a source name must be a non-empty string, got {self.name!r}")
        if self.name in GLOBAL_SOURCES:
            raise ValueError(f"{self.name!r} is a built-in source; choose another name")
        if (self.generator is None) == (self.draws is None):
            raise TypeError(f"source {self.name!r}: give exactly one of generator= or draws=")
        reader = self.generator if self.generator is not None else self.draws
        if not callable(reader):
            raise TypeError(f"source {self.name!r}: {reader!r} is not callable")

    def read(self, n: int) -> bytes | None:
        """Return the next ``n`` values as bytes, or ``None`` when the source has none now."""
        return self.sample(n)[0]

    def sample(self, n: int) -> tuple[bytes | None, object | None]:
        """Return the next ``n`` values (``None`` if none now) and the generator read."""
        if self.generator is not None:
            rng = self.generator()
            if rng is None:
                return None, None
            if not is_generator(rng):
                raise TypeError(f"source {self.name!r} returned {type(rng).__qualname__}")
            return upcoming_draws(rng, n), rng
        assert self.draws is not None
        values = self.draws(n)
        return (values if isinstance(values, bytes) else np.asarray(values).tobytes()), None


_registered: dict[str, Source] = {}
_entry_point_sources: list[tuple[str, str, Source]] | None = None
_lock = threading.Lock()
#: Held while entry points load: apart from _lock, since a plugin may register sources.
_scan_lock = threading.Lock()


def register_source(
    name: str,
    *,
    generator: Callable[[], object] | None = None,
    draws: Callable[[int], Draws] | None = None,
) -> Source:
    """
    Register a random source under ``name`` for every monitor of this process.

    Args:
        name: How findings name the source; must not be ``numpy``, ``random`` or ``torch``.
        generator: Returns the generator to read (see :class:`Source`).
        draws: Returns the next ``n`` values without consuming them (see :class:`Source`).

    Returns:
        The registered :class:`Source`. Registering a name again replaces it.
        Spawned workers receive the registrations that pickle (module-level
        functions); a lambda is used only under fork.

    """
    source = Source(name, generator, draws)
    with _lock:
        _registered[name] = source
    return source


def unregister_source(name: str) -> None:
    """Forget a source registered with :func:`register_source` (no error if unknown)."""
    if not isinstance(name, str):
        raise TypeError(f"unregister_source(name) takes a source name (a string), got {name!r}")
    with _lock:
        _registered.pop(name, None)


def registered_sources() -> dict[str, Source]:
    """Return a copy of this process's registrations, by name."""
    with _lock:
        return dict(_registered)


def set_registered_sources(sources: dict[str, Source]) -> None:
    """Replace this process's registrations (see :func:`seedwatch.testing.isolated_sources`)."""
    with _lock:
        _registered.clear()
        _registered.update(sources)


def custom_sources() -> list[Source]:
    """Return the entry-point sources, then the registered ones (which win on equal names)."""
    by_name = {source.name: source for _, _, source in _load_entry_points()}
    with _lock:
        by_name.update(_registered)
    return list(by_name.values())


def portable_sources() -> tuple[Source, ...]:
    """Return the registered sources that can travel to a spawned worker by pickle."""
    with _lock:
        sources = list(_registered.values())
    portable = []
    for source in sources:
        try:
            pickle.dumps(source)
        except (pickle.PicklingError, AttributeError, TypeError):
            _logs.warning("seedwatch_source_not_picklable", source=source.name)
            continue
        portable.append(source)
    return tuple(portable)


def adopt_sources(sources: Iterable[Source]) -> None:
    """Register sources that arrived with a pickled dataset, unless registered here already."""
    with _lock:
        for source in sources:
            _registered.setdefault(source.name, source)


#: An entry point as a spawned worker receives it: its name and ``module:attr``.
EntryPointRef = tuple[str, str]


def entry_point_refs() -> tuple[EntryPointRef, ...]:
    """Find the entry-point sources (once per process); return what a worker must import."""
    return tuple((name, value) for name, value, _ in _load_entry_points())


def adopt_entry_points(refs: Iterable[EntryPointRef]) -> None:
    """In a spawned worker, load the entry points the main process found, without a scan."""
    global _entry_point_sources  # noqa: PLW0603 - loaded once per process
    with _scan_lock:
        if _entry_point_sources is None:
            _entry_point_sources = _loaded(EntryPoint(n, v, ENTRY_POINT_GROUP) for n, v in refs)


def _load_entry_points() -> list[tuple[str, str, Source]]:
    global _entry_point_sources  # noqa: PLW0603 - loaded once per process
    with _scan_lock:
        if _entry_point_sources is None:
            _entry_point_sources = _loaded(entry_points(group=ENTRY_POINT_GROUP))
        return _entry_point_sources


def _loaded(found: Iterable[EntryPoint]) -> list[tuple[str, str, Source]]:
    loaded = []
    for entry_point in found:
        try:
            source = _as_source(entry_point.load())
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break training
            _logs.warning(
                "seedwatch_bad_entry_point", entry_point=entry_point.name, error=repr(exc)
            )
            continue
        loaded.append((entry_point.name, entry_point.value, source))
    return loaded


def _as_source(obj: object) -> Source:
    """Accept a Source, or a zero-argument callable returning one."""
    if callable(obj) and not isinstance(obj, Source):
        obj = obj()
    if not isinstance(obj, Source):
        raise TypeError(f"expected a seedwatch.Source, got {type(obj).__qualname__}")
    return obj
