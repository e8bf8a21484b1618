from __future__ import annotations

import copy
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch
from structlog.testing import capture_logs
from torch.utils.data import ConcatDataset, DataLoader, Dataset, IterableDataset, Subset

import seedwatch
from pipelines import (
    BatchedDataset,
    FailingDataset,
    GlobalsDataset,
    HoldsGenerator,
    StreamDataset,
    load,
)
from seedwatch import (
    DuplicateStreamError,
    DuplicateStreamWarning,
    findings,
    monitor,
    register_source,
)
from seedwatch.testing import isolated_sources, strict_mode


class TestProxy:
    def test_behaves_like_the_dataset(self) -> None:
        """isinstance, len, attributes, indexing and repr are the wrapped dataset's."""
        raw = HoldsGenerator(size=5)
        monitored = monitor(raw)

        assert 5 == len(monitored)
        assert raw.rng is monitored.rng
        assert repr(raw) == repr(monitored)
        monitored.size = 3
        assert 3 == raw.size
        assert isinstance(monitored, HoldsGenerator)
        assert isinstance(monitored, Dataset)

    def test_indexing_yields_the_raw_items(self) -> None:
        """Items fetched through the proxy equal the raw dataset's, draw for draw."""
        raw, monitored = HoldsGenerator(), monitor(HoldsGenerator())

        assert [raw[i].tolist() for i in range(6)] == [monitored[i].tolist() for i in range(6)]

    def test_batches_are_fetched_item_by_item_without_getitems(self) -> None:
        """Without its own __getitems__, a batch is the dataset's items in index order."""
        raw, monitored = HoldsGenerator(size=64), monitor(HoldsGenerator(size=64))
        indices = [7, *range(20), 3]

        batch = monitored.__getitems__(indices)

        assert [raw[i].tolist() for i in indices] == [item.tolist() for item in batch]

    def test_small_batches_go_back_to_per_item_fetching(self) -> None:
        """After a batch under 16 items, __getitems__ reads None: the cheaper path for them."""
        monitored = monitor(HoldsGenerator(size=64))
        monitored.__getitems__(list(range(32)))
        assert callable(monitored.__getitems__)

        monitored.__getitems__([0, 1])

        assert monitored.__getitems__ is None
        assert [5, 6] == [monitored[i][0].item() for i in (5, 6)]

    def test_a_datasets_own_getitems_is_used(self) -> None:
        """A dataset's __getitems__ serves the batch, before and after the first fetch."""
        monitored = monitor(BatchedDataset())

        monitored.__getitems__([0, 1])
        monitored.__getitems__([2])

        assert 0 == monitored.single_fetches

    def test_iterates_an_iterable_dataset(self) -> None:
        """An IterableDataset iterates through the proxy as it does raw."""
        monitored = monitor(StreamDataset(size=4))

        assert isinstance(monitored, IterableDataset)
        assert [t.tolist() for t in StreamDataset(size=4)] == [t.tolist() for t in monitored]

    def test_monitoring_twice_returns_the_same_proxy(self) -> None:
        """A monitored dataset, monitored again without options, is returned unchanged."""
        monitored = monitor(HoldsGenerator())

        assert monitor(monitored) is monitored

    def test_works_inside_subset_and_concat(self) -> None:
        """Through Subset and ConcatDataset, a monitored dataset yields the raw one's items."""

        def wrapped(dataset: Dataset[Any]) -> ConcatDataset[Any]:
            return ConcatDataset([Subset(dataset, [1, 3]), dataset])

        raw, monitored = HoldsGenerator(size=4), monitor(HoldsGenerator(size=4))

        expected = [batch.tolist() for batch in DataLoader(wrapped(raw), batch_size=3)]
        actual = [batch.tolist() for batch in DataLoader(wrapped(monitored), batch_size=3)]

        assert [1, 3, 0, 1, 2, 3] == [item[0] for batch in actual for item in batch]
        assert expected == actual


