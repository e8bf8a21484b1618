"""The helpers users' tests call: assert_no_findings, strict_mode, isolated_sources."""

from __future__ import annotations

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
