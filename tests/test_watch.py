"""seedwatch.watch(): every DataLoader built while watching is monitored, unedited."""

from __future__ import annotations

import gc
import inspect
import random
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pipelines import GlobalsDataset, HoldsGenerator
from seedwatch import DuplicateStreamError, findings, monitor, unwatch, watch
from seedwatch._proxy import isinstance_monitored, monitor_of
from seedwatch._watch import _uses, watching

pytestmark = pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning")

START_METHODS = ["fork", "spawn", "forkserver"]


@pytest.fixture(autouse=True)
def _never_left_watching() -> Iterator[None]:
    yield
    unwatch()


def run_epochs(loader: Any, epochs: int = 2, reseed: int | None = None) -> list[list[Any]]:
    seen = []
    for _ in range(epochs):
        if reseed is not None:
            torch.manual_seed(reseed)
        seen.append([batch.tolist() for batch in loader])
    return seen


def kinds(loader: Any) -> list[tuple[str, ...]]:
    return [finding.kinds for finding in findings(loader)]


class TestLoadersBuiltWhileWatching:
    @pytest.mark.parametrize("method", START_METHODS)
    def test_a_generator_copied_into_workers_is_found(self, method: str) -> None:
        """A plain DataLoader's workers and epochs are checked, under every start method."""
        with watch():
            loader = DataLoader(
                HoldsGenerator(size=8), batch_size=2, num_workers=2, multiprocessing_context=method
            )
            run_epochs(loader)

        assert [("workers", "epochs")] == kinds(loader)

    def test_epochs_without_workers_are_checked(self) -> None:
        """With num_workers=0, every iter() is an epoch: a reseed before each one repeats."""
        with watch():
            loader = DataLoader(GlobalsDataset(size=4), batch_size=2)
            run_epochs(loader, epochs=3, reseed=0)

        assert [("epochs",)] == kinds(loader)
        assert 3 == findings(loader).observed.generations

    def test_a_clean_pipeline_stays_clean(self) -> None:
        """The globals torch reseeds per worker are no finding, and nothing else is made up."""
        with watch():
            loader = DataLoader(GlobalsDataset(size=8), batch_size=2, num_workers=2)
            run_epochs(loader)

        found = findings(loader)
        assert [] == found
        assert ("workers", "epochs") == found.observed.can_see()

    def test_batches_are_bit_identical(self) -> None:
        """A watched loader yields exactly what the same loader yields unwatched."""
        torch.manual_seed(3)
        raw = run_epochs(DataLoader(HoldsGenerator(size=8), batch_size=2, num_workers=2))
        torch.manual_seed(3)
        with watch():
            watched = run_epochs(DataLoader(HoldsGenerator(size=8), batch_size=2, num_workers=2))

        assert raw == watched

    def test_strict_raises_from_the_loop(self) -> None:
        """watch(strict=True) stops the loop at the first duplicate."""
        with watch(strict=True):
            loader = DataLoader(HoldsGenerator(size=8), batch_size=2, num_workers=2)
            with pytest.raises(DuplicateStreamError, match="'rng'"):
                run_epochs(loader, epochs=1)

    def test_a_subclass_that_never_calls_dataloader_init(self) -> None:
        """torchdata's StatefulDataLoader sets its dataset itself and has its own __iter__."""
        from torchdata.stateful_dataloader import StatefulDataLoader

        with watch():
            loader = StatefulDataLoader(HoldsGenerator(size=8), batch_size=2, num_workers=2)
            run_epochs(loader)

        assert isinstance_monitored(loader.dataset)
        assert [("workers", "epochs")] == kinds(loader)

    def test_a_generator_iter_counts_one_epoch_per_iter(self) -> None:
        """A subclass whose __iter__ yields from super().__iter__() begins one epoch, clean."""

        class Moved(DataLoader[Any]):
            def __iter__(self) -> Any:
                yield from super().__iter__()

        with watch():
            loader = Moved(GlobalsDataset(size=4), batch_size=2)
            run_epochs(loader, epochs=3)

        assert [] == findings(loader)
        assert 3 == findings(loader).observed.generations

    def test_a_loader_that_iterates_another_counts_one_epoch(self) -> None:
        """A wrapper returning another watched loader's iterator over the dataset: one epoch."""

        class Wrapping(DataLoader[Any]):
            inner: DataLoader[Any]

            def __iter__(self) -> Any:
                return iter(self.inner)

        with watch():
            dataset = GlobalsDataset(size=4)
            loader = Wrapping(dataset, batch_size=2)
            loader.inner = DataLoader(dataset, batch_size=2)
            run_epochs(loader, epochs=3)

        assert [] == findings(loader)
        assert 3 == findings(loader).observed.generations

    def test_a_subclass_iterating_through_super_counts_one_epoch_per_iter(self) -> None:
        """A loader class born after watch() is patched at its first instance, once per iter()."""
        with watch():

            class Logged(DataLoader[Any]):
                def __iter__(self) -> Any:
                    return super().__iter__()

            loader = Logged(GlobalsDataset(size=4), batch_size=2)
            run_epochs(loader, epochs=2, reseed=0)

        assert 2 == findings(loader).observed.generations
        assert [("epochs",)] == kinds(loader)

    def test_a_new_loader_per_epoch_is_compared_with_the_last(self) -> None:
        """Loaders built one after another over one dataset share its monitor."""
        dataset = HoldsGenerator(size=8)
        with watch() as watching:
            for _ in range(2):
                run_epochs(DataLoader(dataset, batch_size=2, num_workers=1), epochs=1)

        (watched,) = watching.datasets()
        assert [("epochs",)] == [finding.kinds for finding in watched.findings]
        assert 2 == watched.loaders

    def test_where_the_loader_was_built_is_named(self) -> None:
        """A new loader each epoch over one dataset is one entry, named by the building line."""
        with watch() as watching:
            dataset = HoldsGenerator(size=4)
            line = _this_line() + 2
            for batch_size in (2, 4):
                run_epochs(DataLoader(dataset, batch_size=batch_size), epochs=1)

        (watched,) = watching.datasets()
        assert ("HoldsGenerator", 2) == (watched.name, watched.loaders)
        assert watched.where.endswith(f"test_watch.py:{line}")

    def test_a_loader_built_before_the_loop_and_again_in_it(self) -> None:
        """A reseed each epoch is found when the next epoch's loader is built on another line."""

        def make(data: Any) -> DataLoader[Any]:
            return DataLoader(data, batch_size=2, num_workers=2)

        dataset = GlobalsDataset(size=8)
        with watch() as watching:
            loader = make(dataset)
            for _ in range(2):
                run_epochs(loader, epochs=1, reseed=0)
                loader = make(dataset)

        assert [("epochs",)] == [finding.kinds for finding in watching.findings()]

    def test_a_dataset_gone_leaves_nothing_behind(self) -> None:
        """What watching notes of a dataset's loaders goes when the dataset does."""
        with watch():
            dataset = GlobalsDataset(size=4)
            key = id(dataset)
            run_epochs(DataLoader(dataset, batch_size=2), epochs=1)
            assert key in _uses
            del dataset
            gc.collect()

            assert key not in _uses

    def test_loaders_alive_together_are_named_apart(self) -> None:
        """Two roles built by one helper are told apart by the call into the helper."""

        def make(data: Any) -> DataLoader[Any]:
            return DataLoader(data, batch_size=2)

        dataset = GlobalsDataset(size=4)
        with watch() as watching:
            first_line = _this_line() + 1
            train = make(dataset)
            validation = make(dataset)
            run_epochs(train, epochs=1)
            run_epochs(validation, epochs=1)

        wheres = [watched.where for watched in watching.datasets()]
        assert 2 == len(set(wheres))
        assert wheres[0].endswith(f"test_watch.py:{first_line}")

    def test_a_loader_built_elsewhere_over_the_dataset_is_judged_apart(self) -> None:
        """A validation pass that puts the globals back (Lightning's sanity check) is no repeat."""
        dataset = GlobalsDataset(size=4)

        def make(data: Any) -> DataLoader[Any]:  # one helper builds both loaders, on one line
            return DataLoader(data, batch_size=2)

        with watch() as watching:
            validation, train = (make(dataset) for _ in range(2))
            saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
            run_epochs(validation, epochs=1)
            torch.set_rng_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])
            run_epochs(train, epochs=2)

        assert [] == watching.findings()
        assert 2 == len(watching.datasets())

    def test_a_new_loader_each_epoch_keeps_every_epoch(self) -> None:
        """Each loader's epochs are its own, even when a freed loader's id is reused."""
        dataset = GlobalsDataset(size=4)
        with watch() as watching:
            for _ in range(12):
                run_epochs(DataLoader(dataset, batch_size=2), epochs=1, reseed=0)

        (finding,) = watching.findings()
        assert 12 == len({member.generation for member in finding.members})

    def test_a_wrapped_init_is_not_where_the_loader_was_built(self) -> None:
        """A wrapper around the loader's __init__ (Lightning has one) is looked past."""
        with watch() as watching:
            line = _this_line() + 1
            _Wrapped(GlobalsDataset(size=4), batch_size=2)

        (watched,) = watching.datasets()
        assert watched.where.endswith(f"test_watch.py:{line}")


