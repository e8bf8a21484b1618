"""
A report: the fingerprints one process took of its streams at its first fetch.

Reports travel between processes, so they are plain data with a JSON form that
is validated on the way in: a malformed report is rejected, never half-read.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
from seedwatch._sources import custom_sources

_log = structlog.get_logger("seedwatch")


@dataclass(frozen=True)
class Stream:
    """One source's fingerprint, with the generator type for hints (``"global"`` for globals)."""

    fingerprint: str
    origin: str


@dataclass(frozen=True)
class Report:
    """
    What one process drew, identified by its worker generation.

    ``generation`` is an opaque key equal for the workers that one DataLoader
    iterator started and different for the next iterator's workers (see
    :func:`generation_key`). ``worker`` is ``None`` in the main process.
    """

    generation: str
    worker: int | None
    pid: int
    seed: int | None
    streams: Mapping[str, Stream] = field(default_factory=dict)
    rank: int | None = None

    def to_plain(self) -> dict[str, Any]:
        """Return the JSON-ready form."""
        return {
            "generation": self.generation,
            "worker": self.worker,
            "pid": self.pid,
            "seed": self.seed,
            "rank": self.rank,
            "streams": {name: [s.fingerprint, s.origin] for name, s in self.streams.items()},
        }

    @classmethod
    def from_plain(cls, data: object) -> Report:
        """Rebuild a report from :meth:`to_plain`'s form; raise ``ValueError`` if malformed."""
        if not isinstance(data, dict):
            raise ValueError("a report must be a JSON object")  # noqa: TRY004 - malformed input is a ValueError
        try:
            streams = {
                _text(name): Stream(_fingerprint(fp), _text(origin))
                for name, (fp, origin) in data["streams"].items()
            }
            return cls(
                generation=_text(data["generation"]),
                worker=_optional_int(data["worker"]),
                pid=_int(data["pid"]),
                seed=_optional_int(data["seed"]),
                streams=streams,
                rank=_optional_int(data.get("rank")),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"malformed report: {exc!r}") from None


def take_report(dataset: object, draws: int, unwrap: Callable[[object], object | None]) -> Report:
    """
    Fingerprint every source this process can see, and say who is drawing.

    A source that cannot be read (an exotic subclass, a broken state) is left
    out with a debug log: monitoring must never break the user's fetch.
    """
    info = get_worker_info()
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
    for path, rng in find_generators(dataset, unwrap=unwrap):
        try:
            values = upcoming_draws(rng, draws)
        except Exception as exc:  # noqa: BLE001 - an unreadable generator is skipped, not fatal
            _log.debug("unreadable_generator", source=path, error=repr(exc))
            continue
        streams[path] = Stream(fingerprint(values), type_label(rng))
    if info is None:
        # torch.initial_seed() tells a reseed-every-epoch loop apart in the main process too.
        return Report(
            generation=generation_key(None),
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


def generation_key(worker_id: int | None, seed: int | None = None) -> str:
    """
    Return a key shared by the workers of one DataLoader iterator, and only by them.

    A DataLoader iterator creates its worker processes one after the other, so
    their multiprocessing identities are consecutive: identity minus worker id is
    the same for all of them, and new for the next iterator, under fork, spawn
    and forkserver alike. The base seed is not enough: a ``torch.manual_seed``
    before every epoch repeats it, which is one of the bugs to catch.
    """
    if worker_id is None:
        return f"main:{os.getpid()}"
    identity = multiprocessing.current_process()._identity
    if identity:
        parents = ".".join(str(part) for part in identity[:-1])
        return f"workers:{os.getppid()}:{parents}:{identity[-1] - worker_id}"
    base_seed = None if seed is None else seed - worker_id
    return f"seed:{base_seed}"


def _fingerprint(value: object) -> str:
    text = _text(value)
    int(text, 16)  # ValueError when not hex
    return text


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _optional_int(value: object) -> int | None:
    return None if value is None else _int(value)
