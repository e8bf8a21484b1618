"""The ``seedwatch`` command line: ``demo``, ``check`` and ``run``."""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import traceback
from collections.abc import Callable, Sequence

from seedwatch import __version__
from seedwatch._config import (
    CHECK_BATCH_SIZE,
    CHECK_EPOCHS,
    CHECK_WORKERS,
    DEFAULT_DRAWS,
    DEMO_EPOCHS,
    DEMO_WORKERS,
    MAX_DRAWS,
    MIN_DRAWS,
)

START_METHODS = ["fork", "spawn", "forkserver"]


CHECK_DESCRIPTION = """\
Run a pipeline through real DataLoader workers and report duplicate random
streams. TARGET is package.module:factory or path/to/file.py:factory, and the
factory returns a Dataset or a DataLoader. A DataLoader keeps its own settings:
--workers, --batch-size, --start-method and --persistent-workers given for
one are ignored, and a note says so."""
CHECK_EPILOG = """\
exit status: 0 clean, 1 duplicate streams found, 2 usage error, 3 inconclusive
(fewer than two workers fetched or fewer than two epochs ran: nothing to
compare)."""
RUN_DESCRIPTION = """\
Run SCRIPT (or -m MODULE) as `python SCRIPT ARGS...` would, with every torch
DataLoader it builds monitored (subclasses and loaders built by frameworks
included), then summarise what seedwatch found on stderr."""
RUN_EPILOG = """\
exit status: the job's own; with --fail-on-findings, 1 when the job succeeded
but seedwatch found duplicate streams; 2 when the script or module cannot be
found. Strict mode stops the job with DuplicateStreamError from its loop.
The summary is written to stderr (on rank 0 only under torch.distributed)."""


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for ``seedwatch`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="seedwatch",
        description="Catch DataLoader workers, epochs and ranks that draw the same random numbers.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    # Subparsers do not inherit allow_abbrev: `--worker 4` must not pass for `--workers`.
    demo = commands.add_parser(
        "demo",
        help="run classic buggy and correct pipelines and show what seedwatch finds",
        description="Run classic buggy and correct pipelines and show what seedwatch finds.",
        allow_abbrev=False,
    )
    demo.add_argument(
        "--workers",
        type=_whole_number(0),
        default=DEMO_WORKERS,
        metavar="N",
        help=f"DataLoader num_workers, 0 or more (default {DEMO_WORKERS})",
    )
    demo.add_argument(
        "--epochs",
        type=_whole_number(1),
        default=DEMO_EPOCHS,
        metavar="N",
        help=f"epochs per pipeline, 1 or more (default {DEMO_EPOCHS})",
    )
    _add_start_method(demo)

    check = commands.add_parser(
        "check",
        help="run a pipeline through real DataLoader workers and report duplicate streams",
        description=CHECK_DESCRIPTION,
        epilog=CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    check.add_argument(
        "target", metavar="TARGET", help="package.module:factory or path/to/file.py:factory"
    )
    # None: not given, so a DataLoader target's own setting is not overridden (nor reported).
    check.add_argument(
        "--workers",
        type=_whole_number(0),
        metavar="N",
        help=f"DataLoader num_workers, 0 or more (default {CHECK_WORKERS})",
    )
    check.add_argument(
        "--epochs",
        type=_whole_number(1),
        default=CHECK_EPOCHS,
        metavar="N",
        help=f"epochs to run, 1 or more (default {CHECK_EPOCHS})",
    )
    check.add_argument(
        "--batch-size",
        type=_whole_number(1),
        metavar="N",
        help=f"items per batch, 1 or more (default {CHECK_BATCH_SIZE})",
    )
    _add_start_method(check)
    check.add_argument(
        "--persistent-workers",
        action="store_true",
        default=None,
        help="keep workers alive across epochs (default: a new set of workers each epoch)",
    )
    # --draws None: not given, so a factory that monitors its dataset keeps its own.
    _add_monitor_options(check, draws=None, strict_help="stop at the first duplicate")
    check.add_argument("--json", action="store_true", help="one JSON object per finding on stdout")
    check.add_argument("--debug", action="store_true", help="show tracebacks for target errors")
    _add_run_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    arguments = build_parser().parse_args(argv)
    if arguments.command == "run":
        return _run_command(arguments)
    # Both commands import torch; keep --help fast by importing here.
    if arguments.command == "demo":
        from seedwatch._demo import run_demo  # noqa: PLC0415

        return run_demo(
            workers=arguments.workers, epochs=arguments.epochs, start_method=arguments.start_method
        )
    from seedwatch._check import EXIT_USAGE, CheckOptions, TargetError, run_check  # noqa: PLC0415

    options = CheckOptions(
        target=arguments.target,
        workers=arguments.workers,
        epochs=arguments.epochs,
        batch_size=arguments.batch_size,
        start_method=arguments.start_method,
        persistent_workers=arguments.persistent_workers,
        draws=arguments.draws,
        strict=arguments.strict,
        json=arguments.json,
        expect_shared=tuple(arguments.expect_shared),
    )
    try:
        return run_check(options, out=sys.stdout, err=sys.stderr)
    except (TargetError, TypeError, ValueError) as error:
        if arguments.debug:
            traceback.print_exc()
        print(f"seedwatch check: error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _add_run_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run``: its job's own arguments follow the script or module name, untouched."""
    run = commands.add_parser(
        "run",
        help="run a training script or module, watching every DataLoader it builds",
        description=RUN_DESCRIPTION,
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [options] (SCRIPT | -m MODULE) [ARGS...]",
        allow_abbrev=False,
    )
    run.add_argument(
        "-m",
        dest="as_module",
        action="store_true",
        help="run a module as `python -m MODULE` would (the first ARG is its name)",
    )
    _add_monitor_options(
        run, draws=DEFAULT_DRAWS, strict_help="stop the job at the first duplicate"
    )
    run.add_argument(
        "--history",
        metavar="FILE",
        help="note drawn streams in FILE so a resumed job replaying them is found "
        "(default: $SEEDWATCH_HISTORY, else none)",
    )
    run.add_argument(
        "--report", metavar="FILE", help="write findings, coverage and versions as JSON to FILE"
    )
    run.add_argument(
        "--fail-on-findings",
        action="store_true",
        help="exit 1 when the job succeeded but seedwatch found duplicate streams",
    )
    run.add_argument(
        "job",
        nargs=argparse.REMAINDER,
        metavar="SCRIPT | MODULE",
        help="the script (or, with -m, the module) and its own arguments",
    )


def _run_command(arguments: argparse.Namespace) -> int:
    """Run the job ``arguments`` describe; return its exit status."""
    from seedwatch._run import RunOptions, run_job  # noqa: PLC0415 - imports torch

    job = arguments.job[1:] if arguments.job[:1] == ["--"] else arguments.job
    if not job:
        what = "a module name after -m" if arguments.as_module else "a script to run"
        sys.stderr.write(f"seedwatch run: error: expected {what}\n")
        return 2
    target, *args = job
    options = RunOptions(
        target=target,
        args=tuple(args),
        as_module=arguments.as_module,
        strict=arguments.strict,
        draws=arguments.draws,
        expect_shared=tuple(arguments.expect_shared),
        history=arguments.history,
        report=arguments.report,
        fail_on_findings=arguments.fail_on_findings,
    )
    return run_job(options)


def _add_monitor_options(
    parser: argparse.ArgumentParser, *, draws: int | None, strict_help: str
) -> None:
    """Add the options that ``monitor()`` takes: ``--draws``, ``--strict``, ``--expect-shared``."""
    parser.add_argument(
        "--draws",
        type=_whole_number(MIN_DRAWS, MAX_DRAWS),
        default=draws,
        metavar="N",
        help=f"values per fingerprint, {MIN_DRAWS} to {MAX_DRAWS} (default {DEFAULT_DRAWS})",
    )
    parser.add_argument("--strict", action="store_true", help=strict_help)
    parser.add_argument(
        "--expect-shared",
        action="append",
        default=[],
        metavar="NAME",
        help="a source meant to be equal everywhere (repeatable; default none)",
    )


def _add_start_method(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--start-method",
        choices=START_METHODS,
        metavar="METHOD",
        help=(
            f"how workers start: {', '.join(START_METHODS[:-1])} or {START_METHODS[-1]} "
            f"(default: the platform's, {platform_start_method()} here)"
        ),
    )


def platform_start_method() -> str:
    """
    Return the start method workers get when none is chosen.

    Read without fixing it: ``multiprocessing.get_start_method()`` would set the
    context, and a target that calls ``set_start_method`` would then fail.
    """
    chosen = multiprocessing.get_start_method(allow_none=True)
    return chosen or multiprocessing.get_all_start_methods()[0]


def _whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """Return an argparse ``type`` for whole numbers from ``low`` (to ``high``), saying which."""
    wanted = f"{low} or more" if high is None else f"{low} to {high}"

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    return whole_number
