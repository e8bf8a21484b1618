"""``seedwatch run``: an unmodified job, run as python would run it, with every loader watched."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from seedwatch._cli import main

pytestmark = pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning")

START_METHODS = ["fork", "spawn", "forkserver"]

#: A job as people write it: no seedwatch anywhere. Its first argument picks the dataset,
#: the second the start method; it prints what python gave it and exits as asked.
JOB = textwrap.dedent(
    """
    import sys

    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Dataset


    class Noisy(Dataset):
        def __init__(self):
            self.rng = np.random.default_rng(0)

        def __len__(self):
            return 8

        def __getitem__(self, index):
            return torch.tensor([index, int(self.rng.integers(1 << 30))])


    class Calm(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, index):
            return torch.tensor([index, int(np.random.randint(1 << 30))])


    def main():
        kind, method, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
        print("job argv:", sys.argv, "name:", __name__)
        dataset = Noisy() if kind == "noisy" else Calm()
        loader = DataLoader(dataset, batch_size=2, num_workers=2, multiprocessing_context=method)
        for _ in range(2):
            for _batch in loader:
                pass
        print("job done")
        sys.exit(status)


    if __name__ == "__main__":
        main()
    """
)


@pytest.fixture(name="job")
def _job(tmp_path: Path) -> Path:
    path = tmp_path / "job.py"
    path.write_text(JOB)
    return path


def seedwatch_run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seedwatch", "run", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


class TestTheJobRunsAsPythonWouldRunIt:
    def test_its_arguments_name_output_and_exit_status_are_its_own(self, job: Path) -> None:
        """argv is the script's, it runs as __main__, stdout is its alone, its status is kept."""
        result = seedwatch_run("job.py", "calm", "fork", "3", cwd=job.parent)

        assert 3 == result.returncode
        assert [
            "job argv: ['job.py', 'calm', 'fork', '3'] name: __main__",
            "job done",
        ] == result.stdout.splitlines()

    def test_a_module_runs_as_python_m_would(self, job: Path) -> None:
        """-m MODULE finds the module from the working directory and passes its arguments."""
        result = seedwatch_run("-m", "job", "calm", "fork", "0", cwd=job.parent)

        assert 0 == result.returncode
        assert "name: __main__" in result.stdout
        assert "'calm', 'fork', '0']" in result.stdout

    def test_no_framework_is_imported_that_the_job_does_not_import(self, tmp_path: Path) -> None:
        """Watching finds loader subclasses when they are built: it imports no framework."""
        (tmp_path / "modules.py").write_text(
            "import sys\n"
            "frameworks = ('lightning', 'transformers', 'accelerate', 'torchdata', 'monai')\n"
            "print([name for name in frameworks if name in sys.modules])\n"
        )

        result = seedwatch_run("modules.py", cwd=tmp_path)

        assert "[]" == result.stdout.strip()

    def test_options_after_the_script_belong_to_the_job(self, job: Path) -> None:
        """seedwatch's own options come before the script; everything after is the job's."""
        (job.parent / "args.py").write_text("import sys; print(sys.argv[1:])")

        result = seedwatch_run("args.py", "--strict", "-m", "x", cwd=job.parent)

        assert "['--strict', '-m', 'x']" == result.stdout.strip()

    def test_an_error_in_the_job_is_shown_from_its_own_frames(self, tmp_path: Path) -> None:
        """An exception escaping the job prints python's traceback, without seedwatch's frames."""
        (tmp_path / "broken.py").write_text("def go():\n    raise KeyError('boom')\n\ngo()\n")

        result = seedwatch_run("broken.py", cwd=tmp_path)

        assert 1 == result.returncode
        lines = result.stderr.splitlines()
        assert "Traceback (most recent call last):" == lines[0]
        assert lines[1] == f'  File "{tmp_path / "broken.py"}", line 4, in <module>'
        assert "KeyError: 'boom'" in lines
        assert "runpy" not in result.stderr
        assert "_run.py" not in result.stderr

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["missing.py"], "cannot open file 'missing.py'"),
            (["."], "cannot find a __main__ module in '.'"),
            (["-m", "no_such_module"], "no module named 'no_such_module'"),
            ([], "expected a script to run"),
            (["--report", "/no/such/dir/r.json", "job.py"], "no such directory"),
        ],
    )
    def test_a_job_that_cannot_start_is_a_usage_error(
        self, job: Path, args: list[str], message: str
    ) -> None:
        """Exit status 2 and one line saying why, before anything runs."""
        result = seedwatch_run(*args, cwd=job.parent)

        assert 2 == result.returncode
        assert message in result.stderr


