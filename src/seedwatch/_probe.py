"""
The worker side of judgement: fingerprint every stream this process can see, and say who it is.

A process looks twice: before serving its first item (:func:`look`), which
catches every stream that is there from the start, and right after it
(:func:`look_after`), which catches what only exists or restarts while items
are served: generators created lazily, re-created per item or living in an
iterable's running frame, and globals reseeded inside ``__getitem__``.

This is the one module of the data path that needs torch (and the generators'
libraries); everything after it, the report, the wire, the ledger, is plain data.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import get_worker_info

from seedwatch import _logs
from seedwatch._discover import Found, find_generators
from seedwatch._generators import (
    GLOBAL_SOURCES,
    fingerprint,
    global_signature,
    is_fresh,
    read,
    read_global,
    state_signature,
    type_label,
)
from seedwatch._report import OVERLAP_SPAN, RESEEDED_GLOBAL, Report, Stream
from seedwatch._sources import custom_sources


@dataclass(frozen=True)
class FirstLook:
    """
    What a process was about to draw before serving its first item.

    ``seen`` keeps the generators found alive until the second look, so a
    generator re-created while serving is never mistaken for one seen before
    (a freed object's id can be reused). ``generators`` are the found ones by
    path and ``signatures`` every stream's state token, so the second look can
    tell which streams moved.
    """

    streams: dict[str, Stream]
    seen: tuple[object, ...]
    generators: tuple[tuple[str, object], ...] = ()
    #: Each global's and found generator's state token (see ``state_signature``).
    signatures: dict[str, object] = field(default_factory=dict)


def look(dataset: object, draws: int, *, custom: bool = True) -> FirstLook:
    """
    Fingerprint the next ``draws`` values of every source this process can see.

    Sources: the three globals, the registered custom sources (unless not
    ``custom``), and every generator reachable from ``dataset``. A source that cannot be read (an
    exotic subclass, a broken state) is left out with a log event: monitoring
    must never break the user's fetch.
    """
    streams: dict[str, Stream] = {}
    signatures: dict[str, object] = {}
    for name in GLOBAL_SOURCES:
        signatures[name], streams[name] = _global_stream(name, draws, "global")
    known = []
    for source in custom_sources() if custom else ():
        try:
            values, rng = source.sample(draws)
        except Exception as exc:  # noqa: BLE001 - a broken custom source is skipped, not fatal
            _logs.warning("unreadable_source", source=source.name, error=repr(exc))
            continue
        if values is not None:
            streams[source.name] = Stream(fingerprint(values), "custom")
            known.append(rng)
    found = find_generators(dataset, known=known)
    read_streams, read_signatures = _generator_streams(found, draws)
    streams.update(read_streams)
    signatures.update(read_signatures)
    generators = tuple((item.path, item.generator) for item in found if item.path in read_streams)
    seen = (*known, *(item.generator for item in found))
    return FirstLook(streams, seen, generators, signatures)


def prime(dataset: object, draws: int) -> None:
    """
    Take a first look in the main process and drop it, so forked workers start warm.

    What a look builds once per process (each bit generator's ``ctypes`` view,
    the scratch twins, the walk's caches) is then inherited by every forked
    worker instead of built in each at its first fetch: about half of a cold
    look. Nothing is drawn, and custom sources are not read (their readers are the
    user's code, and may cost); a failure is logged and ignored.
    """
    try:
        look(dataset, draws, custom=False)
    except Exception as exc:  # noqa: BLE001 - monitoring must never break monitor()
        _logs.warning("seedwatch_internal_error", error=repr(exc))


@dataclass(frozen=True)
class SecondLook:
    """What serving items changed: the streams that moved, and streams new since the first look."""

    moved: frozenset[str]
    later: dict[str, Stream]
    #: What was not drawn from yet, to check once more when the worker exits: the
    #: name, the generator (``None`` for a global), its state token, and whether
    #: it was born late (seen by this look, not the first).
    latent: tuple[tuple[str, object | None, object, bool], ...] = ()


def look_after(
    dataset: object, draws: int, first: FirstLook, *more: tuple[str, object]
) -> SecondLook:
    """
    Look again after serving items, and say which first-look streams moved.

    The second look fingerprints what the first could not have seen: the globals
    (a ``torch.manual_seed(c)`` inside ``__getitem__`` restarts them at the same
    point in every worker), and every generator that was not there before:
    created lazily or re-created while serving, or living in a running
    iterator's frame (``more``). A stream that did not move while the process
    served items was not drawn from there: a duplicate of it is latent, not a
    finding. A custom source is taken as used: reading it again costs its owner.
    """
    moved = {name for name, stream in first.streams.items() if stream.origin == "custom"}
    latent: list[tuple[str, object | None, object, bool]] = []
    later = {}
    for name in GLOBAL_SOURCES:
        signature, stream = _global_stream(name, draws, RESEEDED_GLOBAL)
        if signature == first.signatures[name]:  # unmoved: nothing new, nothing drawn
            latent.append((name, None, signature, False))
            continue
        moved.add(name)
        if stream.fingerprint != first.streams[name].fingerprint:
            later[name] = stream
    for path, rng in first.generators:
        signature = first.signatures[path]
        if _signature(path, rng) != signature:
            moved.add(path)
        else:
            latent.append((path, rng, signature, False))
    found = find_generators(dataset, *more, known=first.seen)
    born, _ = _generator_streams(found, draws, born_late=True)
    later.update(born)
    latent.extend(
        (item.path, item.generator, None, True)
        for item in found
        if item.path in born and not born[item.path].used
    )
    return SecondLook(frozenset(moved), later, tuple(latent))


def drawn_since(second: SecondLook) -> tuple[set[str], set[str]]:
    """
    Return which latent streams of the second look were drawn from since.

    Two sets: streams of the first look, and streams born late (see
    :attr:`Report.later`). Cheap: no walk, one read per latent stream.
    """
    first: set[str] = set()
    late: set[str] = set()
    for name, rng, signature, born_late in second.latent:
        if rng is None:
            moved = global_signature(name) != signature
        elif born_late:
            moved = not is_fresh(rng)
        else:
            moved = _signature(name, rng) != signature
        if moved:
            (late if born_late else first).add(name)
    return first, late


def _signature(path: str, rng: object) -> object:
    """Return a generator's state token; an unreadable one reads as unmoved (``None``)."""
    try:
        return state_signature(rng)
    except Exception as exc:  # noqa: BLE001 - unreadable: leave it as it was
        _logs.debug("unreadable_generator", source=path, error=repr(exc))
        return None


def take_report(
    dataset: object, draws: int, *, epoch: tuple[int, int] | None = None, resumed: bool = False
) -> Report:
    """
    Fingerprint every source this process can see now (see :func:`look`), as a report.

    ``epoch`` is ``(loader id, epoch)`` for a monitored loader's main-process
    epochs (see :func:`generation_key`); ``resumed``: its loader restored a saved state.
    """
    return report_of(look(dataset, draws).streams, epoch=epoch, resumed=resumed)


def report_of(
    streams: dict[str, Stream],
    later: dict[str, Stream] | None = None,
    *,
    epoch: tuple[int, int] | None = None,
    resumed: bool = False,
    iteration: int = 0,
) -> Report:
    """
    Say who is drawing: a report of this process's streams (and those seen after a fetch).

    ``resumed`` is for the main process (a loader that restored a saved state);
    a worker finds out itself (see :func:`_worker_resumed`). ``iteration``: a
    persistent worker's how-manieth iteration of an iterable dataset.
    """
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
            resumed=resumed,
        )
    return Report(
        generation=generation_key(info.id, info.seed, iteration=iteration),
        worker=info.id,
        pid=os.getpid(),
        seed=info.seed,
        streams=streams,
        later=later or {},
        resumed=_worker_resumed(),
    )


#: The worker loops that receive a saved state when a loader resumes, and that argument's name.
_RESUMING_LOOPS = {("torchdata.stateful_dataloader.worker", "_worker_loop"): "worker_state"}


def _worker_resumed() -> bool:
    """
    Whether this worker was started to resume a saved loader state.

    torchdata's ``StatefulDataLoader`` hands each worker of a resumed iterator its
    saved state as an argument of the worker loop, which is on this thread's
    stack: read there, once per worker, without importing torchdata.
    """
    frame: types.FrameType | None = sys._getframe(1)  # noqa: SLF001 - the worker loop's arguments
    for _ in range(64):
        if frame is None:
            return False
        module = str(frame.f_globals.get("__name__"))
        argument = _RESUMING_LOOPS.get((module, frame.f_code.co_name))
        if argument is not None:
            # None when starting afresh; the state, or deleted once restored, when resuming.
            return frame.f_locals.get(argument, argument) is not None
        frame = frame.f_back
    return False


def _global_stream(name: str, draws: int, origin: str) -> tuple[object, Stream]:
    """Return a process-global generator's state token and stream, from one read."""
    signature, values = read_global(name, max(draws, OVERLAP_SPAN))
    return signature, _stream(values, draws, origin)


def _stream(values: bytes, draws: int, origin: str, **where: Any) -> Stream:
    """Fingerprint the first ``draws`` of ``values``, and keep the overlap window's as hex."""
    width = len(values) // max(draws, OVERLAP_SPAN)
    return Stream(
        fingerprint(values[: width * draws]),
        origin,
        prefix=values[: width * OVERLAP_SPAN].hex(),
        **where,
    )


def _generator_streams(
    found: list[Found], draws: int, *, born_late: bool = False
) -> tuple[dict[str, Stream], dict[str, object]]:
    """
    Fingerprint found generators; return their streams and their state tokens.

    One born while serving is used unless it is still fresh: a generator created
    per epoch but never drawn from (a template that a library copies and
    reseeds) is as seeded: fresh, so latent.
    """
    streams = {}
    signatures = {}
    for item in found:
        rng = item.generator
        try:
            signature, values = read(rng, max(draws, OVERLAP_SPAN))
            used = not (born_late and is_fresh(rng))
        except Exception as exc:  # noqa: BLE001 - an unreadable generator is skipped, not fatal
            _logs.debug("unreadable_generator", source=item.path, error=repr(exc))
            continue
        signatures[item.path] = signature
        streams[item.path] = _stream(
            values,
            draws,
            type_label(rng),
            place=item.place,
            used=used,
            owner=item.owner,
            holder=item.holder,
            aliases=item.aliases,
        )
    return streams, signatures


def generation_key(
    worker_id: int | None,
    seed: int | None = None,
    *,
    epoch: tuple[int, int] | None = None,
    iteration: int = 0,
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
    workers, one per ``epoch`` (``(loader id, epoch number)``). A persistent
    worker's later iterations of an iterable dataset (``iteration`` 1, 2, ...)
    are generations of their own: the epochs that one set of workers serves.
    """
    if worker_id is None:
        if epoch is None:
            return f"main:{os.getpid()}"
        loader, number = epoch
        return f"main:{os.getpid()}:loader{loader}:epoch{number}"
    again = f":iteration{iteration}" if iteration else ""
    identity = multiprocessing.current_process()._identity  # noqa: SLF001 - no public accessor
    if identity:
        parents = ".".join(str(part) for part in identity[:-1])
        return f"workers:{os.getppid()}:{parents}:{identity[-1] - worker_id}{again}"
    base_seed = None if seed is None else seed - worker_id
    return f"seed:{base_seed}{again}"
