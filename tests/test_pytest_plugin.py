"""
The pytest plugin, end to end: real pytest runs, real DataLoaders.

One run is a fresh pytest process, as a user starts it, with spawned workers; the
others run pytest in this process (pytester restores modules and paths after each).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Imported once here: pytester's in-process runs drop the modules a run imported, and a second
# copy of seedwatch's modules would not share the first one's collectors and fork handlers.
import seedwatch._api
import seedwatch._watch  # noqa: F401

PIPELINES = textwrap.dedent(
    """
    import traceback

    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Dataset

    import seedwatch


    class Buggy(Dataset):
        def __init__(self):
            self.rng = np.random.default_rng(0)

        def __len__(self):
            return 8

        def __getitem__(self, index):
            return torch.tensor([index, int(self.rng.integers(1 << 30))])


    class Clean(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, index):
            return torch.tensor([index, int(np.random.randint(1 << 30))])


    def run(dataset, method):
        loader = DataLoader(dataset, batch_size=2, num_workers=2, multiprocessing_context=method)
        try:
            for _ in range(2):
                for _batch in loader:
                    pass
        except Exception as exc:
            # Break the cycle through the re-raising frame, so the workers stop now
            # rather than 5 s each when the garbage collector finds the iterator.
            traceback.clear_frames(exc.__traceback__)
            raise
    """
)

TESTS = textwrap.dedent(
    """
    import pytest
    import seedwatch
    from pipelines_under_test import Buggy, Clean, run

    METHOD = {method!r}


    def test_buggy_pipeline():
        run(seedwatch.monitor(Buggy()), METHOD)


    def test_clean_pipeline():
        run(seedwatch.monitor(Clean()), METHOD)
    """
)


@pytest.fixture(name="project")
def _project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(pipelines_under_test=PIPELINES)
    return pytester


def test_strict_reaches_spawned_workers_in_a_fresh_pytest(project: pytest.Pytester) -> None:
    """A real pytest process with --seedwatch-strict fails only the buggy test, workers spawned."""
    project.makepyfile(test_loaders=TESTS.format(method="spawn"))

    result = project.runpytest_subprocess("--seedwatch-strict", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*DuplicateStreamError*", "*'rng' repeats across workers*"])
    result.stdout.fnmatch_lines(["*FAILED test_loaders.py::test_buggy_pipeline*"])


class TestModes:
    """In-process pytest runs (fork workers): the plugin's options, ini, marker and fixture."""

    def test_strict_fails_the_buggy_test_only(self, project: pytest.Pytester) -> None:
        """--seedwatch-strict turns a duplicate stream into a failing test."""
        project.makepyfile(test_loaders=TESTS.format(method="fork"))

        result = project.runpytest_inprocess("--seedwatch-strict", "-p", "no:cacheprovider")

        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*DuplicateStreamError*", "*'rng' repeats across workers*"])
        result.stdout.fnmatch_lines(["*FAILED test_loaders.py::test_buggy_pipeline*"])

    def test_without_the_option_tests_pass(self, project: pytest.Pytester) -> None:
        """Without the option, the same tests pass (the finding is only a warning)."""
        project.makepyfile(test_loaders=TESTS.format(method="fork"))

        result = project.runpytest_inprocess("-p", "no:cacheprovider")

        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines(["*DuplicateStreamWarning*"])

    def test_the_ini_option_turns_strict_mode_on(self, project: pytest.Pytester) -> None:
        """seedwatch_strict = true in the ini file works like the flag."""
        project.makeini("[pytest]\nseedwatch_strict = true\n")
        project.makepyfile(test_loaders=TESTS.format(method="fork"))

        result = project.runpytest_inprocess("-p", "no:cacheprovider")

        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*FAILED test_loaders.py::test_buggy_pipeline*"])

    def test_the_header_shows_the_mode(self, pytester: pytest.Pytester) -> None:
        """The report header says whether duplicates fail tests."""
        pytester.makepyfile("def test_nothing(): pass")

        warn = pytester.runpytest_inprocess("-p", "no:cacheprovider")
        strict = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--seedwatch-strict")

        warn.stdout.fnmatch_lines(["seedwatch: warn mode*"])
        strict.stdout.fnmatch_lines(["seedwatch: strict mode*"])

    def test_a_marker_makes_one_test_strict(self, project: pytest.Pytester) -> None:
        """@pytest.mark.seedwatch_strict fails that test and leaves others in warn mode."""
        project.makepyfile(
            test_marked=textwrap.dedent(
                """
                import pytest
                import seedwatch
                from pipelines_under_test import Buggy, run

                @pytest.mark.seedwatch_strict
                def test_marked():
                    run(seedwatch.monitor(Buggy()), "fork")

                def test_unmarked():
                    run(seedwatch.monitor(Buggy()), "fork")
                """
            )
        )

        result = project.runpytest_inprocess("-p", "no:cacheprovider")

        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*FAILED test_marked.py::test_marked*"])

    def test_the_fixture_asserts_a_clean_dataset(self, project: pytest.Pytester) -> None:
        """The seedwatch fixture's assert_clean fails with the finding and its fix."""
        project.makepyfile(
            test_fixture=textwrap.dedent(
                """
                from pipelines_under_test import Buggy, Clean, run

                def test_clean(seedwatch):
                    dataset = seedwatch.monitor(Clean())
                    run(dataset, "fork")
                    seedwatch.assert_clean(dataset)

                def test_buggy_in_warn_mode(seedwatch):
                    dataset = seedwatch.monitor(Buggy(), strict=False)
                    run(dataset, "fork")
                    seedwatch.assert_clean(dataset)
                """
            )
        )

        result = project.runpytest_inprocess("-p", "no:cacheprovider")

        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(
            ["*seedwatch found 1 problem of duplicate random streams*", "*info.dataset.rng =*"]
        )
        assert "During handling" not in result.stdout.str()  # the report prints once


