from __future__ import annotations

import subprocess
import sys

import pytest

from seedwatch._cli import build_parser


class TestDemo:
    @pytest.mark.parametrize("method", ["fork", "spawn"])
    def test_demo_finds_the_two_bugs_and_passes_the_fix(self, method: str) -> None:
        """The demo reports the article's pattern and the __init__ generator, not the fix."""
        result = subprocess.run(
            [sys.executable, "-m", "seedwatch", "demo", "--epochs", "2", "--start-method", method],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

        assert 0 == result.returncode, result.stderr
        first, second, third = result.stdout.split("\n[")[1:]
        assert "DUPLICATE 'numpy' across epochs" in first
        assert "2147483648" in first
        assert "DUPLICATE 'rng' across workers" in second
        assert "DUPLICATE 'rng' across epochs" in second
        assert "clean: no duplicate random streams" in third
        assert "duplicate_rng_stream" not in result.stdout

    def test_unknown_commands_are_usage_errors(self) -> None:
        """argparse reports a bad subcommand with exit status 2."""
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["frobnicate"])

        assert 2 == exit_info.value.code
