"""
The ``seedwatch run`` command's options, kept apart from the engine.

``seedwatch --help`` builds every subcommand's parser; the engine imports torch,
so it loads only when ``run`` actually runs.
"""

from __future__ import annotations

import argparse
import sys

from seedwatch._config import DEFAULT_DRAWS, MAX_DRAWS, MIN_DRAWS

RUN_EPILOG = """\
exit status: the job's own; with --fail-on-findings, 1 when the job succeeded
but seedwatch found duplicate streams; 2 when the script or module cannot be
found. Strict mode stops the job with DuplicateStreamError from its loop.
The summary is written to stderr (on rank 0 only under torch.distributed)."""


def add_run_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` to the ``seedwatch`` command line's subcommands."""
    run = commands.add_parser(
        "run",
        help="run a training script or module, watching every DataLoader it builds",
        description=(
            "Run SCRIPT (or -m MODULE) as `python SCRIPT ARGS...` would, with every "
            "torch DataLoader it builds monitored (subclasses and framework-built loaders "
            "included), then summarise what seedwatch found."
        ),
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
    run.add_argument("--strict", action="store_true", help="stop the job at the first duplicate")
    run.add_argument(
        "--draws",
        type=_draws,
        default=DEFAULT_DRAWS,
        metavar="N",
        help=f"values per fingerprint, {MIN_DRAWS} to {MAX_DRAWS} (default {DEFAULT_DRAWS})",
    )
    run.add_argument(
        "--expect-shared",
        action="append",
        default=[],
        metavar="NAME",
        help="a source meant to be equal everywhere (repeatable; default none)",
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


def run_command(arguments: argparse.Namespace) -> int:
    """Run the job ``arguments`` describe; return its exit status."""
    from seedwatch._run import RunOptions, run_job  # noqa: PLC0415 - imports torch

    if not arguments.job:
        what = "a module name after -m" if arguments.as_module else "a script to run"
        sys.stderr.write(f"seedwatch run: error: expected {what}\n")
        return 2
    target, *args = arguments.job
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


def _draws(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not MIN_DRAWS <= value <= MAX_DRAWS:
        raise argparse.ArgumentTypeError(
            f"expected {MIN_DRAWS} to {MAX_DRAWS}, got {value}"
        )
    return value
