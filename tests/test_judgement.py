"""Judgement with real workers: used streams only, late use, overlaps, and what was observed."""

from __future__ import annotations

import pytest

from judgement_pipelines import (
    RareAugment,
    SharedCursor,
    ShuffledOnce,
    advance_by_worker_id,
    reseed_per_worker,
)
from pipelines import START_METHODS, load
from seedwatch import findings, monitor

pytestmark = pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning")


@pytest.fixture(name="method", params=START_METHODS)
def _method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestUsedStreams:
    def test_a_generator_used_only_in_init_is_latent(self, method: str) -> None:
        """Copied into every worker but never drawn there: no finding, listed as latent."""
        monitored = monitor(ShuffledOnce(), strict=True)  # strict: raises on used ones only

        load(monitored, method=method, epochs=2, batch_size=4)

        found = findings(monitored)
        assert [] == found
        assert [("rng", ("workers", "epochs"))] == [(f.source, f.kinds) for f in found.latent]

    def test_a_generator_drawn_from_after_the_first_batch_is_found(self, method: str) -> None:
        """Unmoved at each worker's first batch, drawn later: the exiting worker's note counts."""
        monitored = monitor(RareAugment())

        load(monitored, method=method, epochs=1, batch_size=2)

        [finding] = findings(monitored)
        assert ("rng", ("workers",), True) == (finding.source, finding.kinds, finding.used)


class TestOverlap:
    def test_streams_shifted_by_the_worker_id_overlap(self, method: str) -> None:
        """Worker k draws worker 0's stream k draws ahead: an overlap, with its offset."""
        monitored = monitor(SharedCursor())

        load(monitored, method=method, epochs=1, workers=3, worker_init_fn=advance_by_worker_id)

        [finding] = findings(monitored)
        assert (("overlap",), 1) == (finding.kinds, finding.offset)
        assert [0, 1, 2] == [member.worker for member in finding.members]
        assert "advanced" in finding.hint

    def test_the_hint_applied_is_clean(self) -> None:
        """A generator per worker from its seed neither repeats nor overlaps."""
        monitored = monitor(SharedCursor())

        load(monitored, epochs=2, workers=3, worker_init_fn=reseed_per_worker)

        assert [] == findings(monitored)


class TestObserved:
    def test_findings_say_what_was_observed(self) -> None:
        """Two epochs of two workers: four processes, two generations, two workers each."""
        monitored = monitor(SharedCursor())

        load(monitored, epochs=2, workers=2, worker_init_fn=reseed_per_worker)

        observed = findings(monitored).observed
        assert (4, 2, 2, ("workers", "epochs")) == (
            observed.processes,
            observed.generations,
            observed.most_workers,
            observed.can_see(),
        )
