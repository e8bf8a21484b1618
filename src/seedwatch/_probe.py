"""
The worker side of judgement: fingerprint every stream this process can see, and say who it is.

A process looks twice: before serving its first item (:func:`look`), which
catches every stream that is there from the start, and right after it
(:func:`look_again`), which catches what only exists or restarts while items
are served: generators created lazily, re-created per item or living in an
iterable's running frame, and globals reseeded inside ``__getitem__``.

This is the one module of the data path that needs torch (and the generators'
libraries); everything after it, the report, the wire, the ledger, is plain data.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass

import structlog
import torch
from torch.utils.data import get_worker_info

from seedwatch._discover import Found, find_generators
from seedwatch._generators import (
    GLOBAL_SOURCES,
    fingerprint,
    global_draws,
    type_label,
    upcoming_draws,
)
from seedwatch._report import RESEEDED_GLOBAL, Report, Stream
from seedwatch._sources import custom_sources

_log = structlog.get_logger("seedwatch")


@dataclass(frozen=True)
class FirstLook:
    """
    What a process was about to draw before serving its first item.

    ``seen`` keeps the generators found alive until the second look, so a
    generator re-created while serving is never mistaken for one seen before
    (a freed object's id can be reused).
    """

    streams: dict[str, Stream]
    seen: tuple[object, ...]


def look(dataset: object, draws: int) -> FirstLook:
    """
    Fingerprint the next ``draws`` values of every source this process can see.

    Sources: the three globals, the registered custom sources, and every
    generator reachable from ``dataset``. A source that cannot be read (an
    exotic subclass, a broken state) is left out with a log event: monitoring
    must never break the user's fetch.
    """
    streams = {name: _global_stream(name, draws, "global") for name in GLOBAL_SOURCES}
    known = []
    for source in custom_sources():
        try:
            values, rng = source.sample(draws)
        except Exception as exc:  # noqa: BLE001 - a broken custom source is skipped, not fatal
            _log.warning("unreadable_source", source=source.name, error=repr(exc))
            continue
        if values is not None:
            streams[source.name] = Stream(fingerprint(values), "custom")
            known.append(rng)
    found = find_generators(dataset, known=known)
    streams.update(_generator_streams(found, draws))
    return FirstLook(streams, (*known, *(item.generator for item in found)))


def look_again(
    dataset: object, draws: int, first: FirstLook, *more: tuple[str, object]
) -> dict[str, Stream]:
    """
    After serving items, fingerprint what the first look could not have seen.

    That is the globals (a ``torch.manual_seed(c)`` inside ``__getitem__``
    restarts them at the same point in every worker), and every generator
    that was not there before: created lazily or re-created while serving, or
    living in a running iterator's frame (``more``).
    """
    streams = {}
    for name in GLOBAL_SOURCES:
        stream = _global_stream(name, draws, RESEEDED_GLOBAL)
        if stream.fingerprint != first.streams[name].fingerprint:  # unmoved: nothing new
            streams[name] = stream
    streams.update(_generator_streams(find_generators(dataset, *more, known=first.seen), draws))
    return streams


def take_report(dataset: object, draws: int, *, epoch: tuple[int, int] | None = None) -> Report:
    """
    Fingerprint every source this process can see now (see :func:`look`), as a report.

    ``epoch`` is ``(loader id, epoch)`` for a monitored loader's main-process
    epochs (see :func:`generation_key`).
    """
    return report_of(look(dataset, draws).streams, epoch=epoch)


def report_of(
    streams: dict[str, Stream],
    later: dict[str, Stream] | None = None,
    *,
    epoch: tuple[int, int] | None = None,
) -> Report:
    """Say who is drawing: a report of this process's streams (and those seen after a fetch)."""
    info = get_worker_info()
    if info is None:
        # torch.initial_seed() tells a reseed-every-epoch loop apart in the main process too.
        return Report(
            generation=generation_key(None, epoch=epoch),
            worker=None,
            pid=os.getpid(),
            seed=torch.initial_seed(),
            streams=streams,
            later=later or {},
        )
    return Report(
        generation=generation_key(info.id, info.seed),
        worker=info.id,
        pid=os.getpid(),
        seed=info.seed,
        streams=streams,
        later=later or {},
    )


def _global_stream(name: str, draws: int, origin: str) -> Stream:
    return Stream(fingerprint(global_draws(name, draws)), origin)


def _generator_streams(found: list[Found], draws: int) -> dict[str, Stream]:
    streams = {}
    for path, rng, place in found:
        try:
            values = upcoming_draws(rng, draws)
        except Exception as exc:  # noqa: BLE001 - an unreadable generator is skipped, not fatal
            _log.debug("unreadable_generator", source=path, error=repr(exc))
            continue
        streams[path] = Stream(fingerprint(values), type_label(rng), place)
    return streams


def generation_key(
    worker_id: int | None, seed: int | None = None, *, epoch: tuple[int, int] | None = None
) -> str:
    """
    Return a key shared by the processes of one generation, and only by them.

    A worker's generation is its DataLoader iterator. The iterator creates its
    worker processes one after the other, so their multiprocessing identities
    are consecutive: identity minus worker id is the same for all of them, and
    new for the next iterator, under fork, spawn and forkserver alike. The base
    seed is not enough: a ``torch.manual_seed`` before every epoch repeats it,
    which is one of the bugs to catch.

    The main process is one generation, or, for a monitored loader without
    workers, one per ``epoch`` (``(loader id, epoch number)``).
    """
    if worker_id is None:
        if epoch is None:
            return f"main:{os.getpid()}"
        loader, number = epoch
        return f"main:{os.getpid()}:loader{loader}:epoch{number}"
    identity = multiprocessing.current_process()._identity  # noqa: SLF001 - no public accessor
    if identity:
        parents = ".".join(str(part) for part in identity[:-1])
        return f"workers:{os.getppid()}:{parents}:{identity[-1] - worker_id}"
    base_seed = None if seed is None else seed - worker_id
    return f"seed:{base_seed}"
