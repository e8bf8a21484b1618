"""
Real DataLoaders with real worker processes.

The start method is the subject of ``TestEveryStartMethod``: there every case runs
under fork, spawn and forkserver, several cases sharing one loader so that each
start method pays for few worker processes. The other tests are about what
seedwatch reports, not how workers start, and run under fork only.
"""

from __future__ import annotations

import random
import sys
import threading
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset

from pipelines import (
    START_METHODS,
    BatchedDataset,
    CleanStreamDataset,
    EveryGenerator,
    FailingDataset,
    GlobalsDataset,
    HoldsGenerator,
    HoldsGeneratorDrawsNumpy,
    ShardOrderDataset,
    StreamDataset,
    StreamDrawsNumpy,
    SuicidalDataset,
    TransformedDataset,
    article_seed_and_fix,
    constant_seed,
    load,
    worker_id_seed,
)
from seedwatch import DuplicateStreamError, DuplicateStreamWarning, Finding, findings, monitor

pytestmark = pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning")


def summary(found: list[Finding]) -> list[tuple[str, str]]:
    """Each finding as its first source and its kinds: ``("rng", "workers+epochs")``."""
    return [(finding.source, "+".join(finding.kinds)) for finding in found]


def seeded_load(dataset: Any, method: str = "fork", **options: Any) -> list[list[list[int]]]:
    """Load two epochs with every global generator seeded alike first."""
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    return load(dataset, method=method, epochs=2, **options)


def raw_and_monitored(
    dataset_factory: Any, method: str = "fork", **options: Any
) -> tuple[Any, Any]:
    """Batches of two seeded runs, of the raw dataset and of a monitored one."""
    raw = seeded_load(dataset_factory(), method, **options)
    return raw, seeded_load(monitor(dataset_factory()), method, **options)


#: Every generator EveryGenerator holds, by path, shallowest first; the globals and
#: its declared shard order are absent. All repeat across its two workers and two
#: epochs, for one reason (built once, in __init__): one finding.
EVERY_GENERATOR_SOURCES = (
    "bit_generator",
    "numpy_generator",
    "python_random",
    "random_state",
    "torch_generator",
    "augs['noise']",
    "transform.state",
    "transforms[1].g",
)


class EveryGeneratorRun:
    """EveryGenerator through two epochs and two workers, raw and monitored, under one method."""

    def __init__(self, method: str) -> None:
        self.raw = seeded_load(EveryGenerator(), method)
        self.dataset = monitor(EveryGenerator(), strict=False, expect_shared=["shard_order"])
        self.batches = seeded_load(self.dataset, method)
        self.findings = findings(self.dataset)


@pytest.fixture(name="every_generator", scope="module", params=START_METHODS)
def _every_generator(request: pytest.FixtureRequest) -> EveryGeneratorRun:
    return EveryGeneratorRun(str(request.param))


@pytest.fixture(name="method", params=START_METHODS)
def _method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestEveryStartMethod:
    def test_every_generator_kind_and_path_is_caught(
        self, every_generator: EveryGeneratorRun
    ) -> None:
        """Every kind and nested path repeats in all four workers; globals and shared ones don't."""
        [finding] = every_generator.findings

        assert (EVERY_GENERATOR_SOURCES, ("workers", "epochs")) == (finding.sources, finding.kinds)
        assert 4 == len({m.pid for m in finding.members})

    def test_batches_are_bit_identical(self, every_generator: EveryGeneratorRun) -> None:
        """The monitored dataset yields exactly the raw dataset's batches, every generator used."""
        assert 2 * 8 == sum(len(batch) for epoch in every_generator.raw for batch in epoch)
        assert every_generator.raw == every_generator.batches

    def test_getitems_datasets_report_at_the_first_batch(self, method: str) -> None:
        """A dataset with __getitems__ is fingerprinted though __getitem__ never runs."""
        monitored = monitor(BatchedDataset())

        batches = load(monitored, method=method, epochs=1, batch_size=4)

        assert [("rng", "workers")] == summary(findings(monitored))
        assert 16 == sum(len(batch) for epoch in batches for batch in epoch)

    def test_iterable_datasets_and_a_constant_worker_seed_repeat(self, method: str) -> None:
        """An IterableDataset's generator and np.random.seed(42) in worker_init_fn repeat."""
        monitored = monitor(StreamDrawsNumpy())

        load(monitored, method=method, worker_init_fn=constant_seed)

        assert [("numpy", "workers+epochs"), ("rng", "workers+epochs")] == summary(
            findings(monitored)
        )

    def test_the_articles_seed_repeats_epochs_and_the_fix_is_clean(self, method: str) -> None:
        """The article's get_state()[1][0] seed repeats epochs; a per-worker rng doesn't."""
        monitored = monitor(HoldsGeneratorDrawsNumpy())

        load(monitored, method=method, worker_init_fn=article_seed_and_fix)

        [finding] = findings(monitored)
        assert ("numpy", ("epochs",), 4) == (finding.source, finding.kinds, len(finding.members))

    def test_strict_mode_raises_from_the_loop(self, method: str) -> None:
        """Strict verdicts reach the workers, whichever way they start."""
        monitored = monitor(StreamDataset(), strict=True)

        with pytest.raises(DuplicateStreamError, match="fix:"):
            load(monitored, method=method, epochs=1)

    def test_strict_mode_is_silent_on_a_clean_pipeline(self, method: str) -> None:
        """Generators built in the worker, and the globals, never raise nor report."""
        monitored = monitor(CleanStreamDataset(), strict=True)

        load(monitored, method=method, epochs=2)

        assert [] == findings(monitored)

    def test_user_exceptions_keep_their_type_and_message(self, method: str) -> None:
        """An exception in the user's dataset reaches the loop as the user raised it."""
        with pytest.raises(KeyError, match="missing sample 5"):
            load(monitor(FailingDataset()), method=method, epochs=1)

    def test_one_dataset_under_alternating_start_methods(self) -> None:
        """The same monitored dataset serves fork, spawn, forkserver and fork again."""
        monitored = monitor(HoldsGenerator())

        for method in ("fork", "spawn", "forkserver", "fork"):
            load(monitored, method=method, epochs=1)

        [finding] = findings(monitored)
        assert ("workers", "epochs") == finding.kinds
        assert 8 == len(finding.members)
        assert {0, 1, 2, 3} == {member.generation for member in finding.members}