class TestTheSummary:
    @pytest.mark.parametrize("method", START_METHODS)
    def test_a_duplicate_is_summarised_on_stderr(self, job: Path, method: str) -> None:
        """Under every start method, the summary names the dataset, the line and the finding."""
        result = seedwatch_run("job.py", "noisy", method, "0", cwd=job.parent)

        assert 0 == result.returncode
        summary = result.stderr[result.stderr.index("seedwatch: 1 dataset watched") :]
        assert summary.splitlines()[:4] == [
            "seedwatch: 1 dataset watched; 1 finding in 1 of them",
            (
                "Noisy (job.py:32): 1 finding; checked 4 processes: 2 epochs, up to 2 workers "
                "per epoch"
            ),
            "  SOURCE  KIND            WHO                                 FINGERPRINT",
            "  rng     workers+epochs  gen 0-1 x worker 0-1 (4 processes)  b6849319a0ae4426",
        ]
        assert "seedwatch" not in result.stdout

    def test_a_clean_job_says_so(self, job: Path) -> None:
        """A job drawing only from the globals torch reseeds is clean, and says what was seen."""
        result = seedwatch_run("job.py", "calm", "fork", "0", cwd=job.parent)

        assert result.stderr.splitlines()[-2:] == [
            "seedwatch: 1 dataset watched; clean: no duplicate random streams",
            "Calm (job.py:32): clean; checked 4 processes: 2 epochs, up to 2 workers per epoch",
        ]

    def test_a_job_without_loaders_says_nothing_was_checked(self, tmp_path: Path) -> None:
        """No DataLoader, no verdict: the summary does not claim a clean run."""
        (tmp_path / "plain.py").write_text("print('no data here')\n")

        result = seedwatch_run("plain.py", cwd=tmp_path)

        assert "seedwatch: no DataLoader was watched in this process, so nothing was checked\n" == (
            result.stderr
        )

    def test_fail_on_findings_fails_a_successful_job(self, job: Path) -> None:
        """--fail-on-findings: status 1 for findings; a clean job and a failing one keep theirs."""
        noisy = seedwatch_run("--fail-on-findings", "job.py", "noisy", "fork", "0", cwd=job.parent)
        calm = seedwatch_run("--fail-on-findings", "job.py", "calm", "fork", "0", cwd=job.parent)
        failed = seedwatch_run("--fail-on-findings", "job.py", "noisy", "fork", "5", cwd=job.parent)

        assert (1, 0, 5) == (noisy.returncode, calm.returncode, failed.returncode)

    def test_the_report_file_holds_findings_coverage_and_versions(self, job: Path) -> None:
        """--report FILE: JSON a CI step can read."""
        report = job.parent / "seedwatch.json"

        seedwatch_run("--report", report, "job.py", "noisy", "fork", "0", cwd=job.parent)

        written = json.loads(report.read_text())
        assert (["job.py", "noisy", "fork", "0"], 0, 1) == (
            written["command"],
            written["exit_status"],
            written["findings"],
        )
        (dataset,) = written["datasets"]
        assert ("Noisy", "job.py:32", ["workers", "epochs"]) == (
            dataset["name"],
            dataset["built_at"],
            dataset["can_see"],
        )
        assert ["rng"] == [finding["source"] for finding in dataset["findings"]]
        assert {"seedwatch", "python", "torch", "numpy", "platform"} == set(written["versions"])


class TestStrict:
    @pytest.mark.parametrize("method", START_METHODS)
    def test_strict_stops_the_job_from_its_loop(self, job: Path, method: str) -> None:
        """--strict: DuplicateStreamError from the job's loop, status 1, and still a summary."""
        result = seedwatch_run("--strict", "job.py", "noisy", method, "0", cwd=job.parent)

        assert 1 == result.returncode
        assert "job done" not in result.stdout
        assert f'  File "{job}", line 34, in main' in result.stderr
        assert "seedwatch.DuplicateStreamError: " in result.stderr
        assert "seedwatch: 1 dataset watched; 1 finding in 1 of them" in result.stderr

    def test_strict_applies_to_the_jobs_own_monitors(self, tmp_path: Path, job: Path) -> None:
        """A dataset the job monitors itself, with strict=None, is strict under --strict too."""
        source = JOB.replace(
            "dataset = Noisy() if", "import seedwatch\n    dataset = seedwatch.monitor(Noisy()) if"
        )
        (tmp_path / "own.py").write_text(source)

        result = seedwatch_run("--strict", "own.py", "noisy", "fork", "0", cwd=tmp_path)

        assert 1 == result.returncode
        assert "DuplicateStreamError" in result.stderr