class _Wrapped(DataLoader[Any]):
    """A loader whose __init__ is wrapped as Lightning wraps DataLoader's: ``wrapper(obj, ...)``."""


def _wrapper(obj: Any, *args: Any, **kwargs: Any) -> None:
    DataLoader.__init__(obj, *args, **kwargs)


_Wrapped.__init__ = _wrapper  # type: ignore[method-assign,assignment]


def _this_line() -> int:
    caller = inspect.currentframe()
    assert caller is not None
    assert caller.f_back is not None
    return caller.f_back.f_lineno


class TestWhatWatchingLeavesAlone:
    def test_loaders_built_before_watching(self) -> None:
        """Only loaders built while watching are monitored."""
        before = DataLoader(GlobalsDataset(size=4), batch_size=2)
        with watch():
            during = DataLoader(GlobalsDataset(size=4), batch_size=2)
        after = DataLoader(GlobalsDataset(size=4), batch_size=2)

        assert [False, True, False] == [
            isinstance_monitored(loader.dataset) for loader in (before, during, after)
        ]

    def test_unwatch_restores_the_loader_classes(self) -> None:
        """unwatch() puts DataLoader's own methods back, and may be called twice."""
        originals = (DataLoader.__setattr__, DataLoader.__iter__)
        watch()
        assert originals != (DataLoader.__setattr__, DataLoader.__iter__)
        unwatch()
        unwatch()

        assert originals == (DataLoader.__setattr__, DataLoader.__iter__)

    def test_a_dataset_the_job_monitored_keeps_its_options(self) -> None:
        """A loader over a dataset the job monitored itself stores that very proxy."""
        mine = monitor(GlobalsDataset(size=4), draws=8)
        with watch():
            loader = DataLoader(mine, batch_size=2)

        assert loader.dataset is mine

    def test_the_jobs_own_monitor_call_wins(self) -> None:
        """monitor() on a watched loader with other options monitors it anew, and is listed."""
        with watch() as watching:
            loader = DataLoader(HoldsGenerator(size=8), batch_size=2, num_workers=2)
            mine = monitor(loader, strict=True)
            with pytest.raises(DuplicateStreamError):
                run_epochs(mine, epochs=1)

        own = monitor_of(mine.dataset)
        assert own is not None
        assert own.config.strict is True
        (watched,) = watching.datasets()
        assert [("workers",)] == [finding.kinds for finding in watched.findings]

    def test_a_refused_dataset_is_passed_through(self) -> None:
        """What monitor() refuses (a dict) stays the loader's, and the loader still works."""
        data: Any = {0: torch.zeros(1), 1: torch.ones(1)}
        with watch():
            loader = DataLoader(data, batch_size=2)
            (batch,) = list(loader)

        assert loader.dataset is data
        assert [[0.0], [1.0]] == batch.tolist()

    def test_reassigning_an_initialized_loaders_dataset_still_raises(self) -> None:
        """DataLoader's own guard is untouched."""
        with watch():
            loader = DataLoader(GlobalsDataset(size=4), batch_size=2)
            with pytest.raises(ValueError, match="dataset attribute should not be set"):
                loader.dataset = GlobalsDataset(size=4)


