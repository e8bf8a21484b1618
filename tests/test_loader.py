from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pipelines import GlobalsDataset, HoldsGenerator
from seedwatch import DuplicateStreamError, findings, monitor

pytestmark = pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning")


def batches(loader: object, epochs: int = 2, reseed: int | None = None) -> list[list[object]]:
    seen = []
    for _ in range(epochs):
        if reseed is not None:
            torch.manual_seed(reseed)
        seen.append([batch.tolist() for batch in loader])  # type: ignore[attr-defined]
    return seen


class TestMonitoredLoader:
    def test_behaves_like_the_loader(self) -> None:
        """isinstance, len, attributes and repr are the loader's."""
        raw = DataLoader(GlobalsDataset(size=10), batch_size=4)
        loader = monitor(raw)

        assert (3, 4) == (len(loader), loader.batch_size)
        assert repr(raw) == repr(loader)
        assert isinstance(loader, DataLoader)
        assert isinstance(loader.dataset, GlobalsDataset)

    @pytest.mark.parametrize("workers", [0, 2])
    def test_yields_the_same_batches(self, workers: int) -> None:
        """A monitored loader iterates exactly like the raw one, shuffling included."""
        runs = []
        wrappers: tuple[Callable[[Any], Any], ...] = (lambda loader: loader, monitor)
        for wrap in wrappers:
            torch.manual_seed(3)
            loader = DataLoader(HoldsGenerator(), batch_size=3, shuffle=True, num_workers=workers)
            runs.append(batches(wrap(loader)))

        assert runs[0] == runs[1]

    def test_attributes_set_later_apply_to_iteration(self) -> None:
        """Setting worker_init_fn on the proxy affects the next epoch."""
        loader = monitor(DataLoader(HoldsGenerator(), batch_size=4, num_workers=2))
        batches(loader, epochs=1)
        assert findings(loader)

        fixed = monitor(DataLoader(HoldsGenerator(), batch_size=4, num_workers=2))
        from pipelines import per_worker_generator

        fixed.worker_init_fn = per_worker_generator
        batches(fixed, epochs=2)

        assert [] == findings(fixed)

    def test_reseeding_every_epoch_is_caught_without_workers(self) -> None:
        """torch.manual_seed(0) before each epoch is an 'epochs' finding at num_workers=0."""
        loader = monitor(DataLoader(GlobalsDataset(), batch_size=4))

        batches(loader, epochs=3, reseed=0)

        [finding] = findings(loader)
        assert ("torch", "epochs") == (finding.source, finding.kind)
        assert [0, 1, 2] == [member.generation for member in finding.members]
        assert "before each epoch" in finding.hint

    def test_no_workers_and_no_reseeding_is_clean(self) -> None:
        """Epochs in the main process that move on are not reported."""
        loader = monitor(DataLoader(HoldsGenerator(), batch_size=4))

        batches(loader, epochs=3)

        assert [] == findings(loader)

    def test_strict_raises_from_the_loop_without_workers(self) -> None:
        """In strict mode the second reseeded epoch raises from the for loop."""
        loader = monitor(DataLoader(GlobalsDataset(), batch_size=4), strict=True)
        finished = []

        with pytest.raises(DuplicateStreamError, match="'torch' repeats across epochs"):
            for epoch in range(3):
                torch.manual_seed(0)
                for _batch in loader:
                    pass
                finished.append(epoch)

        assert [0] == finished

    def test_workers_report_as_for_datasets(self) -> None:
        """With workers, findings(loader) reports the dataset's duplicate streams."""
        loader = monitor(DataLoader(HoldsGenerator(), batch_size=4, num_workers=2))

        batches(loader)

        assert [("rng", ("workers", "epochs"))] == [(f.source, f.kinds) for f in findings(loader)]

    def test_persistent_workers_continue_across_epochs(self) -> None:
        """Persistent workers are one generation through the proxy too."""
        loader = monitor(
            DataLoader(HoldsGenerator(), batch_size=4, num_workers=2, persistent_workers=True)
        )

        batches(loader, epochs=3)

        assert ["workers"] == [finding.kind for finding in findings(loader)]

    def test_monitoring_twice_returns_the_same_proxy(self) -> None:
        """A monitored loader is returned unchanged."""
        loader = monitor(DataLoader(GlobalsDataset()))

        assert monitor(loader) is loader

    def test_a_loader_over_a_monitored_dataset_shares_its_findings(self) -> None:
        """Monitoring a loader whose dataset is monitored reuses that monitor."""
        dataset = monitor(HoldsGenerator())
        loader = monitor(DataLoader(dataset, batch_size=4, num_workers=2))

        batches(loader, epochs=1)

        assert findings(dataset) == findings(loader)
        assert loader.dataset is dataset

    @pytest.mark.parametrize(
        "duplicate", [copy.copy, copy.deepcopy, pickle.dumps], ids=["copy", "deepcopy", "pickle"]
    )
    def test_copying_a_monitored_loader_is_refused(self, duplicate: object) -> None:
        """A monitored loader cannot be copied: its shadow would silently diverge."""
        loader = monitor(DataLoader(GlobalsDataset()))

        with pytest.raises(TypeError, match="monitor"):
            duplicate(loader)  # type: ignore[operator]