class TestInThisProcess:
    """The same runner called as a function, as the command line calls it (fork workers)."""

    @pytest.fixture(autouse=True)
    def _in_the_jobs_directory(self, job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(job.parent)

    def test_the_summary_and_the_jobs_status(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The job's status comes back, its stdout is its own, the summary is on stderr."""
        status = main(["run", "job.py", "noisy", "fork", "4"])

        out, err = capsys.readouterr()
        assert 4 == status
        assert "job done" in out
        assert "seedwatch" not in out
        assert "Noisy (job.py:32): 1 finding" in err

    def test_arguments_and_path_are_given_back(self) -> None:
        """sys.argv and sys.path are the runner's again once the job ends."""
        argv, path = sys.argv[:], sys.path[:]

        main(["run", "job.py", "calm", "fork", "0"])

        assert (argv, path) == (sys.argv, sys.path)

    def test_strict_and_a_report(self, job: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--strict fails the job with status 1 and still writes the report."""
        status = main(["run", "--strict", "--report", "r.json", "job.py", "noisy", "fork", "0"])

        _out, err = capsys.readouterr()
        written = json.loads((job.parent / "r.json").read_text())
        assert (1, 1, True) == (status, written["exit_status"], written["strict"])
        assert "seedwatch.DuplicateStreamError: " in err

    @pytest.mark.parametrize(
        ("source", "status", "printed"),
        [
            ("import sys\nsys.exit('bad input')\n", 1, "bad input\n"),
            ("import sys\nsys.exit(None)\n", 0, ""),
            ("raise SystemExit(7)\n", 7, ""),
        ],
    )
    def test_sys_exit_as_python_treats_it(
        self,
        job: Path,
        capsys: pytest.CaptureFixture[str],
        source: str,
        status: int,
        printed: str,
    ) -> None:
        """A message exits 1 and is printed on stderr; None is 0; a number is itself."""
        (job.parent / "exits.py").write_text(source)

        assert status == main(["run", "exits.py"])
        assert capsys.readouterr().err.startswith(printed)

    def test_a_module_that_cannot_be_found(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A parent package that does not exist is a usage error, not a traceback."""
        assert 2 == main(["run", "-m", "no_such_package.train"])
        assert (
            "seedwatch run: error: no module named 'no_such_package'\n" == capsys.readouterr().err
        )


class TestWhatPythonDoes:
    """Cases where a job relies on python's own behaviour; seedwatch run must not change it."""

    def test_file_is_absolute_so_a_job_may_change_directory(self, tmp_path: Path) -> None:
        """__main__.__file__ is absolute, as python makes it, so a chdir does not lose it."""
        (tmp_path / "config.txt").write_text("lr=0.1")
        (tmp_path / "job.py").write_text(
            "import os\nfrom pathlib import Path\nos.chdir('/')\n"
            "print((Path(__file__).parent / 'config.txt').read_text())\n"
        )

        result = seedwatch_run("job.py", cwd=tmp_path)

        assert (0, "lr=0.1") == (result.returncode, result.stdout.strip())

    def test_a_relative_report_is_written_where_the_job_started(self, tmp_path: Path) -> None:
        """--report names a path from the directory seedwatch run was started in."""
        (tmp_path / "run1").mkdir()
        (tmp_path / "job.py").write_text("import os\nos.chdir('run1')\n")

        seedwatch_run("--report", "r.json", "job.py", cwd=tmp_path)

        assert (tmp_path / "r.json").is_file()
        assert not (tmp_path / "run1" / "r.json").exists()

    def test_threads_the_job_left_running_are_waited_for(self, job: Path) -> None:
        """Like python at exit, the summary waits for the job's non-daemon threads."""
        (job.parent / "threaded.py").write_text(
            "import sys, threading\nimport job\n"
            "sys.argv = ['job.py', 'noisy', 'fork', '0']\n"
            "threading.Thread(target=job.main).start()\n"
        )

        result = seedwatch_run("threaded.py", cwd=job.parent)

        assert "job done" in result.stdout
        assert "seedwatch: 1 dataset watched; 1 finding in 1 of them" in result.stderr

    def test_a_thread_pool_left_open_does_not_hang_the_end(self, tmp_path: Path) -> None:
        """A module-level ThreadPoolExecutor never shut down: python exits, and so does this."""
        (tmp_path / "pool.py").write_text(
            "from concurrent.futures import ThreadPoolExecutor\nEXECUTOR = ThreadPoolExecutor(1)\n"
        )
        (tmp_path / "saves.py").write_text(
            "import pool\npool.EXECUTOR.submit(print, 'saved').result()\nprint('done')\n"
        )

        result = seedwatch_run("saves.py", cwd=tmp_path)

        assert (0, "saved\ndone") == (result.returncode, result.stdout.strip())

    def test_the_jobs_excepthook_shows_its_error(self, tmp_path: Path) -> None:
        """An error escaping the job goes through the job's own sys.excepthook."""
        (tmp_path / "hooked.py").write_text(
            "import sys\n"
            "sys.excepthook = lambda kind, error, tb: print('REPORTED', kind.__name__, error)\n"
            "raise RuntimeError('out of memory')\n"
        )

        result = seedwatch_run("hooked.py", cwd=tmp_path)

        assert (1, "REPORTED RuntimeError out of memory") == (
            result.returncode,
            result.stdout.strip(),
        )

    def test_ctrl_c_still_summarises(self, job: Path) -> None:
        """An interrupted job exits 130, as a shell reports it, after its traceback and summary."""
        source = JOB.replace('print("job done")', "raise KeyboardInterrupt")
        (job.parent / "interrupted.py").write_text(source)

        result = seedwatch_run("interrupted.py", "noisy", "fork", "0", cwd=job.parent)

        assert 130 == result.returncode
        assert "KeyboardInterrupt" in result.stderr
        assert "seedwatch: 1 dataset watched; 1 finding in 1 of them" in result.stderr

    def test_a_directory_with_a_main_module(self, tmp_path: Path) -> None:
        """A directory (or zip) with __main__.py runs as `python DIR` runs it."""
        (tmp_path / "app").mkdir()
        (tmp_path / "app" / "__main__.py").write_text("import sys\nprint(sys.argv[1:])\n")

        result = seedwatch_run("--", "app", "x", cwd=tmp_path)

        assert (0, "['x']") == (result.returncode, result.stdout.strip())

    def test_a_package_that_fails_to_import_is_the_jobs_error(self, tmp_path: Path) -> None:
        """-m on a package whose __init__ raises: python's traceback and status 1, not usage."""
        (tmp_path / "broken").mkdir()
        (tmp_path / "broken" / "__init__.py").write_text("import not_installed_dependency\n")
        (tmp_path / "broken" / "train.py").write_text("")

        result = seedwatch_run("-m", "broken.train", cwd=tmp_path)

        assert 1 == result.returncode
        assert "ModuleNotFoundError: No module named 'not_installed_dependency'" in result.stderr

    def test_a_bad_option_value_is_a_usage_error(self, job: Path) -> None:
        """An empty --expect-shared name is refused with status 2 and one line."""
        result = seedwatch_run("--expect-shared", "", "job.py", cwd=job.parent)

        assert 2 == result.returncode
        assert "Traceback" not in result.stderr


class TestStrictWithoutARaise:
    def test_a_loop_that_stops_early_still_fails(self, tmp_path: Path) -> None:
        """A strict run whose loop breaks before the duplicate's epoch ends exits 1 all the same."""
        (tmp_path / "early.py").write_text(
            "import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n"
            "loader = DataLoader(TensorDataset(torch.arange(8.0)), batch_size=2)\n"
            "for epoch in range(2):\n"
            "    torch.manual_seed(0)\n"
            "    for step, batch in enumerate(loader):\n"
            "        torch.rand(1)\n"
            "        if step == 1:\n"
            "            break\n"
        )

        result = seedwatch_run("--strict", "--report", "r.json", "early.py", cwd=tmp_path)

        report = json.loads((tmp_path / "r.json").read_text())
        assert (1, 1, 0) == (result.returncode, report["exit_status"], report["job_exit_status"])
        assert "--strict: 1 duplicate found but not raised in the job" in result.stderr

    def test_the_jobs_own_strict_false_is_kept(self, tmp_path: Path) -> None:
        """--strict leaves a monitor the job made with strict=False in warn mode: exit 0."""
        source = JOB.replace(
            "dataset = Noisy() if",
            "import seedwatch\n    dataset = seedwatch.monitor(Noisy(), strict=False) if",
        )
        (tmp_path / "lenient.py").write_text(source)

        result = seedwatch_run("--strict", "lenient.py", "noisy", "fork", "0", cwd=tmp_path)

        assert 0 == result.returncode
        assert "job done" in result.stdout
