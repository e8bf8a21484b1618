"""
``seedwatch check TARGET``: run a pipeline through real DataLoader workers and report.

The target is ``package.module:factory`` or ``path/to/file.py:factory``; the
factory returns a Dataset or a DataLoader (a Dataset or DataLoader object
itself is accepted too). Exit status: 0 clean, 1 findings, 2 usage errors,
3 inconclusive: no finding, but the run could not have shown a repeat across
workers (fewer than two workers fetched) or epochs (fewer than two epochs).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch.utils.data import DataLoader

from seedwatch._announce import quiet_announcements
from seedwatch._api import findings, is_dataset, monitor
from seedwatch._config import CHECK_BATCH_SIZE, CHECK_EPOCHS, CHECK_WORKERS
from seedwatch._errors import DuplicateStreamError
from seedwatch._finding import Observed, counted
from seedwatch._loader import release_workers
from seedwatch._render import render_table

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = 3


_MISSING = object()


class TargetError(Exception):
    """The target cannot be loaded or run; the message is one line for stderr."""


@dataclass(frozen=True)
class CheckOptions:
    """
    What ``seedwatch check`` was asked to do.

    ``None`` is an option not given. The loader options (``workers``,
    ``batch_size``, ``start_method``, ``persistent_workers``) build the
    DataLoader for a Dataset target, with the command line's defaults for those
    not given; a DataLoader target keeps its own, and those given are reported
    as ignored. ``draws`` not given leaves the monitor's default, or the one a
    factory that monitors its own dataset chose.
    """

    target: str
    workers: int | None = None
    epochs: int = CHECK_EPOCHS
    batch_size: int | None = None
    start_method: str | None = None
    persistent_workers: bool | None = None
    draws: int | None = None
    strict: bool = False
    json: bool = False
    expect_shared: tuple[str, ...] = ()


def load_target(spec: str) -> Any:
    """Import ``module:attr`` or ``file.py:attr`` and return the attribute."""
    location, separator, attribute = spec.rpartition(":")
    if not separator or not location or not attribute:
        raise TargetError(
            f"target {spec!r} must look like package.module:factory or file.py:factory"
        )
    if location.endswith(".py") or os.sep in location:
        path = Path(location)
        if not path.is_file():
            raise TargetError(f"no such file: {location}")
        # Import by name from its directory, so spawned workers can import it too.
        sys.path.insert(0, str(path.resolve().parent))
        module_name = path.stem
    else:
        sys.path.insert(0, str(Path.cwd()))
        module_name = location
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TargetError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    value: Any = module
    for part in attribute.split("."):
        value = getattr(value, part, _MISSING)
        if value is _MISSING:
            raise TargetError(f"{module_name!r} has no attribute {attribute!r}")
    return value


def make_pipeline(target: Any, spec: str) -> Any:
    """Return what the target makes: the factory's result, or a Dataset or DataLoader as is."""
    if callable(target) and not isinstance(target, DataLoader) and not is_dataset(target):
        try:
            return target()
        except Exception as exc:
            raise TargetError(f"{spec}() raised {type(exc).__name__}: {exc}") from exc
    return target


def ignored_options(made: Any, options: CheckOptions, *, called: bool) -> str | None:
    """
    Say which loader options given on the command line cannot apply to ``made``, or None.

    A DataLoader keeps its own settings; without workers there is no start
    method and no worker to keep alive. ``called``: a factory made ``made``.
    """
    given = [
        name
        for name, value in (
            ("--workers", options.workers),
            ("--batch-size", options.batch_size),
            ("--start-method", options.start_method),
            ("--persistent-workers", options.persistent_workers),
        )
        if value is not None
    ]
    if isinstance(made, DataLoader):
        why = f"the target {'returned' if called else 'is'} a DataLoader, whose own settings apply"
    elif options.workers == 0:
        given = [name for name in given if name in {"--start-method", "--persistent-workers"}]
        why = "with --workers 0 items are fetched in the main process"
    else:
        return None
    return f"{', '.join(given)} ignored: {why}" if given else None


