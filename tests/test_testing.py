"""The helpers users' tests call: seedwatch.testing and the fixture's assert_clean, as written."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines import GlobalsDataset, HoldsGenerator, library_rng, load
from seedwatch import DuplicateStreamError, monitor, register_source
from seedwatch._sources import registered_sources
from seedwatch.testing import assert_no_findings, isolated_sources, strict_mode


class TestAssertNoFindings:
    @pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning")
    def test_fails_with_the_report(self) -> None:
        """A pipeline with a duplicate fails with the count, the source and its fix."""
        monitored = monitor(HoldsGenerator())
        load(monitored, epochs=1)

        with pytest.raises(
            AssertionError, match=r"found 1 problem of duplicate random streams"
        ) as info:
            assert_no_findings(monitored)

        assert "DUPLICATE 'rng' across workers" in str(info.value)
        assert "fix: " in str(info.value)

    def test_passes_a_clean_pipeline(self) -> None:
        """Globals reseeded per worker are clean, so nothing is raised."""
        monitored = monitor(GlobalsDataset())
        load(monitored, epochs=1)

        assert_no_findings(monitored)


class TestStrictMode:
    def test_monitors_without_a_choice_become_strict_inside(self) -> None:
        """strict=None follows the block; the default comes back after it."""
        with strict_mode():
            inside = monitor(HoldsGenerator())
            load(inside, epochs=1, workers=1)
            with pytest.raises(DuplicateStreamError):
                inside[0]

        after = monitor(HoldsGenerator())
        load(after, epochs=1, workers=1)
        with pytest.warns(UserWarning, match="repeats across epochs"):
            after[0]


class TestIsolatedSources:
    def test_registrations_inside_are_undone_and_earlier_ones_restored(self) -> None:
        """What the block registers goes; what it unregistered comes back."""
        with isolated_sources():
            register_source("kept", generator=library_rng)
            with isolated_sources():
                register_source("inner", generator=library_rng)
                register_source("kept", generator=lambda: None)
                assert {"kept", "inner"} == set(registered_sources())

            assert ["kept"] == list(registered_sources())
            assert registered_sources()["kept"].generator is library_rng

        assert "kept" not in registered_sources()


TESTS = Path(__file__).parent

#: The README's usage, "Outside pytest", in a script that imports nothing but ``seedwatch``
#: from the package: ``seedwatch.testing`` must come from ``import seedwatch`` alone.
README_USAGE = textwrap.dedent(
    """
    import seedwatch
    from pipelines import GlobalsDataset, HoldsGenerator, load

    with seedwatch.testing.strict_mode():
        clean = seedwatch.monitor(GlobalsDataset())
        load(clean, epochs=2)
    seedwatch.testing.assert_no_findings(clean)

    buggy = seedwatch.monitor(HoldsGenerator(), strict=False)
    load(buggy, epochs=1)
    try:
        seedwatch.testing.assert_no_findings(buggy)
    except AssertionError as error:
        print(str(error).splitlines()[0])
    """
)


class TestImportSeedwatch:
    def test_the_readme_usage_works_after_import_seedwatch_alone(self) -> None:
        """A fresh interpreter reaches seedwatch.testing through `import seedwatch` only."""
        result = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", README_USAGE],
            cwd=TESTS,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

        assert 0 == result.returncode, result.stderr[-3000:]
        assert result.stdout.startswith("seedwatch found 1 problem of duplicate random streams")


#: A pipeline with a generator copied into every worker, for pytest runs under pytester.
BUGGY_PIPELINE = textwrap.dedent(
    """
    import numpy as np
    import pytest
    import torch
    from torch.utils.data import DataLoader, Dataset


    class Buggy(Dataset):
        def __init__(self):
            self.rng = np.random.default_rng(0)

        def __len__(self):
            return 8

        def __getitem__(self, index):
            return torch.tensor([index, int(self.rng.integers(1 << 30))])


    @pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning")
    def test_buggy(seedwatch):
        dataset = seedwatch.monitor(Buggy(), strict=False)  # so that assert_clean is what fails
        loader = DataLoader(dataset, batch_size=2, num_workers=2, multiprocessing_context="fork")
        for _batch in loader:
            pass
        seedwatch.assert_clean(dataset)
    """
)


class TestAssertClean:
    def test_prints_the_report_once(self, pytester: pytest.Pytester) -> None:
        """The fixture's failure shows the report once, not again as a chained exception."""
        pytester.makepyfile(test_buggy=BUGGY_PIPELINE)

        # -rN: pytest's short summary repeats the whole message on CI (CI=true), which is not ours.
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rN")

        result.assert_outcomes(failed=1)
        output = result.stdout.str()
        assert 1 == output.count("DUPLICATE 'rng' across workers"), output
        assert 1 == output.count("info.dataset.rng ="), output
        assert "During handling" not in output
