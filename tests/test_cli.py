from __future__ import annotations

import importlib.metadata
import multiprocessing
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


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command line on argv, expecting a usage error; return stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))

    assert 2 == exit_info.value.code
    return capsys.readouterr().err


def help_text(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """Return a subcommand's --help, its lines unwrapped into one."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])

    assert 0 == exit_info.value.code
    return " ".join(capsys.readouterr().out.split())


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

    def test_counts_in_its_heading_read_right(self, capsys: pytest.CaptureFixture[str]) -> None:
        """One worker and one epoch are said in the singular."""
        main(["demo", "--workers", "1", "--epochs", "1", "--start-method", "fork"])

        heading = capsys.readouterr().out.splitlines()[0]
        assert "seedwatch demo: 4 pipelines, 1 worker, 1 epoch each (start method: fork)" == heading

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


class TestOptions:
    @pytest.mark.parametrize(
        ("argv", "unknown"),
        [
            (["check", "pipelines:GlobalsDataset", "--worker", "4"], "--worker 4"),
            (["check", "pipelines:GlobalsDataset", "--batch", "4"], "--batch 4"),
            (["demo", "--epoch", "1"], "--epoch 1"),
            (["--vers", "demo"], "--vers"),
        ],
    )
    def test_abbreviated_options_are_usage_errors(
        self, capsys: pytest.CaptureFixture[str], argv: list[str], unknown: str
    ) -> None:
        """An option must be spelled out: `--worker 4` is not taken for `--workers 4`."""
        err = usage_error(capsys, *argv)

        assert f"unrecognized arguments: {unknown}" in err

    @pytest.mark.parametrize(
        "argv",
        [
            ["check", "pipelines:GlobalsDataset", "--workers"],
            ["check", "pipelines:GlobalsDataset", "--epochs"],
            ["check", "pipelines:GlobalsDataset", "--batch-size"],
            ["check", "pipelines:GlobalsDataset", "--draws"],
            ["demo", "--workers"],
            ["demo", "--epochs"],
        ],
    )
    def test_a_value_that_is_no_number_says_a_whole_number_was_expected(
        self, capsys: pytest.CaptureFixture[str], argv: list[str]
    ) -> None:
        """`--workers x` names the option, what it expected, and what it got."""
        err = usage_error(capsys, *argv, "2.5")

        assert f"argument {argv[-1]}: expected a whole number, got '2.5'" in err

    @pytest.mark.parametrize(
        ("option", "value", "expected"),
        [
            ("--workers", "-1", "0 or more"),
            ("--epochs", "0", "1 or more"),
            ("--batch-size", "0", "1 or more"),
            ("--draws", "1", "2 to 4096"),
            ("--draws", "4097", "2 to 4096"),
        ],
    )
    def test_a_value_out_of_range_states_the_range_before_anything_runs(
        self, capsys: pytest.CaptureFixture[str], option: str, value: str, expected: str
    ) -> None:
        """Out of range is a usage error naming the range, raised by the parser itself."""
        err = usage_error(capsys, "check", "pipelines:GlobalsDataset", option, value)

        assert f"argument {option}: expected {expected}, got {value}" in err

    def test_check_help_states_every_range_and_default(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`check --help` gives each option's range and default, the start method's by name."""
        text = help_text(capsys, "check")

        platform = multiprocessing.get_start_method()
        for line in [
            "--workers N DataLoader num_workers, 0 or more (default 2)",
            "--epochs N epochs to run, 1 or more (default 2)",
            "--batch-size N items per batch, 1 or more (default 8)",
            (
                "--start-method METHOD how workers start: fork, spawn or forkserver "
                f"(default: the platform's, {platform} here)"
            ),
            "--persistent-workers keep workers alive across epochs (default: a new set",
            "--draws N values per fingerprint, 2 to 4096 (default 16)",
            "--expect-shared NAME a source meant to be equal everywhere (repeatable; default none)",
        ]:
            assert line in text

    def test_demo_help_states_every_range_and_default(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`demo --help` gives each option's range and default, the start method's by name."""
        text = help_text(capsys, "demo")

        platform = multiprocessing.get_start_method()
        for line in [
            "--workers N DataLoader num_workers, 0 or more (default 2)",
            "--epochs N epochs per pipeline, 1 or more (default 3)",
            f"(default: the platform's, {platform} here)",
        ]:
            assert line in text
