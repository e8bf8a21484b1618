"""
``seedwatch run``: run a job as ``python`` would, watching every DataLoader it builds.

The job runs in this process, as ``__main__``, with its own ``sys.argv`` and
``sys.path[0]``, as ``python script.py`` (``runpy.run_path``) or ``python -m
module`` (``runpy.run_module``) would run it; spawned workers re-import it the
same way. Its output and exit status are its own; seedwatch adds a summary on
stderr, once per job (rank 0 under torch.distributed).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import runpy
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import numpy as np
import torch

from seedwatch._config import DEFAULT_DRAWS, set_strict_default
from seedwatch._errors import DuplicateStreamError
from seedwatch._render import render_watched
from seedwatch._watch import WatchedDataset, unwatch, watch

EXIT_FINDINGS = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class RunOptions:
    """What ``seedwatch run`` was asked to do."""

    target: str
    args: tuple[str, ...] = ()
    as_module: bool = False
    strict: bool = False
    draws: int = DEFAULT_DRAWS
    expect_shared: tuple[str, ...] = ()
    history: str | None = None
    report: str | None = None
    fail_on_findings: bool = False


def run_job(options: RunOptions, *, err: TextIO | None = None) -> int:
    """Run the job with every DataLoader watched, summarise; return the exit status."""
    err = sys.stderr if err is None else err
    with _as_python_would(options):
        problem = _cannot_run(options)
        if problem is not None:
            err.write(f"seedwatch run: error: {problem}\n")
            return EXIT_USAGE
        # --strict also makes the job's own monitor(..., strict=None) calls strict.
        previous = set_strict_default(True) if options.strict else None
        watching = watch(
            draws=options.draws, expect_shared=options.expect_shared, history=options.history
        )
        try:
            status = _execute(options)
        finally:
            unwatch()
            if options.strict:
                set_strict_default(previous)
    sys.stdout.flush()
    datasets = watching.datasets()
    found = sum(len(dataset.findings) for dataset in datasets)
    if _rank() == 0:
        err.write(render_watched([(d.label, d.findings) for d in datasets]) + "\n")
        if options.report is not None:
            try:
                _write_report(options.report, options, datasets, status)
            except OSError as exc:
                err.write(f"seedwatch run: error: cannot write the report: {exc}\n")
    if options.fail_on_findings and found and status == 0:
        return EXIT_FINDINGS
    return status


def _cannot_run(options: RunOptions) -> str | None:
    """Say why the job cannot start (as ``python`` would refuse it), or ``None``."""
    if options.as_module:
        try:
            spec = importlib.util.find_spec(options.target)
        except (ImportError, ValueError) as exc:
            return f"cannot find module {options.target!r}: {exc}"
        if spec is None:
            return f"no module named {options.target!r}"
    elif not Path(options.target).is_file():
        return f"cannot open file {options.target!r}: no such file"
    if options.report is not None and not Path(options.report).resolve().parent.is_dir():
        return f"cannot write the report to {options.report!r}: no such directory"
    return None


@contextlib.contextmanager
def _as_python_would(options: RunOptions) -> Iterator[None]:
    """
    Give the job the ``sys.argv`` and ``sys.path[0]`` python would, for the block.

    ``python script.py`` puts the script's directory first on the path, ``python
    -m module`` the working directory.
    """
    saved_argv, saved_path = sys.argv, sys.path[:]
    sys.argv = [options.target, *options.args]
    first = Path.cwd() if options.as_module else Path(options.target).resolve().parent
    if sys.path:
        sys.path[0] = str(first)
    else:
        sys.path.append(str(first))
    try:
        yield
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _execute(options: RunOptions) -> int:
    """Run the job as ``__main__``; return its exit status, printing what escaped it."""
    try:
        if options.as_module:
            runpy.run_module(options.target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(options.target, run_name="__main__")
    except SystemExit as exit_:
        return _exit_status(exit_.code)
    except Exception as exc:  # noqa: BLE001 - the job's own error, shown as python shows it
        _print_job_error(exc)
        if isinstance(exc, DuplicateStreamError):
            _release_workers(exc)
        return 1
    return 0


def _exit_status(code: object) -> int:
    """Return the status ``sys.exit(code)`` gives, printing a message code as python does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def _print_job_error(exc: BaseException) -> None:
    """Print the traceback python would: from the job's own first frame."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and _is_ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _is_ours(path: str) -> bool:
    """Whether a frame belongs to seedwatch's runner or runpy (frozen in the standard build)."""
    return path in (__file__, runpy.__file__, "<frozen runpy>")


def _release_workers(exc: BaseException) -> None:
    """Let go of the stopped epoch's workers now (see ``_check._release_workers``)."""
    traceback.clear_frames(exc.__traceback__)


def _rank() -> int:
    """Return this process's rank: the process group's, else torchrun's ``RANK``, else 0."""
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return int(distributed.get_rank())
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _write_report(
    path: str, options: RunOptions, datasets: tuple[WatchedDataset, ...], status: int
) -> None:
    """Write findings, what was checked and the versions as JSON to ``path``."""
    from seedwatch import __version__  # noqa: PLC0415 - looked up only when a report is asked

    report: dict[str, Any] = {
        "command": [options.target, *options.args],
        "module": options.as_module,
        "exit_status": status,
        "strict": options.strict,
        "findings": sum(len(dataset.findings) for dataset in datasets),
        "datasets": [
            {
                "name": dataset.name,
                "built_at": dataset.where,
                "loaders": dataset.loaders,
                "observed": dataset.findings.observed.as_dict(),
                "can_see": list(dataset.findings.observed.can_see()),
                "findings": [finding.as_dict() for finding in dataset.findings],
                "latent": [finding.as_dict() for finding in dataset.findings.latent],
            }
            for dataset in datasets
        ],
        "versions": {
            "seedwatch": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
    }
    Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