class TestWatchItself:
    def test_watching_twice_with_the_same_options_is_one_watch(self) -> None:
        """A nested watch() leaves the outer one running when its block ends."""
        with watch(draws=8):
            with watch(draws=8):
                pass
            loader = DataLoader(GlobalsDataset(size=4), batch_size=2)

        assert isinstance_monitored(loader.dataset)

    def test_a_watch_with_other_options_applies_inside_its_block(self) -> None:
        """The job's own watch(strict=True) under a running watch: its loaders are strict."""
        with watch() as outer:
            with watch(strict=True):
                loader = DataLoader(HoldsGenerator(size=8), batch_size=2, num_workers=2)
                with pytest.raises(DuplicateStreamError):
                    run_epochs(loader, epochs=1)
            after = DataLoader(GlobalsDataset(size=4), batch_size=2)

        own = monitor_of(loader.dataset)
        later = monitor_of(after.dataset)
        assert own is not None
        assert later is not None
        assert (True, None) == (own.config.strict, later.config.strict)
        assert ["HoldsGenerator", "GlobalsDataset"] == [d.name for d in outer.datasets()]

    def test_a_thread_leaving_its_watch_leaves_anothers_running(self) -> None:
        """Watches of two threads end with their own blocks, in any order."""
        first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
        seen: list[bool] = []

        def first() -> None:
            with watch(draws=8):
                first_in.set()
                second_in.wait()
            first_out.set()

        def second() -> None:
            first_in.wait()
            with watch(draws=32):
                second_in.set()
                first_out.wait()
                loader = DataLoader(GlobalsDataset(size=4), batch_size=2)
                seen.append(isinstance_monitored(loader.dataset))

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert [True] == seen

    @pytest.mark.parametrize(
        ("options", "error"),
        [
            ({"draws": 1}, ValueError),
            ({"strict": "yes"}, TypeError),
            ({"distributed": "yes"}, TypeError),
            ({"expect_shared": [""]}, ValueError),
        ],
    )
    def test_bad_options_fail_at_once(self, options: dict[str, Any], error: type) -> None:
        """A bad option is refused when watch() is called, not at the first loader."""
        with pytest.raises(error):
            watch(**options)
        assert watching() is None

    def test_threads_watching_at_once_patch_once(self) -> None:
        """Concurrent watch() calls share one watch; one unwatch() restores everything."""
        original = DataLoader.__setattr__
        barrier = threading.Barrier(8)

        def start() -> None:
            barrier.wait()
            watch()

        threads = [threading.Thread(target=start) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        unwatch()

        assert original is DataLoader.__setattr__

    def test_findings_of_every_watched_dataset(self) -> None:
        """Watching.findings() lists every dataset's findings and adds up what was checked."""
        with watch() as watching:
            buggy = DataLoader(HoldsGenerator(size=8), batch_size=2, num_workers=2)
            clean = DataLoader(GlobalsDataset(size=8), batch_size=2, num_workers=2)
            run_epochs(buggy, epochs=1)
            run_epochs(clean, epochs=1)

        found = watching.findings()
        assert [("workers",)] == [finding.kinds for finding in found]
        assert 4 == found.observed.processes
