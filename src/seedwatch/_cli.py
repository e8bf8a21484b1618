"""The ``seedwatch`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for ``seedwatch`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="seedwatch",
        description="Catch DataLoader workers, epochs and ranks that draw the same random numbers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run classic buggy and correct pipelines and show what seedwatch finds"
    )
    demo.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    demo.add_argument("--epochs", type=int, default=3, help="epochs per pipeline (default 3)")
    demo.add_argument(
        "--start-method",
        choices=["fork", "spawn", "forkserver"],
        help="worker start method (default: the platform's)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    arguments = build_parser().parse_args(argv)
    from seedwatch._demo import run_demo  # noqa: PLC0415 - imports torch; keep --help fast

    return run_demo(
        workers=arguments.workers, epochs=arguments.epochs, start_method=arguments.start_method
    )