class TestCopies:
    @pytest.mark.parametrize(
        "duplicate",
        [copy.copy, copy.deepcopy, lambda ds: pickle.loads(pickle.dumps(ds))],  # noqa: S301
        ids=["copy", "deepcopy", "pickle"],
    )
    def test_copies_are_working_monitored_datasets(self, duplicate: Any) -> None:
        """A copy behaves as a dataset and stays monitored."""
        monitored = monitor(HoldsGenerator(size=4))

        twin = duplicate(monitored)

        assert isinstance(twin, HoldsGenerator)
        assert 4 == len(twin)
        assert [0, 1] == [twin[i][0].item() for i in range(2)]
        assert monitor(twin) is twin

    def test_a_deep_copy_reports_to_the_same_monitor(self) -> None:
        """Workers of a deep copy report into the original's findings."""
        monitored = monitor(HoldsGenerator(), strict=False)
        twin = copy.deepcopy(monitored)

        with pytest.warns(DuplicateStreamWarning):
            load(twin, epochs=1)

        assert ["rng"] == [finding.source for finding in findings(monitored)]
        assert findings(monitored) == findings(twin)


class TestBadInput:
    @pytest.mark.parametrize("value", [3, None, object()])
    def test_rejects_non_datasets(self, value: object) -> None:
        """An object without __getitem__ or __iter__ is a TypeError naming its type."""
        with pytest.raises(TypeError, match=type(value).__qualname__):
            monitor(value)

    @pytest.mark.parametrize("draws", [1.5, "16", True])
    def test_draws_must_be_an_int(self, draws: object) -> None:
        """A non-integer draws is a TypeError."""
        with pytest.raises(TypeError, match="draws must be an int"):
            monitor(HoldsGenerator(), draws=draws)  # type: ignore[arg-type]

    @pytest.mark.parametrize("draws", [1, 0, -3, 4097])
    def test_draws_must_be_in_range(self, draws: int) -> None:
        """draws outside 2..4096 is a ValueError that says the range."""
        with pytest.raises(ValueError, match="between 2 and 4096"):
            monitor(HoldsGenerator(), draws=draws)

    def test_strict_must_be_a_bool_or_none(self) -> None:
        """strict='yes' is a TypeError."""
        with pytest.raises(TypeError, match="strict"):
            monitor(HoldsGenerator(), strict="yes")  # type: ignore[arg-type]

    def test_expect_shared_must_hold_strings(self) -> None:
        """A non-string name is a TypeError."""
        with pytest.raises(TypeError, match="must be strings"):
            monitor(HoldsGenerator(), expect_shared=["rng", 3])  # type: ignore[list-item]

    def test_expect_shared_is_not_one_string(self) -> None:
        """expect_shared='rng' would be read as characters, so it is refused with the fix."""
        with pytest.raises(TypeError, match=r"expect_shared=\['rng'\]"):
            monitor(HoldsGenerator(), expect_shared="rng")

    def test_unknown_expect_shared_names_are_allowed(self) -> None:
        """Names may refer to generators that only exist in workers."""
        assert 4 == len(monitor(HoldsGenerator(size=4), expect_shared=["made_in_worker"]))

    def test_findings_needs_a_monitored_dataset(self) -> None:
        """findings() on a raw dataset is a TypeError."""
        with pytest.raises(TypeError, match=r"seedwatch.monitor\(\)"):
            findings(HoldsGenerator())


