"""
Real frameworks under ``seedwatch run``: each test runs a job in a subprocess, as a user would.

The jobs (``tests/framework_jobs/``) leave building their DataLoaders to the framework, with two
real workers. seedwatch must find those loaders with no change to the job, summarise on stderr
only, and leave the job's stdout and exit status alone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rank_jobs import free_port

JOBS = Path(__file__).parent / "framework_jobs"
#: Seconds one job may run before it is killed and its test fails.
TIMEOUT = 120
#: The first line of the summary, which ``seedwatch run`` writes once per job.
HEADLINE = re.compile(r"seedwatch: (\d+) datasets? watched; ")
#: What only seedwatch writes: none of it may reach the job's stdout.
SEEDWATCH_TEXT = ("seedwatch", "watched;", "SOURCE  KIND", "DuplicateStream")
#: The line python prints for the exception that ended a job.
STRICT_ERROR = re.compile(r"seedwatch\.DuplicateStreamError: ")


@dataclass(frozen=True)
class Job:
    """What a finished job left: its exit status, its output, and seedwatch's JSON report."""

    status: int
    stdout: str
    stderr: str
    report: dict[str, Any]

    def headlines(self) -> list[str]:
        """Return the summary's first lines: one per summary printed."""
        return [line for line in self.stderr.splitlines() if HEADLINE.match(line)]

    def rows(self) -> list[tuple[str, str]]:
        """Return (source, kind) of each row of the summary's finding tables."""
        summary = self.stderr.splitlines()[self._summary_start() :]
        return [
            (row.split()[0], row.split()[1])
            for row in summary
            if row.startswith("  ") and not row.startswith("   ") and "SOURCE  KIND" not in row
        ]

    def findings(self) -> list[tuple[str, list[str]]]:
        """Return (source, kinds) of each finding in the report."""
        return [
            (finding["source"], finding["kinds"])
            for dataset in self.report.get("datasets", [])
            for finding in dataset["findings"]
        ]

    def observed(self) -> dict[str, Any]:
        """Return what the report says the job's one watched dataset was checked in."""
        [dataset] = self.report["datasets"]
        observed: dict[str, Any] = dataset["observed"]
        return observed

    def error_line(self) -> str:
        """Return the line naming the exception that ended the job (after its traceback)."""
        lines = self.stderr.splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("Traceback")]
        after = lines[starts[-1] + 1 :] if starts else []
        return next((line for line in after if not line.startswith(" ")), "")

    def _summary_start(self) -> int:
        lines = self.stderr.splitlines()
        return next((i for i, line in enumerate(lines) if HEADLINE.match(line)), len(lines))


def run(
    script: str,
    *args: str,
    cwd: Path,
    options: Sequence[str] = (),
    launcher: Sequence[str] = (),
) -> Job:
    """Run ``python [launcher] -m seedwatch run --report ... [options] script args`` in ``cwd``."""
    report = cwd / "seedwatch-report.json"
    command = [
        sys.executable,
        *launcher,
        "-m",
        "seedwatch",
        "run",
        "--report",
        str(report),
        *options,
        str(JOBS / script),
        *args,
    ]
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("SEEDWATCH_")
    }
    # A session of its own, so a job that hangs is killed with every process it started.
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{command} ran over {TIMEOUT} s; its stderr:\n{stderr}")
    written = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
    return Job(process.returncode, stdout, stderr, written)


def assert_own_stdout(job: Job, *lines: str) -> None:
    """The job's stdout has its own lines, and nothing of seedwatch's."""
    assert set(lines) <= set(job.stdout.splitlines())
    assert [] == [text for text in SEEDWATCH_TEXT if text in job.stdout]


@pytest.fixture(name="buggy", scope="module")
def _buggy(tmp_path_factory: pytest.TempPathFactory) -> Job:
    """The buggy Lightning job, run once for the tests that read what it left."""
    return run("lightning_job.py", "buggy", cwd=tmp_path_factory.mktemp("lightning"))


