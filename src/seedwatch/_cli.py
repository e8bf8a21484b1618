"""The ``seedwatch`` command line: ``demo`` and ``check``."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from seedwatch import __version__

START_METHODS = ["fork", "spawn", "forkserver"]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for ``seedwatch`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="seedwatch",
        description="Catch DataLoader workers, epochs and ranks that draw the same random numbers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run classic buggy and correct pipelines and show what seedwatch finds"
    )
    demo.add_argument("--workers", type=_count, default=2, help="DataLoader workers (default 2)")
    demo.add_argument("--epochs", type=_positive, default=3, help="epochs per pipeline (default 3)")
    demo.add_argument("--start-method", choices=START_METHODS, help="default: the platform's")

    check = commands.add_parser(
        "check",
        help="run a pipeline through real DataLoader workers and report duplicate streams",
        description=(
            "Exit status: 0 clean, 1 duplicate streams found, 2 usage error, 3 inconclusive "
            "(fewer than two workers fetched or fewer than two epochs ran: nothing to compare)."
        ),
    )
    check.add_argument("target", help="package.module:factory or path/to/file.py:factory")
    check.add_argument("--workers", type=_count, default=2, help="num_workers (default 2)")
    check.add_argument("--epochs", type=_positive, default=2, help="epochs to run (default 2)")
    check.add_argument("--batch-size", type=_positive, default=8, help="batch size (default 8)")
    check.add_argument("--start-method", choices=START_METHODS, help="default: the platform's")
    check.add_argument("--persistent-workers", action="store_true", help="keep workers alive")
    check.add_argument("--draws", type=_positive, default=16, help="values per fingerprint")
    check.add_argument("--strict", action="store_true", help="stop at the first duplicate")
    check.add_argument("--json", action="store_true", help="one JSON object per finding")
    check.add_argument(
        "--expect-shared",
        action="append",
        default=[],
        metavar="NAME",
        help="a source meant to be equal everywhere (repeatable)",
    )
    check.add_argument("--debug", action="store_true", help="show tracebacks for target errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    arguments = build_parser().parse_args(argv)
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


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value
