"""The public entry points: :func:`monitor` and :func:`findings`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from seedwatch._collector import collector_for
from seedwatch._config import (
    DEFAULT_DRAWS,
    MonitorConfig,
    integer_draws,
    new_config,
    validated_history,
    validated_names,
    validated_strict,
)
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
            and each ``iter()`` is an epoch). Data that only looks indexable (a
            string, bytes, a dict, a set, an iterator or generator object, a tensor,
            an array) is refused. A monitored object is returned unchanged; options
            given with it must be the ones it was monitored with (its monitor is
            already running), any other is refused rather than ignored. An option
            left at its default counts as not given. A dataset monitored by
            :func:`seedwatch.watch` is monitored anew when given other options.
        strict: ``True`` raises :class:`DuplicateStreamError` from the loader loop,
            ``False`` warns, ``None`` follows ``SEEDWATCH_STRICT`` (or the pytest
            option), read when each worker reports.
        draws: How many upcoming values of each source to fingerprint, 2 to 4096
            (any integer type, numpy's included, but not a bool).
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
        TypeError: ``dataset`` is not a dataset, or an option has the wrong type
            (the message names it).
        ValueError: ``draws`` is out of range, a name in ``expect_shared`` is empty,
            or ``dataset`` is already monitored with other options.

    """
    options: dict[str, Any] = {
        "strict": strict,
        "draws": draws,
        "expect_shared": expect_shared,
        "distributed": distributed,
        "history": history,
    }
    if isinstance_monitored(dataset):
        ignored = _options_ignored(dataset, **options)
        if ignored and _made_by_watch(dataset):  # the job's own options win
            anew = monitor(dataset.__wrapped__, **options)
            _monitor_of(dataset).replaced_by = _monitor_of(anew)  # what watch() lists now
            return anew
        if ignored:
            wrapped = getattr(dataset, "__wrapped__", dataset)
            raise ValueError(
                f"{type(wrapped).__qualname__} is already monitored, with "
                f"{_described(_config_of(dataset))}; monitor() would ignore "
                f"{', '.join(ignored)}. Monitor the raw dataset (or loader) once, "
                "with the options you want"
            )
        return dataset
    if isinstance(dataset, DataLoader):
        return MonitoredLoader(dataset, monitor(dataset.dataset, **options))
    if not is_dataset(dataset):
        raise TypeError(_not_a_dataset_message(dataset))
    config = new_config(strict, draws, expect_shared, history)
    check_distributed(distributed)
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
    if isinstance(monitored, MonitoredLoader) or (
        isinstance(monitored, DataLoader) and isinstance_monitored(monitored.dataset)
    ):  # monitored, or a loader built while watching
        monitored = monitored.dataset
    monitor = monitor_of(monitored)
    if monitor is None:
        raise TypeError(
            "seedwatch.findings() expects what seedwatch.monitor() returned, "
            f"got {type(monitored).__qualname__}"
        )
    return monitor.findings()


#: Indexable or iterable, but data rather than a dataset: monitoring one is a slip.
#: Each with what the caller likely meant instead.
_NOT_DATASETS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    ((str, bytes, bytearray, memoryview), "text or bytes; monitor the dataset that reads it"),
    (Mapping, "a mapping; monitor the dataset it holds (one split), not the mapping"),
    (AbstractSet, "a set has no order or index; a DataLoader cannot read it"),
    (
        Iterator,
        (
            "an iterator (a generator object too) is used up after one pass; monitor an "
            "IterableDataset whose __iter__ makes a fresh one each epoch"
        ),
    ),
    (
        (torch.Tensor, np.ndarray),
        (
            "an array of data; monitor the Dataset that serves it, where its random "
            "transforms run (torch.utils.data.TensorDataset wraps tensors)"
        ),
    ),
    (type, "a class; monitor an instance of it"),
)


