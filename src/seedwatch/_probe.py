"""
The worker side of judgement: fingerprint every stream this process can see, and say who it is.

This is the one module of the data path that needs torch (and the generators'
libraries); everything after it, the report, the wire, the ledger, is plain data.
"""

from __future__ import annotations

import multiprocessing
import os

import structlog
import torch
from torch.utils.data import get_worker_info

from seedwatch._discover import find_generators
from seedwatch._generators import (
    GLOBAL_SOURCES,
    fingerprint,
    global_draws,
    type_label,
    upcoming_draws,
)
from seedwatch._report import Report, Stream
from seedwatch._sources import custom_sources

_log = structlog.get_logger("seedwatch")


def take_report(dataset: object, draws: int, *, epoch: tuple[int, int] | None = None) -> Report:
    """
    Fingerprint the next ``draws`` values of every source this process can see.

    Sources: the three globals, the registered custom sources, and every
    generator reachable from ``dataset``. A source that cannot be read (an
    exotic subclass, a broken state) is left out with a log event: monitoring
    must never break the user's fetch. ``epoch`` is ``(loader id, epoch)`` for a
    monitored loader's main-process epochs (see :func:`generation_key`).
    """
    streams: dict[str, Stream] = {}
    for name in GLOBAL_SOURCES:
        streams[name] = Stream(fingerprint(global_draws(name, draws)), "global")
    for source in custom_sources():
        try:
            values = source.read(draws)
        except Exception as exc:  # noqa: BLE001 - a broken custom source is skipped, not fatal
            _log.warning("unreadable_source", source=source.name, error=repr(exc))
            continue
        if values is not None:
            streams[source.name] = Stream(fingerprint(values), "custom")
    for path, rng in find_generators(dataset):
        try:
            values = upcoming_draws(rng, draws)
        except Exception as exc:  # noqa: BLE001 - an unreadable generator is skipped, not fatal
            _log.debug("unreadable_generator", source=path, error=repr(exc))
            continue
        streams[path] = Stream(fingerprint(values), type_label(rng))
    info = get_worker_info()
    if info is None:
        # torch.initial_seed() tells a reseed-every-epoch loop apart in the main process too.
        return Report(
            generation=generation_key(None, epoch=epoch),
            worker=None,
            pid=os.getpid(),
            seed=torch.initial_seed(),
            streams=streams,
        )
    return Report(
        generation=generation_key(info.id, info.seed),
        worker=info.id,
        pid=os.getpid(),
        seed=info.seed,
        streams=streams,
    )


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