class TestLightning:
    def test_a_generator_held_by_the_datamodules_dataset_is_reported(self, buggy: Job) -> None:
        """Trainer.fit builds the loader from the LightningDataModule: its repeat is found."""
        assert ["seedwatch: 1 dataset watched; 1 finding in 1 of them"] == buggy.headlines()
        assert [("rng", "workers+epochs")] == buggy.rows()
        assert [("rng", ["workers", "epochs"])] == buggy.findings()
        assert "BuggySet" == buggy.report["datasets"][0]["name"]

    def test_the_job_keeps_its_output_and_exit_status(self, buggy: Job) -> None:
        """A fit that succeeds with findings exits 0 and its stdout is its own."""
        assert 0 == buggy.status
        assert_own_stdout(
            buggy,
            "lightning job buggy: start",
            "lightning job buggy: fitted 2 epochs, worker_init_fn none",
        )

    def test_the_summary_names_the_line_that_builds_the_loader(self, buggy: Job) -> None:
        """The dataset is labelled with train_dataloader()'s line, not Lightning's internals."""
        path, _line = buggy.report["datasets"][0]["built_at"].rsplit(":", 1)
        assert JOBS / "lightning_job.py" == Path(path)

    def test_strict_mode_stops_the_fit_from_its_loop(self, tmp_path: Path) -> None:
        """--strict raises DuplicateStreamError through Lightning's fit loop: the job fails."""
        job = run("lightning_job.py", "buggy", cwd=tmp_path, options=["--strict"])

        assert 1 == job.status
        assert STRICT_ERROR.match(job.error_line())
        assert "trainer.fit(" in job.stderr
        assert "fit_loop.py" in job.stderr
        assert (1, True) == (job.report["exit_status"], job.report["strict"])
        assert [("rng", "workers")] == job.rows()
        assert_own_stdout(job, "lightning job buggy: start")
        assert "fitted" not in job.stdout

    def test_a_generator_built_in_each_worker_is_clean(self, tmp_path: Path) -> None:
        """A generator built lazily from torch.initial_seed() is clean, after a real check."""
        job = run("lightning_job.py", "clean", cwd=tmp_path)

        assert ["seedwatch: 1 dataset watched; clean: no duplicate random streams"] == (
            job.headlines()
        )
        assert [] == job.findings()
        assert {"generations": 2, "most_workers": 2} == {
            key: job.observed()[key] for key in ("generations", "most_workers")
        }
        assert 0 == job.status
        assert_own_stdout(job, "lightning job clean: fitted 2 epochs, worker_init_fn none")

    def test_seed_everything_with_workers_does_not_fix_a_held_generator(
        self, tmp_path: Path
    ) -> None:
        """seed_everything(42, workers=True) reseeds the globals, not the dataset's generator."""
        job = run("lightning_job.py", "seeded", cwd=tmp_path)

        assert_own_stdout(
            job, "lightning job seeded: fitted 2 epochs, worker_init_fn pl_worker_init_function"
        )
        assert [("rng", ["workers", "epochs"])] == job.findings()
        assert 0 == job.status


class TestTorchdata:
    def test_a_generator_held_by_the_dataset_is_reported(self, tmp_path: Path) -> None:
        """A StatefulDataLoader, which never calls DataLoader.__init__, is watched too."""
        job = run("stateful_job.py", "buggy", cwd=tmp_path)

        assert [("rng", "workers+epochs")] == job.rows()
        assert [("rng", ["workers", "epochs"])] == job.findings()
        assert 0 == job.status
        assert_own_stdout(job, "stateful job buggy: 16 batches")

    def test_a_loader_resumed_mid_epoch_runs_and_reports_the_replay(self, tmp_path: Path) -> None:
        """A loader resumed from state_dict() finishes its epoch, replaying its draws: a resume."""
        job = run("stateful_job.py", "resume", cwd=tmp_path)

        assert_own_stdout(job, "stateful job resume: 8 batches")
        assert 0 == job.status
        assert [("torch", "resume")] == job.rows()
        assert [("torch", ["resume"])] == job.findings()
        assert job.observed()["resumed"]

    def test_a_job_restarted_from_its_checkpoint_is_reported_with_history(
        self, tmp_path: Path
    ) -> None:
        """With --history, a restarted job that replays its first run's streams names that run."""
        state, history = str(tmp_path / "loader.pt"), ["--history", str(tmp_path / "h.jsonl")]

        first = run("stateful_job.py", "checkpoint", state, cwd=tmp_path, options=history)
        second = run("stateful_job.py", "restart", state, cwd=tmp_path, options=history)

        assert (0, []) == (first.status, first.findings())
        assert_own_stdout(first, "stateful job checkpoint: 4 batches")
        assert (0, [("torch", ["resume"])]) == (second.status, second.findings())
        assert_own_stdout(second, "stateful job restart: 4 batches")
        members = second.report["datasets"][0]["findings"][0]["members"]
        assert {""} < {member["run"] for member in members}


