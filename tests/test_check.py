"""``seedwatch check``: the command line on buggy, clean and broken targets."""

from __future__ import annotations

import json
import multiprocessing
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from torch.utils.data import DataLoader

from pipelines import ShardOrderDataset
from seedwatch._cli import main
from seedwatch._generators import fingerprint, upcoming_draws

TESTS_DIR = Path(__file__).parent


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["check", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


OWN_LOADER = """
import torch
from torch.utils.data import DataLoader, Dataset

class Items(Dataset):
    def __len__(self):
        return 8
    def __getitem__(self, index):
        return torch.tensor(index)

def make_loader():
    return DataLoader(Items(), batch_size=4)

LOADER = make_loader()
"""


@pytest.fixture(name="own_loader")
def _own_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A file target: Items (8 items), and make_loader and LOADER, its loader (batch size 4)."""
    target = tmp_path / "own_loader.py"
    target.write_text(OWN_LOADER)
    # The check puts the file's folder on sys.path and imports it; undo both afterwards.
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield str(target)
    sys.modules.pop("own_loader", None)


class TestReport:
    def test_a_buggy_pipeline_exits_1_with_a_table_and_fixes(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Findings are a table (source, kind, who, fingerprint) with the fix under each."""
        status, out, err = check(capsys, "pipelines:HoldsGenerator", "--epochs", "2")

        assert 1 == status
        lines = out.splitlines()
        assert ["SOURCE", "KIND", "WHO", "FINGERPRINT"] == lines[0].split()
        assert lines[1].startswith("rng     workers+epochs  gen 0-1 x worker 0-1 (4 processes)")
        assert lines[2].startswith("  fix: 'rng' (np.random.Generator(PCG64))")
        assert "1 finding in 1 source" == lines[-1]
        assert "epoch 2/2: 2 batches" in err
        assert "checked 4 processes: 2 epochs, up to 2 workers per epoch" in err

    def test_a_clean_pipeline_exits_0(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A clean pipeline says so, with what was checked, and exits 0."""
        status, out, err = check(capsys, "pipelines:GlobalsDataset", "--workers", "3")

        assert (0, "clean: no duplicate streams\n") == (status, out)
        assert "checked 4 processes: 2 epochs, up to 2 workers per epoch" in err  # 2 batches

    def test_one_worker_fetching_everything_is_inconclusive(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """16 items in one batch of 16: one worker fetched, so 'clean' would be a guess: exit 3."""
        status, out, _ = check(capsys, "pipelines:GlobalsDataset", "--batch-size", "16")

        assert 3 == status
        assert [
            "inconclusive: no duplicate streams, but not every repeat could have shown:",
            (
                "  - 1 of 2 workers fetched in an epoch: give the check more items or a smaller "
                "--batch-size"
            ),
        ] == out.splitlines()

    def test_one_epoch_is_inconclusive(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A single epoch cannot show an epoch repeat: exit 3, and how to make it conclusive."""
        status, out, _ = check(capsys, "pipelines:GlobalsDataset", "--epochs", "1")

        assert 3 == status
        assert "  - 1 epoch ran: use --epochs 2 or more" == out.splitlines()[-1]

    def test_persistent_workers_need_no_second_epoch(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Persistent workers continue their streams: one epoch checks what can repeat."""
        status, _, _ = check(
            capsys, "pipelines:GlobalsDataset", "--epochs", "1", "--persistent-workers"
        )

        assert 0 == status

    def test_json_prints_one_object_per_finding(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--json is one parseable finding per stdout line; the summary goes to stderr."""
        status, out, err = check(capsys, "pipelines:GlobalsDataset", "--json", "--epochs", "3")
        assert (0, "") == (status, out)

        status, out, err = check(capsys, "pipelines:TransformedDataset", "--json", "--epochs", "1")

        [row] = [json.loads(line) for line in out.splitlines()]
        assert 1 == status
        assert ["augs['noise']", "transform.state", "transforms[1].g"] == row["sources"]
        assert {"source", "sources", "kind", "kinds", "members", "fingerprint", "hint"} <= set(row)
        assert "1 finding in 3 sources" in err

    def test_expect_shared_and_draws_are_passed_on(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--expect-shared silences a shard order; --draws sets how much a fingerprint reads."""
        silenced, _, _ = check(
            capsys, "pipelines:ShardOrderDataset", "--expect-shared", "shard_order", "--draws", "4"
        )
        _, out, _ = check(
            capsys, "pipelines:ShardOrderDataset", "--json", "--draws", "4", "--epochs", "1"
        )

        shard_order = ShardOrderDataset().shard_order
        assert 0 == silenced
        assert [("shard_order", fingerprint(upcoming_draws(shard_order, 4)))] == [
            (row["source"], row["fingerprint"]) for row in map(json.loads, out.splitlines())
        ]

    def test_strict_stops_at_the_first_duplicate(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--strict ends the run in the epoch of the first duplicate, and reports it."""
        status, out, _ = check(capsys, "pipelines:HoldsGenerator", "--strict", "--epochs", "3")

        assert 1 == status
        assert out.endswith("(strict mode stopped the run in epoch 1)\n")

    def test_without_workers_epoch_reseeding_is_checked(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--workers 0 runs in the main process and still sees repeated epochs."""
        status, out, err = check(capsys, "pipelines:reseeding_loader", "--epochs", "2")

        lines = out.splitlines()
        assert 1 == status
        assert ["torch", "epochs", "gen", "0-1", "x", "main"] == lines[1].split()[:6]
        assert "1 finding in 1 source" == lines[-1]
        assert "0 workers, 2 epochs, batch size 4, in the main process" in err

    def test_persistent_workers_are_one_generation(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--persistent-workers keeps workers across epochs: only a 'workers' repeat."""
        _, out, _ = check(
            capsys, "pipelines:HoldsGenerator", "--persistent-workers", "--epochs", "3"
        )

        rows = [line for line in out.splitlines()[1:-1] if not line.startswith(" ")]
        assert ["workers"] == [row.split()[1] for row in rows]

    def test_counts_of_one_read_in_the_singular(
        self, capsys: pytest.CaptureFixture[str], own_loader: str
    ) -> None:
        """One worker, one epoch, one batch, one process: no fixed plurals."""
        _, _, err = check(
            capsys,
            f"{own_loader}:Items",
            "--workers",
            "1",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--start-method",
            "fork",
        )

        assert "1 worker, 1 epoch, batch size 8, start method fork" in err
        assert "epoch 1/1: 1 batch in" in err
        assert "checked 1 process: 1 epoch, up to 1 worker per epoch" in err


def monitored_by_its_factory() -> Any:
    """A factory that monitors its own dataset, as a project wired to seedwatch does."""
    from pipelines import HoldsGenerator
    from seedwatch import monitor

    return DataLoader(monitor(HoldsGenerator()), batch_size=4, num_workers=2)


class TestMonitoredFactories:
    def test_a_factory_that_monitors_is_checked_as_it_is(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No options given: the factory's own monitor is used, and its finding reported."""
        status, out, _ = check(capsys, "test_check:monitored_by_its_factory")

        assert 1 == status
        assert out.splitlines()[1].startswith("rng ")

    def test_options_it_would_ignore_are_an_error_naming_the_dataset(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--strict on an already monitored dataset: exit 2, naming the user's class."""
        status, _, err = check(capsys, "test_check:monitored_by_its_factory", "--strict")

        assert 2 == status
        assert "HoldsGenerator is already monitored" in err


class TestIgnoredOptions:
    def test_loader_options_for_a_returned_dataloader_are_reported(
        self, capsys: pytest.CaptureFixture[str], own_loader: str
    ) -> None:
        """The loader's own settings apply; the options given are named in one note."""
        status, _, err = check(
            capsys, f"{own_loader}:make_loader", "--workers", "3", "--batch-size", "2"
        )

        assert 0 == status
        assert (
            "seedwatch check: note: --workers, --batch-size ignored: the target returned a "
            "DataLoader, whose own settings apply"
        ) in err.splitlines()
        assert "0 workers, 2 epochs, batch size 4, in the main process" in err

    def test_every_loader_option_given_for_a_dataloader_object_is_named(
        self, capsys: pytest.CaptureFixture[str], own_loader: str
    ) -> None:
        """A DataLoader object as target: all four loader options are named, defaults too."""
        _, _, err = check(
            capsys,
            f"{own_loader}:LOADER",
            "--workers",
            "2",
            "--batch-size",
            "8",
            "--start-method",
            "spawn",
            "--persistent-workers",
        )

        assert (
            "seedwatch check: note: --workers, --batch-size, --start-method, "
            "--persistent-workers ignored: the target is a DataLoader, whose own settings apply"
        ) in err.splitlines()

    def test_no_note_when_no_loader_option_is_given(
        self, capsys: pytest.CaptureFixture[str], own_loader: str
    ) -> None:
        """Options that do apply to a DataLoader (--epochs, --draws) bring no note."""
        _, _, err = check(capsys, f"{own_loader}:make_loader", "--epochs", "2", "--draws", "4")

        assert "seedwatch check: note:" not in err

    def test_worker_options_without_workers_are_reported(
        self, capsys: pytest.CaptureFixture[str], own_loader: str
    ) -> None:
        """A Dataset with --workers 0: no start method, no workers to keep; --batch-size applies."""
        status, _, err = check(
            capsys,
            f"{own_loader}:Items",
            "--workers",
            "0",
            "--batch-size",
            "2",
            "--start-method",
            "spawn",
            "--persistent-workers",
        )

        assert 0 == status
        assert (
            "seedwatch check: note: --start-method, --persistent-workers ignored: with "
            "--workers 0 items are fetched in the main process"
        ) in err.splitlines()
        assert "0 workers, 2 epochs, batch size 2, in the main process" in err


class TestBadTargets:
    @pytest.mark.parametrize(
        ("target", "message"),
        [
            ("no_such_module:factory", "cannot import 'no_such_module'"),
            ("pipelines:no_such_factory", "'pipelines' has no attribute 'no_such_factory'"),
            ("pipelines", "must look like package.module:factory"),
            ("missing/file.py:factory", "no such file: missing/file.py"),
            ("pipelines:make_generator", "raised TypeError"),
            ("pipelines:library_rng", "returned Generator, not a Dataset or a DataLoader"),
            (
                "pipelines:FailingDataset",
                "raised KeyError in epoch 1: KeyError: 'missing sample 5'",
            ),
        ],
    )
    def test_one_clear_line_and_exit_2(
        self, capsys: pytest.CaptureFixture[str], target: str, message: str
    ) -> None:
        """A target that cannot run is one line on stderr and exit 2, no traceback."""
        status, _, err = check(capsys, target)

        assert 2 == status
        assert "seedwatch check: error: " in err
        assert message in err
        assert "Traceback" not in err

    def test_debug_shows_the_traceback(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--debug adds the traceback."""
        _, _, err = check(capsys, "pipelines:make_generator", "--debug")

        assert "Traceback" in err

    def test_bad_options_are_usage_errors(self, capsys: pytest.CaptureFixture[str]) -> None:
        """argparse rejects a negative worker count with status 2."""
        with pytest.raises(SystemExit) as exit_info:
            main(["check", "pipelines:GlobalsDataset", "--workers", "-1"])

        assert 2 == exit_info.value.code


def test_a_file_target_under_spawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """path/to/file.py:factory is imported by path, and spawned workers can import it too."""
    target = tmp_path / "my_pipeline.py"
    target.write_text(
        textwrap.dedent(
            """
            import numpy as np
            import torch
            from torch.utils.data import DataLoader, Dataset

            class Crops(Dataset):
                def __init__(self):
                    self.rng = np.random.RandomState(0)
                def __len__(self):
                    return 8
                def __getitem__(self, index):
                    return torch.tensor(self.rng.randint(224))

            def make_loader():
                return DataLoader(Crops(), batch_size=2, num_workers=2,
                                  multiprocessing_context="spawn")
            """
        )
    )
    # The check puts the file's folder on sys.path and imports it; undo both afterwards.
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        status, out, err = check(capsys, f"{target}:make_loader", "--epochs", "1")
    finally:
        sys.modules.pop("my_pipeline", None)

    assert 1 == status, err
    assert ["rng", "workers", "gen", "0", "x", "worker", "0-1"] == out.splitlines()[1].split()[:7]
    assert "2 workers, 1 epoch, batch size 2, start method spawn" in err


def test_a_strict_stop_leaves_no_worker_running(capsys: pytest.CaptureFixture[str]) -> None:
    """When strict mode stops the run, the epoch's workers are shut down before check returns."""
    check(capsys, "pipelines:HoldsGenerator", "--strict")

    assert [] == multiprocessing.active_children()