class TestFindings:
    def test_members_name_generation_worker_and_pid(self) -> None:
        """Members say which generation and worker drew the stream, in which process."""
        monitored = monitor(HoldsGenerator())

        load(monitored, epochs=2, workers=3, batch_size=1)

        members = findings(monitored)[0].members
        assert [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)] == [
            (m.generation, m.worker) for m in members
        ]
        assert 6 == len({m.pid for m in members})

    def test_wrapped_datasets_are_walked(self) -> None:
        """Generators inside ConcatDataset and Subset are found."""
        inner: ConcatDataset[Any] = ConcatDataset(
            [HoldsGenerator(size=8), Subset(HoldsGenerator("random_state"), [1, 2, 3, 4])]
        )
        monitored = monitor(inner)

        load(monitored, epochs=1, batch_size=3)

        assert [
            ("datasets[0].rng", "workers"),
            ("datasets[1].dataset.rng", "workers"),
        ] == summary(findings(monitored))

    def test_persistent_workers_are_one_generation(self) -> None:
        """With persistent workers the streams continue: workers repeat, epochs do not."""
        monitored = monitor(HoldsGenerator())

        load(monitored, epochs=3, persistent_workers=True)

        [finding] = findings(monitored)
        assert ("workers", 2) == (finding.kind, len(finding.members))

    def test_worker_id_seed_repeats_epochs(self) -> None:
        """np.random.seed(worker_id): workers differ, epochs repeat."""
        monitored = monitor(GlobalsDataset())

        load(monitored, epochs=3, worker_init_fn=worker_id_seed)

        [finding] = findings(monitored)
        assert ("numpy", ("epochs",), 6) == (finding.source, finding.kinds, len(finding.members))
        assert "worker_id" in finding.hint

    def test_manual_seed_every_epoch_repeats_every_stream(self) -> None:
        """torch.manual_seed before each epoch replays numpy, random and torch per worker."""
        monitored = monitor(GlobalsDataset())

        load(monitored, epochs=2, reseed_every_epoch=0)

        [finding] = findings(monitored)
        assert (("numpy", "random", "torch"), ("epochs",)) == (finding.sources, finding.kinds)
        assert [(0, 0), (0, 1), (1, 0), (1, 1)] == [
            (m.generation, m.worker) for m in finding.members
        ]
        assert 6 == len(finding.fingerprints)  # three globals, each with a stream per worker
        assert "before each epoch" in finding.hint

    def test_no_workers_is_clean(self) -> None:
        """num_workers=0 over several epochs reports the main process once, cleanly."""
        monitored = monitor(TransformedDataset())

        load(monitored, workers=0, epochs=3)

        assert [] == findings(monitored)

    def test_undeclared_shard_order_is_reported(self) -> None:
        """Without expect_shared, the same shard order is a finding."""
        monitored = monitor(ShardOrderDataset())

        load(monitored, epochs=1)

        assert [("shard_order", "workers")] == summary(findings(monitored))


