"""Real DataLoaders with real worker processes, under every start method."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from structlog.testing import capture_logs
from torch.utils.data import ConcatDataset, Subset

from pipelines import (
    START_METHODS,
    BatchedDataset,
    CleanStreamDataset,
    FailingDataset,
    GlobalsDataset,
    HoldsGenerator,
    ShardOrderDataset,
    StreamDataset,
    SuicidalDataset,
    TransformedDataset,
    article_seed,
    constant_seed,
    load,
    per_worker_generator,
    worker_id_seed,
)
from seedwatch import DuplicateStreamError, DuplicateStreamWarning, Finding, findings, monitor

pytestmark = pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning")


def summary(found: list[Finding]) -> list[tuple[str, str]]:
    return [(finding.source, finding.kind) for finding in found]


@pytest.fixture(name="method", params=START_METHODS)
def _method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestInstanceGenerators:
    @pytest.mark.parametrize(
        "kind",
        ["numpy_generator", "bit_generator", "random_state", "python_random", "torch_generator"],
    )
    def test_every_kind_is_caught_across_workers_and_epochs(self, kind: str, method: str) -> None:
        """A generator built in __init__ repeats in every worker and every epoch."""
        monitored = monitor(HoldsGenerator(kind))

        load(monitored, method=method)

        assert [("rng", "epochs"), ("rng", "workers")] == summary(findings(monitored))

    def test_members_name_generation_worker_and_pid(self) -> None:
        """Members say which generation and worker drew the stream, in which process."""
        monitored = monitor(HoldsGenerator())

        load(monitored, epochs=2, workers=3, batch_size=1)

        members = findings(monitored)[0].members
        assert [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)] == [
            (m.generation, m.worker) for m in members
        ]
        assert 6 == len({m.pid for m in members})

    def test_nested_generators_are_named_by_path(self, method: str) -> None:
        """Generators in transforms, lists and dicts are caught under their paths."""
        monitored = monitor(TransformedDataset())

        load(monitored, method=method, epochs=1)

        assert [
            ("augs['noise']", "workers"),
            ("transform.state", "workers"),
            ("transforms[1].g", "workers"),
        ] == summary(findings(monitored))

    def test_wrapped_datasets_are_walked(self) -> None:
        """Generators inside ConcatDataset and Subset are found."""
        inner: ConcatDataset[Any] = ConcatDataset(
            [HoldsGenerator(size=8), Subset(HoldsGenerator("random_state"), [1])]
        )
        monitored = monitor(inner)

        load(monitored, epochs=1, batch_size=3)

        assert {"datasets[0].rng", "datasets[1].dataset.rng"} == {
            finding.source for finding in findings(monitored)
        }

    def test_getitems_datasets_report_at_the_first_batch(self, method: str) -> None:
        """A dataset with __getitems__ is fingerprinted though __getitem__ never runs."""
        monitored = monitor(BatchedDataset())

        batches = load(monitored, method=method, batch_size=4)

        assert [("rng", "epochs"), ("rng", "workers")] == summary(findings(monitored))
        assert 2 * 16 == sum(len(batch) for epoch in batches for batch in epoch)

    def test_iterable_datasets_report_when_iterated(self, method: str) -> None:
        """An IterableDataset holding a generator gives every shard the same stream."""
        monitored = monitor(StreamDataset())

        load(monitored, method=method)

        assert [("rng", "epochs"), ("rng", "workers")] == summary(findings(monitored))

    def test_persistent_workers_are_one_generation(self) -> None:
        """With persistent workers the streams continue: workers repeat, epochs do not."""
        monitored = monitor(HoldsGenerator())

        load(monitored, epochs=3, persistent_workers=True)

        [finding] = findings(monitored)
        assert ("workers", 2) == (finding.kind, len(finding.members))


class TestWorkerInitFns:
    def test_constant_seed_repeats_workers_and_epochs(self, method: str) -> None:
        """np.random.seed(42) in worker_init_fn: every worker, every epoch."""
        monitored = monitor(GlobalsDataset())

        load(monitored, method=method, worker_init_fn=constant_seed)

        assert [("numpy", "epochs"), ("numpy", "workers")] == summary(findings(monitored))

    def test_worker_id_seed_repeats_epochs(self) -> None:
        """np.random.seed(worker_id): workers differ, epochs repeat."""
        monitored = monitor(GlobalsDataset())

        load(monitored, epochs=3, worker_init_fn=worker_id_seed)

        found = findings(monitored)
        assert [("numpy", "epochs"), ("numpy", "epochs")] == summary(found)
        assert "worker_id" in found[0].hint

    def test_the_articles_get_state_seed_repeats_epochs(self, method: str) -> None:
        """np.random.seed(np.random.get_state()[1][0] + worker_id) is a constant per worker."""
        monitored = monitor(GlobalsDataset())

        load(monitored, method=method, worker_init_fn=article_seed)

        assert [("numpy", "epochs"), ("numpy", "epochs")] == summary(findings(monitored))

    def test_the_fix_is_clean(self, method: str) -> None:
        """Rebuilding the generator from the worker's seed leaves nothing to report."""
        monitored = monitor(HoldsGenerator())

        load(monitored, method=method, worker_init_fn=per_worker_generator)

        assert [] == findings(monitored)