def test_loading_the_plugin_does_not_import_torch() -> None:
    """pytest imports every plugin on every run; this one stays light."""
    code = "import sys, seedwatch.pytest_plugin; print('torch' in sys.modules)"

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert "False" == result.stdout.strip()


UNEDITED_TESTS = textwrap.dedent(
    """
    from torch.utils.data import DataLoader
    from pipelines_under_test import Buggy, Clean


    def epochs(dataset):
        loader = DataLoader(dataset, batch_size=2, num_workers=2, multiprocessing_context="fork")
        for _ in range(2):
            for _batch in loader:
                pass


    def test_buggy_pipeline():
        epochs(Buggy())


    def test_clean_pipeline():
        epochs(Clean())
    """
)


class TestWatchingEveryLoader:
    """--seedwatch-watch: tests that never call seedwatch are checked too."""

    def test_findings_are_summarised_at_the_end(self, project: pytest.Pytester) -> None:
        """The session ends with each dataset the tests' loaders used, and its findings."""
        project.makepyfile(test_loaders=UNEDITED_TESTS)

        result = project.runpytest_inprocess("--seedwatch-watch", "-p", "no:cacheprovider")

        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines(
            [
                "seedwatch: warn mode*, watching every DataLoader",
                "*= seedwatch =*",
                "seedwatch: 2 datasets watched; 1 finding in 1 of them",
                "Buggy (test_loaders.py:*): 1 finding; checked 4 processes*",
                "*rng*workers+epochs*",
                "Clean (test_loaders.py:*): clean; checked 4 processes*",
            ]
        )

    def test_with_strict_mode_the_buggy_test_fails(self, project: pytest.Pytester) -> None:
        """With --seedwatch-strict too, an unedited test's loop raises DuplicateStreamError."""
        project.makeini("[pytest]\nseedwatch_watch = true\n")
        project.makepyfile(test_loaders=UNEDITED_TESTS)

        result = project.runpytest_inprocess("--seedwatch-strict", "-p", "no:cacheprovider")

        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*FAILED test_loaders.py::test_buggy_pipeline*"])

    def test_without_it_nothing_is_watched(self, project: pytest.Pytester) -> None:
        """Without the option the loaders are the user's own: no summary, no warning."""
        project.makepyfile(test_loaders=UNEDITED_TESTS)

        result = project.runpytest_inprocess("-p", "no:cacheprovider")

        result.assert_outcomes(passed=2)
        assert "= seedwatch =" not in result.stdout.str()
        assert "DuplicateStreamWarning" not in result.stdout.str()
