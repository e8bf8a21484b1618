"""The public entry points: :func:`monitor` and :func:`findings`."""

from __future__ import annotations

import os
import types
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from seedwatch._collector import collector_for
from seedwatch._config import DEFAULT_DRAWS, new_config
from seedwatch._finding import Findings
from seedwatch._loader import MonitoredLoader
from seedwatch._monitor import Monitor
from seedwatch._proxy import isinstance_monitored, monitor_of, wrap
from seedwatch._ranks import Distributed, RankSync, monitor_label


def monitor(  # noqa: PLR0913 - keyword-only options, each documented
    dataset: Any,
    *,
    strict: bool | None = None,
    draws: int = DEFAULT_DRAWS,
    expect_shared: Iterable[str] = (),
    distributed: bool | Distributed | None = None,
    history: str | os.PathLike[str] | None = None,
) -> Any:
    """
    Wrap ``dataset`` so that duplicate random streams in its workers are reported.

    Args:
        dataset: A map-style dataset (``__getitem__``, optionally ``__getitems__``),
            an ``IterableDataset``, or a ``DataLoader`` (its dataset is monitored,
            and each ``iter()`` is an epoch). Monitored objects are returned unchanged.
        strict: ``True`` raises :class:`DuplicateStreamError` from the loader loop,
            ``False`` warns, ``None`` follows ``SEEDWATCH_STRICT`` (or the pytest
            option), read when each worker reports.
        draws: How many upcoming values of each source to fingerprint, 2 to 4096.
        expect_shared: Source names meant to be equal everywhere (a shard order);
            they are fingerprinted but never reported. Names may be ones that only
            exist inside workers.
        distributed: Compare streams across ranks through the job's c10d store.
            ``None`` does so when a default process group is initialized,
            ``False`` never; ``True`` or a :class:`Distributed` (an explicit
            store, rank or key namespace) always, warning if it cannot.
        history: A file where every run of the job notes the streams it drew, so a
            job restarted from a checkpoint that replays an earlier run's streams
            is reported (kind ``"resume"``). Shared safely by ranks and restarts;
            ``None`` reads ``SEEDWATCH_HISTORY`` (unset: no history).

    Returns:
        A proxy that behaves exactly like ``dataset``.

    Raises:
        TypeError: ``dataset`` is not a dataset, or an option has the wrong type.
        ValueError: ``draws`` is out of range.

    """
    if isinstance_monitored(dataset):
        given = _options_given(strict, draws, expect_shared, distributed, history)
        if given:
            wrapped = getattr(dataset, "__wrapped__", dataset)
            raise ValueError(
                f"{type(wrapped).__qualname__} is already monitored, with the options it was "
                f"monitored with; monitor() would ignore {', '.join(given)}. Monitor the raw "
                "dataset (or loader) once, with the options you want"
            )
        return dataset
    if isinstance(dataset, DataLoader):
        monitored = monitor(
            dataset.dataset,
            strict=strict,
            draws=draws,
            expect_shared=expect_shared,
            distributed=distributed,
            history=history,
        )
        return MonitoredLoader(dataset, monitored)
    if isinstance(dataset, _NOT_DATASETS) or not is_dataset(dataset):
        raise TypeError(
            "seedwatch.monitor() expects a dataset (an object with __getitem__ or __iter__), "
            f"got {type(dataset).__qualname__}"
        )
    config = new_config(strict, draws, expect_shared, history)
    if distributed is not None and not isinstance(distributed, (bool, Distributed)):
        raise TypeError(
            f"distributed must be True, False, None or seedwatch.Distributed, got {distributed!r}"
        )
    ranks = RankSync(distributed, monitor_label(dataset))
    collector = collector_for(config.monitor_id, config.expect_shared, ranks, config.history)
    return wrap(dataset, Monitor(config, collector))


def findings(monitored: Any) -> Findings:
    """
    Return every problem found so far for a monitored dataset or loader.

    A list of :class:`Finding`, one per problem, in a stable order; its
    ``observed`` says how much was checked (processes, epochs, workers per
    epoch, ranks), and its ``latent`` the duplicate streams nobody drew from.
    Deterministic: reports of workers whose batches the caller has received are
    read before answering.
    """
    if isinstance(monitored, MonitoredLoader):
        monitored = monitored.dataset
    monitor = monitor_of(monitored)
    if monitor is None:
        raise TypeError(
            "seedwatch.findings() expects what seedwatch.monitor() returned, "
            f"got {type(monitored).__qualname__}"
        )
    return monitor.findings()


#: Indexable and iterable, but data rather than a dataset: monitoring them is a mistake.
_NOT_DATASETS = (str, bytes, bytearray, dict, types.GeneratorType, torch.Tensor, np.ndarray)


def _options_given(
    strict: object,
    draws: object,
    expect_shared: Iterable[object],
    distributed: object,
    history: object,
) -> list[str]:
    """Name the options that differ from monitor()'s defaults."""
    given = [f"strict={strict!r}"] if strict is not None else []
    if history is not None:
        given.append(f"history={history!r}")
    if draws != DEFAULT_DRAWS:
        given.append(f"draws={draws!r}")
    if isinstance(expect_shared, str) or tuple(expect_shared or ()):
        given.append(f"expect_shared={expect_shared!r}")
    if distributed is not None:
        given.append(f"distributed={distributed!r}")
    return given


def is_dataset(obj: object) -> bool:
    """Return whether ``obj`` looks like a dataset: map-style or iterable, by its type."""
    return hasattr(type(obj), "__getitem__") or hasattr(type(obj), "__iter__")