class TestEpochReseeding:
    def test_manual_seed_every_epoch_repeats_every_stream(self) -> None:
        """torch.manual_seed before each epoch replays numpy, random and torch per worker."""
        monitored = monitor(GlobalsDataset())

        load(monitored, epochs=2, reseed_every_epoch=0)

        found = findings(monitored)
        assert {"numpy", "random", "torch"} == {finding.source for finding in found}
        assert {"epochs"} == {finding.kind for finding in found}
        assert all("before each epoch" in finding.hint for finding in found)


class TestCleanPipelines:
    def test_globals_only_is_clean(self, method: str) -> None:
        """A dataset drawing only from the reseeded globals has no finding."""
        monitored = monitor(GlobalsDataset())

        load(monitored, method=method, epochs=3, workers=3)

        assert [] == findings(monitored)

    def test_generators_built_in_the_worker_are_clean(self, method: str) -> None:
        """An IterableDataset that builds its generator per worker has no finding."""
        monitored = monitor(CleanStreamDataset())

        load(monitored, method=method)

        assert [] == findings(monitored)

    def test_no_workers_is_clean(self) -> None:
        """num_workers=0 over several epochs reports the main process once, cleanly."""
        monitored = monitor(TransformedDataset())

        load(monitored, workers=0, epochs=3)

        assert [] == findings(monitored)

    def test_expect_shared_is_not_reported(self, method: str) -> None:
        """A shard-order generator declared shared is fingerprinted but never reported."""
        monitored = monitor(ShardOrderDataset(), expect_shared=["shard_order"])

        load(monitored, method=method)

        assert [] == findings(monitored)

    def test_undeclared_shard_order_is_reported(self) -> None:
        """Without expect_shared, the same shard order is a finding."""
        monitored = monitor(ShardOrderDataset())

        load(monitored, epochs=1)

        assert [("shard_order", "workers")] == summary(findings(monitored))


def raw_and_monitored(dataset_factory: Any, method: str, **options: Any) -> tuple[Any, Any]:
    runs = []
    wrappers: tuple[Callable[[Any], Any], ...] = (lambda ds: ds, monitor)
    for wrap in wrappers:
        torch.manual_seed(1)
        np.random.seed(1)
        random.seed(1)
        runs.append(load(wrap(dataset_factory()), method=method, epochs=2, **options))
    return runs[0], runs[1]


class TestTransparency:
    @pytest.mark.parametrize(
        "factory",
        [GlobalsDataset, TransformedDataset, lambda: HoldsGenerator("random_state")],
        ids=["globals", "nested", "instance"],
    )
    def test_batches_are_bit_identical(self, factory: Any, method: str) -> None:
        """A monitored dataset yields exactly the raw dataset's batches."""
        raw, monitored = raw_and_monitored(factory, method)

        assert raw == monitored

    def test_getitems_and_iterable_batches_are_bit_identical(self) -> None:
        """The batched and iterable paths are transparent too."""
        for factory in (BatchedDataset, StreamDataset):
            raw, monitored = raw_and_monitored(factory, "fork", batch_size=4)
            assert raw == monitored

    @pytest.mark.parametrize("batch_size", [1, 16, 32])
    def test_every_batch_size_is_bit_identical(self, batch_size: int) -> None:
        """Small batches fetch per item, large ones per batch: both are transparent."""
        raw, monitored = raw_and_monitored(
            lambda: TransformedDataset(size=64), "fork", batch_size=batch_size
        )

        assert raw == monitored

    def test_no_workers_is_bit_identical(self) -> None:
        """Main-process fetching is transparent."""
        raw, monitored = raw_and_monitored(TransformedDataset, "fork", workers=0)

        assert raw == monitored


