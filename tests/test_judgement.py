"""Judgement with real workers: used streams only, late use, overlaps, and what was observed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from judgement_pipelines import (
    RareAugment,
    SharedCursor,
    ShuffledEachEpoch,
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


class TestPersistentWorkers:
    def test_an_iterable_rebuilding_its_generator_repeats_every_epoch(self, method: str) -> None:
        """A persistent worker iterating again is a new epoch: the rebuilt shuffle repeats."""
        monitored = monitor(ShuffledEachEpoch())

        load(monitored, method=method, epochs=3, workers=1, batch_size=4, persistent_workers=True)

        [finding] = findings(monitored)
        assert ("epochs",) == finding.kinds
        assert {0, 1, 2} == {member.generation for member in finding.members}
        assert 1 == len({member.pid for member in finding.members})  # one worker, three epochs

    def test_streams_that_continue_are_clean(self) -> None:
        """Persistent workers' globals and held generators continue: nothing repeats."""
        monitored = monitor(SharedCursor())

        load(monitored, epochs=3, workers=2, persistent_workers=True)

        found = findings(monitored)
        assert ([("rng", ("workers",))], 2) == (
            [(f.source, f.kinds) for f in found],
            found.observed.processes,
        )


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


def run_job(tmp_path: Path, method: str, seed: int) -> list[dict[str, Any]]:
    """Run the job in a fresh interpreter, as a restart would; return its findings."""
    code = (
        "import json, sys\n"
        "from judgement_pipelines import train_once\n"
        f"print(json.dumps(train_once({str(tmp_path / 'history.jsonl')!r}, {method!r}, {seed})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=Path(__file__).parent,
    )
    found: list[dict[str, Any]] = json.loads(result.stdout.splitlines()[-1])
    return found


class TestHistory:
    @pytest.mark.parametrize("method", ["fork", "spawn"])
    def test_a_restarted_job_replaying_the_first_run_is_a_resume(
        self, tmp_path: Path, method: str
    ) -> None:
        """The same seed after a restart: every stream of the first run again, from its history."""
        first = run_job(tmp_path, method, seed=0)
        second = run_job(tmp_path, method, seed=0)

        assert [] == first
        [finding] = second
        assert ["resume"] == finding["kinds"]
        assert ["torch"] == finding["sources"]  # the one global it draws from
        runs = {member["run"] for member in finding["members"]}
        assert "" in runs  # this run...
        assert 2 == len(runs)  # ...and the one before
        assert "previous run" in finding["hint"]

    def test_a_restart_seeded_from_where_it_resumes_is_clean(self, tmp_path: Path) -> None:
        """The hint applied: a restart seeds differently (from its step), nothing replays."""
        run_job(tmp_path, "fork", seed=0)

        assert [] == run_job(tmp_path, "fork", seed=1000)

    def test_a_damaged_history_is_skipped_line_by_line(self, tmp_path: Path) -> None:
        """Garbage, truncated and hostile lines cost nothing; the good ones still count."""
        run_job(tmp_path, "fork", seed=0)
        history = tmp_path / "history.jsonl"
        good = history.read_text()
        history.write_text(
            "not json\n" + "[" * 100_000 + "\n" + '{"v": 1, "run": 5}\n' + good + '{"v": 1, "ru'
        )

        [finding] = run_job(tmp_path, "fork", seed=0)
        assert ["resume"] == finding["kinds"]