class TestMainProcessEpochs:
    def test_numpy_reseeded_every_epoch_is_caught(self) -> None:
        """np.random.seed(0) before each epoch replays numpy's stream at num_workers=0."""
        loader = monitor(DataLoader(GlobalsDataset(), batch_size=4))

        for _ in range(2):
            np.random.seed(0)
            batches(loader, epochs=1)

        assert ["numpy"] == [finding.source for finding in findings(loader)]

    def test_an_abandoned_epoch_still_counts(self) -> None:
        """Breaking out of an epoch and reseeding is caught like a full epoch."""
        loader = monitor(DataLoader(GlobalsDataset(), batch_size=2))

        for _ in range(2):
            torch.manual_seed(5)
            for _batch in loader:
                break

        assert ["torch"] == [finding.source for finding in findings(loader)]

    def test_untouched_generators_are_not_repeats(self) -> None:
        """A generator nobody draws from keeps its state without being a repeat."""
        loader = monitor(DataLoader(HoldsGenerator(size=4), batch_size=4))
        loader.dataset.spare = np.random.default_rng(1)

        batches(loader, epochs=3)

        assert [] == findings(loader)


class Indices(torch.utils.data.Dataset[int]):
    """Draws nothing: only the loader itself touches torch's global generator."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        return index


class TestWithoutWorkers:
    def test_a_train_and_a_val_loader_over_one_dataset_are_clean(self) -> None:
        """Two loaders of one monitored dataset, globals nobody draws from: nothing repeats."""
        dataset = monitor(Indices())
        train = monitor(DataLoader(dataset, batch_size=4, shuffle=True))
        for _epoch in range(2):
            batches(train, epochs=1)
            batches(monitor(DataLoader(dataset, batch_size=4)), epochs=1)  # a new loader each time

        assert [] == findings(dataset)

    def test_a_loader_with_two_live_iterators_is_clean(self) -> None:
        """zip(loader, loader): two epochs at once, neither reseeded."""
        loader = monitor(DataLoader(Indices(), batch_size=4))

        for _pair in zip(loader, loader, strict=True):
            pass

        assert [] == findings(loader)

    def test_a_reseeded_global_the_epoch_draws_from_is_still_found(self) -> None:
        """manual_seed before each epoch, the sampler drawing from torch: an epoch repeat."""
        loader = monitor(DataLoader(Indices(), batch_size=4, shuffle=True))

        batches(loader, epochs=2, reseed=0)

        assert [("torch", ("epochs",))] == [(f.source, f.kinds) for f in findings(loader)]

    def test_deleting_an_attribute_reaches_the_loader_that_iterates(self) -> None:
        """del on the monitored loader removes it from the copy that iterates, too."""
        loader = monitor(DataLoader(Indices(), batch_size=4))
        loader.custom = 1

        del loader.custom

        assert not hasattr(loader, "custom")