class TestStrictMode:
    def test_the_loop_raises_every_time(self) -> None:
        """Twenty runs, twenty DuplicateStreamErrors from the loader loop, in the first epoch."""
        outcomes = []
        for _ in range(20):
            monitored = monitor(HoldsGenerator(), strict=True)
            epochs_done = 0
            try:
                load(monitored, epochs=1, batch_size=1)
                epochs_done += 1
            except DuplicateStreamError as error:
                outcomes.append((epochs_done, "'rng' repeats across workers" in str(error)))
        assert [(0, True)] * 20 == outcomes

    def test_the_loop_raises_under_every_start_method(self, method: str) -> None:
        """Strict verdicts reach spawn and forkserver workers too."""
        monitored = monitor(StreamDataset(), strict=True)

        with pytest.raises(DuplicateStreamError, match="fix:"):
            load(monitored, method=method, epochs=1)

    def test_an_epoch_repeat_raises_in_that_epoch(self) -> None:
        """A stream that repeats in epoch two raises before epoch two ends."""
        monitored = monitor(GlobalsDataset(), strict=True)
        finished = []
        with pytest.raises(DuplicateStreamError, match="repeats across epochs"):
            for epoch in range(3):
                load(monitored, epochs=1, worker_init_fn=worker_id_seed)
                finished.append(epoch)

        assert [0] == finished

    def test_clean_pipelines_never_raise(self, method: str) -> None:
        """Strict mode on a clean pipeline is silent."""
        monitored = monitor(GlobalsDataset(), strict=True)

        load(monitored, method=method, epochs=2)

        assert [] == findings(monitored)


class TestWarnMode:
    def test_warns_and_logs_once_per_finding(self) -> None:
        """Each new finding is one warning and one structured event, not one per member."""
        monitored = monitor(HoldsGenerator())

        with capture_logs() as logs, pytest.warns(DuplicateStreamWarning) as warned:
            load(monitored, epochs=3, workers=2)
            findings(monitored)

        events = [log for log in logs if log["event"] == "duplicate_rng_stream"]
        ours = [w for w in warned if issubclass(w.category, DuplicateStreamWarning)]
        assert ["epochs", "workers"] == sorted(event["kind"] for event in events)
        assert 2 == len(ours)


class TestReliability:
    def test_user_exceptions_keep_their_type_and_message(self, method: str) -> None:
        """An exception in the user's dataset reaches the loop as the user raised it."""
        with pytest.raises(KeyError, match="missing sample 5"):
            load(monitor(FailingDataset()), method=method, epochs=1)

    def test_a_killed_worker_gives_the_dataloaders_error(self) -> None:
        """A worker killed mid-epoch: the DataLoader's own error, and no hang after it."""
        monitored = monitor(SuicidalDataset(), strict=True)

        with pytest.raises(RuntimeError, match="DataLoader worker"):
            load(monitored, epochs=1, batch_size=1, timeout=60)

        assert [] == findings(monitored)
        assert list(range(8)) == load(monitored, epochs=1, workers=0, batch_size=8)[0][0]

    def test_one_dataset_under_alternating_start_methods(self) -> None:
        """The same monitored dataset serves fork, spawn, forkserver and fork again."""
        monitored = monitor(HoldsGenerator())

        for method in ("fork", "spawn", "forkserver", "fork"):
            load(monitored, method=method, epochs=1)

        [epochs, workers] = findings(monitored)
        assert 8 == len(epochs.members)
        assert {0, 1, 2, 3} == {member.generation for member in workers.members}