def is_dataset(obj: object) -> bool:
    """
    Return whether ``obj`` can be a DataLoader's dataset, judged by its type.

    A torch ``Dataset`` (an ``IterableDataset`` too) is one by its own declaration.
    Anything else is one if it is map-style (``__getitem__``) or iterable
    (``__iter__``), unless it is data that has those as a container: strings,
    bytes, mappings, sets, iterators, tensors and arrays (see ``_NOT_DATASETS``).
    Plain classes, lists, Hugging Face datasets and webdataset pipelines pass.
    """
    if isinstance(obj, Dataset):
        return True
    if _not_a_dataset_hint(obj) is not None:
        return False
    return hasattr(type(obj), "__getitem__") or hasattr(type(obj), "__iter__")


def _not_a_dataset_hint(obj: object) -> str | None:
    """Say why ``obj`` is data rather than a dataset, or ``None`` if it is not such data."""
    for kinds, hint in _NOT_DATASETS:
        if isinstance(obj, kinds):
            return hint
    return None


def _not_a_dataset_message(obj: object) -> str:
    """Say what monitor() accepts, what it got, and (for data) what to monitor instead."""
    hint = _not_a_dataset_hint(obj)
    got = f"the class {obj.__qualname__}" if isinstance(obj, type) else type(obj).__qualname__
    return (
        "seedwatch.monitor() expects a dataset (a torch Dataset or IterableDataset, a "
        f"DataLoader, or an object with __getitem__ or __iter__), got {got}"
        + ("" if hint is None else f": {hint}")
    )


def _monitor_of(monitored: object) -> Monitor:
    made = monitor_of(monitored)
    assert made is not None, "what monitor() returns is monitored"
    return made


def _made_by_watch(monitored: object) -> bool:
    """Whether ``monitored`` is a dataset :func:`seedwatch.watch` monitored, not the job."""
    made = monitor_of(monitored)
    return made is not None and made.implicit


def check_distributed(distributed: object) -> bool | Distributed | None:
    """Return ``distributed`` if it is one of the documented kinds (``"yes"`` is truthy)."""
    if distributed is not None and not isinstance(distributed, (bool, Distributed)):
        raise TypeError(
            f"distributed must be True, False, None or seedwatch.Distributed, got {distributed!r}"
        )
    return distributed


def _config_of(monitored: object) -> MonitorConfig:
    """Return the config of a monitored dataset or loader."""
    inner = monitored.dataset if isinstance(monitored, MonitoredLoader) else monitored
    monitor_ = monitor_of(inner)
    assert monitor_ is not None, "every seedwatch proxy is a monitored dataset or loader"
    return monitor_.config


def _options_ignored(  # noqa: PLR0913 - monitor()'s options, checked as monitor() would
    monitored: object,
    *,
    strict: object,
    draws: object,
    expect_shared: Iterable[object],
    distributed: object,
    history: object,
) -> list[str]:
    """
    Name the options given with an already monitored object that it would not apply.

    Its monitor already runs (workers may have reported), so new options cannot
    change it. Options of the wrong type are a TypeError here too; ones equal to
    what it was monitored with ask for nothing new and pass. ``distributed`` is
    not kept in the config, so any given value is named.
    """
    config = _config_of(monitored)
    ignored: list[str] = []
    chosen_strict = validated_strict(strict)
    if chosen_strict is not None and chosen_strict != config.strict:
        ignored.append(f"strict={strict!r}")
    count = integer_draws(draws)
    if count not in (DEFAULT_DRAWS, config.draws):
        ignored.append(f"draws={draws!r}")
    names = validated_names(expect_shared)
    if names and names != config.expect_shared:
        ignored.append(f"expect_shared={sorted(names)!r}")
    check_distributed(distributed)
    if distributed is not None:
        ignored.append(f"distributed={distributed!r}")
    path = validated_history(history)
    if path is not None and path != config.history:
        ignored.append(f"history={history!r}")
    return ignored


def _described(config: MonitorConfig) -> str:
    """Name a config's options as monitor() arguments, for an error message."""
    described = [f"strict={config.strict!r}", f"draws={config.draws}"]
    if config.expect_shared:
        described.append(f"expect_shared={sorted(config.expect_shared)!r}")
    if config.history is not None:
        described.append(f"history={config.history!r}")
    return ", ".join(described)
