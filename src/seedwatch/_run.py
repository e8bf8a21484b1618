"""
``seedwatch run``: run a job as ``python`` would, watching every DataLoader it builds.

The job runs in this process, as ``__main__``, with its own ``sys.argv`` and
``sys.path[0]``, as ``python script.py`` (``runpy.run_path``) or ``python -m
module`` (``runpy.run_module``) would run it; spawned workers re-import it the
same way. Its output and exit status are its own; seedwatch adds a summary on
stderr, once per job (rank 0 under torch.distributed).
"""

from __future__ import annotations

import builtins
import contextlib
import importlib.machinery
import importlib.util
import io
import json
import os
import platform
import runpy
import sys
import threading
import types
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO, overload

import numpy as np
import torch

from seedwatch._check import EXIT_FINDINGS, EXIT_USAGE
from seedwatch._config import DEFAULT_DRAWS, set_strict_default
from seedwatch._errors import DuplicateStreamError
from seedwatch._finding import counted
from seedwatch._loader import release_workers
from seedwatch._ranks import current_rank
from seedwatch._render import render_watched
from seedwatch._watch import WatchedDataset, unwatch, watch

#: What a shell reports for a job stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


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
    # Where the job starts: a job may change directory (Hydra does) before the end.
    options = replace(options, report=_absolute(options.report), history=_absolute(options.history))
    with _as_python_would(options):
        problem = _cannot_run(options)
        if problem is not None:
            err.write(f"seedwatch run: error: {problem}\n")
            return EXIT_USAGE
        try:
            watching = watch(
                draws=options.draws, expect_shared=options.expect_shared, history=options.history
            )
        except (TypeError, ValueError) as exc:
            err.write(f"seedwatch run: error: {exc}\n")
            return EXIT_USAGE
        # --strict also makes the job's own monitor(..., strict=None) calls strict.
        previous = set_strict_default(True) if options.strict else None
        try:
            status = _execute(options)
            _wait_for_job_threads()
        except _NoSuchModuleError as missing:
            err.write(f"seedwatch run: error: {missing}\n")
            return EXIT_USAGE
        finally:
            unwatch()
            if options.strict:
                set_strict_default(previous)
    sys.stdout.flush()
    datasets = watching.datasets()
    found = sum(len(dataset.findings) for dataset in datasets)
    # Under --strict, the findings of monitors the job left strict (not its own strict=False).
    unraised = sum(len(d.findings) for d in datasets if options.strict and d.strict is not False)
    final = status
    if status == 0 and (unraised or (found and options.fail_on_findings)):
        final = EXIT_FINDINGS
    if current_rank() in (None, 0):  # rank 0 speaks for the job
        err.write(render_watched([(d.label, d.findings) for d in datasets]) + "\n")
        if unraised and status == 0:
            err.write(
                f"seedwatch run: --strict: {counted(unraised, 'duplicate')} found but not "
                "raised in the job (its loop stopped before the end of the epoch that would "
                "raise it), so the run fails\n"
            )
        if options.report is not None:
            try:
                _write_report(options.report, options, datasets, status, final)
            except OSError as exc:
                err.write(f"seedwatch run: error: cannot write the report: {exc}\n")
    return final


def _cannot_run(options: RunOptions) -> str | None:
    """Say why the job cannot start (as ``python`` would refuse it), or ``None``."""
    target = Path(options.target)
    if not options.as_module and not target.exists():
        return f"cannot open file {options.target!r}: no such file"
    if not options.as_module and target.is_dir() and not (target / "__main__.py").is_file():
        return f"cannot find a __main__ module in {options.target!r}"
    if options.report is not None and not Path(options.report).parent.is_dir():
        return f"cannot write the report to {options.report!r}: no such directory"
    return None


def _missing_module(name: str) -> str | None:
    """
    Say that module ``name`` does not exist, or ``None`` when it does (or fails to import).

    Its packages are imported to find it, while watching: a package that fails
    to import is the job's own error, raised again when the job runs.
    """
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return f"no module named {exc.name!r}"
        return None
    except Exception:  # noqa: BLE001 - the job's own import error: the job shows it
        return None
    return None if spec is not None else f"no module named {name!r}"


