from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import seedwatch
from seedwatch._cli import build_parser, main


def assert_demo_report(stdout: str) -> None:
    """The demo reports the three bugs (article, __init__, lazy constant seed), not the fix."""
    article, in_init, lazy, fixed = stdout.split("\n[")[1:]
    assert "DUPLICATE 'numpy' across epochs" in article
    assert "2147483648" in article
    for bug in (in_init, lazy):
        assert 1 == bug.count("DUPLICATE")
        assert "DUPLICATE 'rng' across workers and epochs" in bug
    assert "created while items are served" in lazy
    assert "clean: no duplicate random streams" in fixed
    assert "duplicate_rng_stream" not in stdout


class TestDemo:
    def test_the_demo_command_finds_the_bugs_under_spawn(self) -> None:
        """`python -m seedwatch demo` finds every bug and passes the fix, its workers spawned."""
        result = subprocess.run(
            [sys.executable, "-m", "seedwatch", "demo", "--epochs", "2", "--start-method", "spawn"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

        assert 0 == result.returncode, result.stderr
        assert "(start method: spawn)" in result.stdout
        assert_demo_report(result.stdout)

    def test_the_demo_finds_the_bugs_under_fork(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The same report with forked workers, the command run in this process."""
        status = main(["demo", "--epochs", "2", "--start-method", "fork"])

        out = capsys.readouterr().out
        assert 0 == status
        assert "(start method: fork)" in out
        assert_demo_report(out)

    def test_unknown_commands_are_usage_errors(self) -> None:
        """argparse reports a bad subcommand with exit status 2."""
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["frobnicate"])

        assert 2 == exit_info.value.code

    def test_version_is_the_installed_distributions(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`seedwatch --version` and `seedwatch.__version__` name the installed version."""
        with pytest.raises(SystemExit) as exit_info:
            main(["--version"])

        installed = importlib.metadata.version("seedwatch")
        assert (0, f"seedwatch {installed}\n") == (exit_info.value.code, capsys.readouterr().out)
        assert installed == seedwatch.__version__