def torchrun() -> list[str]:
    """Return python's arguments that start torchrun with two ranks on loopback."""
    return [
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
    ]


@pytest.fixture(name="by_rank", scope="module")
def _by_rank(tmp_path_factory: pytest.TempPathFactory) -> Job:
    """The DDP job seeded by rank, run once for the tests that read what it left."""
    return run("ddp_job.py", "by_rank", cwd=tmp_path_factory.mktemp("ddp"), launcher=torchrun())


class TestTorchrun:
    def test_ranks_seeded_alike_are_reported_once(self, tmp_path: Path) -> None:
        """manual_seed(42) on both ranks: a finding across ranks, in one summary (rank 0's)."""
        job = run("ddp_job.py", "same_seed", cwd=tmp_path, launcher=torchrun())

        assert 1 == len(job.headlines())
        assert [("torch", ["ranks"])] == job.findings()
        assert [("torch", "ranks")] == job.rows()
        members = job.report["datasets"][0]["findings"][0]["members"]
        assert {0, 1} == {member["rank"] for member in members}
        assert 0 == job.status
        assert_own_stdout(
            job, *(f"ddp job same_seed: rank {rank} saw 8 batches" for rank in (0, 1))
        )

    def test_ranks_without_workers_are_compared_at_every_epoch(self, tmp_path: Path) -> None:
        """With num_workers=0, each epoch's iter() is checked in the main process of each rank."""
        job = run("ddp_job.py", "no_workers", cwd=tmp_path, launcher=torchrun())

        assert 1 == len(job.headlines())
        assert [("torch", ["epochs", "ranks"])] == job.findings()
        members = job.report["datasets"][0]["findings"][0]["members"]
        assert {(0, None), (1, None)} == {(m["rank"], m["worker"]) for m in members}
        assert 0 == job.status
        assert_own_stdout(
            job, *(f"ddp job no_workers: rank {rank} saw 8 batches" for rank in (0, 1))
        )

    def test_ranks_seeded_by_rank_are_clean(self, by_rank: Job) -> None:
        """manual_seed(42 + rank): each rank's workers draw their own streams."""
        assert ["seedwatch: 1 dataset watched; clean: no duplicate random streams"] == (
            by_rank.headlines()
        )
        assert [] == by_rank.findings()
        assert (2, 2) == (by_rank.observed()["generations"], by_rank.observed()["most_workers"])
        assert 0 == by_rank.status
        assert_own_stdout(
            by_rank, *(f"ddp job by_rank: rank {rank} saw 8 batches" for rank in (0, 1))
        )

    def test_a_clean_result_says_the_ranks_were_compared(self, by_rank: Job) -> None:
        """The clean summary of a two-rank job counts both ranks, and can see a rank repeat."""
        assert 2 == by_rank.observed()["ranks"]
        assert "ranks" in by_rank.report["datasets"][0]["can_see"]


class TestHuggingFaceTrainer:
    def test_a_generator_held_by_the_train_dataset_is_reported(self, tmp_path: Path) -> None:
        """Trainer's loader and the DataLoaderShard accelerate rebuilds from it share one check."""
        job = run("hf_trainer_job.py", "buggy", str(tmp_path / "out"), cwd=tmp_path)

        assert [("rng", "workers+epochs")] == job.rows()
        assert [("rng", ["workers", "epochs"])] == job.findings()
        assert 2 == job.report["datasets"][0]["loaders"]
        assert 0 == job.status
        assert_own_stdout(job, "hf trainer job buggy: 8 steps")

    def test_numpys_global_generator_is_clean(self, tmp_path: Path) -> None:
        """np.random in __getitem__, which PyTorch reseeds per worker, is clean under accelerate."""
        job = run("hf_trainer_job.py", "clean", str(tmp_path / "out"), cwd=tmp_path)

        assert ["seedwatch: 1 dataset watched; clean: no duplicate random streams"] == (
            job.headlines()
        )
        assert (2, 2) == (job.observed()["generations"], job.observed()["most_workers"])
        assert 0 == job.status
        assert_own_stdout(job, "hf trainer job clean: 8 steps")