@contextlib.contextmanager
def _as_python_would(options: RunOptions) -> Iterator[None]:
    """
    Give the job the ``sys.argv`` and ``sys.path[0]`` python would, for the block.

    ``python script.py`` puts the script's directory first on the path, ``python
    -m module`` the working directory.
    """
    saved_argv, saved_path = sys.argv, sys.path[:]
    sys.argv = [options.target, *options.args]
    if options.as_module:
        first = Path.cwd()
    else:  # a directory or zip with __main__.py is its own first path entry
        target = Path(options.target).absolute()
        first = target.parent if _is_plain_script(target) else target
    if sys.path:
        sys.path[0] = str(first)
    else:
        sys.path.append(str(first))
    try:
        yield
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _is_plain_script(path: Path) -> bool:
    """Whether ``path`` is a script file, rather than a directory or zip with ``__main__.py``."""
    return path.is_file() and not zipfile.is_zipfile(path)


class _NoSuchModuleError(Exception):
    """``-m`` names a module that does not exist: a usage error, before the job runs."""


def _execute(options: RunOptions) -> int:
    """Run the job as ``__main__``; return its exit status, printing what escaped it."""
    missing = _missing_module(options.target) if options.as_module else None
    if missing is not None:
        raise _NoSuchModuleError(missing)
    try:
        if options.as_module:
            runpy.run_module(options.target, run_name="__main__", alter_sys=True)
        elif _is_plain_script(Path(options.target)):
            _run_script(options.target)
        else:  # a directory or zip with __main__.py
            runpy.run_path(options.target, run_name="__main__")
    except SystemExit as exit_:
        return _exit_status(exit_.code)
    except KeyboardInterrupt as interrupt:
        _print_job_error(interrupt)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the job's own error, shown as python shows it
        _print_job_error(exc)
        if isinstance(exc, DuplicateStreamError):
            release_workers(exc)
        return 1
    return 0


def _run_script(path: str) -> None:
    """
    Run the script at ``path`` as python runs ``python path``.

    Its ``__main__`` has an absolute ``__file__`` (and code file name), while
    ``sys.argv[0]`` stays as given; ``runpy.run_path`` would make both the same.
    """
    absolute = _absolute(path)
    main = types.ModuleType("__main__")
    main.__file__ = absolute
    main.__cached__ = None  # type: ignore[attr-defined]
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", absolute)
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    with io.open_code(absolute) as source:
        code = compile(source.read(), absolute, "exec", dont_inherit=True)
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)  # noqa: S102 - running the user's script is the point
    finally:
        sys.modules["__main__"] = saved


@overload
def _absolute(path: str) -> str: ...
@overload
def _absolute(path: None) -> None: ...
def _absolute(path: str | None) -> str | None:
    """Return ``path`` made absolute as python makes ``__main__.__file__``: links kept."""
    return None if path is None else os.path.abspath(path)  # noqa: PTH100 - python's own way


def _wait_for_job_threads() -> None:
    """
    Wait, as python does before it exits, for the job's threads that are not daemons.

    Python first tells thread pools that no more work comes (the calls registered
    with ``threading._register_atexit``; a ``ThreadPoolExecutor`` never shut down
    waits for that), then joins; so does this.
    """
    threads = [
        thread
        for thread in threading.enumerate()
        if thread is not threading.current_thread() and not thread.daemon
    ]
    if not threads:
        return
    for call in reversed(getattr(threading, "_threading_atexits", [])):
        with contextlib.suppress(Exception):
            call()
    for thread in threads:
        with contextlib.suppress(KeyboardInterrupt):
            thread.join()


def _exit_status(code: object) -> int:
    """Return the status ``sys.exit(code)`` gives, printing a message code as python does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def _print_job_error(exc: BaseException) -> None:
    """Show the error as python would: through the job's ``sys.excepthook``, from its frames."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and _is_ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    sys.excepthook(type(exc), exc.with_traceback(tb), tb)


def _is_ours(path: str) -> bool:
    """Whether a frame belongs to seedwatch's runner or runpy (frozen in the standard build)."""
    return path in (__file__, runpy.__file__, "<frozen runpy>")


def _write_report(
    path: str,
    options: RunOptions,
    datasets: tuple[WatchedDataset, ...],
    job_status: int,
    status: int,
) -> None:
    """Write findings, what was checked and the versions as JSON to ``path``."""
    from seedwatch import __version__  # noqa: PLC0415 - looked up only when a report is asked

    report: dict[str, Any] = {
        "command": [options.target, *options.args],
        "module": options.as_module,
        "exit_status": status,
        "job_exit_status": job_status,
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