class TestMainProcess:
    def test_fingerprints_once_per_process(self) -> None:
        """A proxy reports at its first fetch in a process only; a copy once, at its own."""
        reads: list[int] = []

        def counted(n: int) -> bytes:
            reads.append(n)
            return bytes(n)

        with isolated_sources():
            register_source("counted", draws=counted)
            monitored = monitor(GlobalsDataset())
            for i in range(5):
                monitored[i]
            after_fetches = len(reads)
            twin = copy.copy(monitored)
            for i in range(3):
                twin[i]

        assert (1, 2) == (after_fetches, len(reads))
        assert [] == findings(monitored)

    def test_a_worker_epoch_repeated_in_the_main_process(self) -> None:
        """A num_workers=0 pass replaying a worker's stream is an 'epochs' finding."""
        monitored = monitor(HoldsGenerator())
        load(monitored, epochs=1, workers=1)

        with pytest.warns(DuplicateStreamWarning, match="'rng' repeats across epochs"):
            monitored[0]

        [finding] = findings(monitored)
        assert [0, None] == [member.worker for member in finding.members]

    def test_strict_raises_from_the_fetch(self) -> None:
        """In strict mode a duplicate found at a main-process fetch raises there."""
        monitored = monitor(HoldsGenerator(), strict=True)
        load(monitored, epochs=1, workers=1)

        with pytest.raises(DuplicateStreamError, match="'rng' repeats across epochs"):
            monitored[0]
        assert 1 == monitored[1][0].item()  # it raised once; the dataset still works

    def test_logs_a_structured_event_per_new_finding(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With SEEDWATCH_ANNOUNCE=log, each new finding is one event with the finding's keys."""
        monkeypatch.setenv("SEEDWATCH_ANNOUNCE", "log")
        monitored = monitor(HoldsGenerator("torch_generator"))
        load(monitored, epochs=1, workers=1)

        with capture_logs() as logs:
            monitored[0]

        [event] = [log for log in logs if log["event"] == "duplicate_rng_stream"]
        assert "warning" == event["log_level"]
        assert {"source", "sources", "kind", "kinds", "members", "fingerprint", "hint"} <= set(
            event
        )
        assert ("rng", ["epochs"]) == (event["source"], event["kinds"])

    def test_strict_follows_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """strict=None reads SEEDWATCH_STRICT when the report is made."""
        monitored = monitor(HoldsGenerator())
        load(monitored, epochs=1, workers=1)
        monkeypatch.setenv("SEEDWATCH_STRICT", "1")

        with pytest.raises(DuplicateStreamError):
            monitored[0]

    def test_explicit_false_beats_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """strict=False warns even when SEEDWATCH_STRICT=1."""
        monkeypatch.setenv("SEEDWATCH_STRICT", "1")
        monitored = monitor(HoldsGenerator(), strict=False)
        load(monitored, epochs=1, workers=1)

        with pytest.warns(DuplicateStreamWarning):
            monitored[0]

    def test_no_global_state_between_monitors(self) -> None:
        """Equal streams drawn by the workers of two monitors are a finding of neither."""
        first, second = monitor(HoldsGenerator()), monitor(HoldsGenerator())

        load(first, epochs=1, workers=1)
        load(second, epochs=1, workers=1)

        assert ([], []) == (findings(first), findings(second))

    def test_user_exceptions_pass_through(self) -> None:
        """The wrapped dataset's own exception reaches the caller with its type and message."""
        monitored = monitor(FailingDataset())

        assert 0 == monitored[0]
        with pytest.raises(KeyError, match="missing sample 5"):
            monitored[5]

    def test_user_exceptions_at_the_first_fetch_pass_through(self) -> None:
        """An exception on the very first fetch is the user's, not seedwatch's."""
        with pytest.raises(KeyError, match="missing sample 5"):
            monitor(FailingDataset())[5]


def test_public_api_is_small_and_sorted() -> None:
    """The package exports a short, sorted __all__."""
    assert sorted(seedwatch.__all__) == seedwatch.__all__
    assert {"monitor", "findings", "Finding", "DuplicateStreamError"} <= set(seedwatch.__all__)


class TestThreads:
    def test_concurrent_first_fetches_report_once(self) -> None:
        """Eight threads racing on a fresh proxy: one report, correct items, no finding."""
        monitored = monitor(HoldsGenerator(size=64))
        barrier = threading.Barrier(8)

        def fetch(index: int) -> int:
            barrier.wait()
            return int(monitored[index][0])

        with ThreadPoolExecutor(8) as pool:
            indices = list(pool.map(fetch, range(8)))

        assert list(range(8)) == indices
        assert [] == findings(monitored)

    @pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning")
    def test_findings_while_workers_report(self) -> None:
        """findings() from other threads while a loader runs neither blocks nor loses reports."""
        monitored = monitor(HoldsGenerator(size=64))
        stop = threading.Event()
        polls: list[list[int]] = [[], [], []]

        def poll(counts: list[int]) -> None:
            while not stop.is_set():
                counts.append(sum(len(f.members) for f in findings(monitored)))
            # once more, after the loader is done
            counts.append(sum(len(f.members) for f in findings(monitored)))

        pollers = [threading.Thread(target=poll, args=(counts,)) for counts in polls]
        for poller in pollers:
            poller.start()
        try:
            load(monitored, epochs=2, workers=2, batch_size=4)
        finally:
            stop.set()
            for poller in pollers:
                poller.join()

        assert [("rng", ("workers", "epochs"))] == [
            (f.source, f.kinds) for f in findings(monitored)
        ]
        assert [4, 4, 4] == [counts[-1] for counts in polls]  # two workers, two epochs
        assert [sorted(counts) for counts in polls] == polls


class LenientAttributes(Dataset[int]):
    """A dataset whose __getattr__ raises KeyError for unknown names (a config-backed one)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        return index

    def __getattr__(self, name: str) -> Any:
        raise KeyError(name)


class TestOddDatasets:
    def test_a_getattr_that_raises_keyerror_is_no_getitems(self) -> None:
        """A __getattr__ raising for __getitems__ means none, as for the DataLoader: items flow."""
        monitored = monitor(LenientAttributes())

        assert [0, 1, 2, 3] == [monitored[i] for i in range(4)]
        assert [[0, 1], [2, 3]] == [b.tolist() for b in DataLoader(monitored, batch_size=2)]

    def test_a_copy_is_a_shallow_copy_of_the_dataset(self) -> None:
        """copy.copy(monitored) copies the dataset, as copy.copy(raw) does: a validation twin."""
        train = monitor(HoldsGenerator(size=4))
        validation = copy.copy(train)
        validation.size = 2

        assert (4, 2) == (len(train), len(validation))


class TestClearErrors:
    @pytest.mark.parametrize(
        "value",
        ["images/", b"bytes", {"a": 1}, (i for i in range(3)), torch.zeros(3), np.zeros(3)],
        ids=["str", "bytes", "dict", "generator", "tensor", "ndarray"],
    )
    def test_data_is_not_a_dataset(self, value: object) -> None:
        """Indexable data (a string, a dict, a tensor, an array, a generator) is refused by type."""
        with pytest.raises(TypeError, match=f"expects a dataset.*got {type(value).__qualname__}"):
            monitor(value)

    def test_options_for_an_already_monitored_dataset_are_refused(self) -> None:
        """Monitoring again with new options would ignore them: a ValueError naming each."""
        monitored = monitor(HoldsGenerator())

        with pytest.raises(ValueError, match=r"ignore strict=True, draws=-1"):
            monitor(monitored, strict=True, draws=-1)
        assert monitor(monitored) is monitored

    @pytest.mark.parametrize("names", [None, 5])
    def test_expect_shared_must_be_a_collection(self, names: object) -> None:
        """expect_shared=None or 5 is a TypeError that names the parameter."""
        with pytest.raises(TypeError, match="expect_shared must be a collection"):
            monitor(HoldsGenerator(), expect_shared=names)  # type: ignore[arg-type]

    def test_draws_accepts_numpy_integers(self) -> None:
        """np.int64(32) is an integer like any other."""
        assert 4 == len(monitor(HoldsGenerator(size=4), draws=np.int64(32)))  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("options", "parameter"),
        [({"store": object()}, "store"), ({"rank": "0"}, "rank"), ({"namespace": 5}, "namespace")],
    )
    def test_distributed_names_the_bad_parameter(
        self, options: dict[str, Any], parameter: str
    ) -> None:
        """Distributed(store=object(), rank='0', namespace=5) each fail naming the parameter."""
        with pytest.raises(TypeError, match=rf"Distributed\({parameter}="):
            seedwatch.Distributed(**options)

    def test_strict_mode_takes_a_bool(self) -> None:
        """strict_mode('yes') is a TypeError, not strictness."""
        with pytest.raises(TypeError, match="True or False"), strict_mode("yes"):  # type: ignore[arg-type]
            pass

    def test_unregister_source_takes_a_name(self) -> None:
        """unregister_source(['a']) is a TypeError naming what it takes."""
        with pytest.raises(TypeError, match="a source name"):
            seedwatch.unregister_source(["a"])  # type: ignore[arg-type]