class TestTransparency:
    def test_getitems_and_iterable_batches_are_bit_identical(self) -> None:
        """The batched and iterable paths are transparent too."""
        for factory in (BatchedDataset, StreamDataset):
            raw, monitored = raw_and_monitored(factory, batch_size=4)
            assert raw == monitored

    @pytest.mark.parametrize("batch_size", [1, 16, 32])
    def test_every_batch_size_is_bit_identical(self, batch_size: int) -> None:
        """Small batches fetch per item, large ones per batch: both are transparent."""
        raw, monitored = raw_and_monitored(
            lambda: TransformedDataset(size=64), batch_size=batch_size
        )

        assert raw == monitored

    def test_no_workers_is_bit_identical(self) -> None:
        """Main-process fetching is transparent."""
        raw, monitored = raw_and_monitored(TransformedDataset, workers=0)

        assert raw == monitored


class TestStrictMode:
    def test_the_loop_raises_every_time(self) -> None:
        """Twenty runs, twenty DuplicateStreamErrors from the loader loop, in the first epoch."""
        outcomes = []
        for _ in range(20):
            monitored = monitor(HoldsGenerator(), strict=True)
            epochs_done = 0
            try:
                for _epoch in range(2):
                    load(monitored, epochs=1, batch_size=1)
                    epochs_done += 1
            except DuplicateStreamError as error:
                outcomes.append((epochs_done, "'rng' repeats across workers" in str(error)))
        assert [(0, True)] * 20 == outcomes

    def test_an_epoch_repeat_raises_in_that_epoch(self) -> None:
        """A stream that repeats in epoch two raises before epoch two ends."""
        monitored = monitor(GlobalsDataset(), strict=True)
        finished = []
        with pytest.raises(DuplicateStreamError, match="repeats across epochs"):
            for epoch in range(3):
                load(monitored, epochs=1, worker_init_fn=worker_id_seed)
                finished.append(epoch)

        assert [0] == finished


class TestWarnMode:
    def test_warns_once_per_finding(self) -> None:
        """A problem is one warning when first found, not one per member, epoch or kind."""
        monitored = monitor(HoldsGenerator())

        with pytest.warns(DuplicateStreamWarning) as warned:
            load(monitored, epochs=3, workers=2)
            findings(monitored)

        ours = [w for w in warned if issubclass(w.category, DuplicateStreamWarning)]
        assert ["'rng' repeats across workers"] == [str(w.message)[:28] for w in ours]

    def test_the_warning_points_at_the_loop_that_got_the_batch(self) -> None:
        """A worker's duplicate, judged on seedwatch's thread, is blamed on the user's loop."""
        loader = DataLoader(monitor(HoldsGenerator()), batch_size=2, num_workers=2)

        with pytest.warns(DuplicateStreamWarning) as warned:
            loop = sys._getframe().f_lineno + 1  # noqa: SLF001 - the line below
            for _batch in loader:
                pass

        [warning] = [w for w in warned if issubclass(w.category, DuplicateStreamWarning)]
        assert (__file__, loop) == (warning.filename, warning.lineno)

    def test_a_loop_in_another_thread_is_pointed_at(self) -> None:
        """A loader iterated by a background thread: the warning names that thread's loop."""
        loader = DataLoader(monitor(HoldsGenerator()), batch_size=2, num_workers=2)
        lines: list[int] = []

        def train() -> None:
            lines.append(sys._getframe().f_lineno + 1)  # noqa: SLF001 - the line below
            for _batch in loader:
                pass

        with pytest.warns(DuplicateStreamWarning) as warned:
            thread = threading.Thread(target=train)
            thread.start()
            thread.join()

        [warning] = [w for w in warned if issubclass(w.category, DuplicateStreamWarning)]
        assert (__file__, lines[0]) == (warning.filename, warning.lineno)

    def test_warnings_as_errors_make_the_loop_raise(self) -> None:
        """filterwarnings("error") for the warning (pytest -W error::...) means strict."""
        monitored = monitor(HoldsGenerator())

        with warnings.catch_warnings():
            warnings.filterwarnings("error", category=DuplicateStreamWarning)
            with pytest.raises(DuplicateStreamError, match="'rng' repeats across workers"):
                load(monitored, epochs=1)


class TestReliability:
    def test_a_killed_worker_gives_the_dataloaders_error(self) -> None:
        """A worker killed mid-epoch: the DataLoader's own error, and no hang after it."""
        monitored = monitor(SuicidalDataset(), strict=True)

        with pytest.raises(RuntimeError, match="DataLoader worker"):
            load(monitored, epochs=1, batch_size=1, timeout=60)

        assert [] == findings(monitored)
        assert list(range(8)) == load(monitored, epochs=1, workers=0, batch_size=8)[0][0]