def build_loader(made: Any, options: CheckOptions) -> Any:
    """Return a monitored DataLoader for what the target made (see :func:`make_pipeline`)."""

    def monitored(loader: DataLoader[Any]) -> Any:
        # Only the options given: a factory that monitors its dataset itself keeps its own.
        given: dict[str, Any] = {}
        if options.strict:
            given["strict"] = True
        if options.draws is not None:
            given["draws"] = options.draws
        if options.expect_shared:
            given["expect_shared"] = options.expect_shared
        return monitor(loader, **given)

    if isinstance(made, DataLoader):
        return monitored(made)
    if not is_dataset(made):
        raise TargetError(
            f"{options.target} returned {type(made).__qualname__}, not a Dataset or a DataLoader"
        )
    workers = CHECK_WORKERS if options.workers is None else options.workers
    loader: DataLoader[Any] = DataLoader(
        made,
        batch_size=CHECK_BATCH_SIZE if options.batch_size is None else options.batch_size,
        num_workers=workers,
        multiprocessing_context=options.start_method if workers else None,
        persistent_workers=bool(options.persistent_workers) and workers > 0,
    )
    return monitored(loader)


def run_check(options: CheckOptions, *, out: TextIO, err: TextIO) -> int:
    """Run the check and print the report; return the exit status."""
    target = load_target(options.target)
    made = make_pipeline(target, options.target)
    loader = build_loader(made, options)
    note = ignored_options(made, options, called=made is not target)
    if note:
        err.write(f"seedwatch check: note: {note}\n")
    err.write(_describe_run(loader, options) + "\n")
    with quiet_announcements():
        stopped = _run_epochs(loader, options.epochs, err)
        found = findings(loader)
    if options.json:
        out.writelines(json.dumps(finding.as_dict()) + "\n" for finding in found)
    elif found:
        out.write(render_table(found) + "\n")
    blind = [] if found or stopped else _unseen(loader, found.observed)
    if found:
        sources = sum(len(finding.sources) for finding in found)
        summary = f"{counted(len(found), 'finding')} in {counted(sources, 'source')}"
    elif blind:
        summary = "\n".join(
            ["inconclusive: no duplicate streams, but not every repeat could have shown:"]
            + [f"  - {reason}" for reason in blind]
        )
    else:
        summary = "clean: no duplicate streams"
    if stopped:
        summary += f" (strict mode stopped the run in epoch {stopped})"
    err.write(found.observed.describe() + "\n")
    (err if options.json else out).write(summary + "\n")
    if found:
        return EXIT_FINDINGS
    return EXIT_INCONCLUSIVE if blind else EXIT_CLEAN


def _unseen(loader: Any, observed: Observed) -> list[str]:
    """
    Say which repeats the run could not have shown, and how to make it show them.

    Only repeats the loader's own settings allow: one worker cannot repeat
    another, and persistent workers continue their streams across epochs.
    """
    blind = []
    can_see = observed.can_see()
    if loader.num_workers >= 2 and "workers" not in can_see:
        blind.append(
            f"{observed.most_workers} of {loader.num_workers} workers fetched in an epoch: "
            "give the check more items or a smaller --batch-size"
        )
    if not loader.persistent_workers and "epochs" not in can_see:
        blind.append(f"{counted(observed.generations, 'epoch')} ran: use --epochs 2 or more")
    return blind


def _run_epochs(loader: Any, epochs: int, err: TextIO) -> int | None:
    """Iterate; return the epoch strict mode stopped in, or None."""
    live = err.isatty()
    for epoch in range(1, epochs + 1):
        started, count = time.monotonic(), 0
        try:
            for _batch in loader:
                count += 1
                if live and count % 50 == 0:
                    err.write(f"\r  epoch {epoch}/{epochs}: {counted(count, 'batch', 'batches')}")
                    err.flush()
        except DuplicateStreamError as exc:
            release_workers(exc)
            return epoch
        except Exception as exc:
            release_workers(exc)
            raise TargetError(
                f"the pipeline raised {type(exc).__name__} in epoch {epoch}: {_error_line(exc)}"
            ) from exc
        seconds = time.monotonic() - started
        err.write(
            f"\r  epoch {epoch}/{epochs}: {counted(count, 'batch', 'batches')} in {seconds:.1f}s\n"
        )
    return None


def _describe_run(loader: Any, options: CheckOptions) -> str:
    context = loader.multiprocessing_context
    method = context.get_start_method() if context else torch.multiprocessing.get_start_method()
    where = f"start method {method}" if loader.num_workers else "in the main process"
    return (
        f"seedwatch check {options.target}: {counted(loader.num_workers, 'worker')}, "
        f"{counted(options.epochs, 'epoch')}, batch size {loader.batch_size}, {where}"
    )


def _error_line(exc: BaseException) -> str:
    """Return the line that says what went wrong (a worker's traceback ends with it)."""
    lines = str(exc).strip().splitlines()
    return lines[-1].strip() if lines else ""
